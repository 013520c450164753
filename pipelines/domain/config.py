"""Paths and the main settings: the statistical conventions (confidence level, bases, which estimate
leads, design effects), the publication details and the input size limit. Display conventions are
in conventions.py; a module's own limits and timeouts stay in that module.

State lives under the project root (the directory the command runs in). The warehouse is
``data/warehouse.duckdb`` unless ``--warehouse``, the run-configuration file or
``TSUNAGARI_WAREHOUSE`` says otherwise.

The run settings are one object, ``settings()`` (defaults < run-configuration file ``tsunagari.toml``
< ``TSUNAGARI_*``; the second half of this module). The constants below that are settings (``SETTING_NAMES``: ``MIN_BASE``,
``CONFIDENCE_LEVEL``, ``REPORTS_DIR``, ``PUBLISHER``, ...) are their package defaults: editing them
here still changes the default. After import, ``config.MIN_BASE`` etc. read the loaded settings.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# The repository root when running from a checkout (pip install -e .).
REPO_ROOT = PACKAGE_DIR.parent

REFERENCE_DIR = REPO_ROOT / "data" / "reference"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
# A fork of the report notebook and templates can be used with paths.reports_dir
# (TSUNAGARI_REPORTS_DIR).
REPORTS_DIR = REPO_ROOT / "reports"
MAPPING_FILE = PACKAGE_DIR / "ingest" / "mapping.yml"
INDICATOR_CATALOGUE = PACKAGE_DIR / "domain" / "indicators.yml"
INDICATORS_NOTEBOOK = PACKAGE_DIR / "indicators" / "notebooks" / "indicators.ipynb"
TEMPLATES_DIR = PACKAGE_DIR / "outputs" / "templates"

DEFAULT_OUT = Path("_site")
DEFAULT_WAREHOUSE = Path("data") / "warehouse.duckdb"
WAREHOUSE_ENV = "TSUNAGARI_WAREHOUSE"

# Statistical conventions (DESIGN.md); the single source for every stage.
CONFIDENCE_LEVEL = 0.95
MIN_BASE = 30  # unweighted base below which a value is suppressed
REFERENCE_BASE = 100  # MIN_BASE..REFERENCE_BASE - 1 is shown as 参考値 (reference value)
# Which estimate leads (pipelines/domain/small_area.py, issue #24): the direct estimate when published and
# its coefficient of variation (standard error / share) is at most this, else the pooled estimate
# when published, else the model-based (Fay–Herriot) estimate.
LEAD_CV_MAX = 0.20
# Secondary suppression (pipelines/domain/audit.py): no hidden cell's base, count or complement may be
# narrowed to within max(PROTECTION_ABS respondents, PROTECTION_REL of its base) of its true value.
PROTECTION_ABS = 3
PROTECTION_REL = 0.30
# The pooled estimate: the latest POOL_ROUNDS national rounds together (e.g. 2022–2024 平均).
POOL_ROUNDS = 3

# Guards against accidental huge inputs (a file larger than this is refused before reading).
MAX_INPUT_BYTES = 1_500_000_000


# Publication details (issue #23 item 5): printed under the title of every report (PDF and HTML)
# and in the footer of every site page. A fork that publishes its own reports sets its publisher,
# contact and terms here, in this one place. The publication date is the day the report was rendered
# (the build's time: SOURCE_DATE_EPOCH when set) unless PUBLICATION_DATE fixes it ("2025-03-31").
PUBLISHER = "つながり（Tsunagari）プロジェクト"
# Where readers send questions. The sample build names the project itself; a fork puts its office,
# e.g. "〇〇県 福祉部 孤独・孤立対策担当（電話 000-000-0000、メール kodoku@pref.example.jp）".
CONTACT = "つながり（Tsunagari）プロジェクト（リポジトリの issue でお問い合わせください）"
# The licence of the published statistics (tables, figures, downloads).
TERMS = (
    "政府標準利用規約（第2.0版）に準拠（クリエイティブ・コモンズ 表示 4.0 国際（CC BY 4.0）と互換）。"
    "出典を記載すれば複製・改変・再配布できます。"
)
PUBLICATION_DATE: str | None = None


def confidence_percent() -> str:
    """'95' for a confidence level of 0.95: how every published text names the intervals' level."""
    return f"{settings().confidence_level * 100:g}"


