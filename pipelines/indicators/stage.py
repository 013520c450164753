"""The yearly evaluation indicators: catalogue (indicators.yml) -> DuckDB SQL -> tidy tables.

Method (DESIGN.md "Statistical conventions"; the notebook explains it to a reader):

* Survey indicators are weighted shares. The catalogue gives each indicator a numerator and a
  denominator as DuckDB boolean expressions over the contract columns; one SQL statement evaluates
  every indicator for every area and breakdown at once (``GROUP BY GROUPING SETS``), returning
  Σw, Σw², Σw·y and the unweighted count per cell. The statistics (Kish n_eff divided by the
  survey's design effect, Wilson interval, comparisons and changes by ``stats.difference_test``,
  base rules) are then applied to whole columns with ``pipelines.domain.stats`` -- no loop over
  prefectures.
* Every round: ``plan_rounds`` -> ``compute_rounds`` -> ``store_rounds`` (``update_indicators`` in
  one process; the indicators notebook as the stage, ``run_indicators``) computes every round in
  the warehouse (national rounds and programme fiscal years) in one pass, each round's cells
  aggregated once and reused as the previous round of the next; a round is recomputed only when
  its key (``round_keys``: its files, the previous round's, the catalogue, the design effects, this
  code) changed.
* The steps of one round, public so that the notebook shows them one by one: ``aggregate`` (one
  SQL pass) -> ``survey_cells`` / ``distribution_cells`` -> ``area_sources`` (with design effects)
  -> ``suppression_frame`` + ``audit.protect`` (``suppress``) -> ``with_intervals`` (``round_data``
  does these) -> ``compare_with_national`` -> ``change_since_previous`` -> ``survey_tables``.
* Area vs national (column ``comparison_method``): an own-survey area against the national estimate
  (independent samples, both uncertainties); a national-subsample area against the rest of the
  nation (the area's respondents removed from the national sums: independent of the area, and
  different from it in the same direction as the national figure). Newcombe interval, or Fisher's
  exact test when an expected count is below 5.
* Area source: a prefecture's own survey for that year when there is one (survey_kind
  'prefecture'), else the national survey's respondents living in that prefecture. National
  figures (area '00') come from the national survey only.
* Change vs previous: the same computation for the previous round present in the warehouse, with
  the same source rule, then ``stats.difference_test`` on the effective sizes (column
  ``change_method``); ``source_changed`` marks a row whose previous round came from another source.
* Disclosure control: a cell whose unweighted base is < ``config.MIN_BASE`` (30) is suppressed
  (value and interval NULL, note 'n<30 非表示', the number from the setting); then secondary suppression (二次秘匿) chosen by the audit of
  ``pipelines.domain.audit`` (``audit.protect``): the group rule of ``stats.secondary_suppression`` over
  ``suppression_groups`` (each suppressed cell hidden with >= 30 other unpublished respondents,
  within an area and for the prefectures within the national figure), then the LP audit of every
  relation within an area (partitions, national vs UK age bands) until no suppressed cell's base,
  count or complement can be narrowed below the protection interval (note 'secondary suppression /
  二次秘匿'). Cells on the same denominator share their base, so they are hidden together, the
  distributions with the indicators on all respondents. Suppressed rows carry no base
  (n_unweighted / n_effective NULL, the note says 30人未満 or 非公表).
* Programme indicators: per-prefecture metrics of the fiscal year equal to the survey year, as a
  rate per 10,000 population aged 16+ (an estimate: 2020 census total x 0.8723) or a 1/0 flag.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipelines.domain import config, schema, stats, survey_design
from pipelines.domain.catalogue import BREAKDOWNS_COMMON, BREAKDOWNS_UK, Indicator, load_catalogue  # noqa: F401 (downloads imports them here)
from pipelines.domain.conventions import EXTREME_NOTE, OWN_SURVEY_MARK  # noqa: F401 (also their old home)
from pipelines.domain.errors import DataError, UsageError
from pipelines.domain.formatting import json_records
from pipelines.domain.reference import POP_16PLUS_FACTOR, prefectures  # noqa: F401
from pipelines.engine import keys
from pipelines.io import warehouse as warehouse_db
from pipelines.io.warehouse import has_table, national_years, previous_year, programme_years, rounds  # noqa: F401 (their old home)

log = logging.getLogger("tsunagari.indicators")


NATIONAL = "00"

# Answer distributions kept for the charts (every category, 無回答 included).
DISTRIBUTION_QUESTIONS: dict[str, dict[str, str]] = {
    "q_loneliness": {str(k): v for k, v in schema.QUESTIONS["q_loneliness"].items()},
    "ucla_band": dict(schema.UCLA_BANDS),
    **{
        q: {str(k): v for k, v in schema.QUESTIONS[q].items()}
        for q in (
            "q_contact_inperson",
            "q_participation_none",
            "q_has_worries",
            "q_reliable_person",
            "q_help_intention",
        )
    },
}
UK_DISTRIBUTION_QUESTIONS = {"q_loneliness"}


def _area_assignment_sql(rel: str) -> str:
    """CTEs `own` and `assigned` over relation `rel` (our own CTE name): the area of each row. National
    rows count for '00'; a prefecture's estimate comes from its own survey when it has one that
    round, else from the national survey's respondents in that prefecture."""
    return f"""own AS (
  SELECT DISTINCT pref_code FROM {rel} WHERE survey_kind = 'prefecture'
), assigned AS (
  SELECT '{NATIONAL}' AS area_code, {rel}.* FROM {rel} WHERE survey_kind = 'national'
  UNION ALL
  SELECT lpad(CAST(pref_code AS VARCHAR), 2, '0') AS area_code, {rel}.* FROM {rel}
  WHERE survey_kind = 'prefecture'
     OR (survey_kind = 'national' AND pref_code NOT IN (SELECT pref_code FROM own))
)"""


UCLA_SCORE_SQL = """CASE WHEN q_ucla_1 BETWEEN 1 AND 4 AND q_ucla_2 BETWEEN 1 AND 4
  AND q_ucla_3 BETWEEN 1 AND 4 THEN q_ucla_1 + q_ucla_2 + q_ucla_3 END"""
UCLA_BAND_SQL = """CASE WHEN ucla_score IS NULL THEN 'na' WHEN ucla_score >= 10 THEN '10-12'
  WHEN ucla_score >= 7 THEN '7-9' WHEN ucla_score >= 4 THEN '4-6' ELSE '3' END"""


# --- Warehouse helpers ---------------------------------------------------------------------------


def check_national_year(con: duckdb.DuckDBPyConnection, year: int) -> None:
    """UsageError('--year', ...) when the warehouse has no national survey for ``year``."""
    years = national_years(con)
    if year not in years:
        have = ", ".join(map(str, years)) if years else "なし / none"
        raise UsageError(
            "--year",
            f"{year} 年の全国調査が倉庫にありません / no national survey for "
            f"{year} in the warehouse (available rounds: {have})",
        )


def area_names() -> dict[str, str]:
    """{area code: Japanese name}: '00' 全国 and the 47 prefectures."""
    pref = prefectures()
    names = {NATIONAL: "全国"}
    names.update({f"{int(c):02d}": str(n) for c, n in zip(pref.pref_code, pref.name_ja)})
    return names


AREA_CODES = [NATIONAL] + [f"{c:02d}" for c in range(1, 48)]


# --- Survey: one SQL pass over all areas and breakdowns ------------------------------------------


def _assigned_sql() -> str:
    """Respondents of round $year, each assigned to area '00' (national survey) and to its
    prefecture (own survey when that prefecture has one this round, else the national survey)."""
    return f"""
WITH resp0 AS (
  SELECT *, {UCLA_SCORE_SQL} AS ucla_score FROM survey_responses WHERE survey_year = $year
), resp AS (
  SELECT *, {UCLA_BAND_SQL} AS ucla_band FROM resp0
), {_area_assignment_sql("resp")}"""


_BREAKDOWN_SQL = """CASE
  WHEN GROUPING(sex) = 0 THEN 'sex=' || CAST(sex AS VARCHAR)
  WHEN GROUPING(age_band) = 0 THEN 'age=' || coalesce(age_band, 'na')
  WHEN GROUPING(uk_age_band) = 0 THEN 'uk_age=' || coalesce(uk_age_band, 'na')
  WHEN GROUPING(household_single) = 0 THEN 'household_single=' || CAST(household_single AS VARCHAR)
  ELSE 'total' END"""


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def aggregate(con, year: int, inds: list[Indicator], with_distributions: bool = True) -> pd.DataFrame:
    """Wide table: one row per area x breakdown; per indicator i the columns i{k}_n, i{k}_sw,
    i{k}_sw2, i{k}_swy; per distribution category d{j}_sw; and the cell totals n_all, sw_all,
    sw2_all."""
    # Two levels: (1) one pass over the respondents into fine cells (survey kind x prefecture x
    # sex x age band x UK age band x living alone) carrying every sum; (2) the cells assigned to
    # areas (national '00' and each prefecture's source) and rolled up by GROUPING SETS. Sums,
    # counts and sums of squared weights are additive, so the result equals a direct aggregation.
    aggs = ["count(*) AS n_all", "sum(weight) AS sw_all", "sum(weight * weight) AS sw2_all"]
    for k, ind in enumerate(inds):
        den = f"coalesce(({ind.denominator_sql}), FALSE)"
        num = f"coalesce(({ind.numerator}), FALSE)"
        # CASE inside sum(): faster in DuckDB than FILTER (WHERE ...).
        aggs += [
            f"count(CASE WHEN {den} THEN 1 END) AS i{k}_n",
            f"sum(CASE WHEN {den} THEN weight END) AS i{k}_sw",
            f"sum(CASE WHEN {den} THEN weight * weight END) AS i{k}_sw2",
            f"sum(CASE WHEN {den} AND {num} THEN weight END) AS i{k}_swy",
            f"count(CASE WHEN {den} AND {num} THEN 1 END) AS i{k}_ny",
        ]  # for the audit
    if with_distributions:
        j = 0
        for q, cats in DISTRIBUTION_QUESTIONS.items():
            for cat in cats:
                rhs = _sql_literal(cat) if q == "ucla_band" else cat
                aggs += [
                    f"sum(CASE WHEN {q} = {rhs} THEN weight END) AS d{j}_sw",
                    f"count(CASE WHEN {q} = {rhs} THEN 1 END) AS d{j}_n",
                ]  # for the audit
                j += 1
    aliases = [a.rsplit(" AS ", 1)[1] for a in aggs]
    dims = "survey_kind, pref_code, sex, age_band, uk_age_band, household_single"
    sql = f"""
WITH resp0 AS (
  SELECT *, {UCLA_SCORE_SQL} AS ucla_score FROM survey_responses WHERE survey_year = $year
), resp AS (
  SELECT *, {UCLA_BAND_SQL} AS ucla_band FROM resp0
), cells AS (
  SELECT {dims},
  {", ".join(aggs)}
  FROM resp GROUP BY {dims}
), {_area_assignment_sql("cells")}
SELECT area_code, {_BREAKDOWN_SQL} AS breakdown,
  {", ".join(f"sum({a}) AS {a}" for a in aliases)}
FROM assigned GROUP BY GROUPING SETS ((area_code), (area_code, sex), (area_code, age_band),
  (area_code, uk_age_band), (area_code, household_single))"""
    try:
        return con.execute(sql, {"year": year}).df()
    except duckdb.Error as exc:
        # Name the catalogue entry whose expression DuckDB rejected.
        for ind in inds:
            try:
                con.execute(
                    _assigned_sql() + f"\nSELECT count(*) FROM assigned WHERE "
                    f"({ind.numerator}) OR ({ind.denominator_sql})",
                    {"year": -1},
                )
            except duckdb.Error as inner:
                raise DataError(
                    str(config.INDICATOR_CATALOGUE),
                    "numerator/denominator is not a valid SQL expression",
                    column=ind.id,
                    detail=str(inner).splitlines()[0],
                ) from exc
        raise


