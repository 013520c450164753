"""Paths and the main settings: the statistical conventions (confidence level, bases, which estimate
leads, design effects), the publication details and the input size limit. Display conventions are
in conventions.py; a module's own limits and timeouts stay in that module.

State lives under the project root (the directory the command runs in). The warehouse is
``data/warehouse.duckdb`` unless ``--warehouse``, the run-configuration file or
``TSUNAGARI_WAREHOUSE`` says otherwise.

The run settings are one object (pipelines/settings.py: defaults < ``tsunagari.toml`` <
``TSUNAGARI_*``). The constants below that are settings (``SETTING_NAMES``: ``MIN_BASE``,
``CONFIDENCE_LEVEL``, ``REPORTS_DIR``, ``PUBLISHER``, ...) are their package defaults: editing them
here still changes the default. After import, ``config.MIN_BASE`` etc. read the loaded settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository root when running from a checkout (pip install -e .).
REPO_ROOT = PACKAGE_DIR.parent

REFERENCE_DIR = REPO_ROOT / "data" / "reference"
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
# A fork of the report notebook and templates can be used with paths.reports_dir
# (TSUNAGARI_REPORTS_DIR).
REPORTS_DIR = REPO_ROOT / "reports"
MAPPING_FILE = PACKAGE_DIR / "mapping.yml"
INDICATOR_CATALOGUE = PACKAGE_DIR / "indicators.yml"
INDICATORS_NOTEBOOK = PACKAGE_DIR / "notebooks" / "indicators.ipynb"

DEFAULT_OUT = Path("_site")
DEFAULT_WAREHOUSE = Path("data") / "warehouse.duckdb"
WAREHOUSE_ENV = "TSUNAGARI_WAREHOUSE"

# Statistical conventions (DESIGN.md); the single source for every stage.
CONFIDENCE_LEVEL = 0.95
MIN_BASE = 30          # unweighted base below which a value is suppressed
REFERENCE_BASE = 100   # MIN_BASE..REFERENCE_BASE - 1 is shown as 参考値 (reference value)
# Which estimate leads (pipelines/small_area.py, issue #24): the direct estimate when published and
# its coefficient of variation (standard error / share) is at most this, else the pooled estimate
# when published, else the model-based (Fay–Herriot) estimate.
LEAD_CV_MAX = 0.20

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
TERMS = ("政府標準利用規約（第2.0版）に準拠（クリエイティブ・コモンズ 表示 4.0 国際（CC BY 4.0）と互換）。"
         "出典を記載すれば複製・改変・再配布できます。")
PUBLICATION_DATE: str | None = None


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

    from .settings import settings

    s = settings()
    if s.publication_date:
        day = date.fromisoformat(s.publication_date)
    else:
        if built_at is None:
            built_at = build_time()
        day = built_at.astimezone().date()
    return {"date": f"{day.year}年{day.month}月{day.day}日", "iso": day.isoformat(),
            "publisher": s.publisher, "contact": s.contact, "terms": s.terms}


CACHE_ENV = "TSUNAGARI_CACHE_DIR"


def cache_dir() -> Path:
    """Where derived files that depend only on installed files are kept between runs (e.g. the
    renderer's base font subset): paths.cache_dir ($TSUNAGARI_CACHE_DIR), else
    $XDG_CACHE_HOME/tsunagari, else ~/.cache/tsunagari. Deleting it is always safe."""
    from .settings import settings

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
    from .settings import settings

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
    force_out: bool = False   # take over a non-empty --out folder the build did not create
    quiet: bool = False
    # A view of the build (``tsunagari reports``, ``tsunagari indicators``): only these stages run,
    # through the same staging, disclosure gate, swap and lock (empty: every stage).
    stages: tuple[str, ...] = ()



# Design effect per survey (DESIGN.md: "A configurable design effect per survey"; issue #22 item 4).
# Kish's n_eff covers the weighting only; a clustered or stratified design changes the variance
# further. Every interval and test divides n_eff by the survey's deff. Which deff a survey gets
# (pipelines/indicators.py, area_deff / survey_deffs), first match wins:
#   1. an explicit TSUNAGARI_DEFF entry that applies to it: its survey_id, else its kind
#      ("national", "prefecture"), else a single number for every survey ("*");
#   2. for a survey whose file carries the sample design (columns stratum, psu): the design effect
#      estimated from the data by Taylor linearisation, per indicator (pipelines/survey_design.py);
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
    "per survey point and an assumed ρ ≈ 0.02 gives about 1.4–1.5")

def design_effects(text: str | None = None) -> dict[str, float]:
    """The configured design effects as {key: deff} ('*' = every survey), from ``text`` or the
    setting statistics.deff ($TSUNAGARI_DEFF). Raises UsageError naming TSUNAGARI_DEFF for a malformed entry or a deff that is
    not a number in (0, 100) (below 1 is allowed: an efficient stratified design)."""
    from .errors import UsageError

    if text is None:
        from .settings import settings

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
            raise UsageError(DEFF_ENV, f"設計効果の指定が不正です / bad design effect {item!r}: "
                                       "expected a number > 0 (e.g. 1.5) or key=number with key "
                                       "national, prefecture or a survey_id (e.g. national=1.5,pref11-2023=1.2)")
        out[key] = deff
    return out


def configured_deff(survey_kind: str, survey_id: str | None = None,
                    effects: dict[str, float] | None = None) -> float | None:
    """The explicit TSUNAGARI_DEFF entry that applies to one survey: its survey_id entry, else its
    kind's, else '*'; None when there is none (then an estimated deff or DEFAULT_DEFF applies)."""
    effects = design_effects() if effects is None else effects
    for key in (survey_id, survey_kind, "*"):
        if key is not None and key in effects:
            return effects[key]
    return None


def design_effect(survey_kind: str, survey_id: str | None = None,
                  effects: dict[str, float] | None = None) -> float:
    """The configured design effect of one survey: its survey_id entry, else its kind's, else '*',
    else DEFAULT_DEFF (a survey with design columns gets its estimated deff instead of the default:
    pipelines/indicators.py)."""
    found = configured_deff(survey_kind, survey_id, effects)
    return _setting("DEFAULT_DEFF") if found is None else found


# The constants above that are run settings: their values become the package defaults
# (PACKAGE_DEFAULTS) and the names read the loaded settings (pipelines/settings.py) from here on.
SETTING_NAMES = ("CONFIDENCE_LEVEL", "MIN_BASE", "REFERENCE_BASE", "LEAD_CV_MAX", "DEFAULT_DEFF",
                 "MAX_INPUT_BYTES", "REPORTS_DIR", "PUBLISHER", "CONTACT", "TERMS", "PUBLICATION_DATE")
PACKAGE_DEFAULTS = {name: globals().pop(name) for name in SETTING_NAMES}


def _setting(name: str):
    from .settings import CONFIG_NAMES, settings

    return getattr(settings(), CONFIG_NAMES[name])


def __getattr__(name: str):
    if name in PACKAGE_DEFAULTS:
        return _setting(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
