"""A fixture warehouse for the report tests: plausible `indicators`, `distributions` and `files` rows.

Values are synthetic (deterministic from a seed), shaped like the national survey: the national base
~11,000, prefecture bases proportional to population (Tottori ~50), so small breakdowns are suppressed
(< 30) or shown as 参考値 (30-99). Suppressed rows keep a value on purpose: the report must not show it.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipelines.domain import config, schema
from pipelines.domain.reference import prefectures

# Plausible levels of the fixture rows by indicator (others: 20% for a share, 10 for a rate,
# 0.5 for a flag). The indicators themselves come from the real catalogue (no copy here).
BASE_VALUES = {
    "lonely_often_always": 4.7,
    "lonely_any": 39.0,
    "ucla_10_12": 7.0,
    "ucla_7_12": 48.0,
    "no_contact_inperson": 9.5,
    "no_participation": 52.0,
    "no_reliable_person": 7.5,
    "no_support_among_worried": 88.0,
    "help_intention": 51.5,
    "consultations_per_10k": 25.0,
    "supporters_per_10k": 4.0,
    "has_platform": 0.6,
    "has_regional_council": 0.4,
}
DEFAULT_BASE = {"percent": 20.0, "per_10k": 10.0, "flag": 0.5}

LONELINESS_SHARES = {"5": 4.7, "4": 15.0, "3": 19.3, "2": 40.0, "1": 20.0, "9": 1.0}
UCLA_SHARES = {"10-12": 7.0, "7-9": 41.0, "4-6": 37.0, "3": 14.0, "na": 1.0}


def _wilson(p: float, n: float) -> tuple[float, float]:
    if n <= 0:
        return (math.nan, math.nan)
    z = 1.959964
    q = p / 100
    denom = 1 + z * z / n
    centre = (q + z * z / (2 * n)) / denom
    half = z * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half) * 100, min(1.0, centre + half) * 100)


def _compare(value, lo, hi, nat, polarity) -> str:
    if value is None or nat is None or lo is None or math.isnan(lo):
        return "not_compared"
    if lo > nat:
        side = "higher"
    elif hi < nat:
        side = "lower"
    else:
        return "similar"
    if polarity == "low_is_good":
        return "worse" if side == "higher" else "better"
    if polarity == "high_is_good":
        return "better" if side == "higher" else "worse"
    return side


def _change(p1, n1, p0, n0) -> str:
    if p0 is None or not n0 or not n1:
        return "not_compared"
    a, b = p1 / 100, p0 / 100
    pooled = (a * n1 + b * n0) / (n1 + n0)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / n1 + 1 / n0), 1e-12))
    z = (a - b) / se
    if abs(z) < 1.959964:
        return "no_change"
    return "increase" if z > 0 else "decrease"


def catalogue():
    """The real catalogue (pipelines.domain.catalogue.load_catalogue, or TSUNAGARI_CATALOGUE when set)."""
    from pipelines.domain.catalogue import load_catalogue

    return load_catalogue()


def _base(c) -> float:
    return BASE_VALUES.get(c.id, DEFAULT_BASE[c.unit])


def build_fixture_warehouse(
    path: Path, years: tuple[int, ...] = (2022, 2023, 2024), seed: int = 7, synthetic: bool = True
) -> Path:
    """Create a DuckDB warehouse at `path` with `indicators`, `distributions` and `files`."""
    rng = random.Random(seed)
    cat = catalogue()
    programme_ids = ", ".join(f"'{c.id}'" for c in cat if c.source == "programme") or "''"
    flag_ids = ", ".join(f"'{c.id}'" for c in cat if c.unit == "flag") or "''"
    prefs = prefectures()
    total_pop = float(prefs.population_2020.sum())
    areas = [("00", "全国", 11000)] + [
        (f"{int(r.pref_code):02d}", str(r.name_ja), max(40, int(round(11000 * r.population_2020 / total_pop))))
        for r in prefs.itertuples()
    ]
    pref_effect = {code: rng.gauss(1.0, 0.12) for code, _, _ in areas}
    pref_effect["00"] = 1.0
    pref_effect["13"] = 1.25  # Tokyo clearly above the national value for loneliness
    sexes = ["1", "2"]
    ind_rows: list[tuple] = []
    dist_rows: list[tuple] = []
    prev: dict[tuple, tuple[float, int]] = {}
    for yi, year in enumerate(years):
        drift = 1.0 + 0.03 * yi
        national: dict[tuple, float] = {}
        for code, name, n in areas:
            eff = pref_effect[code]
            # survey indicators
            for c in cat:
                if c.source == "programme":
                    continue
                breakdowns = [("total", n)]
                breakdowns += [(f"sex={s}", int(n * (0.46 if s == "1" else 0.53))) for s in sexes]
                breakdowns += [
                    (f"age={b}", max(1, int(n * w)))
                    for b, w in zip(schema.AGE_BANDS, [0.03, 0.08, 0.11, 0.15, 0.17, 0.17, 0.19, 0.10])
                ]
                breakdowns += [
                    (f"uk_age={b}", max(1, int(n * w)))
                    for b, w in zip(schema.UK_AGE_BANDS, [0.06, 0.09, 0.20, 0.26, 0.21, 0.18])
                ]
                for bd, nb in breakdowns:
                    scale = eff if c.polarity == "low_is_good" else 2 - eff
                    bd_eff = 1.0
                    if bd.startswith("age=") or bd.startswith("uk_age="):
                        bd_eff = 1.3 - 0.08 * (breakdowns.index((bd, nb)) % 8)
                    v = max(0.3, min(97.0, _base(c) * scale * bd_eff * drift * (1 + rng.gauss(0, 0.04))))
                    v = round(v, 3)
                    neff = nb * 0.9
                    lo, hi = _wilson(v, neff)
                    key = (c.id, bd)
                    if code == "00":
                        national[key] = v
                    nat = national.get(key)
                    suppressed = nb < 30
                    comp = "not_compared" if suppressed or code == "00" else _compare(v, lo, hi, nat, c.polarity)
                    p = prev.get((code,) + key)
                    change = "not_compared" if suppressed or p is None else _change(v, neff, p[0], p[1])
                    note_src = (
                        "県独自調査（全国調査と同一の調査票）"
                        if code == "11" and year == years[-1]
                        else "全国調査"
                        if code == "00"
                        else "全国調査の県別集計（サブサンプル）"
                    )
                    note = note_src
                    if suppressed:
                        note += "; 集計対象が30人未満のため非表示"
                    elif nb < 100:
                        note += "; 参考値（集計対象30～99人）"
                    ind_rows.append(
                        (
                            year,
                            code,
                            name,
                            c.id,
                            bd,
                            v,
                            lo,
                            hi,
                            nb,
                            neff,
                            None if code == "00" else nat,
                            comp,
                            change,
                            suppressed,
                            note,
                        )
                    )
                    prev[(code,) + key] = (v, neff)
            # programme indicators
            for c in cat:
                if c.source != "programme":
                    continue
                if c.unit == "flag":
                    v = 1.0 if rng.random() < _base(c) + 0.1 * yi else 0.0
                else:
                    v = round(_base(c) * rng.uniform(0.4, 1.8) * drift, 2)
                ind_rows.append(
                    (
                        year,
                        code,
                        name,
                        c.id,
                        "total",
                        v,
                        None,
                        None,
                        None,
                        None,
                        None,
                        "not_compared",
                        "not_compared",
                        False,
                        "プログラムデータ（合成）",
                    )
                )
            # distributions: direct question and UCLA bands, total + uk_age
            for question, shares, labels in (
                ("q_loneliness", LONELINESS_SHARES, schema.QUESTIONS["q_loneliness"]),
                ("ucla_band", UCLA_SHARES, schema.UCLA_BANDS),
            ):
                for bd, nb in [("total", n)] + [(f"uk_age={b}", max(1, int(n * 0.17))) for b in schema.UK_AGE_BANDS]:
                    raw = {
                        k: max(0.2, s * (eff if k in ("5", "4", "10-12") else 1) * (1 + rng.gauss(0, 0.05)))
                        for k, s in shares.items()
                    }
                    tot = sum(raw.values())
                    for k, s in raw.items():
                        v = round(100 * s / tot, 3)
                        lo, hi = _wilson(v, nb)
                        label = labels[int(k)] if question == "q_loneliness" else labels[k]
                        dist_rows.append((year, code, question, bd, k, label, v, lo, hi, nb, nb < 30))
        # national value for programme indicators: the mean over prefectures
    con = duckdb.connect(str(path))
    try:
        con.execute(schema.INDICATORS_TABLE_DDL)
        con.execute(schema.DISTRIBUTIONS_TABLE_DDL)
        con.execute(schema.FILES_TABLE_DDL)
        contract = schema.INDICATOR_COLUMNS[:15]
        ind_df = pd.DataFrame(ind_rows, columns=contract).reindex(columns=schema.INDICATOR_COLUMNS)
        # how each row was judged (columns after the contract ones): as the indicators stage sets them
        years = sorted(int(y) for y in ind_df["year"].unique())
        programme_rows = ind_df["indicator_id"].isin([c.id for c in cat if c.source == "programme"])
        own = (ind_df["area_code"] == "11") & (ind_df["year"] == years[-1]) & ~programme_rows
        ind_df["source"] = np.select(
            [programme_rows, ind_df["area_code"] == "00", own],
            ["programme", "national", "own_survey"],
            "national_subsample",
        )
        ind_df["previous_year"] = (
            ind_df["year"].map(lambda y: max([p for p in years if p < y], default=None)).astype("float").astype("Int64")
        )
        ind_df["source_changed"] = own & (len(years) > 1)  # Saitama: subsample -> its own survey
        ind_df["comparison_method"] = "newcombe"
        ind_df["change_method"] = "newcombe"
        ind_df["design_effect"] = 1.0
        dist_df = pd.DataFrame(
            dist_rows,
            columns=[
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
            ],
        )
        con.register("ind_df", ind_df)
        con.register("dist_df", dist_df)
        con.execute("INSERT INTO indicators SELECT * FROM ind_df")
        con.execute("INSERT INTO distributions SELECT * FROM dist_df")
        # National row of a flag = % of prefectures with it; of a rate = mean of prefectures.
        con.execute(f"""UPDATE indicators AS i SET national_value = m.v FROM (
              SELECT year, indicator_id,
                     CASE WHEN indicator_id IN ({flag_ids}) THEN 100 * avg(value) ELSE avg(value) END AS v
              FROM indicators
              WHERE area_code <> '00' AND indicator_id IN ({programme_ids}) GROUP BY year, indicator_id) m
            WHERE i.year = m.year AND i.indicator_id = m.indicator_id AND i.area_code <> '00'""")
        con.execute(f"""UPDATE indicators AS i SET value = m.v FROM (
              SELECT year, indicator_id,
                     CASE WHEN indicator_id IN ({flag_ids}) THEN 100 * avg(value) ELSE avg(value) END AS v
              FROM indicators
              WHERE area_code <> '00' AND indicator_id IN ({programme_ids}) GROUP BY year, indicator_id) m
            WHERE i.year = m.year AND i.indicator_id = m.indicator_id AND i.area_code = '00'""")
        for year in years:
            con.execute(
                "INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,now())",
                [
                    f"sha{year}",
                    f"national-{year}.csv",
                    f"data/sample/national-{year}.csv",
                    "survey",
                    f"national-{year}",
                    year,
                    "utf-8",
                    11000,
                    synthetic,
                ],
            )
    finally:
        con.close()
    return path


if __name__ == "__main__":  # python tests/fixtures_reports.py /tmp/wh.duckdb
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fixture_reports.duckdb")
    out.unlink(missing_ok=True)
    print(build_fixture_warehouse(out))


def build_sparse_warehouse(path: Path) -> Path:
    """A warehouse with little to show: one round only (no previous round, no trend), no own
    survey, every prefecture cell and every breakdown suppressed (only the national total shown),
    no answer distributions, and the programme metrics without values (no programme data, as the
    indicators stage writes them when no programme file was ingested)."""
    build_fixture_warehouse(path, years=(2024,))
    con = duckdb.connect(str(path))
    try:
        programme = ", ".join(f"'{c.id}'" for c in catalogue() if c.source == "programme") or "''"
        con.execute(
            "UPDATE indicators SET suppressed = true, comparison = 'not_compared' "
            "WHERE area_code <> '00' OR breakdown <> 'total'"
        )
        con.execute(
            "UPDATE indicators SET source = 'national_subsample', source_changed = false, "
            "note = '全国調査の県別集計（サブサンプル）' WHERE source = 'own_survey'"
        )
        con.execute(
            f"UPDATE indicators SET value = NULL, national_value = NULL, suppressed = false, "
            f"note = '令和6年度 (FY2024) の事業データなし' WHERE indicator_id IN ({programme})"
        )
        con.execute("DELETE FROM distributions")
    finally:
        con.close()
    return path


def fork_report(tmp: Path, *source: str) -> Path:
    """A copy of the report sources whose notebook ends with one more code cell (a fork, as a
    researcher would make one; TSUNAGARI_REPORTS_DIR points a build at it)."""
    fork = tmp / "reports-fork"
    shutil.copytree(config.REPORTS_DIR, fork)
    nb = json.loads((fork / "report.ipynb").read_text(encoding="utf-8"))
    nb["cells"].append(
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": list(source)}
    )
    (fork / "report.ipynb").write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    return fork
