"""What the report notebook imports: the area's data as tidy frames, and Markdown tables.

``load_report_data(warehouse, year, pref_code)`` reads the warehouse once (read-only) and returns a
:class:`ReportData`; its methods give the frames a figure cell charts (area beside national, by
indicator and breakdown; answer distributions; trends over every round; the prefectures' spread),
so that each cell reads data -> chart -> caption. The catalogue (``pipelines.domain.catalogue``) decides
which indicators a section shows; display symbols and colours come from ``pipelines.domain.conventions``.
The stage that executes the notebook per area is ``pipelines.outputs.reports`` (docs/DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipelines.domain import config, conventions, schema
from pipelines.domain.catalogue import PILLARS, Indicator, catalogue_by_id
from pipelines.domain.conventions import OWN_SURVEY_MARK
from pipelines.domain.errors import UsageError, check_pref_code, check_year

# The value formatters live in pipelines.domain.formatting; imported here for the tables below and
# re-exported for the report notebook, which imports them from report_data.
from pipelines.domain.formatting import (  # noqa: F401
    MISSING,
    REFERENCE_MARK,
    SUPPRESSED,
    MdText,
    fmt_base,
    fmt_change,
    fmt_ci,
    fmt_comparison,
    fmt_lead_base,
    fmt_lead_ci,
    fmt_lead_marked,
    fmt_lead_value,
    fmt_method,
    fmt_method_direct,
    fmt_national,
    fmt_num,
    fmt_value,
    is_missing,
    is_reference,
    is_suppressed,
    lead,
    lead_method,
    md_escape,
    shown_value,
)
from pipelines.domain.method_statement import RULE_JA as SUPPRESSION_RULE_JA  # noqa: F401 (the methods section states it)
from pipelines.domain.reference import area_code as _area_code
from pipelines.domain.reference import pref_name
from pipelines.engine import keys
from pipelines.io import warehouse as warehouse_db

NATIONAL_CODE = "00"
NATIONAL_NAME = "全国"

# ---------------------------------------------------------------------------------------------
# Catalogue and data access (used inside the notebook)
# ---------------------------------------------------------------------------------------------


def catalogue() -> dict[str, Indicator]:
    """The indicator catalogue by id, in catalogue order (pipelines.domain.catalogue; cached per process)."""
    return catalogue_by_id()


def indicator_name(cat: dict[str, Indicator], ind: str) -> str:
    """The indicator's Japanese name as shown in reports (the id when it is not in the catalogue)."""
    return cat[ind].short_name if ind in cat else str(ind)


DISTRIBUTION_ORDER = {"q_loneliness": ["5", "4", "3", "2", "1", "9"], "ucla_band": ["10-12", "7-9", "4-6", "3", "na"]}
# England (the Community Life Survey covers England only): the name of its figures in every caption,
# legend, table header and note; a chart's series and a table's column add the CLS year.
UK_LABEL = "イングランド"
UK_SURVEY = "Community Life Survey（CLS）"
UK_PUBLISHER = "英国デジタル・文化・メディア・スポーツ省（DCMS）"
DERIVED_MARK = "†"
UK_DERIVED_NOTE = (
    f"{DERIVED_MARK}：公表値ではなく、同じ年度の他の4区分の公表値を100から差し引いて算出した値です"
    "（「わからない・回答拒否」は考慮していません）。"
)
# What each UK chart needs from a CLS year (choose_uk_year), and how a note names it.
UK_NEEDS = {"distribution": "全カテゴリーの割合", "age": "年齢区分別の「しばしばある・常にある」の割合"}


def uk_place(uk_year: str) -> str:
    """The series / column name of England's figures of one CLS year: 'イングランド（CLS 2024/25）'."""
    return f"{UK_LABEL}（CLS {uk_year}）"


def age_label(band: str) -> str:
    """'16-24' -> '16-24歳', '75+' -> '75歳以上'."""
    return band[:-1] + "歳以上" if band.endswith("+") else band + "歳"


def uk_year_start(uk_year: str) -> int:
    """'2023/24' -> 2023 (the survey year runs April to March)."""
    return int(str(uk_year)[:4])