def area_sources(
    con, year: int, effects: dict[str, float] | None = None, inds: list[Indicator] | None = None
) -> pd.DataFrame:
    """Per area of round ``year``: source kind ('national', 'own', 'subsample'), survey ids and the
    design effects (``effects`` default: ``config.design_effects()``; ``inds``: the survey
    indicators, default the catalogue's): ``deff_by_indicator`` ({indicator_id: deff} for an area
    whose survey carries its sample design and has no TSUNAGARI_DEFF entry: estimated by Taylor
    linearisation, ``survey_deffs``; else None), ``deff`` (the area's deff when it does not vary by
    indicator, else the largest of ``deff_by_indicator``; ``area_deff``) and ``deff_method``
    ('configured', 'estimated' or 'default', the precedence in ``config``)."""
    sql = (
        _assigned_sql()
        + """
SELECT area_code,
  CASE WHEN area_code = '00' THEN 'national'
       WHEN bool_or(survey_kind = 'prefecture') THEN 'own' ELSE 'subsample' END AS source_kind,
  string_agg(DISTINCT survey_id, '、' ORDER BY survey_id) AS survey_ids
FROM assigned GROUP BY area_code"""
    )
    src = con.execute(sql, {"year": year}).df()
    effects = config.design_effects() if effects is None else effects
    if inds is None:
        inds = [i for i in load_catalogue() if i.source == "survey"]
    estimated = survey_deffs(con, year, inds, effects)
    by_ind, method = _area_indicator_deffs(src, effects, estimated)
    return src.assign(deff=area_deff(src, effects, estimated), deff_method=method, deff_by_indicator=by_ind)


def _has_design_columns(con) -> bool:
    """The warehouse's survey table has the sample design columns (a warehouse made before them,
    not yet written by ingest, has not)."""
    have = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'survey_responses'"
        ).fetchall()
    }
    return set(schema.SURVEY_DESIGN_COLUMNS) <= have


DEFF_COLUMNS = [
    "survey_id",
    "survey_kind",
    "indicator_id",
    "p",
    "variance",
    "n_eff",
    "deff",
    "n_strata",
    "n_psu",
    "n_lonely",
]


