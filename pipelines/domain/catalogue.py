"""The indicator catalogue (``pipelines/domain/indicators.yml``): one frozen ``Indicator`` per entry.

The one model of an indicator used by the indicators stage, the reports, the site, the downloads
and the tests (docs/DESIGN.md, "Indicators"). Where an indicator appears is data, not code:

* ``pillar``  the 重点計画 basic policy 基本方針(1)-(4) it evaluates;
* ``section`` the report section it is shown in (a 基本方針 1-4; default: its pillar);
* ``domain_ja`` the domain label in report tables (孤独感 / 孤立 / 相談・支援 / 施策; default
  施策 for programme data, else その他);
* ``headline`` shown in the opening paragraph (the first one), the trends and the site's
  prefecture table;
* ``distribution`` optional: the answer distribution (a question of the ``distributions`` table)
  charted beside it.

``load_catalogue()`` reads and checks the file once per process and returns the cached tuple while
the file is unchanged (``config.file_key``). ``TSUNAGARI_CATALOGUE`` points every stage at another
catalogue file (a fork, or a test that adds an entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.domain import config, schema
from pipelines.domain.errors import DataError
from pipelines.domain.schema import POLARITIES

CATALOGUE_ENV = "TSUNAGARI_CATALOGUE"

PILLARS = {
    1: "基本方針(1) 孤独・孤立に至っても支援を求める声を上げやすい社会とする",
    2: "基本方針(2) 状態に合わせた切れ目のない相談支援につなげる",
    3: "基本方針(3) 見守り・交流の場や居場所を確保し、人と人との「つながり」を実感できる地域づくりを行う",
    4: "基本方針(4) 孤独・孤立対策に取り組むNPO等の活動をきめ細かく支援し、官・民・NPO等の連携を強化する",
}
SOURCES = ("survey", "programme")
UNITS = ("percent", "per_10k", "flag")
SOURCE_LABELS = {
    "survey": "人々のつながりに関する基礎調査（全国）・都道府県の独自調査",
    "programme": "事業データ（都道府県別）",
}
DEFAULT_DOMAIN = {"survey": "その他", "programme": "施策"}

# Breakdowns, in display order. uk_age only for UK-comparable indicators.
BREAKDOWNS_COMMON = (
    ["total", "sex=1", "sex=2"] + [f"age={b}" for b in schema.AGE_BANDS] + ["household_single=1", "household_single=0"]
)
BREAKDOWNS_UK = [f"uk_age={b}" for b in schema.UK_AGE_BANDS]


@dataclass(frozen=True)
class Indicator:
    id: str
    name_ja: str
    name_en: str
    pillar: int
    source: str
    numerator: str
    denominator: str
    polarity: str
    uk_comparable: bool
    unit: str
    denominator_ja: str = ""
    description_ja: str = ""
    section: int = 0  # 0 -> the pillar (set by load_catalogue)
    headline: bool = False
    domain_ja: str = ""
    distribution: str = ""
    baseline: int = 0  # the baseline round of the evaluation (0: the first round held)
    baseline_published: str = ""  # 'question=cat[,cat]': the published national figure of that round
    target: float | None = None  # an optional numeric target in the indicator's unit (none today)
    target_year: int = 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def pillar_label(self) -> str:
        return PILLARS[self.pillar]

    @property
    def section_label(self) -> str:
        return PILLARS[self.section or self.pillar]

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)

    @property
    def short_name(self) -> str:
        """The name without the (1=あり、0=なし) coding note of a flag."""
        return self.name_ja.replace("（1=あり、0=なし）", "")

    @property
    def breakdowns(self) -> list[str]:
        if self.source == "programme":
            return ["total"]
        return BREAKDOWNS_COMMON + (BREAKDOWNS_UK if self.uk_comparable else [])

    @property
    def denominator_sql(self) -> str:
        return "TRUE" if self.denominator.strip().lower() == "all" else self.denominator


REQUIRED = (
    "id",
    "name_ja",
    "name_en",
    "pillar",
    "source",
    "numerator",
    "denominator",
    "polarity",
    "uk_comparable",
    "unit",
)
OPTIONAL = (
    "denominator_ja",
    "description_ja",
    "section",
    "headline",
    "domain_ja",
    "distribution",
    "baseline",
    "baseline_published",
    "target",
    "target_year",
)


def catalogue_path() -> Path:
    """The catalogue file: the setting paths.catalogue (``TSUNAGARI_CATALOGUE``), by default
    pipelines/domain/indicators.yml."""
    from pipelines.domain.config import settings

    return settings().catalogue


_CACHE: dict[Path, tuple[tuple, tuple[Indicator, ...]]] = {}


def load_catalogue(path: Path | str | None = None) -> tuple[Indicator, ...]:
    """The checked catalogue, in file order; cached while the file is unchanged. Raises DataError
    naming the file, the entry and the field for a malformed entry."""
    path = Path(path) if path is not None else catalogue_path()
    try:
        key = config.file_key(path)
    except FileNotFoundError as exc:
        raise DataError(str(path), "indicator catalogue not found / 指標カタログがありません") from exc
    hit = _CACHE.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    out = parse_catalogue(path.read_text(encoding="utf-8"), str(path))
    _CACHE[path] = (key, out)
    return out


def catalogue_by_id(path: Path | str | None = None) -> dict[str, Indicator]:
    return {i.id: i for i in load_catalogue(path)}


def _int_in(e: dict, key: str, allowed, where: str, path: str, message: str) -> int:
    try:
        value = int(e[key])
    except (TypeError, ValueError):
        value = -1
    if value not in allowed or isinstance(e[key], bool):
        raise DataError(path, f"{where}: {message}", column=key, examples=[e[key]])
    return value


def parse_catalogue(text: str, path: str) -> tuple[Indicator, ...]:
    """Parse and check catalogue YAML text (`path` names the file in errors)."""
    try:
        doc = config.load_yaml(text)
    except yaml.YAMLError as exc:
        raise DataError(path, "not valid YAML", detail=str(exc)) from exc
    entries = doc.get("indicators") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(path, "must contain a non-empty list `indicators:`")
    out: list[Indicator] = []
    seen: set[str] = set()
    for i, e in enumerate(entries, start=1):
        where = f"entry {i}" + (f" ({e.get('id')})" if isinstance(e, dict) and e.get("id") else "")
        if not isinstance(e, dict):
            raise DataError(path, f"{where}: must be a mapping")
        missing = [k for k in REQUIRED if k not in e or e[k] in (None, "")]
        if missing:
            raise DataError(path, f"{where}: missing field(s) {', '.join(missing)}", column=missing[0])
        ind_id = str(e["id"])
        if not re.fullmatch(r"[a-z][a-z0-9_]*", ind_id):
            raise DataError(path, f"{where}: id must be snake_case", column="id", examples=[ind_id])
        if ind_id in seen:
            raise DataError(path, f"{where}: duplicate id", column="id", examples=[ind_id])
        seen.add(ind_id)
        for key, allowed in (("source", SOURCES), ("polarity", POLARITIES), ("unit", UNITS)):
            if e[key] not in allowed:
                raise DataError(
                    path, f"{where}: {key} must be one of {', '.join(allowed)}", column=key, examples=[e[key]]
                )
        pillar = _int_in(e, "pillar", PILLARS, where, path, "pillar must be 1-4 (基本方針(1)-(4))")
        section = pillar
        if e.get("section") not in (None, ""):
            section = _int_in(e, "section", PILLARS, where, path, "section must be 1-4 (基本方針(1)-(4))")
        if e["source"] == "programme" and e["denominator"] not in ("population_16plus", "none"):
            raise DataError(
                path,
                f"{where}: a programme denominator is population_16plus or none",
                column="denominator",
                examples=[e["denominator"]],
            )
        for key in ("headline", "uk_comparable"):
            if key in e and e[key] is not None and not isinstance(e[key], bool):
                raise DataError(path, f"{where}: {key} must be true or false", column=key, examples=[e[key]])
        distribution = str(e.get("distribution") or "")
        if distribution and not re.fullmatch(r"[a-z][a-z0-9_]*", distribution):
            raise DataError(
                path,
                f"{where}: distribution must be a question name (snake_case)",
                column="distribution",
                examples=[distribution],
            )
        baseline = target_year = 0
        for key in ("baseline", "target_year"):
            if e.get(key) not in (None, ""):
                value = _int_in(e, key, range(2000, 2101), where, path, f"{key} must be a year (2000-2100)")
                baseline, target_year = (value, target_year) if key == "baseline" else (baseline, value)
        target = e.get("target")
        if target not in (None, ""):
            if isinstance(target, bool) or not isinstance(target, (int, float)) or target != target:
                raise DataError(
                    path,
                    f"{where}: target must be a number in the indicator's unit (or empty)",
                    column="target",
                    examples=[target],
                )
            target = float(target)
        else:
            target = None
        published = str(e.get("baseline_published") or "")
        if published and not re.fullmatch(r"[a-z][a-z0-9_]*=[0-9A-Za-z_-]+(,[0-9A-Za-z_-]+)*", published):
            raise DataError(
                path,
                f"{where}: baseline_published must read question=category[,category]",
                column="baseline_published",
                examples=[published],
            )
        known = set(REQUIRED) | set(OPTIONAL)
        out.append(
            Indicator(
                id=ind_id,
                name_ja=str(e["name_ja"]),
                name_en=str(e["name_en"]),
                pillar=pillar,
                source=e["source"],
                numerator=str(e["numerator"]),
                denominator=str(e["denominator"]),
                polarity=e["polarity"],
                uk_comparable=bool(e["uk_comparable"]),
                unit=e["unit"],
                denominator_ja=str(e.get("denominator_ja") or ""),
                description_ja=str(e.get("description_ja") or "").strip(),
                section=section,
                headline=bool(e.get("headline", False)),
                domain_ja=str(e.get("domain_ja") or DEFAULT_DOMAIN[e["source"]]),
                distribution=distribution,
                baseline=baseline,
                baseline_published=published,
                target=target,
                target_year=target_year,
                extra={k: v for k, v in e.items() if k not in known},
            )
        )
    return tuple(out)