@dataclass
class ReportData:
    year: int
    pref_code: int
    area_code: str
    area_name: str
    indicators: pd.DataFrame  # every area, every year up to `year`
    distributions: pd.DataFrame  # every area, `year` and earlier
    catalogue: dict[str, Indicator]
    synthetic: bool
    uk: pd.DataFrame = field(default_factory=pd.DataFrame)
    _row_index: dict | None = field(default=None, repr=False, compare=False)
    _present: frozenset | None = field(default=None, repr=False, compare=False)

    # --- the area and the rounds -------------------------------------------------------------

    @property
    def is_national(self) -> bool:
        return self.area_code == NATIONAL_CODE

    def years(self) -> list[int]:
        return sorted(int(y) for y in self.indicators.year.unique())

    @property
    def previous_year(self) -> int | None:
        """The latest round before `year` in the warehouse (None for the first round)."""
        return max((y for y in self.years() if y < self.year), default=None)

    def places(self) -> list[tuple[str, str]]:
        """(area code, name) of the series a figure shows: the area, then 全国 (only 全国 in the
        national report)."""
        return ([] if self.is_national else [(self.area_code, self.area_name)]) + [(NATIONAL_CODE, NATIONAL_NAME)]

    # --- the catalogue -----------------------------------------------------------------------

    def ids(self, source: str | None = None, section: int | None = None) -> list[str]:
        """Indicator ids of the catalogue present this year, in catalogue order."""
        if self._present is None:
            self._present = frozenset(self.indicators.loc[self.indicators.year == self.year, "indicator_id"].tolist())
        return [
            i
            for i, ind in self.catalogue.items()
            if i in self._present
            and (source is None or ind.source == source)
            and (section is None or ind.section == section)
        ]

    def indicator(self, ind: str) -> Indicator:
        return self.catalogue[ind]

    def unit(self, ind: str) -> str:
        return self.catalogue[ind].unit if ind in self.catalogue else "percent"

    def name(self, ind: str) -> str:
        return indicator_name(self.catalogue, ind)

    def headline_ids(self) -> list[str]:
        """Survey indicators marked `headline` in the catalogue (else the first survey indicator)."""
        survey = self.ids("survey")
        return [i for i in survey if self.catalogue[i].headline] or survey[:1]

    def sections(self) -> list[tuple[int, str, list[str]]]:
        """(基本方針 number, heading, indicator ids) of each report section that has indicators
        this year, in plan order (catalogue field `section`)."""
        return [(k, label, ids) for k, label in PILLARS.items() if (ids := self.ids(section=k))]

    # --- rows --------------------------------------------------------------------------------

    def row(
        self, indicator_id: str, area: str | None = None, breakdown: str = "total", year: int | None = None
    ) -> pd.Series | None:
        """The indicator row (year, area, breakdown, indicator), or None when the table has no such
        row (a year that is not in the table gives None, never this year's row)."""
        if self._row_index is None:
            self._row_index = row_index(self.indicators)
        pos = self._row_index.get(
            (self.year if year is None else int(year), str(area or self.area_code), str(breakdown), str(indicator_id))
        )
        return None if pos is None else self.indicators.iloc[pos]

    # --- tidy frames for the figures ---------------------------------------------------------

    def estimates(
        self, ids: list[str], breakdowns: dict[str, str] | None = None, year: int | None = None
    ) -> pd.DataFrame:
        """Area beside national: one row per indicator x breakdown x place with the leading estimate
        (direct, pooled or model-based: ``lead``) and its 95% interval (NaN when there is none).
        `breakdowns`: breakdown -> label shown (default: the total). Columns: indicator_id,
        indicator, breakdown, group, place, area_code, value, lower_ci95, upper_ci95, comparison
        (the direct estimate's; not_compared when another leads), suppressed (the direct value),
        n_unweighted, estimate_method ('direct' / 'pooled' / 'model'), method_label (its words).
        `indicator`, `group` and `place` are ordered categoricals (the order given)."""
        breakdowns = breakdowns or {"total": "全体"}
        rows = []
        for ind in ids:
            for bd, label in breakdowns.items():
                for code, place in self.places():
                    r = self.row(ind, area=code, breakdown=bd, year=year)
                    value, lower, upper = lead(r)
                    rows.append(
                        {
                            "indicator_id": ind,
                            "indicator": self.name(ind),
                            "breakdown": bd,
                            "group": label,
                            "place": place,
                            "area_code": code,
                            "value": value,
                            "lower_ci95": lower,
                            "upper_ci95": upper,
                            "comparison": "not_compared"
                            if r is None or not is_direct_lead(r)
                            else str(r["comparison"] or "not_compared"),
                            "suppressed": bool(r is not None and is_suppressed(r)),
                            "n_unweighted": None if r is None else r["n_unweighted"],
                            "estimate_method": lead_method(r) if value is not None else None,
                            "method_label": fmt_method(r) if value is not None else "",
                        }
                    )
        frame = pd.DataFrame(
            rows,
            columns=[
                "indicator_id",
                "indicator",
                "breakdown",
                "group",
                "place",
                "area_code",
                "value",
                "lower_ci95",
                "upper_ci95",
                "comparison",
                "suppressed",
                "n_unweighted",
                "estimate_method",
                "method_label",
            ],
        )
        for c in ("value", "lower_ci95", "upper_ci95", "n_unweighted"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
        return _ordered(
            frame,
            indicator=[self.name(i) for i in ids],
            group=list(breakdowns.values()),
            place=[p for _, p in self.places()],
        )

    def distribution(self, question: str, breakdown: str = "total") -> pd.DataFrame:
        """Answer distribution of `question` this year for the area and national: place, category,
        category_label (ordered), value (NaN when suppressed), n_unweighted."""
        d = self.distributions
        d = d[(d.year == self.year) & (d.question == question) & (d.breakdown == breakdown)]
        order = DISTRIBUTION_ORDER.get(question) or list(dict.fromkeys(d.category.astype(str)))
        labels = dict(zip(d.category.astype(str), d.category_label.astype(str)))
        frames = []
        for code, place in self.places():
            x = d[d.area_code == code]
            frames.append(
                pd.DataFrame(
                    {
                        "place": place,
                        "category": x.category.astype(str),
                        "value": x.value.where(~x.suppressed.astype(bool)).astype(float),
                        "n_unweighted": x.n_unweighted.astype(float),
                    }
                )
            )
        f = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["place", "category", "value"])
        f = f[f.category.isin(order)].copy()
        f["category_label"] = f.category.map(labels)
        return _ordered(
            f, place=[p for _, p in self.places()], category_label=[labels[c] for c in order if c in labels]
        )

    def trends(self, ids: list[str]) -> pd.DataFrame:
        """Every round of each indicator for the area and national (total): year, indicator_id,
        indicator, place, value, lower_ci95, upper_ci95 (the leading estimate of each round: direct,
        pooled or model-based; NaN when there is none), change (increase / decrease / no_change /
        not_compared vs the previous round; the direct estimate's, not_compared when another
        leads), source and source_changed (the indicators stage's columns: e.g.
        national_subsample -> own_survey), estimate_method."""
        d = self.indicators
        d = d[
            (d.breakdown == "total") & d.indicator_id.isin(ids) & d.area_code.isin([c for c, _ in self.places()])
        ].sort_values("year")
        places = dict(self.places())
        sup = d.suppressed.astype(bool)
        value, lower, upper = (d[c].where(~sup).astype(float) for c in ("value", "lower_ci95", "upper_ci95"))
        method = pd.Series(None, index=d.index, dtype=object)
        method[value.notna()] = "direct"
        if "estimate_method" in d.columns:  # the leading estimate (issue #24)
            other = d.estimate_method.isin(["pooled", "model"]) & d.lead_value.notna()
            value = value.where(~other, d.lead_value.astype(float))
            lower = lower.where(~other, d.lead_lower_ci95.astype(float))
            upper = upper.where(~other, d.lead_upper_ci95.astype(float))
            method = method.where(~other, d.estimate_method)
        direct = method == "direct"
        f = pd.DataFrame(
            {
                "year": d.year.astype(int),
                "indicator_id": d.indicator_id,
                "indicator": d.indicator_id.map(self.name),
                "place": d.area_code.map(places),
                "area_code": d.area_code,
                "value": value,
                "lower_ci95": lower,
                "upper_ci95": upper,
                "change": d.change_vs_previous.fillna("not_compared").where(~sup & direct, "not_compared").astype(str),
                "source": d.source.astype(str),
                "source_changed": d.source_changed.fillna(False).astype(bool),
                "estimate_method": method,
                "method_label": [
                    conventions.estimate_method_label(m, y) if isinstance(m, str) else ""
                    for m, y in zip(method, d["lead_years"] if "lead_years" in d.columns else [None] * len(d))
                ],
            }
        )
        return _ordered(
            f.reset_index(drop=True), indicator=[self.name(i) for i in ids], place=[p for _, p in self.places()]
        )

    def prefectures(self, ids: list[str], every_source: bool = False) -> pd.DataFrame:
        """This year's total of every prefecture shown beside this area (context_rows: prefectures
        estimated from their own survey are left out of others' reports; every_source=True keeps
        them, as the national report's table of all 47 does), value NaN when suppressed:
        area_code, area_name, indicator_id, indicator, value, national_value, comparison, is_area."""
        if every_source:
            d = self.indicators
            d = d[(d.year == self.year) & (d.breakdown == "total") & (d.area_code != NATIONAL_CODE)]
        else:
            d = context_rows(self.indicators, self.year, self.area_code)
        d = d[d.indicator_id.isin(ids)].copy()
        d["value"] = d.value.where(~d.suppressed.astype(bool)).astype(float)
        d["national_value"] = d.indicator_id.map({i: shown_value(self.row(i, area=NATIONAL_CODE)) for i in ids}).astype(
            float
        )
        d["indicator"] = d.indicator_id.map(self.name)
        d["is_area"] = d.area_code == self.area_code
        return _ordered(
            d[
                [
                    "area_code",
                    "area_name",
                    "indicator_id",
                    "indicator",
                    "value",
                    "national_value",
                    "comparison",
                    "suppressed",
                    "n_unweighted",
                    "is_area",
                ]
            ].reset_index(drop=True),
            indicator=[self.name(i) for i in ids],
        )

    def uk_distribution(self) -> tuple[str | None, pd.DataFrame]:
        """(CLS year, frame) of the direct question's full distribution in England: the closest
        year not after this round among those with all five categories (choose_uk_year). Columns
        of uk_cls.csv plus `category_label` (the Japanese label), `derived` (computed by us, not
        published) and `label` (the published precision, "32†" when derived)."""
        choice = self.uk_choice("distribution")
        uk = self._uk("total")
        if choice.year is None:
            return None, uk.iloc[0:0]
        uk = uk[uk.year == choice.year].copy()
        uk["category_label"] = uk.jp_code.map(lambda c: schema.QUESTIONS["q_loneliness"].get(int(c), c))
        uk["label"] = uk.value_text + uk.derived.map({True: DERIVED_MARK, False: ""})
        return choice.year, uk

    def uk_by_age(self) -> tuple[str | None, pd.DataFrame]:
        """(CLS year, frame) of often/always by CLS age band: the closest year not after this round
        among those with any age band (choose_uk_year; uk_choice('age').missing names the bands
        that year does not publish). `group` is the band's label ('16-24歳')."""
        choice = self.uk_choice("age")
        uk = _uk_age_rows(self._uk(None))
        if choice.year is None:
            return None, uk.iloc[0:0].assign(group=pd.Series(dtype=object))
        return choice.year, uk[uk.year == choice.year].assign(
            group=lambda x: x.breakdown.str.split("=").str[1].map(age_label)
        )

    def uk_choice(self, need: str) -> UkChoice:
        """The CLS year a chart uses for `need` ('distribution' or 'age'), why, and what it lacks."""
        return choose_uk_year(self._uk(None), self.year, need)

    def uk_reason(self, need: str) -> str:
        """The sentence that says which CLS year a chart shows and why (Japanese)."""
        return uk_reason(self.uk_choice(need), self.year)

    @staticmethod
    def uk_place(uk_year: str) -> str:
        return uk_place(uk_year)

    def uk_age_frame(self, ind: str) -> pd.DataFrame:
        """The age-band chart's frame: the area and national by CLS age band (ReportData.estimates)
        and England's often/always of the chosen CLS year as a place `イングランド（CLS 2024/25）`
        with no interval (lower_ci95/upper_ci95 NaN: the CLS publishes none). `group` and `place`
        are ordered categoricals."""
        bands = {f"uk_age={b}": age_label(b) for b in schema.UK_AGE_BANDS}
        frame = self.estimates([ind], bands)
        uk_year, uk = self.uk_by_age()
        if not uk_year:
            return frame
        england = pd.DataFrame(
            {
                "indicator_id": ind,
                "indicator": self.name(ind),
                "breakdown": uk.breakdown,
                "group": uk.group,
                "place": uk_place(uk_year),
                "area_code": "",
                "value": uk.value_pct.astype(float),
                "lower_ci95": float("nan"),
                "upper_ci95": float("nan"),
                "comparison": "not_compared",
                "suppressed": False,
                "n_unweighted": float("nan"),
                "estimate_method": "direct",
                "method_label": "",
            }
        )
        out = pd.concat(
            [
                frame.assign(
                    indicator=frame.indicator.astype(str), group=frame.group.astype(str), place=frame.place.astype(str)
                ),
                england,
            ],
            ignore_index=True,
        )
        return _ordered(
            out,
            indicator=[self.name(ind)],
            group=list(bands.values()),
            place=list(frame.place.cat.categories) + [uk_place(uk_year)],
        )

    def uk_age_table(self, ind: str) -> str:
        """The age-band table (Markdown): the area's value, interval and base, national and the
        comparison (prefectures), and England's published value of the chosen CLS year (― where
        that year publishes no value for the band)."""
        uk_year, uk = self.uk_by_age()
        england = dict(zip(uk.breakdown, uk.value_text)) if uk_year else {}
        rows, cells = [], []
        not_direct = False
        for band in schema.UK_AGE_BANDS:
            bd = f"uk_age={band}"
            r = self.row(ind, breakdown=bd)
            if self.is_national:
                row = [age_label(band), fmt_value(r), fmt_ci(r), fmt_base(r)]
            else:  # the leading estimate and its method; the comparison is the direct one's
                direct = is_direct_lead(r)
                not_direct |= not direct and lead_method(r) is not None
                row = [
                    age_label(band),
                    fmt_lead_value(r),
                    fmt_lead_ci(r),
                    fmt_base(r),
                    fmt_method_direct(r),
                    fmt_value(self.row(ind, area=NATIONAL_CODE, breakdown=bd)),
                    fmt_comparison(r),
                ]
            if uk_year:
                row.append(england.get(bd, MISSING))
            rows.append(row)
            cells += row
        header = ["区分", f"{self.area_name}（%）", ci_header(), "集計対象（人）"]
        if not self.is_national:
            header += ["推計方法", "全国（%）", "全国との比較（直接推計）"]
        if uk_year:
            header.append(f"{uk_place(uk_year)}（%）")
        notes = footnotes(*cells)
        if not_direct:
            notes += "\n\n" + methods_footnote()
        return (
            md_table(
                header,
                rows,
                None if self.is_national else ["l", "r", "r", "r", "l", "r", "c"] + (["r"] if uk_year else []),
                widths=None if self.is_national else [3, 2, 3, 2, 4, 2, 2] + ([2] if uk_year else []),
                caption=f"{self.name(ind)}：{UK_LABEL}と同じ年齢区分別（{self.area_name}"
                + ("" if self.is_national else "・全国")
                + ("・" + uk_place(uk_year) if uk_year else "")
                + "）",
            )
            + "\n\n"
            + notes
        )

    def uk_sources(self, uk: pd.DataFrame) -> str:
        """Which publication England's figures in `uk` (rows of uk_cls.csv, with `category_label`
        for a distribution) come from, in Japanese: '出典：…。'. One source: named once; several:
        each with its categories. A derived value says it was computed from the others."""
        published = uk[~uk.derived.astype(bool)]
        sources = list(dict.fromkeys(published.source.astype(str)))
        if len(sources) == 1 and not uk.derived.any():
            return f"出典：{sources[0]}。"
        names = uk.category_label if "category_label" in uk else uk.breakdown.str.split("=").str[1].map(age_label)
        parts = [
            f"{''.join(f'「{n}」' for n in names[g.index])}：{src}"
            for src, g in published.groupby(published.source.astype(str), sort=False)
        ]
        parts += [f"「{names[i]}」{DERIVED_MARK}：これらの公表値から算出" for i in uk.index[uk.derived.astype(bool)]]
        return ("出典：" + "；".join(parts) + "。") if parts else ""

    def _uk(self, breakdown: str | None) -> pd.DataFrame:
        uk = self.uk
        if uk.empty or "question" not in uk:
            return pd.DataFrame(
                columns=[
                    "year",
                    "jp_code",
                    "breakdown",
                    "value_pct",
                    "value_text",
                    "status",
                    "source",
                    "note",
                    "derived",
                ]
            )
        uk = uk[uk.question == "loneliness"].copy()
        if breakdown is not None:
            uk = uk[uk.breakdown == breakdown]
        uk["jp_code"] = uk.jp_code.astype(str)
        uk["value_pct"] = uk.value_text.astype(float)
        uk["derived"] = (
            uk.get("note", pd.Series("", index=uk.index)).fillna("").astype(str).str.lower().str.startswith("derived")
        )
        return uk


