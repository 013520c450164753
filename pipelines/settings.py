"""The run settings in one object (issue #25): defaults < run-configuration file < environment.

``settings()`` returns the loaded `Settings` (frozen). It is resolved from, later wins:

1. the defaults: the constants of ``pipelines/config.py`` for the names it has always had
   (``MIN_BASE``, ``CONFIDENCE_LEVEL``, ``REPORTS_DIR``, ``PUBLISHER``, ...: editing them there
   still works), ``SPECS`` below for the rest;
2. a TOML run-configuration file: ``--config FILE`` or ``$TSUNAGARI_CONFIG``, else
   ``tsunagari.toml`` in the current folder, else in the project root. Relative paths in the file
   are relative to the file's folder;
3. the environment: every setting has a ``TSUNAGARI_*`` name (the names the modules read before
   keep working; ``SPECS`` lists them). An empty variable counts as unset.

An unknown section or key, a wrong type or a value outside its range is a `SettingsError` (exit 2)
naming the file (or the variable), the key and the rule. ``config.MIN_BASE`` and the other old
names read this object (``config.__getattr__``).

Processes the run starts (pool workers, their notebook kernels, the validation process, Quarto)
resolve nothing themselves when the parent exported its resolved values (``exported_environ``,
``$TSUNAGARI_SETTINGS``: internal plumbing like ``$TSUNAGARI_POOL``, not a user setting): a
kernel runs in another folder and must not find another file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping

from . import config
from .errors import UsageError

CONFIG_ENV = "TSUNAGARI_CONFIG"
FILE_NAME = "tsunagari.toml"
# The parent's resolved values for the processes it starts (JSON; see the module text).
SETTINGS_ENV = "TSUNAGARI_SETTINGS"


class SettingsError(UsageError):
    """A bad run setting: `source` (the file or the environment variable), the key and the rule."""

    def __init__(self, source: str, key: str, rule: str, value: object = None) -> None:
        self.source, self.key, self.rule = source, key, rule
        shown = "" if value is None else f" = {value!r}"
        super().__init__(source, f"{key}{shown}: {rule}")


@dataclass(frozen=True)
class Settings:
    # [statistics]
    confidence_level: float
    min_base: int
    reference_base: int
    lead_cv_max: float
    default_deff: float
    deff: str
    # [limits]
    max_input_bytes: int
    max_input_rows: int
    max_xlsx_bytes: int
    max_xlsx_ratio: int
    max_xlsx_strings: int
    max_xlsx_string_chars: int
    max_weight_ratio: float
    min_effective_n_fraction: float
    # [paths]
    warehouse: Path
    reports_dir: Path
    cache_dir: Path
    catalogue: Path
    # [run]
    kernel_timeout: float | None     # None: 120 s times the load per core (pipelines/executor.py)
    quarto_timeout: int
    chart_cache: bool
    pdf_font: str
    # [publication]
    publisher: str
    contact: str
    terms: str
    publication_date: str | None
    # name -> "default" | "file" | "env"; the file read, if any
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    file: Path | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Spec:
    section: str
    name: str
    kind: str                  # int, float, str, path, bool, deff, date, font, timeout
    env: str
    rule: str                  # what a valid value is, bilingual
    ok: Callable[[Any], bool] = lambda v: True
    output: bool = False       # can change what is built: part of the fingerprint
    config_name: str | None = None    # its old name in pipelines/config.py (default there)
    default: Any = None        # when not config_name's

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


_INT_RULE = "must be a whole number >= 1 / 1 以上の整数を指定してください"


def _INT_OK(v: int) -> bool:
    return v >= 1


_FONTS = ("auto", "noto", "ipaex")

SPECS: tuple[Spec, ...] = (
    Spec("statistics", "confidence_level", "float", "TSUNAGARI_CONFIDENCE_LEVEL",
         "must be a number between 0 and 1 (e.g. 0.95) / 0 より大きく 1 より小さい数を指定してください",
         lambda v: 0 < v < 1, True, "CONFIDENCE_LEVEL"),
    Spec("statistics", "min_base", "int", "TSUNAGARI_MIN_BASE", _INT_RULE, _INT_OK, True, "MIN_BASE"),
    Spec("statistics", "reference_base", "int", "TSUNAGARI_REFERENCE_BASE",
         "must be a whole number greater than statistics.min_base / min_base より大きい整数を指定してください",
         _INT_OK, True, "REFERENCE_BASE"),
    Spec("statistics", "lead_cv_max", "float", "TSUNAGARI_LEAD_CV_MAX",
         "must be a number greater than 0 (e.g. 0.2) / 0 より大きい数を指定してください",
         lambda v: v > 0, True, "LEAD_CV_MAX"),
    Spec("statistics", "default_deff", "float", "TSUNAGARI_DEFAULT_DEFF",
         "must be a number greater than 0 and less than 100 / 0 より大きく 100 未満の数を指定してください",
         lambda v: 0 < v < 100, True, "DEFAULT_DEFF"),
    Spec("statistics", "deff", "deff", config.DEFF_ENV,
         "must be a number > 0, or key=number entries (national, prefecture or a survey_id), e.g. "
         "\"national=1.5,pref11-2023=1.2\" or a table / 設計効果の指定が不正です",
         output=True, default=""),
    Spec("limits", "max_input_bytes", "int", "TSUNAGARI_MAX_INPUT_BYTES", _INT_RULE, _INT_OK,
         config_name="MAX_INPUT_BYTES"),
    Spec("limits", "max_input_rows", "int", "TSUNAGARI_MAX_INPUT_ROWS", _INT_RULE, _INT_OK, default=20_000_000),
    Spec("limits", "max_xlsx_bytes", "int", "TSUNAGARI_MAX_XLSX_BYTES", _INT_RULE, _INT_OK, default=1_000_000_000),
    Spec("limits", "max_xlsx_ratio", "int", "TSUNAGARI_MAX_XLSX_RATIO", _INT_RULE, _INT_OK, default=100),
    Spec("limits", "max_xlsx_strings", "int", "TSUNAGARI_MAX_XLSX_STRINGS", _INT_RULE, _INT_OK, default=2_000_000),
    Spec("limits", "max_xlsx_string_chars", "int", "TSUNAGARI_MAX_XLSX_STRING_CHARS", _INT_RULE, _INT_OK,
         default=100_000_000),
    Spec("limits", "max_weight_ratio", "float", "TSUNAGARI_MAX_WEIGHT_RATIO",
         "must be a number >= 1 / 1 以上の数を指定してください", lambda v: v >= 1, default=50.0),
    Spec("limits", "min_effective_n_fraction", "float", "TSUNAGARI_MIN_EFFECTIVE_N_FRACTION",
         "must be a fraction in (0, 1] / 0 より大きく 1 以下の数を指定してください", lambda v: 0 < v <= 1, default=0.25),
    Spec("paths", "warehouse", "path", config.WAREHOUSE_ENV, "must be a file path / ファイルのパスを指定してください",
         default=config.DEFAULT_WAREHOUSE),
    Spec("paths", "reports_dir", "path", "TSUNAGARI_REPORTS_DIR",
         "must be a folder path / フォルダのパスを指定してください", output=True, config_name="REPORTS_DIR"),
    Spec("paths", "cache_dir", "path", config.CACHE_ENV, "must be a folder path / フォルダのパスを指定してください"),
    Spec("paths", "catalogue", "path", "TSUNAGARI_CATALOGUE", "must be a file path / ファイルのパスを指定してください",
         output=True, default=config.INDICATOR_CATALOGUE),
    Spec("run", "kernel_timeout", "timeout", "TSUNAGARI_KERNEL_TIMEOUT",
         "must be a number of seconds greater than 0 / 0 より大きい秒数を指定してください", lambda v: v > 0),
    Spec("run", "quarto_timeout", "int", "TSUNAGARI_QUARTO_TIMEOUT", _INT_RULE, _INT_OK, default=3600),
    Spec("run", "chart_cache", "bool", "TSUNAGARI_CHART_CACHE",
         "must be true or false (environment: 1/0, on/off, yes/no) / true か false を指定してください", default=True),
    Spec("run", "pdf_font", "font", "TSUNAGARI_PDF_FONT",
         "must be one of auto, noto, ipaex / auto・noto・ipaex のいずれかを指定してください",
         lambda v: v in _FONTS, True, default="auto"),
    Spec("publication", "publisher", "str", "TSUNAGARI_PUBLISHER", "must be text / 文字列を指定してください",
         output=True, config_name="PUBLISHER"),
    Spec("publication", "contact", "str", "TSUNAGARI_CONTACT", "must be text / 文字列を指定してください",
         output=True, config_name="CONTACT"),
    Spec("publication", "terms", "str", "TSUNAGARI_TERMS", "must be text / 文字列を指定してください",
         output=True, config_name="TERMS"),
    Spec("publication", "publication_date", "date", "TSUNAGARI_PUBLICATION_DATE",
         "must be a date YYYY-MM-DD / 日付（YYYY-MM-DD）を指定してください", output=True,
         config_name="PUBLICATION_DATE"),
)
BY_NAME = {s.name: s for s in SPECS}
SECTIONS = tuple(dict.fromkeys(s.section for s in SPECS))
ENV_NAMES = tuple(s.env for s in SPECS)
# config.py's old names -> setting names (config.__getattr__ reads them from the loaded settings).
CONFIG_NAMES = {s.config_name: s.name for s in SPECS if s.config_name}


def defaults(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    values = {}
    for s in SPECS:
        values[s.name] = config.PACKAGE_DEFAULTS[s.config_name] if s.config_name else s.default
    values["cache_dir"] = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tsunagari"
    return values


# --- Parsing ----------------------------------------------------------------------------------------

_FALSE, _TRUE = ("0", "off", "false", "no"), ("1", "on", "true", "yes")


class _Bad(Exception):
    pass


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad
    if not math.isfinite(v):
        raise _Bad
    return v


def _from_file(spec: Spec, v: Any, folder: Path) -> Any:
    """A TOML value as the setting's type, or _Bad."""
    kind = spec.kind
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad
        return v
    if kind in ("float", "timeout"):
        return float(_number(v))
    if kind == "bool":
        if not isinstance(v, bool):
            raise _Bad
        return v
    if kind == "date" and isinstance(v, date):
        return v.isoformat()
    if kind == "deff":
        if isinstance(v, dict):
            return ",".join(f"{k}={_number(x):g}" for k, x in v.items())
        if not isinstance(v, str):
            return f"{_number(v):g}"
    if not isinstance(v, str):
        raise _Bad
    if kind == "path":
        if not v.strip():
            raise _Bad
        return folder / Path(v).expanduser()   # an absolute path stays as it is
    return _text(kind, v)