def build_time():
    """The time stamped on pages and workbooks (作成): now, or ``SOURCE_DATE_EPOCH`` when set (the
    reproducible-builds convention: with it, identical inputs give identical bytes). A UTC datetime."""
    from datetime import datetime, timezone

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    return datetime.now(timezone.utc)


def publication(built_at=None) -> dict[str, str]:
    """The publication details as shown: {"date": "2025年3月31日", "iso": "2025-03-31", "publisher",
    "contact", "terms"}. The date is PUBLICATION_DATE when set, else `built_at` (a datetime; default
    the build's time, build_time()) in local time."""
    from datetime import date

    s = settings()
    if s.publication_date:
        day = date.fromisoformat(s.publication_date)
    else:
        if built_at is None:
            built_at = build_time()
        day = built_at.astimezone().date()
    return {
        "date": f"{day.year}年{day.month}月{day.day}日",
        "iso": day.isoformat(),
        "publisher": s.publisher,
        "contact": s.contact,
        "terms": s.terms,
    }


CACHE_ENV = "TSUNAGARI_CACHE_DIR"


def cache_dir() -> Path:
    """Where derived files that depend only on installed files are kept between runs (e.g. the
    renderer's base font subset): paths.cache_dir ($TSUNAGARI_CACHE_DIR), else
    $XDG_CACHE_HOME/tsunagari, else ~/.cache/tsunagari. Deleting it is always safe."""
    return settings().cache_dir


def file_key(path: str | os.PathLike[str]) -> tuple:
    """The identity of a file's contents for a per-process cache: its resolved path, modification
    time, size and inode (a rewrite, even to the same size, or a replacement changes it). Raises
    FileNotFoundError for a missing file."""
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_mtime_ns, st.st_size, st.st_ino)


def load_yaml(text):
    """yaml.safe_load with libyaml's C parser when PyYAML has it (faster; the same documents, and
    the same yaml.YAMLError subclasses on bad input)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def warehouse_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The warehouse file: explicit path, else paths.warehouse (the run-configuration file or
    $TSUNAGARI_WAREHOUSE), else data/warehouse.duckdb."""
    if explicit:
        return Path(explicit)
    return settings().warehouse


@dataclass
class BuildConfig:
    """Options of ``tsunagari build``; logged at the start of every run."""

    year: int | None = None
    input_dir: Path = field(default_factory=lambda: SAMPLE_DIR)
    out_dir: Path = field(default_factory=lambda: DEFAULT_OUT)
    warehouse: Path = field(default_factory=warehouse_path)
    renderer: str = "auto"
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    prefs: list[int] = field(default_factory=list)
    force: bool = False
    force_out: bool = False  # take over a non-empty --out folder the build did not create
    quiet: bool = False
    # A view of the build (``tsunagari reports``, ``tsunagari indicators``): only these stages run,
    # through the same staging, disclosure gate, swap and lock (empty: every stage).
    stages: tuple[str, ...] = ()