@dataclass(frozen=True)
class UkChoice:
    """The CLS year a chart uses: `year` (None when no year up to the round has the figures),
    `closest` (the closest year not after the round, whatever it holds), `skipped` (years between
    the chosen one and the round that lack the figures), `missing` (what the chosen year lacks:
    the age bands it does not publish), `need` ('distribution' or 'age')."""

    need: str
    year: str | None
    closest: str | None
    skipped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def _uk_age_rows(uk: pd.DataFrame) -> pd.DataFrame:
    return uk[uk.breakdown.astype(str).str.startswith("uk_age=") & (uk.jp_code.astype(str) == "5")]


def _uk_has(uk: pd.DataFrame, need: str) -> dict[str, tuple[str, ...]]:
    """CLS year -> what it lacks for `need`, for the years that hold enough of it to be charted:
    'distribution' needs all five categories of the total (nothing may lack); 'age' needs
    often/always by at least one age band (the bands it lacks are listed)."""
    if need == "distribution":
        total = uk[uk.breakdown == "total"]
        return {y: () for y, g in total.groupby("year") if g.jp_code.astype(str).nunique() >= 5}
    if need == "age":
        ages = _uk_age_rows(uk)
        return {
            y: tuple(age_label(b) for b in schema.UK_AGE_BANDS if f"uk_age={b}" not in set(g.breakdown))
            for y, g in ages.groupby("year")
        }
    raise ValueError(f"unknown UK chart need {need!r} (distribution, age)")


