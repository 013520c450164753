"""Log lines that are safe to publish: one line each, no control characters, no server paths.

The build log (``build.log``) and summary are kept beside the site, in the build's working folder
``.<out>.tsunagari-work`` (not published), and are often shared. ``SafeFormatter`` therefore
- escapes control characters in the message (a file name with a newline or an ANSI escape cannot
  forge or hide log lines): ``\\n``, ``\\r``, ``\\t``, other C0/C1 controls and U+2028/U+2029 are
  written as backslash escapes;
- shortens paths: the working folder, the project folder and the folder that holds the output are
  removed from every line (``data/..`` instead of ``/srv/.../data/..``), the home folder is ``~``.
``display_path`` gives the same form for one path (outside the working folder: ``…/<name>``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def escape_control(text: str) -> str:
    """`text` on one line: control characters as backslash escapes (errors.printable)."""
    from pipelines.domain.errors import printable

    return printable(text)


_EXTRA_ROOTS: list[Path] = []


def add_root(path: str | os.PathLike[str]) -> None:
    """Also remove `path` (e.g. the folder that holds --out) from the paths in log lines."""
    p = Path(path)
    if p not in _EXTRA_ROOTS:
        _EXTRA_ROOTS.append(p)


def _roots() -> list[tuple[str, str]]:
    from pipelines.domain import config

    roots = []
    known = [(Path.cwd(), ""), (config.REPO_ROOT, ""), (Path.home(), "~/")] + [(p, "") for p in _EXTRA_ROOTS]
    for path, shown in known:
        for form in {str(path), str(path.resolve())}:
            if form not in ("/", ""):
                roots.append((form.rstrip("/") + "/", shown))
    return sorted(roots, key=lambda r: -len(r[0]))  # the longest (most specific) first


def strip_roots(text: str) -> str:
    """`text` with the working folder, the project and the home folder removed from paths."""
    for root, shown in _roots():
        if root in text:
            text = text.replace(root, shown)
    return text


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as written in logs and notebooks: relative to the working folder when
    inside it, else `…/<name>` (never an absolute server path)."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    for root in (Path.cwd(), Path.cwd().resolve()):
        try:
            return p.relative_to(root).as_posix() or "."
        except ValueError:
            pass
    return f"…/{p.name}"


class SafeFormatter(logging.Formatter):
    """A Formatter whose message is one line without control characters and without server paths
    (the traceback of an exception keeps its lines, paths shortened)."""

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg = strip_roots(escape_control(record.getMessage()))
        safe.args = None
        text = super().format(safe)
        return strip_roots(text) if (record.exc_info or record.exc_text or record.stack_info) else text


def setup_logging(log_file: Path | None = None, quiet: bool = False) -> None:
    """Log to stderr and, when given, to a file (the build keeps one in its working folder)."""
    root = logging.getLogger("tsunagari")
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    # One line per message, control characters escaped, no server paths (build.log is shared).
    fmt = SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING if quiet else logging.INFO)
    err.setFormatter(fmt)
    root.addHandler(err)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    root.propagate = False


def display_config(cfg: object) -> dict[str, object]:
    """A settings object's fields as logged: paths relative to the working folder, never absolute."""
    return {k: (display_path(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()}