def survey_deffs(con, year: int, inds: list[Indicator], effects: dict[str, float] | None = None) -> pd.DataFrame:
    """The design effects estimated from the data for every survey of round ``year`` that carries
    its sample design (columns stratum, psu), per indicator, at the survey's total level: one SQL
    pass sums w·d and w·d·y per survey x stratum x PSU (d: the indicator's denominator, y: its
    numerator), then ``survey_design.ratio_variance`` (Taylor linearisation, PSUs with replacement
    within strata, single-PSU strata 'adjust') and ``survey_design.design_effect`` (relative to
    p(1 − p) / Kish n_eff: what the design adds beyond the weighting). A survey with a TSUNAGARI_DEFF
    entry (``effects``; its survey_id, its kind or '*') is not estimated: the entry wins. Columns
    ``DEFF_COLUMNS``; deff NaN when p is 0 or 1."""
    from pipelines.domain import survey_design

    effects = config.design_effects() if effects is None else effects
    empty = pd.DataFrame(
        {
            c: pd.Series(dtype=object if c in ("survey_id", "survey_kind", "indicator_id") else float)
            for c in DEFF_COLUMNS
        }
    )
    if not inds or not has_table(con, "survey_responses") or not _has_design_columns(con):
        return empty
    if "*" in effects:  # one number for every survey: nothing is estimated
        return empty
    aggs = []
    for k, ind in enumerate(inds):
        den = f"coalesce(({ind.denominator_sql}), FALSE)"
        num = f"coalesce(({ind.numerator}), FALSE)"
        aggs += [
            f"sum(CASE WHEN {den} THEN weight ELSE 0 END) AS i{k}_sw",
            f"sum(CASE WHEN {den} AND {num} THEN weight ELSE 0 END) AS i{k}_swy",
            f"sum(CASE WHEN {den} THEN weight * weight ELSE 0 END) AS i{k}_sw2",
        ]
    sql = f"""
WITH resp0 AS (
  SELECT *, {UCLA_SCORE_SQL} AS ucla_score FROM survey_responses
  WHERE survey_year = $year AND stratum IS NOT NULL AND psu IS NOT NULL
), resp AS (
  SELECT *, {UCLA_BAND_SQL} AS ucla_band FROM resp0
)
SELECT survey_id, any_value(survey_kind) AS survey_kind, stratum, psu, {", ".join(aggs)}
FROM resp GROUP BY survey_id, stratum, psu ORDER BY survey_id, stratum, psu"""
    psus = con.execute(sql, {"year": year}).df()
    rows = []
    for sid, g in psus.groupby("survey_id", sort=True):
        kind = str(g["survey_kind"].iloc[0])
        if config.configured_deff(kind, str(sid), effects) is not None:
            continue
        sw = g[[f"i{k}_sw" for k in range(len(inds))]].to_numpy(dtype=float)
        swy = g[[f"i{k}_swy" for k in range(len(inds))]].to_numpy(dtype=float)
        sw2 = g[[f"i{k}_sw2" for k in range(len(inds))]].to_numpy(dtype=float).sum(axis=0)
        dv = survey_design.ratio_variance(g["stratum"].to_numpy(), sw, swy)
        n_eff = np.asarray(stats.effective_n(dv.sum_w, sw2), dtype=float)
        deff = survey_design.design_effect(dv.variance, dv.p, n_eff)
        rows.append(
            pd.DataFrame(
                {
                    "survey_id": sid,
                    "survey_kind": kind,
                    "indicator_id": [i.id for i in inds],
                    "p": dv.p,
                    "variance": dv.variance,
                    "n_eff": n_eff,
                    "deff": deff,
                    "n_strata": dv.n_strata,
                    "n_psu": dv.n_psu,
                    "n_lonely": dv.n_lonely,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)[DEFF_COLUMNS] if rows else empty


def _survey_deff(
    kind: str, survey_id: str | None, effects: dict[str, float], estimated: dict[str, dict[str, float]]
) -> tuple[float | dict[str, float], str]:
    """(deff, method) of one survey by the precedence of ``config``: its TSUNAGARI_DEFF entry
    ('configured'), else its estimated deffs ({indicator_id: deff}; an indicator whose deff could
    not be estimated, p = 0 or 1, gets DEFAULT_DEFF) ('estimated'), else DEFAULT_DEFF ('default')."""
    found = config.configured_deff(kind, survey_id, effects)
    if found is not None:
        return found, "configured"
    if survey_id in estimated:
        return {i: (d if d == d else config.DEFAULT_DEFF) for i, d in estimated[survey_id].items()}, "estimated"
    return config.DEFAULT_DEFF, "default"


def _estimated_map(estimated: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    if estimated is None or not len(estimated):
        return {}
    return {
        str(sid): dict(zip(g["indicator_id"], g["deff"].astype(float)))
        for sid, g in estimated.groupby("survey_id", sort=False)
    }


def _area_surveys(src: pd.DataFrame):
    """Per area: [(survey kind, survey id)] of its source (the national survey's for '00' and the
    subsample areas, the own surveys for an area with them; [(kind, None)] when it has none)."""
    for kind, ids in zip(src["source_kind"], src["survey_ids"].fillna("")):
        survey_ids = [i for i in str(ids).split("、") if i]
        survey_kind = "prefecture" if kind == "own" else "national"
        yield [(survey_kind, i) for i in survey_ids] or [(survey_kind, None)]


def _area_indicator_deffs(
    src: pd.DataFrame, effects: dict[str, float], estimated: pd.DataFrame | None
) -> tuple[list, list[str]]:
    """Per area: {indicator_id: deff} when its deff varies by indicator (an estimated survey; the
    largest over its surveys), else None; and the area's deff method ('estimated' wins when any of
    its surveys is estimated, then 'configured', then 'default')."""
    est = _estimated_map(estimated)
    by_ind, methods = [], []
    for surveys in _area_surveys(src):
        found = [_survey_deff(k, i, effects, est) for k, i in surveys]
        kinds = {m for _, m in found}
        method = next(m for m in ("estimated", "configured", "default") if m in kinds)
        if method == "estimated":
            ids = set().union(*(d for d, m in found if m == "estimated"))
            merged = {i: max(d[i] if isinstance(d, dict) else d for d, _ in found) for i in sorted(ids)}
            by_ind.append(merged)
        else:
            by_ind.append(None)
        methods.append(method)
    return by_ind, methods


def _source_note(kind: str, survey_ids: str, area_name: str, n: int | float) -> str:
    n_txt = f"{int(n):,}" if n == n else "0"
    if kind == "national":
        return f"出典: 全国調査 {survey_ids} (n={n_txt})"
    if kind == "own":
        return f"出典: {area_name}{OWN_SURVEY_MARK} {survey_ids} (n={n_txt})"
    if kind == "subsample":
        return f"出典: 全国調査の当該県回答者 (n={n_txt})"
    return "出典: 該当する回答者なし (n=0)"


def survey_cells(wide: pd.DataFrame, inds: list[Indicator]) -> pd.DataFrame:
    """Wide aggregates -> one row per area x indicator x breakdown, on the full grid (cells with no
    respondents get n = 0). A loop over indicators (a handful), never over areas."""
    parts = []
    for k, ind in enumerate(inds):
        part = wide[["area_code", "breakdown", f"i{k}_n", f"i{k}_sw", f"i{k}_sw2", f"i{k}_swy", f"i{k}_ny"]]
        part = part.set_axis(["area_code", "breakdown", "n", "sw", "sw2", "swy", "ny"], axis=1)
        grid = pd.MultiIndex.from_product([AREA_CODES, ind.breakdowns], names=["area_code", "breakdown"]).to_frame(
            index=False
        )
        part = grid.merge(part, on=["area_code", "breakdown"], how="left")
        part.insert(0, "indicator_id", ind.id)
        part["polarity"] = ind.polarity
        part["denominator"] = ind.denominator_sql.strip()  # cells of one denominator share a base
        parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    long["n"] = long["n"].fillna(0).astype("int64")
    long["ny"] = long["ny"].fillna(0).astype("int64")
    for c in ("sw", "sw2", "swy"):
        long[c] = long[c].astype(float).fillna(0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        long["p"] = np.where(long["sw"] > 0, long["swy"] / long["sw"].where(long["sw"] > 0, 1), np.nan)
    long["n_eff"] = stats.effective_n(long["sw"].to_numpy(), long["sw2"].to_numpy())
    return long


SECONDARY_NOTE = "secondary suppression / 二次秘匿"
_N_IN_NOTE = re.compile(r"\(n=[0-9,]+\)")


def extreme_small_base(n, ny) -> np.ndarray:
    """The 0% / 100% rule: a survey indicator cell whose unweighted base is below
    ``config.REFERENCE_BASE`` and in which no one or everyone in the sample gave the answer (count 0
    or equal to the base). It is published as a reference value (参考値) with its Wilson interval
    and a note, never as a bare 0 or 100: the interval (e.g. 0.0-6.9) says what the sample allows.
    It is not suppressed: the respondents of a sample survey are not identifiable, and suppressing
    it hid, through the shared bases, every headline total of the smallest prefectures. Cells with
    no respondents are not meant here."""
    n, ny = np.asarray(n), np.asarray(ny)
    return (n > 0) & (n < config.REFERENCE_BASE) & ((ny == 0) | (ny == n))


def suppression_frame(
    cells: pd.DataFrame, src: pd.DataFrame, dist: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, set[str]]:
    """The input of ``audit.protect`` for one round: (frame, subsample areas). ``frame`` has one
    row per indicator x area x breakdown of ``cells`` (``survey_cells``: base n, numerator count
    ny, denominator), then one per question x category x area x breakdown of ``dist``
    (``distribution_cells``: base n_all, count ny), with columns group (the denominator: cells of
    one group, area and breakdown share a base; 'TRUE' for the distributions), measure, area_code,
    breakdown, n, y and primary (primary suppression: base < MIN_BASE, or for an indicator an
    effective size n_eff below MIN_BASE or unknown). The subsample areas are the prefectures estimated from
    the national survey's respondents (``area_sources``)."""
    n = cells["n"].to_numpy()
    primary = (stats.base_status(n) == "suppressed") | ~(
        cells["n_eff"].to_numpy() >= config.MIN_BASE
    )  # n_eff NaN or < 30 too (#15)
    subsample = set(src.loc[src.source_kind == "subsample", "area_code"])
    frame = pd.DataFrame(
        {
            "group": cells["denominator"].to_numpy(),
            "measure": cells["indicator_id"].to_numpy(),
            "area_code": cells["area_code"].to_numpy(),
            "breakdown": cells["breakdown"].to_numpy(),
            "n": n,
            "y": cells["ny"].to_numpy(),
            "primary": primary,
        }
    )
    if dist is not None and len(dist):
        dn = dist["n_all"].to_numpy()
        frame = pd.concat(
            [
                frame,
                pd.DataFrame(
                    {
                        "group": "TRUE",
                        "measure": (
                            "dist:" + dist["question"].astype(str) + "=" + dist["category"].astype(str)
                        ).to_numpy(),
                        "area_code": dist["area_code"].to_numpy(),
                        "breakdown": dist["breakdown"].to_numpy(),
                        "n": dn,
                        "y": dist["ny"].to_numpy(),
                        "primary": stats.base_status(dn) == "suppressed",
                    }
                ),
            ],
            ignore_index=True,
        )
    return frame, subsample


def suppress(
    cells: pd.DataFrame, src: pd.DataFrame, dist: pd.DataFrame | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(primary, secondary) suppression flags of the rows of ``cells`` and the suppression flags of
    the rows of ``dist``: primary as in ``suppression_frame``, secondary = ``audit.protect`` over
    both tables at once (the distributions share the base of the indicators whose denominator is
    every respondent)."""
    from pipelines.domain.audit import protect

    frame, subsample = suppression_frame(cells, src, dist)
    primary = frame["primary"].to_numpy(dtype=bool)
    hidden = primary | protect(frame, subsample)
    k = len(cells)
    return primary[:k], hidden[:k] & ~primary[:k], hidden[k:]


# How each row was estimated (column `source`): the national survey (area '00'), the national
# survey's respondents in the prefecture, the prefecture's own survey, programme data; 'none' when
# the area has no respondents in the round.
SOURCE_NAMES = {"national": "national", "subsample": "national_subsample", "own": "own_survey", "none": "none"}


def area_deff(src: pd.DataFrame, effects: dict[str, float], estimated: pd.DataFrame | None = None) -> pd.Series:
    """Design effect per area of one round: the national survey's for '00' and the subsample areas,
    the own survey's for an area with one (the largest when it has several). Each survey's deff by
    the precedence of ``config``: its TSUNAGARI_DEFF entry, else (``estimated``: ``survey_deffs``)
    the largest of its estimated per-indicator deffs, else DEFAULT_DEFF. The per-indicator values
    that ``with_intervals`` uses are ``area_sources``' ``deff_by_indicator``."""
    est = _estimated_map(estimated)
    out = []
    for surveys in _area_surveys(src):
        found = [_survey_deff(k, i, effects, est)[0] for k, i in surveys]
        out.append(max(max(d.values()) if isinstance(d, dict) else d for d in found))
    return pd.Series(out, index=src.index, dtype=float)


@dataclass
class RoundData:
    """The survey cells of one round after suppression: one row per indicator x area x breakdown
    with p (NaN when suppressed), sums, n_eff, n_design (n_eff / deff), source_kind; plus the wide
    aggregate (for the distributions) and the per-area sources."""

    year: int
    cells: pd.DataFrame
    wide: pd.DataFrame
    src: pd.DataFrame
    dist: pd.DataFrame | None = None  # distribution_cells
    dist_hidden: np.ndarray | None = None  # its suppression flags (the audit's)


def with_intervals(cells: pd.DataFrame, src: pd.DataFrame, primary: np.ndarray, secondary: np.ndarray) -> pd.DataFrame:
    """``cells`` (``survey_cells``) with the suppression flags (status, secondary, suppressed), the
    area's source (``area_sources``: source_kind, survey_ids, deff), n_design = n_eff / deff and the
    95% Wilson interval (lower, upper) on n_design. ``deff`` is the row's: its indicator's entry of
    the area's ``deff_by_indicator`` (a survey with its sample design: estimated by Taylor
    linearisation) when there is one, else the area's ``deff``. Suppressed cells carry no value: p,
    lower and upper are NaN (neither shown nor compared)."""
    cur = cells.copy()
    cur["status"] = stats.base_status(cur["n"].to_numpy())
    cur["secondary"] = secondary
    cur["suppressed"] = primary | secondary
    per_ind = _indicator_deff_frame(src)
    cur = cur.merge(src.drop(columns=["deff_by_indicator"], errors="ignore"), on="area_code", how="left")
    cur["source_kind"] = cur["source_kind"].fillna("none")
    cur["survey_ids"] = cur["survey_ids"].fillna("")
    if len(per_ind):
        cur = cur.merge(per_ind, on=["area_code", "indicator_id"], how="left")
        cur["deff"] = cur["deff_indicator"].fillna(cur["deff"])
        cur = cur.drop(columns=["deff_indicator"])
    cur["deff"] = cur["deff"].fillna(config.DEFAULT_DEFF)
    cur["n_design"] = stats.design_n(cur["n_eff"].to_numpy(), cur["deff"].to_numpy())
    lower, upper = stats.wilson_interval(cur["p"].to_numpy(), cur["n_design"].to_numpy())
    cur["lower"], cur["upper"] = lower, upper
    for c in ("p", "lower", "upper"):
        cur.loc[cur["suppressed"], c] = np.nan
    return cur


def _indicator_deff_frame(src: pd.DataFrame) -> pd.DataFrame:
    """area_code, indicator_id, deff_indicator from ``src['deff_by_indicator']`` (empty without)."""
    rows = [
        (a, i, float(d))
        for a, m in zip(src["area_code"], src.get("deff_by_indicator", [None] * len(src)))
        if isinstance(m, dict)
        for i, d in m.items()
    ]
    return pd.DataFrame(rows, columns=["area_code", "indicator_id", "deff_indicator"])


def round_data(con, year: int, inds: list[Indicator], effects: dict[str, float] | None = None) -> RoundData:
    """The survey cells of round ``year`` after suppression, with their intervals: ``aggregate`` ->
    ``survey_cells`` / ``distribution_cells`` -> ``area_sources`` (design effects: configured,
    estimated by Taylor linearisation for a survey with its sample design, or the default) ->
    ``suppress`` -> ``with_intervals`` (the steps the indicators notebook shows one by one)."""
    # The distributions are always aggregated: they share their suppression with the indicators on
    # all respondents (the audit), so a round used only for the change column is suppressed as
    # when it is published.
    wide = aggregate(con, year, inds)
    cells = survey_cells(wide, inds)
    src = area_sources(con, year, effects, inds)
    dist = distribution_cells(wide)
    primary, secondary, dist_hidden = suppress(cells, src, dist)
    return RoundData(year, with_intervals(cells, src, primary, secondary), wide, src, dist, dist_hidden)


def design_effect_summary(
    con, effects: dict[str, float] | None = None, inds: list[Indicator] | None = None
) -> pd.DataFrame:
    """The design effect each survey in the warehouse gets (every round), for the quality page: one
    row per survey with survey_id, survey_kind, year, n (respondents), method ('estimated':
    Taylor linearisation, 'configured': TSUNAGARI_DEFF, 'default': DEFAULT_DEFF), deff_min /
    deff_max over the indicators (the single value otherwise), n_indicators estimated, and the
    design's n_strata, n_psu, n_lonely (strata with one PSU) when it carries one."""
    cols = [
        "survey_id",
        "survey_kind",
        "year",
        "n",
        "method",
        "deff_min",
        "deff_max",
        "n_indicators",
        "n_strata",
        "n_psu",
        "n_lonely",
    ]
    if not has_table(con, "survey_responses"):
        return pd.DataFrame(columns=cols)
    effects = config.design_effects() if effects is None else effects
    if inds is None:
        inds = [i for i in load_catalogue() if i.source == "survey"]
    surveys = con.execute(
        "SELECT survey_id, any_value(survey_kind), any_value(survey_year), count(*) "
        "FROM survey_responses GROUP BY survey_id ORDER BY 3, 2, 1"
    ).fetchall()
    est = pd.concat(
        [survey_deffs(con, y, inds, effects) for y in sorted({int(r[2]) for r in surveys})]
        or [pd.DataFrame(columns=DEFF_COLUMNS)],
        ignore_index=True,
    )
    rows = []
    for sid, kind, year, n in surveys:
        e = est[est["survey_id"] == sid]
        deff, method = _survey_deff(str(kind), str(sid), effects, _estimated_map(e))
        values = list(deff.values()) if isinstance(deff, dict) else [deff]
        rows.append(
            {
                "survey_id": sid,
                "survey_kind": kind,
                "year": int(year),
                "n": int(n),
                "method": method,
                "deff_min": float(min(values)),
                "deff_max": float(max(values)),
                "n_indicators": int(e["deff"].notna().sum()) if len(e) else 0,
                "n_strata": int(e["n_strata"].iloc[0]) if len(e) else pd.NA,
                "n_psu": int(e["n_psu"].iloc[0]) if len(e) else pd.NA,
                "n_lonely": int(e["n_lonely"].iloc[0]) if len(e) else pd.NA,
            }
        )
    return pd.DataFrame(rows, columns=cols)


SENSITIVITY_DEFFS = (1.0, 1.5, 2.0)
_FLAGS = ("better", "worse", "higher", "lower")


def comparison_flags(cur: pd.DataFrame) -> dict[str, int]:
    """Of the prefecture rows of a round (``compare_with_national`` output; national rows and
    programme data left out): ``n_tests`` (rows compared with the national figure), ``n_flagged``
    (better / worse, or higher / lower for an indicator without a direction of good),
    ``n_better``, ``n_worse`` and ``expected`` (n_tests x α: flags expected by chance alone)."""
    rows = cur[(cur["area_code"] != NATIONAL) & cur["source_kind"].isin(["subsample", "own"])]
    tested = rows["comparison_method"] != "none"
    flagged = rows["comparison"].isin(_FLAGS)
    m = stats.multiplicity(int(tested.sum()), int(flagged.sum()))
    return {
        "n_tests": m["n_tests"],
        "n_flagged": m["n_flagged"],
        "n_better": int((rows["comparison"] == "better").sum()),
        "n_worse": int((rows["comparison"] == "worse").sum()),
        "expected": m["expected_false"],
    }


def deff_sensitivity(
    con,
    year: int,
    deffs: tuple[float, ...] = SENSITIVITY_DEFFS,
    inds: list[Indicator] | None = None,
    effects: dict[str, float] | None = None,
) -> pd.DataFrame:
    """The sensitivity line of round ``year``: the round recomputed with every survey's design
    effect set to each of ``deffs`` (``effects={'*': d}``), and as published (``effects``: the
    design effects in force), then ``compare_with_national``, with the prefecture rows flagged vs
    national and the number expected by chance (``comparison_flags``). One row per setting:
    ``setting`` ('1.0', '1.5', '2.0', 'used'), ``deff`` (NaN for 'used'), then the counts.

    Suppression does not depend on the design effect (it is decided on unweighted bases and Kish's
    n_eff), so ``round_data`` runs once and each setting redoes ``area_sources`` and
    ``with_intervals`` on its cells and suppression flags: the same cells as ``round_data(con,
    year, inds, {'*': d})`` (tested), without computing the audit four times."""
    if inds is None:
        inds = [i for i in load_catalogue() if i.source == "survey"]
    used = config.design_effects() if effects is None else effects
    rows = []
    with _single_thread(con):
        base = round_data(con, year, inds, used)
        cells = survey_cells(base.wide, inds)
        secondary = base.cells["secondary"].to_numpy(dtype=bool)
        primary = base.cells["suppressed"].to_numpy(dtype=bool) & ~secondary
        for d in deffs:
            eff = {"*": float(d)}
            cur = with_intervals(cells, area_sources(con, year, eff, inds), primary, secondary)
            rows.append({"setting": f"{d:.1f}", "deff": float(d), **comparison_flags(compare_with_national(cur))})
        rows.append(
            {"setting": "used", "deff": float("nan"), **comparison_flags(compare_with_national(base.cells.copy()))}
        )
    return pd.DataFrame(rows)


def compare_with_national(cur: pd.DataFrame) -> pd.DataFrame:
    """Columns p_nat, comparison, comparison_method of the round's cells (see stats module doc):
    own survey vs the national estimate (independent samples, both uncertainties); national
    subsample vs the rest of the nation (the area's respondents removed from the national sums).
    Both sides enter the test as published (``_as_tested``). What each label was tested against,
    NaN on a row not tested: p_ref, n_ref (the reference's share and effective size), cmp_diff,
    cmp_lower, cmp_upper (area - reference and its Newcombe interval, proportions), cmp_p (Fisher's
    p when Fisher decided)."""
    nat = cur.loc[cur.area_code == NATIONAL, ["indicator_id", "breakdown", "p", "sw", "sw2", "swy", "n_design", "deff"]]
    nat = nat.rename(columns={c: f"{c}_nat" for c in nat.columns[2:]})
    cur = cur.merge(nat, on=["indicator_id", "breakdown"], how="left")
    p_rest, n_rest = stats.rest_of_total(
        cur["sw_nat"], cur["sw2_nat"], cur["swy_nat"], cur["sw"], cur["sw2"], cur["swy"]
    )
    n_rest = n_rest / cur["deff_nat"].fillna(config.DEFAULT_DEFF).to_numpy()
    kind = cur["source_kind"].to_numpy()
    sub = kind == "subsample"
    p_ref = np.where(sub, p_rest, cur["p_nat"].to_numpy(dtype=float))
    n_ref = np.where(sub, n_rest, cur["n_design_nat"].to_numpy(dtype=float))
    tested = np.isin(kind, ("subsample", "own"))
    p_area = np.where(tested, cur["p"].to_numpy(dtype=float), np.nan)
    p_ref = np.where(tested & ~np.isnan(cur["p_nat"].to_numpy(dtype=float)), p_ref, np.nan)
    p1, n1 = _as_tested(p_area, cur["n_design"].to_numpy(dtype=float))
    p2, n2 = _as_tested(p_ref, n_ref)
    res = stats.difference_test(p1, n1, p2, n2)
    cur["comparison"] = stats.comparison_label(res["direction"], res["significant"], cur["polarity"].to_numpy())
    method = res["method"].copy()
    judged = method != "none"
    method[sub & judged] = [m + "_rest" for m in method[sub & judged]]
    cur["comparison_method"] = method
    # Only a judged row carries its reference: a suppressed area's rest of the nation together with
    # the national value would give its value away.
    cur["p_ref"], cur["n_ref"] = np.where(judged, p_ref, np.nan), np.where(judged, n_ref, np.nan)
    for col, key in (("cmp_diff", "diff"), ("cmp_lower", "lower"), ("cmp_upper", "upper"), ("cmp_p", "p_value")):
        cur[col] = np.where(judged, res[key], np.nan)
    return cur


def change_since_previous(cur: pd.DataFrame, prev: RoundData | None) -> pd.DataFrame:
    """Columns previous_year, prev_kind, source_changed, change_vs_previous, change_method, and
    what each change was tested against (NaN on a row not tested): p_prev_shown, n_prev_shown (the
    previous round's share and effective size; also on a source-break row, whose two values are
    shown), chg_diff, chg_lower, chg_upper (proportions), chg_p (Fisher's p when Fisher decided).

    A row whose previous round came from another source (``source_changed``: e.g. the national
    subsample then, the prefecture's own survey now) is not tested: change 'not_compared', method
    'source_break' (DESIGN.md: a change across a source break is shown, not tested). The test takes
    both rounds as published (``_as_tested``)."""
    if prev is None:
        cur["previous_year"] = pd.NA
        cur["prev_kind"] = None
        cur["change"] = "not_compared"
        cur["change_method"] = "none"
        cur["source_changed"] = False
        for col in ("p_prev_shown", "n_prev_shown", "chg_diff", "chg_lower", "chg_upper", "chg_p"):
            cur[col] = np.nan
        return cur
    pc = prev.cells[["indicator_id", "area_code", "breakdown", "p", "n_design", "source_kind"]]
    cur = cur.merge(
        pc.rename(columns={"p": "p_prev", "n_design": "n_design_prev", "source_kind": "prev_kind"}),
        on=["indicator_id", "area_code", "breakdown"],
        how="left",
    )
    known = cur["prev_kind"].isin(list(SOURCE_NAMES)) & (cur["prev_kind"] != "none") & (cur["source_kind"] != "none")
    cur["source_changed"] = (known & (cur["prev_kind"] != cur["source_kind"])).astype(bool)
    brk = cur["source_changed"].to_numpy(dtype=bool)
    p_now = cur["p"].to_numpy(dtype=float)
    p_prev = cur["p_prev"].to_numpy(dtype=float)
    n_prev = cur["n_design_prev"].to_numpy(dtype=float)
    p1, n1 = _as_tested(p_now, cur["n_design"].to_numpy(dtype=float))
    p2, n2 = _as_tested(np.where(brk, np.nan, p_prev), n_prev)
    res = stats.difference_test(p1, n1, p2, n2)
    cur["change"] = stats.change_label(res["direction"], res["significant"])
    judged = res["method"] != "none"
    cur["change_method"] = np.where(brk, "source_break", res["method"]).astype(object)
    cur["previous_year"] = prev.year
    shown = (judged | brk) & ~np.isnan(p_now) & ~np.isnan(p_prev)
    cur["p_prev_shown"], cur["n_prev_shown"] = np.where(shown, p_prev, np.nan), np.where(shown, n_prev, np.nan)
    for col, key in (("chg_diff", "diff"), ("chg_lower", "lower"), ("chg_upper", "upper"), ("chg_p", "p_value")):
        cur[col] = np.where(judged, res[key], np.nan)
    return cur


def _as_tested(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A share (0..1) and an effective size as published in the downloads (percent to 0.1 point,
    size to 0.1: ``conventions.published_share`` / ``published_n``): the figures every test of
    ``compare_with_national`` and ``change_since_previous`` takes, so that anyone can recompute a
    label from a download row."""
    from pipelines.domain.conventions import published_n, published_share

    return (published_share(np.asarray(p, dtype=float) * 100) / 100, published_n(np.asarray(n, dtype=float)))


def survey_tables(rd: RoundData, prev: RoundData | None, names: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The survey rows of round ``rd.year`` of the `indicators` and `distributions` tables:
    ``compare_with_national`` (national rows not compared), ``change_since_previous`` against
    ``prev``, the notes (source, base status, suppression, change of source), and no base published
    for a suppressed row. A row that carries a label also carries what it was tested against
    (reference / previous value and effective size, the difference with its interval, Fisher's p);
    a suppressed row carries none of them."""
    year = rd.year
    cur = compare_with_national(rd.cells.copy())
    nat_rows = cur.area_code == NATIONAL
    cur.loc[nat_rows, ["comparison", "comparison_method"]] = ["not_compared", "none"]
    cur.loc[nat_rows, ["p_ref", "n_ref", "cmp_diff", "cmp_lower", "cmp_upper", "cmp_p"]] = np.nan
    cur = change_since_previous(cur, prev)

    cur["area_name"] = cur["area_code"].map(names)
    notes = [
        _source_note(k, s, a, n)
        for k, s, a, n in zip(cur["source_kind"], cur["survey_ids"], cur["area_name"], cur["n"])
    ]
    kinds = {"national": "全国調査", "own": "独自調査", "subsample": "全国調査の当該県回答者"}
    extreme = extreme_small_base(cur["n"].to_numpy(), cur["ny"].to_numpy())
    for i, (st, sec, sup, n, kind, pk, changed, ext) in enumerate(
        zip(
            cur["status"],
            cur["secondary"],
            cur["suppressed"],
            cur["n"],
            cur["source_kind"],
            cur["prev_kind"],
            cur["source_changed"],
            extreme,
        )
    ):
        # A suppressed row publishes no base: not in n_unweighted / n_effective, not in the note.
        if st == "suppressed":
            notes[i] = _N_IN_NOTE.sub(f"({config.MIN_BASE}人未満)", notes[i], count=1) + f"; n<{config.MIN_BASE} 非表示"
        elif sec:
            notes[i] = _N_IN_NOTE.sub("(回答者数は非公表)", notes[i], count=1) + f"; {SECONDARY_NOTE}"
        elif sup:  # primary on its effective size (n_eff < 30)
            notes[i] = _N_IN_NOTE.sub("(回答者数は非公表)", notes[i], count=1) + f"; n_eff<{config.MIN_BASE} 非表示"
        elif st == "reference":
            notes[i] += f"; 参考値 (n={int(n):,})" + (f"; {EXTREME_NOTE}" if ext else "")
        if changed and kind in kinds and pk in kinds:
            notes[i] += f"; 前回は{kinds[pk]}で出典が異なるため前回との比較はしない"
    cur["note"] = notes

    ind_table = pd.DataFrame(
        {
            "year": year,
            "area_code": cur["area_code"],
            "area_name": cur["area_name"],
            "indicator_id": cur["indicator_id"],
            "breakdown": cur["breakdown"],
            "value": cur["p"] * 100,
            "lower_ci95": cur["lower"] * 100,
            "upper_ci95": cur["upper"] * 100,
            "n_unweighted": pd.array(cur["n"].where(~cur["suppressed"]), dtype="Int64"),
            "n_effective": cur["n_design"].where(~cur["suppressed"]),
            "national_value": cur["p_nat"] * 100,
            "comparison": cur["comparison"],
            "change_vs_previous": cur["change"],
            "suppressed": cur["suppressed"],
            "note": cur["note"],
            "source": cur["source_kind"].map(SOURCE_NAMES),
            "previous_year": cur["previous_year"],
            "source_changed": cur["source_changed"],
            "comparison_method": cur["comparison_method"],
            "change_method": cur["change_method"],
            "design_effect": cur["deff"],
            **_tested_against(cur),
        }
    )
    return ind_table, distribution_table(rd.dist, year, rd.dist_hidden)


def _tested_against(cur: pd.DataFrame) -> dict[str, pd.Series]:
    """The columns reference_value ... change_p_value of ``survey_tables`` (percent and percentage
    points; NaN on every suppressed row, whatever its label columns say)."""
    keep = ~cur["suppressed"].to_numpy(dtype=bool)
    cols = {
        "reference_value": ("p_ref", 100),
        "reference_n_effective": ("n_ref", 1),
        "difference": ("cmp_diff", 100),
        "difference_lower_ci95": ("cmp_lower", 100),
        "difference_upper_ci95": ("cmp_upper", 100),
        "p_value": ("cmp_p", 1),
        "previous_value": ("p_prev_shown", 100),
        "previous_n_effective": ("n_prev_shown", 1),
        "change_difference": ("chg_diff", 100),
        "change_lower_ci95": ("chg_lower", 100),
        "change_upper_ci95": ("chg_upper", 100),
        "change_p_value": ("chg_p", 1),
    }
    return {
        name: pd.Series(np.where(keep, cur[src].to_numpy(dtype=float) * k, np.nan), index=cur.index)
        for name, (src, k) in cols.items()
    }


def distribution_cells(wide: pd.DataFrame) -> pd.DataFrame:
    """One row per question x category x area x breakdown: base n_all (all respondents of the cell),
    weighted sums, and the unweighted count ny of the category (for the audit)."""
    parts = []
    j = 0
    keyed = wide.set_index(["area_code", "breakdown"])
    for q, cats in DISTRIBUTION_QUESTIONS.items():
        bds = BREAKDOWNS_COMMON + (BREAKDOWNS_UK if q in UK_DISTRIBUTION_QUESTIONS else [])
        grid = pd.MultiIndex.from_product([AREA_CODES, bds], names=["area_code", "breakdown"])
        # every column of this question's cells, aligned with the grid once (not a merge per category)
        cols = ["n_all", "sw_all", "sw2_all"] + [f"d{k}_{x}" for k in range(j, j + len(cats)) for x in ("sw", "n")]
        aligned = keyed[cols].reindex(grid)
        base = grid.to_frame(index=False)
        for c in ("n_all", "sw_all", "sw2_all"):
            base[c] = aligned[c].to_numpy()
        for cat, label in cats.items():
            part = base.copy()
            part["question"], part["category"], part["category_label"] = q, cat, label
            part["swy"] = aligned[f"d{j}_sw"].to_numpy()
            part["ny"] = aligned[f"d{j}_n"].fillna(0).astype("int64").to_numpy()
            parts.append(part)
            j += 1
    d = pd.concat(parts, ignore_index=True)
    d["n_all"] = d["n_all"].fillna(0).astype("int64")
    return d


def distribution_table(d: pd.DataFrame, year: int, hidden: np.ndarray) -> pd.DataFrame:
    """The distributions table from ``distribution_cells`` and the rows' suppression flags (the
    audit's, shared with the indicators on all respondents). A suppressed row has no value, no
    interval and no base."""
    sw = d["sw_all"].astype(float).fillna(0.0).to_numpy()
    swy = d["swy"].astype(float).fillna(0.0).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(sw > 0, swy / np.where(sw > 0, sw, 1.0), np.nan)
    n_eff = stats.effective_n(sw, d["sw2_all"].astype(float).fillna(0.0).to_numpy())
    lower, upper = stats.wilson_interval(p, n_eff)
    suppressed = np.asarray(hidden, dtype=bool) | (stats.base_status(d["n_all"].to_numpy()) == "suppressed")
    p, lower, upper = (np.where(suppressed, np.nan, a) for a in (p, lower, upper))
    n_pub = pd.array(np.where(suppressed, 0, d["n_all"].to_numpy()), dtype="Int64")
    n_pub[suppressed] = pd.NA
    return pd.DataFrame(
        {
            "year": year,
            "area_code": d["area_code"],
            "question": d["question"],
            "breakdown": d["breakdown"],
            "category": d["category"],
            "category_label": d["category_label"],
            "value": p * 100,
            "lower_ci95": lower * 100,
            "upper_ci95": upper * 100,
            "n_unweighted": n_pub,
            "suppressed": suppressed,
        }
    )


# --- Programme indicators ------------------------------------------------------------------------


def population_16plus() -> pd.DataFrame:
    """area_code, pop16 (estimate: 2020 census total x POP_16PLUS_FACTOR)."""
    pref = prefectures()
    return pd.DataFrame(
        {
            "area_code": [f"{int(c):02d}" for c in pref.pref_code],
            "pop16": pref.population_2020.astype(float) * POP_16PLUS_FACTOR,
        }
    )


def _programme_indicators(con, year: int, inds: list[Indicator], names: dict[str, str]) -> pd.DataFrame:
    metrics = set(schema.PROGRAMME_METRICS)
    has = has_table(con, "programme")
    if has:
        metrics |= {r[0] for r in con.execute("SELECT DISTINCT metric_id FROM programme").fetchall()}
    metrics = sorted(m for m in metrics if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", m))
    pivot = ", ".join(f"sum(value) FILTER (WHERE metric_id = {_sql_literal(m)}) AS {m}" for m in metrics)
    exprs = ", ".join(f"CAST(({ind.numerator}) AS DOUBLE) AS x{k}" for k, ind in enumerate(inds))
    if has:
        sql = (
            f"WITH p AS (SELECT pref_code, {pivot} FROM programme WHERE fiscal_year = ? "
            f"GROUP BY pref_code) SELECT lpad(CAST(pref_code AS VARCHAR), 2, '0') AS area_code, "
            f"{exprs} FROM p"
        )
        try:
            wide = con.execute(sql, [year]).df()
        except duckdb.Error as exc:
            raise DataError(
                str(config.INDICATOR_CATALOGUE),
                "programme numerator is not a valid expression over metric ids",
                detail=str(exc).splitlines()[0],
            ) from exc
    else:
        wide = pd.DataFrame(
            {"area_code": pd.Series(dtype=str), **{f"x{k}": pd.Series(dtype=float) for k in range(len(inds))}}
        )
    earlier = [y for y in programme_years(con) if y < year]
    prev_fy = max(earlier) if earlier else None
    pop = population_16plus()
    prefs = pop.merge(wide, on="area_code", how="left")
    fy = f"令和{year - 2018}年度 (FY{year})"
    rows = []
    for k, ind in enumerate(inds):
        x = prefs[f"x{k}"].astype(float).to_numpy()
        present = ~np.isnan(x)
        if ind.denominator == "population_16plus":
            value = stats.rate_per_10000(x, prefs["pop16"].to_numpy())
            nat = (
                stats.rate_per_10000(float(x[present].sum()), float(prefs["pop16"][present].sum()))
                if present.any()
                else np.nan
            )
            note_p = f"出典: 事業データ {fy}; 16歳以上人口は推計 (2020年国勢調査総人口×{POP_16PLUS_FACTOR})"
            note_n = note_p + f"; 全国値はデータのある{int(present.sum())}都道府県の合計"
        else:
            value = x
            nat = float(np.mean(x[present] > 0) * 100) if present.any() else np.nan
            note_p = f"出典: 事業データ {fy}; 1=設置あり 0=なし"
            note_n = (
                f"出典: 事業データ {fy}; 全国値は設置済み都道府県の割合% (データのある{int(present.sum())}都道府県中)"
            )
        notes = np.where(present, note_p, f"{fy} の事業データなし")
        rows.append(
            pd.DataFrame(
                {
                    "area_code": prefs["area_code"],
                    "indicator_id": ind.id,
                    "value": value,
                    "national_value": nat,
                    "note": notes,
                }
            )
        )
        rows.append(
            pd.DataFrame(
                {
                    "area_code": [NATIONAL],
                    "indicator_id": [ind.id],
                    "value": [nat],
                    "national_value": [nat],
                    "note": [note_n if present.any() else f"{fy} の事業データなし"],
                }
            )
        )
    d = pd.concat(rows, ignore_index=True)
    return pd.DataFrame(
        {
            "year": year,
            "area_code": d["area_code"],
            "area_name": d["area_code"].map(names),
            "indicator_id": d["indicator_id"],
            "breakdown": "total",
            "value": d["value"],
            "lower_ci95": np.nan,
            "upper_ci95": np.nan,
            "n_unweighted": pd.NA,
            "n_effective": np.nan,
            "national_value": d["national_value"],
            "comparison": "not_compared",
            "change_vs_previous": "not_compared",
            "suppressed": False,
            "note": d["note"],
            "source": "programme",
            "previous_year": prev_fy if prev_fy is not None else pd.NA,
            "source_changed": False,
            "comparison_method": "none",
            "change_method": "none",
            "design_effect": np.nan,
        }
    )


# --- Public API ----------------------------------------------------------------------------------


def _single_thread(con):
    """One DuckDB thread while computing: parallel aggregation adds floating-point numbers in an
    order that varies from run to run, so weighted sums differed in the last bits between
    identical runs. Published figures must be reproducible byte for byte; the cost is small."""
    from contextlib import contextmanager

    @contextmanager
    def ctx():
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        con.execute("SET threads TO 1")
        try:
            yield
        finally:
            con.execute(f"SET threads TO {int(threads)}")

    return ctx()


def compute_indicators(
    con: duckdb.DuckDBPyConnection, year: int, catalogue: list[Indicator] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(indicators, distributions) for round ``year``; reads the warehouse, writes nothing.

    Raises UsageError('--year', ...) when there is no national survey for ``year``.
    """
    check_national_year(con, year)
    return next(iter(compute_rounds(con, [year], catalogue).values()))


class RoundTables(tuple):
    """The tables of one round: unpacks as the pair (indicators, distributions), and carries the
    small-area tables (``small_area``, ``small_area_fits``: ``small_area.to_tables``; empty for a
    round without a national survey)."""

    def __new__(
        cls,
        indicators: pd.DataFrame,
        distributions: pd.DataFrame,
        small_area: pd.DataFrame | None = None,
        small_area_fits: pd.DataFrame | None = None,
    ):
        from pipelines.domain import small_area as sa

        obj = super().__new__(cls, (indicators, distributions))
        obj.small_area = small_area if small_area is not None else pd.DataFrame(columns=sa.TABLE_COLUMNS)
        obj.small_area_fits = (
            small_area_fits if small_area_fits is not None else pd.DataFrame(columns=sa.FITS_TABLE_COLUMNS)
        )
        return obj

    def __getnewargs__(self):
        return (self[0], self[1], self.small_area, self.small_area_fits)


def _with_lead(ind: pd.DataFrame, cells: pd.DataFrame, lead: pd.DataFrame) -> pd.DataFrame:
    """The survey rows of ``survey_tables`` with the leading-estimate columns (``schema.LEAD_COLUMNS``;
    ``lead``: ``small_area.leading`` aligned with ``cells``), percent like the value."""
    key = ["area_code", "indicator_id", "breakdown"]
    lk = pd.concat([cells[key].reset_index(drop=True), lead.reset_index(drop=True)], axis=1)
    lk = pd.DataFrame(
        {
            **{k: lk[k] for k in key},
            "estimate_method": lk["estimate_method"],
            "lead_value": lk["lead_p"] * 100,
            "lead_lower_ci95": lk["lead_lower"] * 100,
            "lead_upper_ci95": lk["lead_upper"] * 100,
            "lead_cv": lk["lead_cv"],
            "lead_years": lk["lead_years"],
        }
    )
    return ind.drop(columns=[c for c in schema.LEAD_COLUMNS if c in ind.columns]).merge(lk, on=key, how="left")


def _programme_lead(ind: pd.DataFrame) -> pd.DataFrame:
    """Programme rows lead with their own value (a count or flag of every prefecture, not a sample)."""
    has = ind["value"].notna()
    return ind.assign(
        estimate_method=np.where(has, "direct", None),
        lead_value=ind["value"],
        lead_lower_ci95=np.nan,
        lead_upper_ci95=np.nan,
        lead_cv=np.nan,
        lead_years=None,
    )


def compute_rounds(
    con: duckdb.DuckDBPyConnection,
    years: list[int] | None = None,
    catalogue: list[Indicator] | None = None,
    round_cache: dict[int, RoundData] | None = None,
) -> dict[int, RoundTables]:
    """{year: (indicators, distributions)} for ``years`` (default: every round, ``rounds``) in one
    pass: each round's survey cells are aggregated once and reused as the previous round of the
    next. Reads the warehouse, writes nothing. ``round_cache`` (optional, a dict the caller keeps)
    receives the ``RoundData`` of every survey round computed (the notebook reuses the previous
    round's instead of computing it again). Each value is a ``RoundTables``: the pair, plus the
    small-area estimates of the round (``small_area.small_area_round``: model-based estimates,
    pooled estimates over the latest ``small_area.POOL_ROUNDS`` national rounds, the leading
    estimate of every row)."""
    from pipelines.domain import small_area as sa

    inds = catalogue if catalogue is not None else load_catalogue()
    years = rounds(con) if years is None else sorted(set(int(y) for y in years))
    names = area_names()
    survey_inds = [i for i in inds if i.source == "survey"]
    prog_inds = [i for i in inds if i.source == "programme"]
    nat_years = set(national_years(con))
    effects = config.design_effects()
    cache: dict[int, RoundData] = {} if round_cache is None else round_cache

    def data(y: int) -> RoundData:
        if y not in cache:
            cache[y] = round_data(con, y, survey_inds, effects)
        return cache[y]

    out = {}
    with _single_thread(con):
        for year in years:
            parts = []
            dist = pd.DataFrame(columns=_DIST_COLUMNS)
            sa_tables = (None, None)
            if survey_inds and year in nat_years:
                prev_y = previous_year(con, year)
                # The previous round exactly as published: its suppression depends on its
                # distributions too (the audit), so it is computed in full, never a cut-down pass.
                prev = data(prev_y) if prev_y is not None else None
                ind_s, dist = survey_tables(data(year), prev, names)
                # Small-area estimates (issue #24): the rounds pooled are computed as published too.
                pooled = sorted(y for y in nat_years if y <= year)[-sa.POOL_ROUNDS :]
                sar = sa.small_area_round({y: data(y).cells for y in pooled}, year)
                ind_s = _with_lead(ind_s, data(year).cells, sar.lead)
                sa_tables = sa.to_tables(sar)
                parts.append(ind_s)
            if prog_inds:
                parts.append(_programme_lead(_programme_indicators(con, year, prog_inds, names)))
            if not parts:
                continue
            ind = pd.concat(parts, ignore_index=True)
            # Stable order: area, catalogue order, breakdown order.
            order = {i.id: k for k, i in enumerate(inds)}
            bd_order = {b: k for k, b in enumerate(BREAKDOWNS_COMMON + BREAKDOWNS_UK)}
            ind = (
                ind.assign(_a=ind.area_code, _i=ind.indicator_id.map(order), _b=ind.breakdown.map(bd_order))
                .sort_values(["_a", "_i", "_b"])
                .drop(columns=["_a", "_i", "_b"])
                .reset_index(drop=True)
            )
            out[year] = RoundTables(_typed_indicators(ind), _typed_distributions(dist), *sa_tables)
    return out


ROUNDS_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS indicator_rounds (
    year INTEGER PRIMARY KEY,
    input_key VARCHAR NOT NULL          -- md5 of what the round's rows depend on
)"""


# The build's artefact (the notebook brings every round up to date): which files are committed.
INDICATORS = keys.Stage(
    "indicators",
    reads=(keys.FILES,),
    writes=(
        "indicators",
        "distributions",
        "small_area",
        "small_area_fits",
        "indicator_rounds",
        "runs/indicators-{year}.ipynb",
    ),
)
# One round's rows (ROUNDS_TABLE_DDL's input_key): its survey files (file_id is the sha256 of the
# file: the ids stand for the rows), the programme rows, the catalogue.
ROUND_FILES = keys.Input("survey files of the round, the previous round and the rounds pooled")
ROUND_PROGRAMME = keys.Reads(
    "programme", ("fiscal_year", "pref_code", "metric_id", "value"), rows="the round's fiscal year"
)
ROUND_CATALOGUE = keys.Input("indicator catalogue")
ROUNDS = keys.Stage(
    "indicator round",
    reads=(ROUND_FILES, ROUND_PROGRAMME, ROUND_CATALOGUE),
    writes=("indicators", "distributions", "small_area", "small_area_fits", "indicator_rounds"),
)


def round_keys(con: duckdb.DuckDBPyConnection, catalogue: list[Indicator] | None = None) -> dict[int, str]:
    """{year: key} of every round: a digest of what its rows depend on -- the files of its survey
    round and of the previous round (a round's change column and source marks read it), the
    programme rows of its fiscal year and of the previous one, the catalogue, the design effects,
    and the fingerprint of the code, reference data, settings and libraries. Adding a round changes the key of that round and
    of the round after it only; with the pooled estimates (``small_area.POOL_ROUNDS`` rounds), the
    files of the rounds pooled count too: a round inserted before changes the keys of the
    ``POOL_ROUNDS - 1`` rounds after it."""
    from pipelines.domain.small_area import POOL_ROUNDS

    inds = catalogue if catalogue is not None else load_catalogue()
    files: dict[int, str] = {}
    if has_table(con, "survey_responses"):
        files = {
            int(y): f
            for y, f in con.execute(
                "SELECT survey_year, string_agg(DISTINCT file_id, ',' ORDER BY file_id) FROM survey_responses "
                "GROUP BY survey_year"
            ).fetchall()
        }
    prog = {int(y): h for y, h in keys.row_digests(con, ROUND_PROGRAMME, by="fiscal_year").items()}
    # The whole package, reference data, settings and library versions (no hand list of files
    # that could miss a constant, e.g. MIN_BASE in config.py): pipelines/engine/fingerprint.py.
    from pipelines.engine import fingerprint

    code = fingerprint.compute()
    catalogue_digest = repr([repr(i) for i in inds])
    deffs = sorted(config.design_effects().items())
    prog_years = programme_years(con)
    nat = national_years(con)
    out = {}
    for y in rounds(con):
        prev = previous_year(con, y)
        prev_fy = max([p for p in prog_years if p < y], default=None)
        pooled = [(p, files.get(p)) for p in [n for n in nat if n <= y][-POOL_ROUNDS:]]
        digests = {
            ROUND_FILES: repr((files.get(y), prev, files.get(prev) if prev else None, pooled)),
            ROUND_PROGRAMME: repr((prog.get(y), prev_fy)),
            ROUND_CATALOGUE: catalogue_digest,
        }
        out[y] = keys.key(ROUNDS, digests, code, y, deffs)
    return out


@dataclass(frozen=True)
class RoundPlan:
    """What bringing the tables up to date means: the key of every round in the warehouse
    (``round_keys``), the rounds to compute (their key differs from the stored one, or they have no
    rows), the rounds kept as stored, and the rounds stored but no longer in the warehouse."""

    keys: dict[int, str]
    todo: list[int]
    kept: list[int]
    removed: list[int]


def _stored_rounds(con: duckdb.DuckDBPyConnection) -> tuple[dict[int, str], set[int]]:
    """({year: stored key}, years with rows) of the derived tables; nothing for tables that do not
    exist yet or an `indicators` table of an older layout (``_ensure_tables`` recreates it)."""
    if not has_table(con, "indicators"):
        return {}, set()
    cols = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'indicators' "
            "ORDER BY ordinal_position"
        ).fetchall()
    ]
    if cols != schema.INDICATOR_COLUMNS or not has_table(con, "small_area") or not has_table(con, "small_area_fits"):
        return {}, set()
    stored = {}
    if has_table(con, "indicator_rounds"):
        stored = {int(y): k for y, k in con.execute("SELECT year, input_key FROM indicator_rounds").fetchall()}
    have = {int(r[0]) for r in con.execute("SELECT DISTINCT year FROM indicators").fetchall()}
    return stored, have


def plan_rounds(
    con: duckdb.DuckDBPyConnection, catalogue: list[Indicator] | None = None, force: bool = False
) -> RoundPlan:
    """The ``RoundPlan`` of the warehouse (every round computed again with ``force``). Reads only:
    a read-only connection is enough."""
    keys = round_keys(con, catalogue)
    stored, have = _stored_rounds(con)
    todo = sorted(y for y, k in keys.items() if force or stored.get(y) != k or y not in have)
    removed = sorted((set(stored) | have) - set(keys))
    return RoundPlan(keys, todo, sorted(set(keys) - set(todo)), removed)


def store_rounds(
    con: duckdb.DuckDBPyConnection,
    plan: RoundPlan,
    computed: dict[int, tuple[pd.DataFrame, pd.DataFrame]],
    catalogue: list[Indicator] | None = None,
) -> dict[str, list[int]]:
    """Write the result of ``plan`` (``computed``: ``compute_rounds`` of ``plan.todo``) in one
    transaction on a read-write connection: the removed rounds' rows deleted, the computed rounds
    replaced with their keys. Refused (DataError, nothing written) when the warehouse is no longer
    the one planned for (its round keys changed since) or ``computed`` is not the plan's rounds.
    Returns {'computed': [...], 'kept': [...], 'removed': [...]}."""
    if sorted(computed) != plan.todo:
        raise ValueError(f"computed rounds {sorted(computed)} are not the planned rounds {plan.todo}")
    con.execute("BEGIN TRANSACTION")
    try:
        if round_keys(con, catalogue) != plan.keys:
            where = con.execute(
                "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
            ).fetchone()
            raise DataError(
                str(where[0] if where and where[0] else "warehouse"),
                "the warehouse changed while the indicators were computed; run again / "
                "算出中に倉庫が変更されました。もう一度実行してください",
            )
        _ensure_tables(con)
        for y in plan.removed:
            for t in ("indicators", "distributions", "small_area", "small_area_fits", "indicator_rounds"):
                con.execute(f"DELETE FROM {t} WHERE year = ?", [y])
        for y, tables in computed.items():
            _replace_round(
                con,
                y,
                tables[0],
                tables[1],
                getattr(tables, "small_area", None),
                getattr(tables, "small_area_fits", None),
            )
            con.execute("DELETE FROM indicator_rounds WHERE year = ?", [y])
            con.execute("INSERT INTO indicator_rounds VALUES (?, ?)", [y, plan.keys[y]])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    result = {"computed": plan.todo, "kept": plan.kept, "removed": plan.removed}
    log.info("indicators: computed %s, kept %s, removed %s", plan.todo, plan.kept, plan.removed)
    return result


def write_rounds(
    warehouse: str | os.PathLike[str],
    plan: RoundPlan,
    computed: dict[int, tuple[pd.DataFrame, pd.DataFrame]],
    catalogue: list[Indicator] | None = None,
) -> dict[str, list[int]]:
    """The indicators stage's write: ``store_rounds`` on a read-write connection to ``warehouse``
    opened for it and closed after (the indicators notebook calls it only when the stage runs it,
    parameter ``stage``; the notebook's own connection is read-only and must be closed first)."""
    con = warehouse_db.connect(warehouse, write=True)
    try:
        return store_rounds(con, plan, computed, catalogue)
    finally:
        con.close()


def update_indicators(
    con: duckdb.DuckDBPyConnection, catalogue: list[Indicator] | None = None, force: bool = False
) -> dict[str, list[int]]:
    """Bring the `indicators` and `distributions` tables up to date with every round in the
    warehouse, in this process: ``plan_rounds`` -> ``compute_rounds`` of the rounds whose inputs
    changed -> ``store_rounds``. Returns {'computed': [...], 'kept': [...], 'removed': [...]}."""
    plan = plan_rounds(con, catalogue, force)
    computed = compute_rounds(con, plan.todo, catalogue) if plan.todo else {}
    return store_rounds(con, plan, computed, catalogue)


_DIST_COLUMNS = [
    "year",
    "area_code",
    "question",
    "breakdown",
    "category",
    "category_label",
    "value",
    "lower_ci95",
    "upper_ci95",
    "n_unweighted",
    "suppressed",
]


_TESTED_AGAINST = schema.TESTED_AGAINST_COLUMNS


def _typed_indicators(df: pd.DataFrame) -> pd.DataFrame:
    # rows not tested (programme data, a round of programme data only) have no tested-against
    # columns; rows made without the small-area step (e.g. by hand) no leading-estimate columns
    df = df.reindex(
        columns=[*df.columns, *(c for c in (*_TESTED_AGAINST, *schema.LEAD_COLUMNS) if c not in df.columns)]
    )
    df = df[schema.INDICATOR_COLUMNS].copy()
    df["year"] = df["year"].astype("int64")
    for c in (
        "area_code",
        "area_name",
        "indicator_id",
        "breakdown",
        "comparison",
        "change_vs_previous",
        "note",
        "source",
        "comparison_method",
        "change_method",
        "estimate_method",
        "lead_years",
    ):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    for c in (
        "value",
        "lower_ci95",
        "upper_ci95",
        "n_effective",
        "national_value",
        "design_effect",
        *_TESTED_AGAINST,
        "lead_value",
        "lead_lower_ci95",
        "lead_upper_ci95",
        "lead_cv",
    ):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in ("n_unweighted", "previous_year"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    df["suppressed"] = df["suppressed"].astype(bool)
    df["source_changed"] = df["source_changed"].astype(bool)
    return df


def _typed_distributions(df: pd.DataFrame) -> pd.DataFrame:
    df = df[_DIST_COLUMNS].copy()
    df["year"] = df["year"].astype("int64")
    for c in ("value", "lower_ci95", "upper_ci95"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["n_unweighted"] = pd.to_numeric(df["n_unweighted"], errors="coerce").astype("Int64")
    df["suppressed"] = df["suppressed"].astype(bool)
    return df.reset_index(drop=True)


def _ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the derived tables; an `indicators` table of an older layout (columns differ) is
    derived data: dropped with the round keys and created again, so every round is recomputed."""
    if has_table(con, "indicators"):
        cols = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'indicators' "
                "ORDER BY ordinal_position"
            ).fetchall()
        ]
        if cols != schema.INDICATOR_COLUMNS:
            log.info("indicators table of an older layout: recreated")
            con.execute("DROP TABLE indicators")
            con.execute("DROP TABLE IF EXISTS indicator_rounds")
    from pipelines.domain import small_area as sa

    for name, want in (("small_area", sa.TABLE_COLUMNS), ("small_area_fits", sa.FITS_TABLE_COLUMNS)):
        if (
            has_table(con, name)
            and [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                    [name],
                ).fetchall()
            ]
            != want
        ):
            log.info("%s table of an older layout: recreated", name)
            con.execute(f"DROP TABLE {name}")
            con.execute("DROP TABLE IF EXISTS indicator_rounds")
    con.execute(schema.INDICATORS_TABLE_DDL)
    con.execute(schema.DISTRIBUTIONS_TABLE_DDL)
    con.execute(schema.SMALL_AREA_TABLE_DDL)
    con.execute(schema.SMALL_AREA_FITS_TABLE_DDL)
    con.execute(ROUNDS_TABLE_DDL)


def _replace_round(
    con: duckdb.DuckDBPyConnection,
    year: int,
    indicators: pd.DataFrame,
    distributions: pd.DataFrame,
    small_area: pd.DataFrame | None = None,
    small_area_fits: pd.DataFrame | None = None,
) -> None:
    """Replace the rows of ``year`` (inside the caller's transaction): indicators, distributions and
    the small-area tables (none given: the round has none)."""
    from pipelines.domain import small_area as sa

    sa_rows = small_area if small_area is not None else pd.DataFrame(columns=sa.TABLE_COLUMNS)
    fit_rows = small_area_fits if small_area_fits is not None else pd.DataFrame(columns=sa.FITS_TABLE_COLUMNS)
    tables = (
        ("indicators", indicators, schema.INDICATOR_COLUMNS),
        ("distributions", distributions, _DIST_COLUMNS),
        ("small_area", sa_rows, sa.TABLE_COLUMNS),
        ("small_area_fits", fit_rows, sa.FITS_TABLE_COLUMNS),
    )
    for name, df, _ in tables:
        if len(df) and set(df["year"].unique()) != {year}:
            raise ValueError(f"{name}: every row must have year {year}")
    for name, df, cols in tables:
        con.execute(f"DELETE FROM {name} WHERE year = ?", [year])
        if not len(df):
            continue
        con.register("_rows_new", df[cols])
        try:
            con.execute(f"INSERT INTO {name} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM _rows_new")
        finally:
            try:
                con.unregister("_rows_new")
            except duckdb.Error:
                pass
    log.info(
        "indicators %d: %d rows, distributions: %d rows, small_area: %d rows",
        year,
        len(indicators),
        len(distributions),
        len(sa_rows),
    )


def write_indicators(
    con: duckdb.DuckDBPyConnection, year: int, indicators: pd.DataFrame, distributions: pd.DataFrame
) -> None:
    """Replace the rows of ``year`` in `indicators` and `distributions`, in one transaction (the
    round's stored key is dropped: ``update_indicators`` recomputes it next time)."""
    _ensure_tables(con)
    con.execute("BEGIN TRANSACTION")
    try:
        _replace_round(con, year, indicators, distributions)
        con.execute("DELETE FROM indicator_rounds WHERE year = ?", [year])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


_SURVEY_AREA_SOURCES = ("national_subsample", "own_survey")


def homogeneity(indicators: pd.DataFrame, indicator_id: str, year: int, breakdown: str = "total") -> dict[str, float]:
    """χ² test that the prefectures share one proportion for ``indicator_id`` in round ``year``
    (``stats.homogeneity_test`` on the published prefecture rows: value / 100 and n_effective,
    which already includes the design effect; suppressed rows are left out). The prefectures'
    respondents are disjoint, so the areas are independent samples. Returns statistic, df, p_value
    and k (the number of prefectures tested)."""
    rows = indicators[
        (indicators["indicator_id"] == indicator_id)
        & (indicators["year"] == year)
        & (indicators["breakdown"] == breakdown)
        & (indicators["area_code"] != NATIONAL)
        & indicators["source"].isin(_SURVEY_AREA_SOURCES)
        & ~indicators["suppressed"]
    ]
    return stats.homogeneity_test(
        rows["value"].to_numpy(dtype=float) / 100.0, rows["n_effective"].to_numpy(dtype=float)
    )


def multiple_comparisons(
    indicators: pd.DataFrame, year: int, area_code: str | None = None
) -> dict[str, dict[str, float]]:
    """For the multiple-comparison caveat: ``stats.multiplicity`` of the prefecture rows of round
    ``year`` (one prefecture's with ``area_code``), for 'comparison' (tests vs national) and
    'change' (tests vs the previous round): tests made, flags, expected false flags at α."""
    rows = indicators[
        (indicators["year"] == year)
        & (indicators["area_code"] != NATIONAL)
        & indicators["source"].isin(_SURVEY_AREA_SOURCES)
    ]
    if area_code is not None:
        rows = rows[rows["area_code"] == area_code]
    cmp_flag = rows["comparison"].isin(["better", "worse", "higher", "lower"])
    chg_flag = rows["change_vs_previous"].isin(["increase", "decrease"])
    return {
        "comparison": stats.multiplicity(int((rows["comparison_method"] != "none").sum()), int(cmp_flag.sum())),
        "change": stats.multiplicity(int((rows["change_method"] != "none").sum()), int(chg_flag.sum())),
    }


def summary(indicators: pd.DataFrame) -> pd.DataFrame:
    """A small overview for the notebook: national totals per indicator (no microdata)."""
    cat = {i.id: i for i in load_catalogue()}
    nat = indicators[(indicators.area_code == NATIONAL) & (indicators.breakdown == "total")]
    areas = indicators[indicators.area_code != NATIONAL]
    counts = areas.groupby("indicator_id")["comparison"].value_counts().unstack(fill_value=0)
    out = nat.set_index("indicator_id")[["value", "lower_ci95", "upper_ci95", "n_unweighted", "change_vs_previous"]]
    out.insert(0, "name_ja", [cat[i].name_ja if i in cat else i for i in out.index])
    return out.join(counts, how="left").reset_index()


def run_indicators(year: int, warehouse: Path, out_dir: Path, pool=None) -> Path:
    """The indicators stage (`tsunagari indicators`, and the build): execute the indicators notebook
    with papermill as the stage (parameter ``stage=True``): it plans the rounds (``plan_rounds``),
    computes those whose inputs changed (``compute_rounds``), retraces the report round ``year`` step
    by step, and hands its computed rounds to ``write_rounds``, which replaces them in the warehouse
    in one transaction -- each round computed once, in the notebook's kernel. Run by hand (the
    defaults of its parameters cell) the notebook only reads. The executed notebook is the audit
    record, ``out_dir/runs/indicators-{year}.ipynb``. The downloads are written by
    ``downloads.write_downloads`` (the build writes them while the reports run). With `pool` (an
    executor.WarmPool) the notebook runs in a worker's warm kernel. Returns the executed notebook
    path."""
    warehouse = Path(warehouse).resolve()
    out_dir = Path(out_dir)
    if not warehouse.exists():
        raise UsageError(
            "--warehouse", f"倉庫ファイルがありません / warehouse not found: {warehouse} (run `tsunagari ingest` first)"
        )
    con = warehouse_db.connect(warehouse)
    try:
        check_national_year(con, year)
    finally:
        con.close()
    executed = out_dir / "runs" / f"indicators-{year}.ipynb"
    # The executed notebook is the audit record kept beside the site: the path relative to the folder it runs in.
    params = {"year": int(year), "warehouse": os.path.relpath(warehouse), "stage": True}
    if pool is not None:
        from pipelines.engine.kernels import Task

        outcome = pool.run_one(Task(f"indicators-{year}", config.INDICATORS_NOTEBOOK, executed, params, cwd=Path.cwd()))
        if not outcome.ok:
            raise DataError(str(executed), "indicators notebook failed", detail=str(outcome.error))
    else:
        # papermill is imported here only: with a pool the build process never needs it
        from papermill.exceptions import PapermillExecutionError

        from pipelines.engine.notebook import execute_notebook

        try:
            execute_notebook(config.INDICATORS_NOTEBOOK, executed, params, cwd=Path.cwd())
        except PapermillExecutionError as exc:
            raise DataError(str(executed), "indicators notebook failed", detail=f"{exc.ename}: {exc.evalue}") from exc
    return executed


def design_report(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The quality page's 設計効果 section (issue #22 item 4): the design effect each survey in the
    warehouse gets (``indicators.design_effect_summary``: estimated by Taylor linearisation with its
    strata and PSUs, configured by TSUNAGARI_DEFF, or the default with its basis) and, for the latest
    national round, the sensitivity line (``indicators.deff_sensitivity``: prefecture rows flagged
    vs national at deff 1.0 / 1.5 / 2.0 and as published, beside the number expected by chance).
    None when the warehouse has no survey round; a computation that fails is reported in the
    section (``error``), not raised: the validation results stay readable."""
    import time

    if not warehouse_db.national_years(con):
        return None
    t0 = time.perf_counter()
    year = max(warehouse_db.national_years(con))
    out: dict[str, Any] = {
        "year": year,
        "default_deff": config.DEFAULT_DEFF,
        "basis": config.DEFAULT_DEFF_BASIS,
        "configured": config.design_effects(),
        "lonely_psu": survey_design.LONELY_PSU,
        "alpha": round(1.0 - config.CONFIDENCE_LEVEL, 12),
        "surveys": [],
        "sensitivity": [],
        "error": None,
    }
    try:
        out["surveys"] = json_records(design_effect_summary(con))
        out["sensitivity"] = json_records(deff_sensitivity(con, year))
    except Exception as exc:  # noqa: BLE001 -- shown on the page; the validation results stand
        log.warning("design effects for the quality page failed: %s", exc)
        # the page names the kind of error only (its message may hold a server path): details in the log
        out["error"] = f"{type(exc).__name__} (build.log)"
    log.info(
        "design effects and their sensitivity (round %d) for the quality page in %.1f s", year, time.perf_counter() - t0
    )
    return out