def choose_uk_year(uk: pd.DataFrame, year: int, need: str) -> UkChoice:
    """The CLS year a chart shows beside the Japanese round `year`: the closest year not after
    the round (closest_uk_year) among the years of uk_cls.csv that hold what the chart needs
    (`need`: 'distribution' = all five categories; 'age' = often/always by age band)."""
    years = sorted(set(uk.year.astype(str))) if len(uk) else []
    has = _uk_has(uk, need) if len(uk) else {}
    closest = closest_uk_year(years, year)
    chosen = closest_uk_year(list(has), year)
    skipped = (
        tuple(
            y for y in years if chosen is not None and uk_year_start(chosen) < uk_year_start(y) <= year and y not in has
        )
        if chosen
        else tuple(y for y in years if uk_year_start(y) <= year)
    )
    return UkChoice(
        need=need, year=chosen, closest=closest, skipped=skipped, missing=has.get(chosen, ()) if chosen else ()
    )


def uk_reason(choice: UkChoice, year: int) -> str:
    """Why a chart shows its CLS year (Japanese): the closest year not after the round that holds
    the figures; when later years lack them, it says so; the bands the year lacks are named."""
    what = UK_NEEDS[choice.need]
    if choice.year is None:
        return f"{year}年以前の{UK_LABEL}の調査年度について{what}の公表値を収録していないため、{UK_LABEL}の値は示していません。"
    years = "・".join(f"{y}年度" for y in choice.skipped)
    text = (
        f"{years}は{what}が公表資料の本文に示されていない（本報告書の参照データにない）ため、{choice.year}年度の値を"
        f"示します（{year}年の調査より後でない、{what}がそろう最も近い年度）。"
        if choice.skipped
        else f"{year}年の調査より後でない最も近い年度（{choice.year}年度）の値です。"
    )
    if choice.missing:
        text += (
            f"{choice.year}年度は{'・'.join(choice.missing)}の値が公表資料の本文に個別に示されていないため"
            f"「{MISSING}」としています。"
        )
    return text