def _from_env(spec: Spec, raw: str) -> Any:
    """An environment value (text) as the setting's type, or _Bad."""
    kind = spec.kind
    text = raw.strip()
    try:
        if kind == "int":
            return int(text.replace(",", "").replace("_", ""))
        if kind in ("float", "timeout"):
            return float(_number(float(text)))
    except ValueError:
        raise _Bad from None
    if kind == "bool":
        if text.lower() not in _FALSE + _TRUE:
            raise _Bad
        return text.lower() in _TRUE
    if kind == "path":
        return Path(raw).expanduser()
    return _text(kind, raw)


def _text(kind: str, v: str) -> Any:
    if kind == "font":
        return v.strip().lower() or "auto"
    if kind == "date":
        try:
            return date.fromisoformat(v.strip()).isoformat()
        except ValueError:
            raise _Bad from None
    return v


# --- Loading ----------------------------------------------------------------------------------------


def find_file(path: str | os.PathLike[str] | None = None,
              environ: Mapping[str, str] = os.environ) -> Path | None:
    """The run-configuration file: `path`, else $TSUNAGARI_CONFIG (either must exist), else
    tsunagari.toml in the current folder, else in the project root; None when there is none."""
    named = path if path is not None else (environ.get(CONFIG_ENV) or "").strip() or None
    if named is not None:
        return Path(named).expanduser()
    for folder in (Path.cwd(), config.REPO_ROOT):
        candidate = folder / FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def _read_file(file: Path, values: dict[str, Any], sources: dict[str, str]) -> None:
    import tomllib

    where = str(file)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(where, "(file)", "run-configuration file not found / 設定ファイルがありません") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(where, "(file)", f"cannot be read / 読み込めません: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(where, "(file)", f"not valid TOML / TOML として読めません: {exc}") from None
    folder = file.resolve().parent
    for section, table in data.items():
        if section not in SECTIONS:
            raise SettingsError(where, f"[{section}]", "unknown section / 不明なセクションです (known / 有効: "
                                + ", ".join(SECTIONS) + ")")
        if not isinstance(table, dict):
            raise SettingsError(where, section, f"must be a table [{section}] / [{section}] の表にしてください")
        for name, raw in table.items():
            spec = BY_NAME.get(name)
            if spec is None or spec.section != section:
                known = ", ".join(s.name for s in SPECS if s.section == section)
                raise SettingsError(where, f"{section}.{name}",
                                    f"unknown setting / 不明な設定です (known in [{section}] / 有効: {known})")
            try:
                value = _from_file(spec, raw, folder)
                if not spec.ok(value):
                    raise _Bad
            except _Bad:
                raise SettingsError(where, spec.key, spec.rule, raw) from None
            values[name], sources[name] = value, "file"


def _read_environ(environ: Mapping[str, str], values: dict[str, Any], sources: dict[str, str]) -> None:
    for spec in SPECS:
        raw = environ.get(spec.env)
        if raw is None or not raw.strip():
            continue
        try:
            value = _from_env(spec, raw)
            if not spec.ok(value):
                raise _Bad
        except _Bad:
            raise SettingsError(spec.env, spec.key, spec.rule, raw) from None
        values[spec.name], sources[spec.name] = value, "env"


def _where(spec: Spec, sources: Mapping[str, str], file: Path | None) -> str:
    return {"file": str(file), "env": spec.env}.get(sources.get(spec.name, ""), "default")


def _check_together(values: dict[str, Any], sources: dict[str, str], file: Path | None) -> None:
    """The rules between settings, and the design effects' syntax."""
    low, high = values["min_base"], values["reference_base"]
    if not high > low:   # named by the one that was set (reference_base when both were)
        if sources["reference_base"] == "default":
            spec = BY_NAME["min_base"]
            raise SettingsError(_where(spec, sources, file), spec.key,
                                f"must be a whole number less than statistics.reference_base ({high}) / "
                                f"reference_base（{high}）より小さい整数を指定してください", low)
        spec = BY_NAME["reference_base"]
        raise SettingsError(_where(spec, sources, file), spec.key,
                            f"must be a whole number greater than statistics.min_base ({low}) / "
                            f"min_base（{low}）より大きい整数を指定してください", high)
    spec = BY_NAME["deff"]
    try:
        config.design_effects(values["deff"])
    except UsageError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise SettingsError(_where(spec, sources, file), spec.key, detail) from None


def load(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings: defaults, then the run-configuration file (`path`, else $TSUNAGARI_CONFIG, else
    tsunagari.toml in the current folder or the project root), then the TSUNAGARI_* variables of
    `environ`. In a process the run started, its exported values instead (`exported_environ`).
    Raises SettingsError naming the file or variable, the key and the rule."""
    if path is None:
        exported = _exported(environ)
        if exported is not None:
            return exported
    values, sources = defaults(environ), {s.name: "default" for s in SPECS}
    file = find_file(path, environ)
    if file is not None:
        _read_file(file, values, sources)
    _read_environ(environ, values, sources)
    _check_together(values, sources, file)
    return Settings(**values, sources=sources, file=file)


# --- The loaded object ------------------------------------------------------------------------------

_STATE: dict[str, Any] = {"settings": None, "key": None, "pinned": False, "path": None}


def _environ_key(environ: Mapping[str, str]) -> tuple:
    return tuple(environ.get(n) for n in (CONFIG_ENV, "XDG_CACHE_HOME") + ENV_NAMES)


def settings() -> Settings:
    """The loaded settings (cached; loaded again when a TSUNAGARI_* variable changed, unless `use`
    pinned an object)."""
    key = _environ_key(os.environ)
    current = _STATE["settings"]
    if current is None or (not _STATE["pinned"] and key != _STATE["key"]):
        current = _reload(_STATE["path"], key)
    return current


def reload(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load the settings again (from `path` when given: later reloads use it too)."""
    _STATE["path"] = path
    return _reload(path, _environ_key(os.environ))


def _reload(path, key) -> Settings:
    loaded = load(path)
    _STATE.update(settings=loaded, key=key, pinned=False)
    return loaded


def use(value: Settings | None) -> Settings | None:
    """Pin `value` as the loaded settings (tests); None: load from file and environment again.
    Returns what was loaded before."""
    before = _STATE["settings"]
    _STATE.update(settings=value, pinned=value is not None, key=None)
    return before


# --- Reporting and passing on -----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def describe(s: Settings | None = None) -> list[str]:
    """One line per setting: key = value (source), in SPECS order; the build logs them at start."""
    s = settings() if s is None else s
    out = []
    for spec in SPECS:
        value = _plain(getattr(s, spec.name))
        source = s.sources.get(spec.name, "default")
        if source == "env":
            source = f"env {spec.env}"
        out.append(f"{spec.key} = {value!r} ({source})")
    return out


def output_values(s: Settings | None = None) -> dict[str, Any]:
    """The settings that can change what is built (Spec.output), by key: part of the fingerprint."""
    s = settings() if s is None else s
    return {spec.key: _plain(getattr(s, spec.name)) for spec in SPECS if spec.output}


def exported_environ(s: Settings | None = None) -> dict[str, str]:
    """{TSUNAGARI_SETTINGS: the resolved values}, for the environment of the processes a run starts."""
    s = settings() if s is None else s
    data = {"pid": os.getpid(), "file": None if s.file is None else str(s.file),
            "values": {spec.name: _plain(getattr(s, spec.name)) for spec in SPECS},
            "sources": dict(s.sources)}
    return {SETTINGS_ENV: json.dumps(data, ensure_ascii=False)}


def _exported(environ: Mapping[str, str]) -> Settings | None:
    """The settings a parent process exported (never this process's own export: a reload here reads
    file and environment again)."""
    text = environ.get(SETTINGS_ENV)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("pid") == os.getpid():
        return None
    values = dict(data["values"])
    for spec in SPECS:
        if spec.kind == "path":
            values[spec.name] = Path(values[spec.name])
    return Settings(**values, sources=data.get("sources", {}),
                    file=None if data.get("file") is None else Path(data["file"]))