# Design effect per survey (DESIGN.md: "A configurable design effect per survey"; issue #22 item 4).
# Kish's n_eff covers the weighting only; a clustered or stratified design changes the variance
# further. Every interval and test divides n_eff by the survey's deff. Which deff a survey gets
# (pipelines/indicators/stage.py, area_deff / survey_deffs), first match wins:
#   1. an explicit TSUNAGARI_DEFF entry that applies to it: its survey_id, else its kind
#      ("national", "prefecture"), else a single number for every survey ("*");
#   2. for a survey whose file carries the sample design (columns stratum, psu): the design effect
#      estimated from the data by Taylor linearisation, per indicator (pipelines/domain/survey_design.py);
#   3. DEFAULT_DEFF.
# TSUNAGARI_DEFF is either one number for every survey ("1.3") or a comma-separated list of
# key=value, the key a survey kind or a survey_id ("pref11-2023"); a survey_id entry wins over its
# kind.
DEFF_ENV = "TSUNAGARI_DEFF"
# The default for a survey without design columns: 1.5, a conservative planning value, not an
# estimate for any particular survey. Its basis: Kish's approximation deff = 1 + (m - 1)·ρ for a
# sample of m respondents per primary unit (Kish 1965, Survey Sampling), with m about
# 20-25 respondents per survey point (調査地点), as in stratified two-stage samples of municipalities
# / survey points then residents drawn from the resident register, and an intraclass correlation ρ
# of about 0.02 assumed for attitude and social-contact items, gives about 1.4-1.5. Survey-specific
# values vary (ρ and m differ by item and survey): the national synthetic sample's estimated
# deffs are about 1.0-1.7 (quality page), and the quality page shows how many comparisons with the
# national figure change at deff 1.0, 1.5 and 2.0 (the sensitivity line).
DEFAULT_DEFF = 1.5
# The basis in words, for the notes sheet and the quality page.
DEFAULT_DEFF_BASIS = (
    "特定の調査の推定値ではなく保守的な計画値。Kish の近似 deff = 1 + (m − 1)ρ で、調査地点あたり m ≈ 20～25 人"
    "（調査地点を抽出し住民を抽出する層化二段抽出）、級内相関 ρ ≈ 0.02 を仮定すると約 1.4～1.5 になることによる"
    " / a conservative planning value, not an estimate: Kish's deff = 1 + (m − 1)ρ with m ≈ 20–25 respondents "
    "per survey point and an assumed ρ ≈ 0.02 gives about 1.4–1.5"
)


def design_effects(text: str | None = None) -> dict[str, float]:
    """The configured design effects as {key: deff} ('*' = every survey), from ``text`` or the
    setting statistics.deff ($TSUNAGARI_DEFF). Raises SettingsError naming TSUNAGARI_DEFF for a malformed entry or a deff that is
    not a number in (0, 100) (below 1 is allowed: an efficient stratified design)."""
    if text is None:
        text = settings().deff
    raw = text
    out: dict[str, float] = {}
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        key, sep, value = item.rpartition("=")
        key = key.strip() if sep else "*"
        try:
            deff = float(value)
        except ValueError:
            deff = float("nan")
        if not (deff > 0 and deff < 100) or (sep and not key):
            raise SettingsError(
                DEFF_ENV,
                "statistics.deff",
                f"設計効果の指定が不正です / bad design effect {item!r}: "
                "expected a number > 0 (e.g. 1.5) or key=number with key national, prefecture "
                "or a survey_id (e.g. national=1.5,pref11-2023=1.2)",
            )
        out[key] = deff
    return out


def configured_deff(
    survey_kind: str, survey_id: str | None = None, effects: dict[str, float] | None = None
) -> float | None:
    """The explicit TSUNAGARI_DEFF entry that applies to one survey: its survey_id entry, else its
    kind's, else '*'; None when there is none (then an estimated deff or DEFAULT_DEFF applies)."""
    effects = design_effects() if effects is None else effects
    for key in (survey_id, survey_kind, "*"):
        if key is not None and key in effects:
            return effects[key]
    return None


def design_effect(survey_kind: str, survey_id: str | None = None, effects: dict[str, float] | None = None) -> float:
    """The configured design effect of one survey: its survey_id entry, else its kind's, else '*',
    else DEFAULT_DEFF (a survey with design columns gets its estimated deff instead of the default:
    pipelines/indicators/stage.py)."""
    found = configured_deff(survey_kind, survey_id, effects)
    return _setting("DEFAULT_DEFF") if found is None else found


# The constants above that are run settings: their values become the package defaults
# (PACKAGE_DEFAULTS) and the names read the loaded settings (pipelines/domain/config.py) from here on.
SETTING_NAMES = (
    "CONFIDENCE_LEVEL",
    "MIN_BASE",
    "REFERENCE_BASE",
    "LEAD_CV_MAX",
    "DEFAULT_DEFF",
    "MAX_INPUT_BYTES",
    "REPORTS_DIR",
    "PUBLISHER",
    "CONTACT",
    "TERMS",
    "PUBLICATION_DATE",
)
PACKAGE_DEFAULTS = {name: globals().pop(name) for name in SETTING_NAMES}