def closest_uk_year(uk_years, year: int) -> str | None:
    """The CLS year (e.g. '2024/25') closest to a Japanese round fielded in December of `year`
    and not after it: the latest year that starts in or before `year` ('2024/25' for 2024,
    '2021/22' for 2022 when 2022/23 is absent). None when every year starts after the round."""
    before = [y for y in uk_years if uk_year_start(y) <= int(year)]
    return max(before, key=uk_year_start) if before else None


def _ordered(frame: pd.DataFrame, **orders: list) -> pd.DataFrame:
    """Make the named columns ordered categoricals (the given order: plotnine draws in it)."""
    for col, cats in orders.items():
        frame[col] = pd.Categorical(frame[col], categories=list(dict.fromkeys(cats)), ordered=True)
    return frame


# Context rows of a prefecture report (spine chart, programme chart): every prefecture's programme
# figures and the prefectures whose survey estimate comes from the national survey. Prefectures
# estimated from their own survey are left out of OTHER prefectures' context: their design differs
# (a separate sample, mode and weighting), so ranking them together would mix designs, and a
# correction to one prefecture's own survey then changes only that prefecture's report (and the
# national one). The build hashes exactly these rows and columns (``CONTEXT``, pipelines.engine.keys).
CONTEXT = keys.Reads(
    "indicators",
    (
        "area_code",
        "indicator_id",
        "breakdown",
        "value",
        "lower_ci95",
        "upper_ci95",
        "national_value",
        "comparison",
        "suppressed",
        "note",
    ),
    rows="the round's total rows of the prefectures shown as context",
)
CONTEXT_COLUMNS_SQL = ", ".join(CONTEXT.columns)
CONTEXT_SQL = f"""
SELECT {CONTEXT_COLUMNS_SQL}
FROM indicators
WHERE year = ? AND breakdown = 'total' AND area_code <> '00'
  AND coalesce(note, '') NOT LIKE '%{OWN_SURVEY_MARK}%'
"""


def context_rows(indicators: pd.DataFrame, year: int, area_code: str) -> pd.DataFrame:
    """The prefecture rows a report may show beside its own (same rule as CONTEXT_SQL), plus its own."""
    d = indicators[(indicators.year == year) & (indicators.breakdown == "total") & (indicators.area_code != "00")]
    own_survey = d.note.fillna("").str.contains(OWN_SURVEY_MARK, regex=False)
    return d[~own_survey | (d.area_code == area_code)].copy()


def row_index(d: pd.DataFrame) -> dict[tuple, int]:
    """(year, area_code, breakdown, indicator_id) -> position of the first such row of `d`."""
    keys = zip(
        d.year.astype(int).tolist(),
        d.area_code.astype(str).tolist(),
        d.breakdown.astype(str).tolist(),
        d.indicator_id.astype(str).tolist(),
    )
    index: dict[tuple, int] = {}
    for pos, key in enumerate(keys):
        index.setdefault(key, pos)  # first match, as a filter would give
    return index


def warehouse_key(path: Path) -> tuple:
    """Identity of the warehouse contents for the cache: the file and its write-ahead log."""
    key = []
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            key.append(config.file_key(p))
        except FileNotFoundError:
            key.append(None)
    return tuple(key)


_CACHE: dict[str, tuple] = {}


