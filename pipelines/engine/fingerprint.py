"""The part of every artefact's cache key that is not data: everything else that can change output.

An artefact (a report, the indicators, the site pages, the quality page, ...) is rebuilt when its
input hash changes. Its data slice is hashed by the stage; everything else goes into one fingerprint,
computed once per build, made of:
- every file of the package (`pipelines/`: code, catalogue `indicators.yml`, `mapping.yml`,
  templates, notebooks, renderer files), hashed whole: no hand-kept list of "relevant" files that
  can miss a constant such as ``MIN_BASE``;
- the report folder in use (the setting paths.reports_dir, by default ``reports/``), the reference
  data and the expectation suites;
- the run settings that can change output (pipelines/domain/config.py, ``Spec.output``: statistics,
  publication, reports folder, catalogue, PDF font; whether they came from the defaults, the
  run-configuration file or the environment), not those that only locate state or caches or bound
  time and input sizes; the catalogue also with its file's content; any other ``TSUNAGARI_*``
  variable (a fork's notebook may read its own) except the internal ones (``INTERNAL_ENV``), and
  ``QUARTO_PATH``, locale and time zone variables;
- the versions of Python and of every library the package depends on (pyproject.toml's
  dependencies, plus plotnine and statsmodels when installed).
A change to any of these rebuilds everything once, which is the safe direction.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

from pipelines.domain import config

# Environment variables that are not taken as they are: the run settings' names (their resolved
# values count, or not, by Spec.output), the run-configuration file's name (its values count) and
# the internal ones: a pool worker's own folder (executor.POOL_ENV: differs every build) and the
# settings a parent process passes to its children.
INTERNAL_ENV = frozenset({"TSUNAGARI_POOL", config.SETTINGS_ENV})
IGNORED_ENV = frozenset(config.ENV_NAMES) | {config.CONFIG_ENV} | INTERNAL_ENV
OUTPUT_ENV = ("QUARTO_PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SOURCE_DATE_EPOCH")
# Used by the output but not declared as a dependency of the package (optional libraries).
EXTRA_LIBRARIES = ("plotnine", "statsmodels", "scipy")


def _hash_tree(h, root: Path, label: str) -> None:
    h.update(f"<{label}>".encode())
    if root.is_file():
        h.update(root.read_bytes())
        return
    if not root.is_dir():
        h.update(b"<missing>")
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            f = Path(dirpath) / name
            h.update(f.relative_to(root).as_posix().encode() + b"\x00")
            try:
                h.update(f.read_bytes())
            except OSError as exc:  # an unreadable file still changes the key
                h.update(f"<unreadable {exc.errno}>".encode())
            h.update(b"\x00")


def _dependency_names() -> list[str]:
    names: list[str] = []
    pyproject = config.REPO_ROOT / "pyproject.toml"
    try:
        import tomllib

        deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    except (OSError, KeyError, ValueError):
        try:
            from importlib.metadata import requires

            deps = [d for d in (requires("tsunagari") or []) if "extra ==" not in d]
        except Exception:  # not installed as a distribution: the extras below still count
            deps = []
    for d in deps:
        m = re.match(r"[A-Za-z0-9._-]+", d)
        if m:
            names.append(m.group(0))
    return sorted(set(names) | set(EXTRA_LIBRARIES))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _installed() -> dict[str, str]:
    """normalised distribution name -> version, from the ``*.dist-info`` folder names on sys.path
    (one directory listing per entry, cheaper than importlib.metadata.version for each name)."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info") and "-" in n:
                dist, _, ver = n[: -len(".dist-info")].rpartition("-")
                found.setdefault(_norm(dist), ver)
    return found


def library_versions() -> dict[str, str]:
    """name -> installed version ('-' when not installed) of the libraries that shape output."""
    installed = _installed()
    out = {"python": sys.version.split()[0]}
    for name in _dependency_names():
        out[name] = installed.get(_norm(name), "-")
    return out


def settings() -> dict[str, str]:
    """The settings that can change output, with their values: the run settings of Spec.output (by
    key, e.g. ``statistics.min_base``), other ``TSUNAGARI_*`` variables and OUTPUT_ENV."""
    out = {key: repr(value) for key, value in config.output_values().items()}
    out.update({k: v for k, v in os.environ.items() if k.startswith("TSUNAGARI_") and k not in IGNORED_ENV})
    out.update({k: os.environ[k] for k in OUTPUT_ENV if k in os.environ})
    return dict(sorted(out.items()))


def compute() -> str:
    """The fingerprint (sha256 hex) of the code, templates, reference data, settings and libraries."""
    h = hashlib.sha256()
    for label, root in (
        ("package", config.PACKAGE_DIR),
        ("reports", Path(config.REPORTS_DIR)),
        ("reference", config.REFERENCE_DIR),
        ("expectations", config.EXPECTATIONS_DIR),
    ):
        _hash_tree(h, root, label)
    env = settings()
    for name, value in env.items():  # a variable naming a file or folder: its content
        if value and not name.startswith("paths.") and (os.path.isfile(value) or os.path.isdir(value)):
            _hash_tree(h, Path(value), name)
    _hash_tree(h, Path(config.settings().catalogue), "catalogue")
    for part in (env, library_versions()):
        h.update(repr(sorted(part.items())).encode())
    return h.hexdigest()


_CURRENT: list[str] = []


def current(refresh: bool = False) -> str:
    """The fingerprint, computed once per build (`refresh=True` at the start of each build)."""
    if refresh or not _CURRENT:
        _CURRENT[:] = [compute()]
    return _CURRENT[0]