def _setting(name: str):
    return getattr(settings(), CONFIG_NAMES[name])


def __getattr__(name: str):
    if name in PACKAGE_DEFAULTS:
        return _setting(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# The run settings (issue #25)
# ---------------------------------------------------------------------------------------------
# The run settings in one object (issue #25): defaults < run-configuration file < environment.
#
# ``settings()`` returns the loaded `Settings` (frozen). It is resolved from, later wins:
#
# 1. the defaults: the constants of ``pipelines/domain/config.py`` for the names it has always had
#    (``MIN_BASE``, ``CONFIDENCE_LEVEL``, ``REPORTS_DIR``, ``PUBLISHER``, ...: editing them there
#    still works), ``SPECS`` below for the rest;
# 2. a TOML run-configuration file: ``--config FILE`` or ``$TSUNAGARI_CONFIG``, else
#    ``tsunagari.toml`` in the current folder, else in the project root. Relative paths in the file
#    are relative to the file's folder;
# 3. the environment: every setting has a ``TSUNAGARI_*`` name (the names the modules read before
#    keep working; ``SPECS`` lists them). An empty variable counts as unset.
#
# An unknown section or key, a wrong type or a value outside its range is a `SettingsError` (exit 2)
# naming the file (or the variable), the key and the rule. ``config.MIN_BASE`` and the other old
# names read this object (``config.__getattr__``).
#
# Processes the run starts (pool workers, their notebook kernels, the validation process, Quarto)
# resolve nothing themselves when the parent exported its resolved values (``exported_environ``,
# ``$TSUNAGARI_SETTINGS``: internal plumbing like ``$TSUNAGARI_POOL``, not a user setting): a
# kernel runs in another folder and must not find another file.

CONFIG_ENV = "TSUNAGARI_CONFIG"
FILE_NAME = "tsunagari.toml"
# The parent's resolved values for the processes it starts (JSON; see the module text).
SETTINGS_ENV = "TSUNAGARI_SETTINGS"


class SettingsError(ValueError):
    """A bad run setting: `source` (the file or the environment variable), the key and the rule.
    Exit 2, like errors.UsageError: the CLI reports both the same way (this module imports nothing
    of the package, so that every module can read the settings)."""

    exit_code = 2

    def __init__(self, source: str, key: str, rule: str, value: object = None) -> None:
        self.source, self.key, self.rule = source, key, rule
        shown = "" if value is None else f" = {value!r}"
        self.parameter, self.message = source, f"{key}{shown}: {rule}"
        super().__init__(f"{source}: {self.message}")


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
    kernel_timeout: float | None  # None: 120 s times the load per core (pipelines/engine/kernels.py)
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
    kind: str  # int, float, str, path, bool, deff, date, font, timeout
    env: str
    rule: str  # what a valid value is, bilingual
    ok: Callable[[Any], bool] = lambda v: True
    output: bool = False  # can change what is built: part of the fingerprint
    config_name: str | None = None  # its old name in pipelines/py (default there)
    default: Any = None  # when not config_name's

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


_INT_RULE = "must be a whole number >= 1 / 1 以上の整数を指定してください"


def _INT_OK(v: int) -> bool:
    return v >= 1


_FONTS = ("auto", "noto", "ipaex")

SPECS: tuple[Spec, ...] = (
    Spec(
        "statistics",
        "confidence_level",
        "float",
        "TSUNAGARI_CONFIDENCE_LEVEL",
        "must be a number between 0 and 1 (e.g. 0.95) / 0 より大きく 1 より小さい数を指定してください",
        lambda v: 0 < v < 1,
        True,
        "CONFIDENCE_LEVEL",
    ),
    Spec("statistics", "min_base", "int", "TSUNAGARI_MIN_BASE", _INT_RULE, _INT_OK, True, "MIN_BASE"),
    Spec(
        "statistics",
        "reference_base",
        "int",
        "TSUNAGARI_REFERENCE_BASE",
        "must be a whole number greater than statistics.min_base / min_base より大きい整数を指定してください",
        _INT_OK,
        True,
        "REFERENCE_BASE",
    ),
    Spec(
        "statistics",
        "lead_cv_max",
        "float",
        "TSUNAGARI_LEAD_CV_MAX",
        "must be a number greater than 0 (e.g. 0.2) / 0 より大きい数を指定してください",
        lambda v: v > 0,
        True,
        "LEAD_CV_MAX",
    ),
    Spec(
        "statistics",
        "default_deff",
        "float",
        "TSUNAGARI_DEFAULT_DEFF",
        "must be a number greater than 0 and less than 100 / 0 より大きく 100 未満の数を指定してください",
        lambda v: 0 < v < 100,
        True,
        "DEFAULT_DEFF",
    ),
    Spec(
        "statistics",
        "deff",
        "deff",
        DEFF_ENV,
        "must be a number > 0, or key=number entries (national, prefecture or a survey_id), e.g. "
        '"national=1.5,pref11-2023=1.2" or a table / 設計効果の指定が不正です',
        output=True,
        default="",
    ),
    Spec(
        "limits",
        "max_input_bytes",
        "int",
        "TSUNAGARI_MAX_INPUT_BYTES",
        _INT_RULE,
        _INT_OK,
        config_name="MAX_INPUT_BYTES",
    ),
    Spec("limits", "max_input_rows", "int", "TSUNAGARI_MAX_INPUT_ROWS", _INT_RULE, _INT_OK, default=20_000_000),
    Spec("limits", "max_xlsx_bytes", "int", "TSUNAGARI_MAX_XLSX_BYTES", _INT_RULE, _INT_OK, default=1_000_000_000),
    Spec("limits", "max_xlsx_ratio", "int", "TSUNAGARI_MAX_XLSX_RATIO", _INT_RULE, _INT_OK, default=100),
    Spec("limits", "max_xlsx_strings", "int", "TSUNAGARI_MAX_XLSX_STRINGS", _INT_RULE, _INT_OK, default=2_000_000),
    Spec(
        "limits",
        "max_xlsx_string_chars",
        "int",
        "TSUNAGARI_MAX_XLSX_STRING_CHARS",
        _INT_RULE,
        _INT_OK,
        default=100_000_000,
    ),
    Spec(
        "limits",
        "max_weight_ratio",
        "float",
        "TSUNAGARI_MAX_WEIGHT_RATIO",
        "must be a number >= 1 / 1 以上の数を指定してください",
        lambda v: v >= 1,
        default=50.0,
    ),
    Spec(
        "limits",
        "min_effective_n_fraction",
        "float",
        "TSUNAGARI_MIN_EFFECTIVE_N_FRACTION",
        "must be a fraction in (0, 1] / 0 より大きく 1 以下の数を指定してください",
        lambda v: 0 < v <= 1,
        default=0.25,
    ),
    Spec(
        "paths",
        "warehouse",
        "path",
        WAREHOUSE_ENV,
        "must be a file path / ファイルのパスを指定してください",
        default=DEFAULT_WAREHOUSE,
    ),
    Spec(
        "paths",
        "reports_dir",
        "path",
        "TSUNAGARI_REPORTS_DIR",
        "must be a folder path / フォルダのパスを指定してください",
        output=True,
        config_name="REPORTS_DIR",
    ),
    Spec("paths", "cache_dir", "path", CACHE_ENV, "must be a folder path / フォルダのパスを指定してください"),
    Spec(
        "paths",
        "catalogue",
        "path",
        "TSUNAGARI_CATALOGUE",
        "must be a file path / ファイルのパスを指定してください",
        output=True,
        default=INDICATOR_CATALOGUE,
    ),
    Spec(
        "run",
        "kernel_timeout",
        "timeout",
        "TSUNAGARI_KERNEL_TIMEOUT",
        "must be a number of seconds greater than 0 / 0 より大きい秒数を指定してください",
        lambda v: v > 0,
    ),
    Spec("run", "quarto_timeout", "int", "TSUNAGARI_QUARTO_TIMEOUT", _INT_RULE, _INT_OK, default=3600),
    Spec(
        "run",
        "chart_cache",
        "bool",
        "TSUNAGARI_CHART_CACHE",
        "must be true or false (environment: 1/0, on/off, yes/no) / true か false を指定してください",
        default=True,
    ),
    Spec(
        "run",
        "pdf_font",
        "font",
        "TSUNAGARI_PDF_FONT",
        "must be one of auto, noto, ipaex / auto・noto・ipaex のいずれかを指定してください",
        lambda v: v in _FONTS,
        True,
        default="auto",
    ),
    Spec(
        "publication",
        "publisher",
        "str",
        "TSUNAGARI_PUBLISHER",
        "must be text / 文字列を指定してください",
        output=True,
        config_name="PUBLISHER",
    ),
    Spec(
        "publication",
        "contact",
        "str",
        "TSUNAGARI_CONTACT",
        "must be text / 文字列を指定してください",
        output=True,
        config_name="CONTACT",
    ),
    Spec(
        "publication",
        "terms",
        "str",
        "TSUNAGARI_TERMS",
        "must be text / 文字列を指定してください",
        output=True,
        config_name="TERMS",
    ),
    Spec(
        "publication",
        "publication_date",
        "date",
        "TSUNAGARI_PUBLICATION_DATE",
        "must be a date YYYY-MM-DD / 日付（YYYY-MM-DD）を指定してください",
        output=True,
        config_name="PUBLICATION_DATE",
    ),
)
BY_NAME = {s.name: s for s in SPECS}
SECTIONS = tuple(dict.fromkeys(s.section for s in SPECS))
ENV_NAMES = tuple(s.env for s in SPECS)
# py's old names -> setting names (__getattr__ reads them from the loaded settings).
CONFIG_NAMES = {s.config_name: s.name for s in SPECS if s.config_name}


def defaults(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    values = {}
    for s in SPECS:
        values[s.name] = PACKAGE_DEFAULTS[s.config_name] if s.config_name else s.default
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
        return folder / Path(v).expanduser()  # an absolute path stays as it is
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


def find_file(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The run-configuration file: `path`, else $TSUNAGARI_CONFIG (either must exist), else
    tsunagari.toml in the current folder, else in the project root; None when there is none."""
    named = path if path is not None else (environ.get(CONFIG_ENV) or "").strip() or None
    if named is not None:
        return Path(named).expanduser()
    for folder in (Path.cwd(), REPO_ROOT):
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
            raise SettingsError(
                where,
                f"[{section}]",
                "unknown section / 不明なセクションです (known / 有効: " + ", ".join(SECTIONS) + ")",
            )
        if not isinstance(table, dict):
            raise SettingsError(where, section, f"must be a table [{section}] / [{section}] の表にしてください")
        for name, raw in table.items():
            spec = BY_NAME.get(name)
            if spec is None or spec.section != section:
                known = ", ".join(s.name for s in SPECS if s.section == section)
                raise SettingsError(
                    where,
                    f"{section}.{name}",
                    f"unknown setting / 不明な設定です (known in [{section}] / 有効: {known})",
                )
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
    if not high > low:  # named by the one that was set (reference_base when both were)
        if sources["reference_base"] == "default":
            spec = BY_NAME["min_base"]
            raise SettingsError(
                _where(spec, sources, file),
                spec.key,
                f"must be a whole number less than statistics.reference_base ({high}) / "
                f"reference_base（{high}）より小さい整数を指定してください",
                low,
            )
        spec = BY_NAME["reference_base"]
        raise SettingsError(
            _where(spec, sources, file),
            spec.key,
            f"must be a whole number greater than statistics.min_base ({low}) / "
            f"min_base（{low}）より大きい整数を指定してください",
            high,
        )
    spec = BY_NAME["deff"]
    try:
        design_effects(values["deff"])
    except SettingsError as exc:
        raise SettingsError(_where(spec, sources, file), spec.key, exc.rule) from None


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
    data = {
        "pid": os.getpid(),
        "file": None if s.file is None else str(s.file),
        "values": {spec.name: _plain(getattr(s, spec.name)) for spec in SPECS},
        "sources": dict(s.sources),
    }
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
    return Settings(
        **values, sources=data.get("sources", {}), file=None if data.get("file") is None else Path(data["file"])
    )