def _read_warehouse(warehouse: Path, year: int) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """The indicators and distributions up to `year`, and the synthetic flag, from the warehouse.

    Cached per process while the warehouse file (and its WAL) is unchanged: a warm kernel renders
    every area of one build from the same tables, read once instead of once per area.
    Callers get the cached frames; pandas' copy-on-write keeps them from changing one another's."""
    key = warehouse_key(warehouse)
    hit = _CACHE.get("data")
    if hit is not None and hit[0] == (key, year):
        return hit[1]
    con = warehouse_db.connect(warehouse)
    try:
        ind = con.execute("SELECT * FROM indicators WHERE year <= ? ORDER BY year, area_code", [year]).df()
        dist = con.execute("SELECT * FROM distributions WHERE year <= ?", [year]).df()
        synthetic = _synthetic_flag(con)
    finally:
        con.close()
    if warehouse_key(warehouse) == key:  # not written meanwhile
        _CACHE["data"] = ((key, year), (ind, dist, synthetic))
        _CACHE.pop("index", None)
    return ind, dist, synthetic


def _cached_index(ind: pd.DataFrame) -> dict[tuple, int]:
    """row_index of `ind`, kept for the next report of the same warehouse read (the frames handed
    to reports are shallow copies of the cached one: same rows, same positions)."""
    hit = _CACHE.get("index")
    if hit is None or hit[0] is not ind:
        hit = (ind, row_index(ind))
        _CACHE["index"] = hit
    return hit[1]


def _read_uk() -> pd.DataFrame:
    uk_path = config.REFERENCE_DIR / "uk_cls.csv"
    if not uk_path.exists():
        return pd.DataFrame()
    key = config.file_key(uk_path)
    hit = _CACHE.get("uk")
    if hit is None or hit[0] != key:
        uk = pd.read_csv(uk_path, encoding="utf-8", dtype={"year": str, "value_pct": str, "jp_code": str})
        uk["value_text"] = uk.value_pct.str.strip()  # the published precision: "6", "7.1"
        uk["value_pct"] = uk.value_text.astype(float)
        hit = (key, uk)
        _CACHE["uk"] = hit
    return hit[1]


def load_report_data(warehouse: str | Path, year: int, pref_code: int) -> ReportData:
    """Read what one area's report needs from the warehouse (read-only)."""
    year = check_year(year, "year")
    pref_code = 0 if str(pref_code).strip() in ("0", "00") else check_pref_code(pref_code, "pref_code")
    code = _area_code(pref_code)
    warehouse = Path(warehouse)
    ind, dist, synthetic = _read_warehouse(warehouse, year)
    if ind[ind.year == year].empty:
        raise UsageError("--year", f"no indicators for {year} in {warehouse} / この年の指標がありません")
    return ReportData(
        year=year,
        pref_code=int(pref_code),
        area_code=code,
        area_name=pref_name(pref_code),
        indicators=ind.copy(deep=False),
        distributions=dist.copy(deep=False),
        catalogue=catalogue(),
        synthetic=synthetic,
        uk=_read_uk().copy(deep=False),
        _row_index=_cached_index(ind),
    )


def _synthetic_flag(con) -> bool:
    """Whether any committed file is synthetic (``warehouse.synthetic_flag``: True when the flag
    cannot be read, so the watermark is shown rather than silently dropped)."""
    return warehouse_db.synthetic_flag(con)


def is_synthetic(warehouse: Path) -> bool:
    """Whether the warehouse holds synthetic data (True when that cannot be read: fail closed).
    A warehouse that cannot be opened at all raises (the build stops with its message)."""
    con = warehouse_db.connect(warehouse)
    try:
        return _synthetic_flag(con)
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Formatting (Markdown that pandoc and Quarto render natively in HTML and Typst)
# ---------------------------------------------------------------------------------------------

FOOTNOTE_SUPPRESSED = (
    f"「{SUPPRESSED}」：集計対象が{config.MIN_BASE}人未満のため、または他の値からの差し引きで"
    "算出されるのを防ぐため（二次秘匿）数値を表示していません。"
)
SUPPRESSED_REASON = f"集計対象が{config.MIN_BASE}人未満または二次秘匿のため非表示"  # (config.MIN_BASE, not a typed 30)
FOOTNOTE_REFERENCE = (
    f"「{REFERENCE_MARK}」：集計対象が{config.MIN_BASE}～{config.REFERENCE_BASE - 1}人のため"
    "参考値です（誤差が大きい）。"
)
FOOTNOTE_MISSING = f"「{MISSING}」：データなし・比較できない。"


def ci_header() -> str:
    """The interval column's header at the configured level: 95%信頼区間."""
    from pipelines.domain.method_statement import confidence_percent

    return f"{confidence_percent()}%信頼区間"


def comparison_legend() -> str:
    """The comparison symbols and words as used in the tables (Markdown)."""
    return "、".join(
        f"[{s.symbol} {s.label}]{{.cmp-{s.key}}}"
        for k, s in conventions.COMPARISON.items()
        if k not in ("not_compared", "suppressed")
    )


def md_table(
    header: list[str],
    rows: list[list[str]],
    align: list[str] | None = None,
    caption: str | None = None,
    widths: list[int] | None = None,
) -> str:
    """A pipe table. align: 'l' | 'r' | 'c' per column; widths: relative column widths (pandoc
    reads them from the dashes of the separator line, so wide tables wrap inside the page).
    Header, cells and the caption (pandoc's `: caption` line: <caption> in HTML, the table's
    caption in the PDF) are escaped (md_escape) unless they are MdText."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    widths = widths or [4] + [2] * (len(header) - 1)

    def mark(a: str, w: int) -> str:
        dashes = "-" * max(3, 4 * w)
        return {"l": ":" + dashes, "r": dashes + ":", "c": ":" + dashes + ":"}[a]

    lines = [
        "| " + " | ".join(md_escape(h) for h in header) + " |",
        "|" + "|".join(mark(a, w) for a, w in zip(align, widths)) + "|",
    ]
    lines += ["| " + " | ".join(c if isinstance(c, MdText) else md_escape(c) for c in r) + " |" for r in rows]
    out = "\n".join(lines)
    if caption:
        out += f"\n\n: {caption if isinstance(caption, MdText) else md_escape(caption)}"
    return out


def footnotes(*cells: str) -> str:
    """The footnotes that apply to the cells shown (only the symbols that occur)."""
    text = " ".join(cells)
    notes = []
    # a hidden value alone, with a mark ("x ※"), or as the direct value beside a model estimate
    if any(c == SUPPRESSED or c.startswith(SUPPRESSED + " ") or f" {SUPPRESSED}）" in c for c in cells):
        notes.append(FOOTNOTE_SUPPRESSED)
    if REFERENCE_MARK in text:
        notes.append(FOOTNOTE_REFERENCE)
    if MISSING in text:
        notes.append(FOOTNOTE_MISSING)
    return "\n\n".join(f"[{n}]{{.footnote}}" for n in notes)


def headline_table(data: ReportData, ids: list[str] | None = None) -> str:
    """The survey indicators of the area this round (total): value, interval, base, then national
    and the comparison (prefectures) or the previous round's value (national), and the change.
    A change of source since the previous round (national subsample -> own survey) is marked."""
    rows, cells = [], []
    prev_year = data.previous_year
    changed = set()
    if prev_year is not None:
        t = data.trends(ids or data.ids("survey"))
        changed = set(t[(t.year == data.year) & (t.area_code == data.area_code) & t.source_changed].indicator_id)
    not_direct = False
    for ind in ids or data.ids("survey"):
        r = data.row(ind)
        unit = data.unit(ind)
        change = fmt_change(r, data.indicator(ind).polarity)
        if ind in changed and change != MISSING and "出典変更" not in change:
            change = MdText(change + md_escape(" （出典変更）"))
        if data.is_national:
            row = [data.name(ind), fmt_value(r, unit), fmt_ci(r), fmt_base(r)]  # md_table escapes
            prev = data.row(ind, year=prev_year) if prev_year is not None else None
            row += [fmt_value(prev, unit), change]
        else:
            # the leading estimate (direct / pooled / model-based) and its method; the base, the
            # comparison and the change are the direct estimate's (labels are about it only), and
            # where another estimate leads the method cell gives the direct value beside it
            direct = is_direct_lead(r)
            not_direct |= not direct and lead_method(r) is not None
            row = [
                data.name(ind),
                fmt_lead_value(r, unit),
                fmt_lead_ci(r),
                fmt_base(r),
                fmt_method_direct(r, unit),
                fmt_national(r, unit),
                fmt_comparison(r),
                change,
            ]
        rows.append(row)
        cells += row
    prev_head = f"前回 {prev_year}年（%）" if prev_year is not None else "前回（%）"
    if data.is_national:
        header = ["指標", "全国（%）", ci_header(), "集計対象（人）", prev_head, "前回からの変化"]
        align, widths = ["l", "r", "r", "r", "r", "c"], [7, 2, 3, 2, 2, 3]
    else:
        header = [
            "指標",
            f"{data.area_name}（%）",
            ci_header(),
            "集計対象（人）",
            "推計方法",
            "全国（%）",
            "全国との比較（直接推計）",
            "前回からの変化（直接推計）",
        ]
        align, widths = ["l", "r", "r", "r", "l", "r", "c", "c"], [6, 2, 3, 2, 3, 2, 2, 3]
    notes = footnotes(*cells)
    if not_direct:
        notes += "\n\n" + methods_footnote()
    if changed:
        notes += (
            "\n\n[「出典変更」：前回と今回で推計の出典が異なります（全国調査の県別回答者 → 県の独自調査など）。"
            "調査設計が異なるため、前回との差は検定していません（推移の表と図に両方の値を示します）。]{.footnote}"
        )
    caption = f"主な指標（{data.area_name}、{data.year}年" + ("" if data.is_national else "、全国との比較") + "）"
    return md_table(header, rows, align, widths=widths, caption=caption) + "\n\n" + notes


def breakdown_table(data: ReportData, ind: str, prefix: str, labels: dict[str, str]) -> str:
    """Area (and national) values by breakdown group: for a prefecture the leading estimate of each
    group (direct, pooled or model-based) with its method; suppressed direct cells shown as 'x'
    where no other estimate leads."""
    rows, cells = [], []
    not_direct = False
    for key, label in labels.items():
        r = data.row(ind, breakdown=f"{prefix}={key}")
        n = data.row(ind, area="00", breakdown=f"{prefix}={key}")
        if data.is_national:
            row = [label, fmt_value(r), fmt_ci(r), fmt_base(r)]
        else:
            direct = is_direct_lead(r)
            not_direct |= not direct and lead_method(r) is not None
            row = [
                label,
                fmt_lead_value(r),
                fmt_lead_ci(r),
                fmt_base(r),
                fmt_method_direct(r),
                fmt_value(n),
                fmt_comparison(r),
            ]
        rows.append(row)
        cells += row
    if data.is_national:
        header = ["区分", f"{data.area_name}（%）", ci_header(), "集計対象（人）"]
        align, widths = None, None
    else:
        header = [
            "区分",
            f"{data.area_name}（%）",
            ci_header(),
            "集計対象（人）",
            "推計方法",
            "全国（%）",
            "全国との比較（直接推計）",
        ]
        align, widths = ["l", "r", "r", "r", "l", "r", "c"], [3, 2, 3, 2, 4, 2, 2]
    notes = footnotes(*cells)
    if not_direct:
        notes += "\n\n" + methods_footnote()
    caption = (
        f"{data.name(ind)}：{'性別' if prefix == 'sex' else '年齢別'}（{data.area_name}"
        + ("" if data.is_national else "・全国")
        + "）"
    )
    return md_table(header, rows, align, widths=widths, caption=caption) + "\n\n" + notes


def is_direct_lead(row) -> bool:
    return lead_method(row) == "direct"


def methods_footnote() -> str:
    """The footnote on the 推計方法 column (Markdown)."""
    return f"[{md_escape(FOOTNOTE_METHODS)}]{{.footnote}}"


def method_marks_note(cells) -> str:
    """The footnote of the method marks that occur in ``cells`` ('' when none)."""
    text = " ".join(map(str, cells))
    words = {
        "pooled": "プール推計（直近の複数回の全国調査の当該県回答者を合わせた値）",
        "model": "モデル推計（Fay–Herriot モデル）",
    }
    found = [f"{mark}：{words[m]}" for m, mark in conventions.ESTIMATE_MARKS.items() if mark in text]
    return (
        f"[{md_escape('、'.join(found) + '。変化の判定は直接推計についてのみ行います。')}]{{.footnote}}"
        if found
        else ""
    )


def method_note(frame: pd.DataFrame) -> str:
    """A chart's caption words on its marks (``estimates`` / ``trends`` frames): which points are
    model-based (hollow) or pooled (grey); '' when every point is a direct estimate."""
    if "estimate_method" not in frame.columns:
        return ""
    shown = frame[frame["value"].notna()]
    parts = []
    pooled = shown[shown.estimate_method == "pooled"]
    if len(pooled):
        label = pooled["method_label"].iloc[0] if "method_label" in pooled.columns else "プール推計"
        parts.append(f"灰色の点は{label}の値")
    if (shown.estimate_method == "model").any():
        parts.append("白抜きの点はモデル推計（Fay–Herriot モデル）の値")
    return ("、".join(parts) + "（塗りつぶしの点は直接推計）。") if parts else ""


FOOTNOTE_METHODS = (
    "「推計方法」：直接推計はその年の回答から直接求めた値、プール推計は直近の複数回の全国調査の"
    "当該県回答者を合わせた値（期間の平均）、モデル推計は Fay–Herriot モデルによる値（回答者数の集計ではありません）。"
    "直接推計以外が表示されている行では、括弧内に直接推計の値を示します。集計対象・全国との比較・前回からの変化は"
    "直接推計のもので、プール推計・モデル推計の値には有意差の判定をしません。方法は「方法と注意事項」を参照。"
)


# --- The evaluation: progress since the baseline and the main points (pipelines.domain.evaluation) --------


def progress(data: ReportData) -> pd.DataFrame:
    """The national progress table of ``data.year`` (evaluation.progress_table): baseline -> latest
    per indicator, Holm-adjusted within each 基本方針."""
    from pipelines.domain.evaluation import progress_table
    from pipelines.indicators.published_check import published_national

    return progress_table(data.indicators, data.catalogue, data.year, published_national())


def main_points(data: ReportData, progress_frame: pd.DataFrame | None = None):
    """The 要点 of the report (evaluation.key_points), each with the rows it was made from."""
    from pipelines.domain.evaluation import key_points

    if data.is_national and progress_frame is None:
        progress_frame = progress(data)
    return key_points(data.indicators, data.catalogue, data.year, data.area_code, data.area_name, progress_frame)


def main_points_md(points) -> str:
    """The 要点 as a Markdown list (the sentences are ours; names come from the catalogue)."""
    return "\n".join(f"- {md_escape(p.text)}" for p in points)


def progress_md(frame: pd.DataFrame) -> str:
    """The progress table, one block per 基本方針: baseline and latest values, the difference with
    its 95% interval, p-value and Holm-adjusted p, and the words (改善/悪化/変化なし)."""
    from pipelines.domain.method_statement import confidence_percent

    blocks = []
    c = confidence_percent()
    for pillar, part in frame.groupby("pillar", sort=True):
        rows, cells = [], []
        for r in part.itertuples():
            unit = "percent" if r.unit == "flag" else r.unit
            base = (
                f"{fmt_num(r.baseline_value, unit)}（{r.baseline_year}年"
                + ("・公表値" if r.baseline_from == "published" else "")
                + "）"
            )
            diff = f"{r.difference:+.1f}"
            if r.method in ("newcombe", "fisher"):
                interval = f"{r.diff_lower:+.1f}～{r.diff_upper:+.1f}"
                p = "<0.001" if r.p_value < 0.001 else f"{r.p_value:.3f}"
                ph = "<0.001" if r.p_holm < 0.001 else f"{r.p_holm:.3f}"
            else:
                interval, p, ph = "全数（検定なし）" if r.method == "census" else MISSING, MISSING, MISSING
            target = MISSING if r.target is None or is_missing(r.target) else fmt_num(r.target, unit)
            row = [
                r.name + ("（都道府県の%）" if r.unit == "flag" else ""),
                base,
                f"{fmt_num(r.latest_value, unit)}（{r.latest_year}年）",
                diff,
                interval,
                p,
                ph,
                r.words_holm,
                target,
            ]
            rows.append(row)
            cells += [str(x) for x in row]
        blocks.append(
            f"**{md_escape(part.iloc[0]['pillar_label'])}**\n\n"
            + md_table(
                ["指標", "基準値", "最新値", "差", f"差の{c}%区間", "p値", "Holm調整p値", "判定（調整後）", "目標"],
                rows,
                ["l", "r", "r", "r", "r", "r", "r", "c", "r"],
                widths=[5, 3, 3, 2, 3, 2, 2, 2, 2],
                caption=f"基本方針({pillar})の指標：基準年から最新年への変化",
            )
        )
    return "\n\n".join(blocks)
