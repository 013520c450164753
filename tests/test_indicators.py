"""The indicators stage on a real DuckDB file: catalogue -> SQL -> stats -> tables -> downloads.

survey_responses is built directly with SQL (no ingest needed).
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import duckdb
import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml
from statsmodels.stats.proportion import proportion_confint

from pipelines.domain import config, schema, stats
from pipelines.domain.errors import DataError, UsageError
from pipelines.indicators.stage import (
    AREA_CODES,
    BREAKDOWNS_COMMON,
    BREAKDOWNS_UK,
    compute_indicators,
    load_catalogue,
    run_indicators,
    write_indicators,
)
from pipelines.outputs.downloads import published_n, published_share, write_downloads
from tests.shared_builds import shared_folder

COLS = [
    "survey_id",
    "survey_year",
    "survey_kind",
    "respondent_id",
    "pref_code",
    "sex",
    "age",
    "age_band",
    "uk_age_band",
    "household_single",
    "weight",
    "q_loneliness",
    "q_ucla_1",
    "q_ucla_2",
    "q_ucla_3",
    "q_contact_inperson",
    "q_participation_none",
    "q_has_worries",
    "q_support_received",
    "q_reliable_person",
    "q_help_intention",
    "file_id",
    "source_row",
]


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(schema.SURVEY_TABLE_DDL.format(name="survey_responses"))
    con.execute(schema.PROGRAMME_TABLE_DDL.format(name="programme"))
    con.execute(schema.FILES_TABLE_DDL)


def generate_round(
    con: duckdb.DuckDBPyConnection,
    year: int,
    n: int,
    seed: float = 0.1,
    kind: str = "national",
    pref: int | None = None,
    shift: float = 0.0,
    weighted: bool = True,
) -> None:
    """n synthetic respondents of one survey, generated in SQL. National respondents are spread over
    the prefectures in proportion to population; `pref` puts every respondent in one prefecture.
    `shift` moves the loneliness answers towards 5 (to create real changes between rounds)."""
    pops = pd.read_csv(config.REFERENCE_DIR / "prefectures.csv")[["pref_code", "population_2020"]]
    share = pops.population_2020 / pops.population_2020.sum()
    cum = pd.DataFrame({"pref_code": pops.pref_code, "lo": share.cumsum() - share, "hi": share.cumsum()})
    cum.loc[cum.index[-1], "hi"] = 1.0 + 1e-9
    con.register("_cum", cum)
    sid = f"national-{year}" if kind == "national" else f"pref{pref:02d}-{year}"
    pref_sql = f"{pref}" if pref is not None else "(SELECT pref_code FROM _cum WHERE u0 >= lo AND u0 < hi)"
    con.execute(f"SELECT setseed({seed})")
    con.execute(f"""
    INSERT INTO survey_responses ({", ".join(COLS)})
    WITH r AS (
      SELECT i, random() AS u0, random() AS u1, random() AS u2, random() AS u3, random() AS u4,
             random() AS u5, random() AS u6, random() AS u7, random() AS u8, random() AS u9,
             random() AS u10, random() AS u11
      FROM range({n}) t(i)
    ), b AS (
      SELECT *, {pref_sql} AS pref_code,
        CASE WHEN u1 < 0.46 THEN 1 WHEN u1 < 0.985 THEN 2 WHEN u1 < 0.995 THEN 3 ELSE 9 END AS sex,
        CASE WHEN u2 < 0.01 THEN NULL ELSE 16 + CAST(floor(u2 * 75) AS INTEGER) END AS age
      FROM r
    )
    SELECT '{sid}', {year}, '{kind}', '{sid}-' || i, pref_code, sex, age,
      {schema.AGE_BAND_SQL}, {schema.UK_AGE_BAND_SQL},
      CASE WHEN u3 < 0.15 THEN 1 WHEN u3 < 0.99 THEN 0 ELSE 9 END,
      {"0.5 + u4" if weighted else "1.0"},
      CASE WHEN u5 < 0.006 THEN 9 WHEN u5 < 0.055 + {shift} THEN 5 WHEN u5 < 0.21 + {shift} THEN 4
           WHEN u5 < 0.40 + {shift} THEN 3 WHEN u5 < 0.80 THEN 2 ELSE 1 END,
      CASE WHEN u6 < 0.01 THEN 9 ELSE 1 + CAST(floor(u6 * 4) AS INTEGER) END,
      CASE WHEN u7 < 0.01 THEN 9 ELSE 1 + CAST(floor(u7 * 4) AS INTEGER) END,
      CASE WHEN u8 < 0.01 THEN 9 ELSE 1 + CAST(floor(u8 * 4) AS INTEGER) END,
      CASE WHEN u9 < 0.01 THEN 9 WHEN u9 < 0.10 THEN 7 ELSE 1 + CAST(floor(u9 * 6) AS INTEGER) END,
      CASE WHEN u10 < 0.01 THEN 9 WHEN u10 < 0.53 THEN 1 ELSE 0 END,
      CASE WHEN u11 < 0.75 THEN 1 WHEN u11 < 0.99 THEN 2 ELSE 9 END,
      CASE WHEN u11 >= 0.75 THEN 9 WHEN u10 < 0.09 THEN 1 WHEN u10 < 0.99 THEN 2 ELSE 9 END,
      CASE WHEN u4 < 0.08 THEN 2 WHEN u4 < 0.99 THEN 1 ELSE 9 END,
      CASE WHEN u3 < 0.01 THEN 9 WHEN u3 < 0.52 THEN 1 WHEN u3 < 0.85 THEN 2 ELSE 3 END,
      'file-{sid}', i + 1
    FROM b""")
    con.unregister("_cum")
    con.execute(
        "INSERT INTO files VALUES (?, ?, ?, 'survey', ?, ?, 'utf-8', ?, TRUE, now())",
        [f"file-{sid}", f"{sid}.csv", f"data/sample/{sid}.csv", sid, year, n],
    )


def generate_programme(con: duckdb.DuckDBPyConnection, fiscal_year: int) -> None:
    con.execute(f"""
    INSERT INTO programme
    SELECT {fiscal_year}, p, m.metric_id,
      CASE m.metric_id WHEN 'platform' THEN p % 2 WHEN 'regional_council' THEN CAST(p % 3 = 0 AS INT)
                       ELSE 100 * p END,
      m.unit, 'synthetic', 'file-programme', row_number() OVER ()
    FROM range(1, 48) t(p), (VALUES ('consultations_phone', 'count'), ('consultations_sns', 'count'),
      ('supporters_trained', 'count'), ('platform', 'flag'), ('regional_council', 'flag')) m(metric_id, unit)""")
    con.execute(
        "INSERT INTO files VALUES ('file-programme', 'programme.csv', 'programme.csv', "
        "'programme', NULL, NULL, 'utf-8', 235, TRUE, now())"
    )


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory) -> Path:
    """Two national rounds (2023, 2024; 2024 lonelier) of 12,000, a Saitama own survey in 2024,
    programme data for FY2024. Made once per session for the xdist workers (shared_folder): read
    only (copy it to change it)."""

    def make(d: Path) -> None:
        con = duckdb.connect(str(d / "warehouse.duckdb"))
        create_tables(con)
        generate_round(con, 2023, 12_000, seed=0.11)
        generate_round(con, 2024, 12_000, seed=0.22, shift=0.03)
        generate_round(con, 2024, 600, seed=0.33, kind="prefecture", pref=11)
        generate_programme(con, 2024)
        con.close()

    return shared_folder(tmp_path_factory, "indicators-two-rounds", make) / "warehouse.duckdb"


@pytest.fixture(scope="module")
def updated(two_rounds, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of ``two_rounds`` after ``update_indicators`` (every round computed in this process),
    and what that call returned. Once per session (shared_folder); read only."""

    def make(d: Path) -> None:
        from pipelines.indicators.stage import update_indicators

        path = d / "wh.duckdb"
        path.write_bytes(two_rounds.read_bytes())
        con = duckdb.connect(str(path))
        result = update_indicators(con)
        con.close()
        (d / "result.json").write_text(json.dumps(result), encoding="utf-8")

    d = shared_folder(tmp_path_factory, "indicators-updated", make)
    return d / "wh.duckdb", json.loads((d / "result.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def staged(two_rounds, tmp_path_factory) -> tuple[Path, Path]:
    """The indicators stage as `tsunagari indicators` runs it (the notebook by papermill, then the
    downloads), on a copy of ``two_rounds`` whose programme file has a name a spreadsheet would read
    as a formula (file names are in no derived table: the round keys take the file ids). Once per
    session (shared_folder); read only. Returns (warehouse, out folder)."""

    def make(d: Path) -> None:
        path = d / "wh.duckdb"
        path.write_bytes(two_rounds.read_bytes())
        con = duckdb.connect(str(path))
        # A label that a spreadsheet would read as a formula must be neutralised.
        con.execute("UPDATE files SET file_name = '=HYPERLINK(\"x\")' WHERE file_id = 'file-programme'")
        con.close()
        out = d / "out"
        executed = run_indicators(2024, path, out)
        write_downloads(2024, path, out)  # what `tsunagari indicators` does next
        (d / "executed.txt").write_text(str(executed), encoding="utf-8")

    d = shared_folder(tmp_path_factory, "indicators-staged", make)
    return d / "wh.duckdb", d / "out"


@pytest.fixture(scope="module")
def computed(two_rounds):
    con = duckdb.connect(str(two_rounds), read_only=True)
    ind, dist = compute_indicators(con, 2024)
    con.close()
    return ind, dist


# --- The published distribution -------------------------------------------------------------------

PUBLISHED_2022 = {5: 4.9, 4: 15.8, 3: 19.6, 2: 40.6, 1: 18.4, 9: 0.6}


def counts_for(n: int, pct: dict[int, float]) -> dict[int, int]:
    counts = {k: int(n * v / 100) for k, v in pct.items()}
    keys = list(pct)
    i = 0
    while sum(counts.values()) < n:  # spread the rounding remainder
        counts[keys[i % len(keys)]] += 1
        i += 1
    return counts


def varied(i: int, lonely: int = 0) -> dict:
    """Answers of respondent i of a small area that vary over the area (no indicator at exactly 0%
    or 100%, which is suppressed on a base under 100): the first ``lonely`` often/always lonely."""
    u = 1 + i % 4  # UCLA items 1..4: scores 3, 6, 9, 12
    return dict(
        q_loneliness=5 if i < lonely else (3 if i % 3 == 0 else 2),
        q_ucla_1=u,
        q_ucla_2=u,
        q_ucla_3=u,
        q_contact_inperson=7 if i % 5 == 1 else 1,
        q_participation_none=i % 2,
        q_reliable_person=2 if i % 6 == 1 else 1,
        q_help_intention=2 if i % 7 == 1 else 1,
    )


def insert_rows(con, rows: list[dict]) -> None:
    base = dict(
        survey_kind="national",
        sex=1,
        age=45,
        age_band="40-49",
        uk_age_band="35-49",
        household_single=0,
        weight=1.0,
        q_loneliness=2,
        q_ucla_1=1,
        q_ucla_2=1,
        q_ucla_3=1,
        q_contact_inperson=1,
        q_participation_none=0,
        q_has_worries=2,
        q_support_received=9,
        q_reliable_person=1,
        q_help_intention=1,
        file_id="f",
        source_row=1,
    )
    df = pd.DataFrame([{**base, **r} for r in rows])[COLS]
    con.register("_rows", df)
    con.execute(f"INSERT INTO survey_responses ({', '.join(COLS)}) SELECT {', '.join(COLS)} FROM _rows")
    con.unregister("_rows")


def test_published_2022_distribution_is_reproduced(tmp_path):
    n = 11_218
    counts = counts_for(n, PUBLISHED_2022)
    assert sum(counts.values()) == n
    assert all(round(c / n * 100, 1) == PUBLISHED_2022[k] for k, c in counts.items())
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_tables(con)
    rows = []
    for code, c in counts.items():
        rows += [dict(q_loneliness=code, pref_code=1 + len(rows) % 47) for _ in range(c)]
    for i, r in enumerate(rows):
        r.update(survey_id="national-2022", survey_year=2022, respondent_id=str(i))
    insert_rows(con, rows)
    ind, dist = compute_indicators(con, 2022)
    d = dist[(dist.area_code == "00") & (dist.question == "q_loneliness") & (dist.breakdown == "total")]
    got = {int(c): round(v, 1) for c, v in zip(d.category, d.value)}
    assert got == PUBLISHED_2022
    assert d.n_unweighted.unique().tolist() == [n]
    labels = dict(zip(d.category, d.category_label))
    assert labels["9"] == "無回答" and labels["5"] == "しばしばある・常にある"
    nat = ind[(ind.area_code == "00") & (ind.breakdown == "total")].set_index("indicator_id")
    assert round(nat.loc["lonely_often_always", "value"], 1) == 4.9
    assert nat.loc["lonely_any", "value"] == pytest.approx((counts[3] + counts[4] + counts[5]) / n * 100)
    assert nat.loc["lonely_often_always", "n_unweighted"] == n


# --- Weighted estimate vs a hand computation ------------------------------------------------------


def test_weighted_share_ci_and_neff_match_hand_computation(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_tables(con)
    rng = np.random.default_rng(7)
    k = 400
    w = np.round(rng.uniform(0.2, 3.0, k), 3)
    lon = rng.choice([1, 2, 3, 4, 5, 9], size=k, p=[0.2, 0.4, 0.2, 0.1, 0.08, 0.02])
    worries = rng.choice([1, 2, 9], size=k, p=[0.7, 0.29, 0.01])
    support = np.where(worries == 1, rng.choice([1, 2, 9], size=k, p=[0.1, 0.85, 0.05]), 9)
    rows = [
        dict(
            survey_id="national-2024",
            survey_year=2024,
            respondent_id=str(i),
            pref_code=13,
            weight=float(w[i]),
            q_loneliness=int(lon[i]),
            q_has_worries=int(worries[i]),
            q_support_received=int(support[i]),
        )
        for i in range(k)
    ]
    insert_rows(con, rows)
    ind, _ = compute_indicators(con, 2024)
    row = ind[(ind.area_code == "00") & (ind.indicator_id == "lonely_often_always") & (ind.breakdown == "total")].iloc[
        0
    ]
    y = (lon == 5).astype(float)
    p = (w * y).sum() / w.sum()
    # Kish's n_eff divided by the survey's design effect: no design columns, so the default (1.5).
    n_eff = w.sum() ** 2 / (w**2).sum() / config.DEFAULT_DEFF
    z = 1.959963984540054
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff**2))
    assert row.value == pytest.approx(p * 100)
    assert row.n_effective == pytest.approx(n_eff)
    assert row.n_unweighted == k
    assert row.lower_ci95 == pytest.approx((centre - half) * 100)
    assert row.upper_ci95 == pytest.approx((centre + half) * 100)
    lo, hi = proportion_confint(p * n_eff, n_eff, alpha=0.05, method="wilson")
    assert (row.lower_ci95, row.upper_ci95) == pytest.approx((lo * 100, hi * 100))
    # Sub-population: not receiving support among those with worries (無回答 of support kept in base).
    sub = worries == 1
    row = ind[
        (ind.area_code == "00") & (ind.indicator_id == "no_support_among_worried") & (ind.breakdown == "total")
    ].iloc[0]
    assert row.n_unweighted == sub.sum()
    assert row.value == pytest.approx((w[sub] * (support[sub] == 2)).sum() / w[sub].sum() * 100)
    # Tokyo (13) holds every respondent: same value as national, no own survey.
    tokyo = ind[
        (ind.area_code == "13") & (ind.indicator_id == "lonely_often_always") & (ind.breakdown == "total")
    ].iloc[0]
    assert tokyo.value == pytest.approx(p * 100)
    assert tokyo.note == f"出典: 全国調査の当該県回答者 (n={k})"
    # Tokyo is the whole national sample: the rest of the nation is empty, nothing to compare with.
    assert tokyo.comparison == "not_compared" and tokyo.comparison_method == "none"
    assert tokyo.source == "national_subsample" and tokyo.design_effect == config.DEFAULT_DEFF


# --- Area source, suppression, reference values ---------------------------------------------------


def test_own_survey_is_preferred_and_small_bases_are_suppressed(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    create_tables(con)
    rows = []
    # National: 40 respondents in Saitama (11), all lonely; 20 in Tottori (31); 50 in Shimane (32),
    # 5 of them often/always lonely and varied answers to the other questions; 50 in Kochi (39),
    # none lonely; 1,500 in Tokyo (13).
    for pref, n, lon in ((11, 40, 5), (31, 20, 2), (39, 50, 2), (13, 1500, 2)):
        rows += [dict(survey_id="national-2024", survey_year=2024, pref_code=pref, q_loneliness=lon) for _ in range(n)]
    rows += [dict(survey_id="national-2024", survey_year=2024, pref_code=32, **varied(i, 5)) for i in range(50)]
    # Saitama's own survey: 1,512 respondents, 100 often/always lonely.
    rows += [
        dict(
            survey_id="pref11-2024",
            survey_year=2024,
            survey_kind="prefecture",
            pref_code=11,
            q_loneliness=5 if i < 100 else 1,
        )
        for i in range(1512)
    ]
    for i, r in enumerate(rows):
        r["respondent_id"] = str(i)
    insert_rows(con, rows)
    ind, dist = compute_indicators(con, 2024)
    tot = ind[(ind.indicator_id == "lonely_often_always") & (ind.breakdown == "total")].set_index("area_code")
    assert tot.loc["11", "note"] == "出典: 埼玉県独自調査 pref11-2024 (n=1,512)"
    assert tot.loc["11", "n_unweighted"] == 1512
    assert tot.loc["11", "value"] == pytest.approx(100 / 1512 * 100)
    # National figures from the national survey only (the 1,512 own-survey answers are not in it).
    assert tot.loc["00", "n_unweighted"] == 40 + 20 + 50 + 50 + 1500
    assert tot.loc["00", "note"] == "出典: 全国調査 national-2024 (n=1,660)"
    assert tot.loc["00", "value"] == pytest.approx(45 / 1660 * 100)
    # Tottori: 20 < 30 -> suppressed, no value, no interval, not compared.
    t = tot.loc["31"]
    assert bool(t.suppressed) and pd.isna(t.value) and pd.isna(t.lower_ci95) and pd.isna(t.upper_ci95)
    assert t.note == "出典: 全国調査の当該県回答者 (30人未満); n<30 非表示"  # no base published
    assert pd.isna(t.n_unweighted) and pd.isna(t.n_effective)
    assert t.comparison == "not_compared"
    # Shimane: 50 -> 参考値, shown.
    s = tot.loc["32"]
    assert not s.suppressed and s.value == pytest.approx(10.0)
    assert s.note == "出典: 全国調査の当該県回答者 (n=50); 参考値 (n=50)"
    # Kochi: no one of 50 often/always lonely (an exact 0% on a base < 100) -> a reference value
    # with its interval and a note (#22), not suppressed.
    k = tot.loc["39"]
    assert not bool(k.suppressed) and k.value == 0.0 and k.n_unweighted == 50 and k.upper_ci95 > 5
    assert (
        k.note
        == "出典: 全国調査の当該県回答者 (n=50); 参考値 (n=50); 0%または100%（集計対象100人未満）：信頼区間を参照"
    )
    # Tokyo vs national: 0% lonely against 2.7% -> better (interval wholly below).
    assert tot.loc["13", "comparison"] == "better"
    # An area with no respondents at all still has its rows, suppressed.
    assert bool(tot.loc["47", "suppressed"]) and pd.isna(tot.loc["47", "n_unweighted"])
    # Distributions follow the same suppression rule.
    d = dist[(dist.area_code == "31") & (dist.question == "q_loneliness") & (dist.breakdown == "total")]
    assert d.suppressed.all() and d.value.isna().all()
    # No previous round -> change not compared.
    assert set(ind.change_vs_previous) == {"not_compared"}


def test_unknown_year_is_a_usage_error(two_rounds, tmp_path):
    con = duckdb.connect(str(two_rounds), read_only=True)
    with pytest.raises(UsageError) as exc:
        compute_indicators(con, 2019)
    con.close()
    assert str(exc.value) == (
        "--year: 2019 年の全国調査が倉庫にありません / no national survey for 2019 "
        "in the warehouse (available rounds: 2023, 2024)"
    )
    with pytest.raises(UsageError) as exc:
        run_indicators(2019, two_rounds, tmp_path / "out")
    assert exc.value.parameter == "--year"
    assert not (tmp_path / "out" / "runs").exists()


# --- Full grid, comparisons and changes on two generated rounds -----------------------------------


def test_every_area_indicator_and_breakdown_is_present(computed):
    ind, dist = computed
    assert list(ind.columns) == schema.INDICATOR_COLUMNS
    cat = load_catalogue()
    assert set(ind.indicator_id) == {i.id for i in cat}
    for i in cat:
        rows = ind[ind.indicator_id == i.id]
        expected = {(a, b) for a in AREA_CODES for b in i.breakdowns}
        assert set(zip(rows.area_code, rows.breakdown)) == expected, i.id
        assert len(rows) == len(expected)
    assert len(AREA_CODES) == 48
    lon = ind[ind.indicator_id == "lonely_often_always"]
    assert set(lon.breakdown) == set(BREAKDOWNS_COMMON + BREAKDOWNS_UK)
    assert not any(ind[ind.indicator_id == "ucla_10_12"].breakdown.str.startswith("uk_age="))
    # Small cells exist and are suppressed; large ones are not.
    assert ind.suppressed.any() and (~ind.suppressed).any()
    assert (ind.suppressed == ind.value.isna())[ind.indicator_id == "lonely_any"].all()
    surv = ind[ind.note.str.startswith("出典: ") & ~ind.note.str.startswith("出典: 事業")]
    primary = surv.note.str.contains("; n<30 非表示|; n_eff<30 非表示", regex=True)
    secondary = surv.note.str.contains("; secondary suppression / 二次秘匿", regex=False)
    assert primary.any() and secondary.any() and not (primary & secondary).any()
    # Suppressed rows: primary (n < 30, or exactly 0% / 100% on a base < 100) or secondary (二次秘匿),
    # and no base published for either.
    assert (surv.suppressed == (primary | secondary)).all()
    assert surv.loc[surv.suppressed, ["value", "n_unweighted", "n_effective"]].isna().all().all()
    # Published rows have a base of at least 30.
    assert (surv.loc[~surv.suppressed, "n_unweighted"] >= 30).all()
    # Distributions: shares of each area x breakdown sum to 100 (all categories incl. 無回答).
    shown = dist[~dist.suppressed]
    sums = shown.groupby(["area_code", "question", "breakdown"]).value.sum()
    assert np.allclose(sums, 100.0)
    assert set(dist.question) >= {"q_loneliness", "ucla_band"}
    assert set(dist[dist.question == "ucla_band"].category) == set(schema.UCLA_BANDS)
    assert dist.area_code.nunique() == 48


def _weighted(con, where: str, num: str) -> tuple[float, float]:
    """(share, Kish n_eff) straight from the respondents (independent of the indicators code)."""
    sw, sw2, swy = con.execute(
        f"SELECT sum(weight), sum(weight * weight), "
        f"sum(CASE WHEN {num} THEN weight ELSE 0 END) FROM survey_responses "
        f"WHERE {where}"
    ).fetchone()
    return swy / sw, sw * sw / sw2


class TestComparisonAndChange:
    """Area vs national and change vs the previous round, recomputed from the respondents with
    statsmodels' Newcombe interval / scipy's Fisher test (the case each row's method names)."""

    def test_subsample_is_compared_with_the_rest_of_the_nation(self, computed, two_rounds):
        from statsmodels.stats.proportion import confint_proportions_2indep

        ind, _ = computed
        con = duckdb.connect(str(two_rounds), read_only=True)
        checked = 0
        for code in (13, 27, 31, 40):
            row = ind[
                (ind.area_code == f"{code:02d}")
                & (ind.indicator_id == "lonely_often_always")
                & (ind.breakdown == "total")
            ].iloc[0]
            p_a, n_a = _weighted(
                con, f"survey_year = 2024 AND survey_kind = 'national' AND pref_code = {code}", "q_loneliness = 5"
            )
            p_r, n_r = _weighted(
                con, f"survey_year = 2024 AND survey_kind = 'national' AND pref_code <> {code}", "q_loneliness = 5"
            )
            # no design columns: Kish's n_eff / the default design effect
            n_a, n_r = n_a / config.DEFAULT_DEFF, n_r / config.DEFAULT_DEFF
            assert row.source == "national_subsample"
            assert row.value == pytest.approx(p_a * 100) and row.n_effective == pytest.approx(n_a)
            pooled = (p_a * n_a + p_r * n_r) / (n_a + n_r)
            if min(n_a, n_r) * min(pooled, 1 - pooled) < 5:
                assert row.comparison_method == "fisher_rest"
                continue
            lo, up = confint_proportions_2indep(p_a * n_a, n_a, p_r * n_r, n_r, method="newcomb")
            expected = "similar" if lo <= 0 <= up else ("worse" if lo > 0 else "better")
            assert row.comparison_method == "newcombe_rest" and row.comparison == expected
            checked += 1
        con.close()
        assert checked >= 2

    def test_own_survey_is_compared_with_national_both_uncertainties(self, computed, two_rounds):
        from statsmodels.stats.proportion import confint_proportions_2indep

        ind, _ = computed
        con = duckdb.connect(str(two_rounds), read_only=True)
        p_n, n_n = _weighted(con, "survey_year = 2024 AND survey_kind = 'national'", "q_loneliness IN (3, 4, 5)")
        p_s, n_s = _weighted(con, "survey_year = 2024 AND survey_kind = 'prefecture'", "q_loneliness IN (3, 4, 5)")
        con.close()
        n_n, n_s = n_n / config.DEFAULT_DEFF, n_s / config.DEFAULT_DEFF  # no design columns: the default
        row = ind[(ind.area_code == "11") & (ind.indicator_id == "lonely_any") & (ind.breakdown == "total")].iloc[0]
        assert row.source == "own_survey" and row.comparison_method == "newcombe"
        assert row.national_value == pytest.approx(p_n * 100)
        lo, up = confint_proportions_2indep(p_s * n_s, n_s, p_n * n_n, n_n, method="newcomb")
        assert row.comparison == ("similar" if lo <= 0 <= up else ("worse" if lo > 0 else "better"))

    def test_every_row_labelled_by_its_method(self, computed):
        ind, _ = computed
        cat = {i.id: i for i in load_catalogue()}
        surv = ind[ind.indicator_id.map(lambda i: cat[i].source == "survey")]
        pref = surv[surv.area_code != "00"]
        assert set(pref.comparison_method) <= {"newcombe", "fisher", "newcombe_rest", "fisher_rest", "none"}
        assert (pref.loc[pref.comparison_method == "none", "comparison"] == "not_compared").all()
        assert (pref.loc[pref.suppressed, "comparison_method"] == "none").all()
        assert {"better", "worse", "similar", "not_compared"} <= set(pref.comparison)
        nat = surv[surv.area_code == "00"]
        assert (nat.value == nat.national_value).all() and set(nat.comparison) == {"not_compared"}
        assert set(nat.source) == {"national"} and set(nat.comparison_method) == {"none"}

    def test_change_uses_newcombe_or_exact_test(self, computed, two_rounds):
        ind, _ = computed
        con = duckdb.connect(str(two_rounds), read_only=True)
        prev, _ = compute_indicators(con, 2023)
        con.close()
        cat = {i.id: i for i in load_catalogue()}
        surv = ind[ind.indicator_id.map(lambda i: cat[i].source == "survey")]
        m = surv.merge(prev, on=["area_code", "indicator_id", "breakdown"], suffixes=("", "_p"))
        # A change across a change of source is shown, not tested (#22).
        brk = m[m.source_changed]
        assert len(brk) and (brk.change_vs_previous == "not_compared").all()
        assert (brk.change_method == "source_break").all()
        m = m[~m.source_changed]
        # The test takes both rounds as published (shares to 0.1 point, effective sizes to 0.1).
        r = stats.difference_test(
            published_share(m.value) / 100,
            published_n(m.n_effective),
            published_share(m.value_p) / 100,
            published_n(m.n_effective_p),
        )
        assert (m.change_vs_previous.to_numpy() == stats.change_label(r["direction"], r["significant"])).all()
        assert (m.change_method.to_numpy() == r["method"]).all()
        assert {"newcombe", "fisher"} <= set(m.change_method)
        tested = m[m.change_method != "none"]
        assert (tested.previous_value == tested.value_p).all()
        assert np.allclose(tested.change_difference, published_share(tested.value) - published_share(tested.value_p))
        assert set(m.previous_year.dropna()) == {2023}
        assert set(prev.change_vs_previous) == {"not_compared"} and prev.previous_year.isna().all()
        row = m[(m.area_code == "00") & (m.indicator_id == "lonely_often_always") & (m.breakdown == "total")].iloc[0]
        assert row.change_vs_previous == "increase"  # generated with a +3-point shift
        # Saitama's own survey in 2024 vs the national subsample in 2023: marked in a column and the note.
        sai = surv[(surv.area_code == "11") & (surv.breakdown == "total")].iloc[0]
        assert sai.note.startswith("出典: 埼玉県独自調査 pref11-2024 (n=600)")
        assert "前回は全国調査の当該県回答者で出典が異なるため前回との比較はしない" in sai.note
        assert sai.source_changed and sai.source == "own_survey"
        assert sai.change_method == "source_break" and sai.change_vs_previous == "not_compared"
        assert sai.previous_value > 0 and np.isnan(sai.change_difference)  # both values shown, not tested
        assert not surv[surv.area_code == "13"].source_changed.any()

    def test_small_counts_get_the_exact_test(self, tmp_path, monkeypatch):
        """Tottori-like, design effect 1: 1/46 -> 7/46 is not a significant change (Fisher p =
        0.0585), though the z-test and the Newcombe interval say it is. (0/46 would now be
        suppressed: an exact 0% on a base under 100.)"""
        monkeypatch.setenv(config.DEFF_ENV, "1")
        con = duckdb.connect(str(tmp_path / "w.duckdb"))
        create_tables(con)
        rows = []
        for year, k_lonely in ((2023, 1), (2024, 7)):
            rows += [
                dict(
                    survey_id=f"national-{year}",
                    survey_year=year,
                    respondent_id=f"{year}-{i}",
                    pref_code=31,
                    **varied(i, k_lonely),
                )
                for i in range(46)
            ]
            rows += [
                dict(
                    survey_id=f"national-{year}",
                    survey_year=year,
                    respondent_id=f"{year}-t{i}",
                    pref_code=13,
                    q_loneliness=5 if i % 20 == 0 else 2,
                )
                for i in range(400)
            ]
        insert_rows(con, rows)
        ind, _ = compute_indicators(con, 2024)
        row = ind[
            (ind.area_code == "31") & (ind.indicator_id == "lonely_often_always") & (ind.breakdown == "total")
        ].iloc[0]
        assert row.value == pytest.approx(700 / 46)
        assert row.change_method == "fisher" and row.change_vs_previous == "no_change"
        assert row.change_p_value == pytest.approx(0.0585, abs=1e-4) and row.change_lower_ci95 > 0
        assert row.previous_value == pytest.approx(100 / 46) and row.previous_n_effective == 46
        z, p = stats.two_proportion_test(7 / 46, 46, 1 / 46, 46)
        assert p < 0.05  # what the z-test said
        con.close()

    def test_design_effect_from_the_environment(self, two_rounds, computed, monkeypatch):
        monkeypatch.setenv("TSUNAGARI_DEFF", "national=2,prefecture=1.5")
        con = duckdb.connect(str(two_rounds), read_only=True)
        ind, _ = compute_indicators(con, 2024)
        con.close()
        base, _ = computed  # the same round without the setting
        key = (ind.indicator_id == "lonely_often_always") & (ind.breakdown == "total")
        nat, nat0 = ind[key & (ind.area_code == "00")].iloc[0], base[key & (base.area_code == "00")].iloc[0]
        sai = ind[key & (ind.area_code == "11")].iloc[0]
        sai0 = base[key & (base.area_code == "11")].iloc[0]
        assert nat.design_effect == 2.0 and sai.design_effect == 1.5 and nat0.design_effect == config.DEFAULT_DEFF
        assert nat.n_effective == pytest.approx(nat0.n_effective * config.DEFAULT_DEFF / 2)
        assert sai.n_effective == pytest.approx(sai0.n_effective * config.DEFAULT_DEFF / 1.5)
        lo, up = proportion_confint(nat.value / 100 * nat.n_effective, nat.n_effective, method="wilson")
        assert (nat.lower_ci95, nat.upper_ci95) == pytest.approx((lo * 100, up * 100))
        assert nat.upper_ci95 - nat.lower_ci95 > nat0.upper_ci95 - nat0.lower_ci95

        def flagged(d):
            return d.comparison.isin(["better", "worse", "higher", "lower"]).sum()

        assert flagged(ind) < flagged(base)


class TestEveryRound:
    def test_all_rounds_in_one_pass_and_incremental(self, updated, tmp_path):
        from pipelines.indicators.stage import round_keys, update_indicators

        first, result = updated  # update_indicators on a copy of two_rounds, and what it returned
        assert result == {"computed": [2023, 2024], "kept": [], "removed": []}
        path = tmp_path / "wh.duckdb"
        path.write_bytes(first.read_bytes())
        con = duckdb.connect(str(path))
        years = dict(con.execute("SELECT year, count(*) FROM indicators GROUP BY year").fetchall())
        assert set(years) == {2023, 2024}
        one, _ = compute_indicators(con, 2024)
        stored = con.execute("SELECT * FROM indicators WHERE year = 2024").df()
        pd.testing.assert_frame_equal(stored.reset_index(drop=True), one.reset_index(drop=True), check_dtype=False)
        assert update_indicators(con) == {"computed": [], "kept": [2023, 2024], "removed": []}
        # A new round 2025: only 2025 is computed (2024's inputs are unchanged).
        keys = round_keys(con)
        generate_round(con, 2025, 3_000, seed=0.44)
        assert round_keys(con)[2024] == keys[2024]
        assert update_indicators(con) == {"computed": [2025], "kept": [2023, 2024], "removed": []}
        # A round inserted before: 2022, the round after it (2023, whose previous round it is) and
        # 2024, whose pooled estimates (small_area.POOL_ROUNDS = 3 rounds) now take in 2022.
        generate_round(con, 2022, 3_000, seed=0.55)
        assert update_indicators(con) == {"computed": [2022, 2023, 2024], "kept": [2025], "removed": []}
        assert con.execute(
            "SELECT DISTINCT previous_year FROM indicators WHERE year = 2023 AND source <> 'programme'"
        ).fetchall() == [(2022,)]
        # A round removed from the warehouse: its rows go too.
        con.execute("DELETE FROM survey_responses WHERE survey_year = 2025")
        assert update_indicators(con)["removed"] == [2025]
        assert 2025 not in {r[0] for r in con.execute("SELECT DISTINCT year FROM indicators").fetchall()}
        con.close()

    def test_older_table_layout_is_recreated(self, two_rounds, tmp_path):
        from pipelines.indicators.stage import update_indicators

        path = tmp_path / "wh.duckdb"
        path.write_bytes(two_rounds.read_bytes())
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE indicators (year INTEGER, area_code VARCHAR)")
        con.execute("INSERT INTO indicators VALUES (2024, '00')")
        assert update_indicators(con)["computed"] == [2023, 2024]
        cols = [r[0] for r in con.execute("DESCRIBE indicators").fetchall()]
        assert cols == schema.INDICATOR_COLUMNS
        con.close()

    def test_programme_every_fiscal_year(self, two_rounds, tmp_path):
        from pipelines.indicators.stage import rounds, update_indicators

        path = tmp_path / "wh.duckdb"
        path.write_bytes(two_rounds.read_bytes())
        con = duckdb.connect(str(path))
        generate_programme_year = con.execute  # the fixture's programme is FY2024; add FY2023
        generate_programme_year(
            "INSERT INTO programme SELECT 2023, pref_code, metric_id, value, unit, source, "
            "file_id, source_row FROM programme WHERE fiscal_year = 2024"
        )
        assert rounds(con) == [2023, 2024]
        update_indicators(con)
        prog = con.execute(
            "SELECT year, previous_year, count(*) FROM indicators WHERE source = 'programme' GROUP BY ALL ORDER BY 1"
        ).fetchall()
        assert [(y, p) for y, p, _ in prog] == [(2023, None), (2024, 2023)]
        con.close()


def test_programme_rates_and_flags(computed):
    ind, _ = computed
    pop = pd.read_csv(config.REFERENCE_DIR / "prefectures.csv").set_index("pref_code").population_2020
    cons = ind[ind.indicator_id == "consultations_per_10k"].set_index("area_code")
    # generate_programme: phone = sns = 100 * pref_code
    assert cons.loc["13", "value"] == pytest.approx(2600 / (pop[13] * 0.8723) * 10_000)
    total = sum(200 * p for p in range(1, 48))
    assert cons.loc["00", "value"] == pytest.approx(total / (pop.sum() * 0.8723) * 10_000)
    assert (cons.national_value == cons.loc["00", "value"]).all()
    assert "16歳以上人口は推計" in cons.loc["13", "note"]
    assert cons.lower_ci95.isna().all() and not cons.suppressed.any()
    plat = ind[ind.indicator_id == "has_platform"].set_index("area_code")
    assert plat.loc["01", "value"] == 1 and plat.loc["02", "value"] == 0
    assert plat.loc["00", "value"] == pytest.approx(24 / 47 * 100)
    assert set(plat.comparison) == {"not_compared"}


def test_new_catalogue_entry_needs_no_code(two_rounds, tmp_path):
    doc = yaml.safe_load(config.INDICATOR_CATALOGUE.read_text(encoding="utf-8"))
    doc["indicators"] = [e for e in doc["indicators"] if e["source"] == "survey"][:1] + [
        dict(
            id="has_worries",
            name_ja="日常生活に不安や悩みがある人の割合",
            name_en="Has worries",
            pillar=2,
            source="survey",
            numerator="q_has_worries = 1",
            denominator="all",
            polarity="no_judgement",
            uk_comparable=False,
            unit="percent",
        )
    ]
    path = tmp_path / "catalogue.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    cat = load_catalogue(path)
    con = duckdb.connect(str(two_rounds), read_only=True)
    ind, _ = compute_indicators(con, 2024, cat)
    hand = con.execute(
        "SELECT sum(weight) FILTER (WHERE q_has_worries = 1) / sum(weight) * 100 "
        "FROM survey_responses WHERE survey_year = 2024 AND survey_kind = 'national'"
    ).fetchone()[0]
    con.close()
    rows = ind[ind.indicator_id == "has_worries"]
    assert len(rows) == 48 * len(BREAKDOWNS_COMMON)
    assert rows[(rows.area_code == "00") & (rows.breakdown == "total")].value.iloc[0] == pytest.approx(hand)


def test_bad_catalogue_entries_are_named(tmp_path, two_rounds):
    path = tmp_path / "c.yml"
    path.write_text("indicators:\n  - id: x\n    name_ja: x\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        load_catalogue(path)
    assert "entry 1 (x): missing field(s) name_en" in str(exc.value)
    bad = dict(
        id="broken",
        name_ja="x",
        name_en="x",
        pillar=1,
        source="survey",
        numerator="no_such_column = 1",
        denominator="all",
        polarity="low_is_good",
        uk_comparable=False,
        unit="percent",
    )
    path.write_text(yaml.safe_dump({"indicators": [bad]}), encoding="utf-8")
    con = duckdb.connect(str(two_rounds), read_only=True)
    with pytest.raises(DataError) as exc:
        compute_indicators(con, 2024, load_catalogue(path))
    con.close()
    assert "column 'broken'" in str(exc.value) and "not a valid SQL expression" in str(exc.value)


def test_write_replaces_only_that_year(tmp_path, two_rounds, computed):
    path = tmp_path / "copy.duckdb"
    path.write_bytes(two_rounds.read_bytes())
    ind, dist = computed
    con = duckdb.connect(str(path))
    other = ind.assign(year=2023).head(5)
    write_indicators(con, 2023, other, dist.assign(year=2023).head(3))
    write_indicators(con, 2024, ind, dist)
    write_indicators(con, 2024, ind, dist)  # idempotent
    counts = dict(con.execute("SELECT year, count(*) FROM indicators GROUP BY year").fetchall())
    assert counts == {2023: 5, 2024: len(ind)}
    assert con.execute("SELECT count(*) FROM distributions WHERE year = 2024").fetchone()[0] == len(dist)
    back = con.execute(
        "SELECT * FROM indicators WHERE year = 2024 AND area_code = '31' "
        "AND indicator_id = 'lonely_often_always' AND breakdown = 'total'"
    ).df()
    assert back.note.iloc[0].startswith("出典: 全国調査の当該県回答者")
    with pytest.raises(ValueError):
        write_indicators(con, 2022, ind, dist)
    con.close()


# --- The notebook (real papermill) and the downloads ----------------------------------------------


def test_notebook_run_writes_table_audit_record_and_downloads(staged):
    # the programme file named '=HYPERLINK("x")': a label a spreadsheet would read as a formula
    path, out = staged
    executed = Path((out.parent / "executed.txt").read_text(encoding="utf-8"))  # run_indicators' return
    assert executed == out / "runs" / "indicators-2024.ipynb"
    nb = json.loads(executed.read_text(encoding="utf-8"))
    # the record is published: the warehouse relative to the working folder the notebook ran in
    import os

    assert nb["metadata"]["papermill"]["parameters"] == {
        "year": 2024,
        "warehouse": os.path.relpath(path.resolve()),
        "stage": True,
    }
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))
    con = duckdb.connect(str(path), read_only=True)
    n = con.execute("SELECT count(*) FROM indicators WHERE year = 2024").fetchone()[0]
    areas = con.execute("SELECT count(DISTINCT area_code) FROM indicators WHERE year = 2024").fetchone()[0]
    con.close()
    assert n > 0 and areas == 48

    csv = out / "downloads" / "indicators-2024.csv"
    raw = csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    assert "出典: 埼玉県独自調査 pref11-2024" in text and "全国調査の当該県回答者" in text
    # line 1 the Japanese headers, line 2 the column codes (the contract's names), then the rows
    assert text.split("\r\n", 1)[0].split(",")[:4] == ["合成データ", "調査年", "地域コード", "地域名"]
    df = pd.read_csv(io.StringIO(text), dtype={"area_code": str}, header=1)
    assert list(df.columns[:4]) == ["synthetic", "year", "area_code", "area_name"] and df.synthetic.all()
    assert set(schema.INDICATOR_COLUMNS) <= set(df.columns)
    assert len(df) == n and "東京都" in set(df.area_name)
    assert df.loc[df.indicator_id == "lonely_often_always", "indicator_name_ja"].iloc[0].startswith("孤独感が")

    wb = openpyxl.load_workbook(out / "downloads" / "indicators-2024.xlsx", read_only=True)
    assert wb.sheetnames == ["指標 (indicators)", "注記 (notes)", "列の説明 (data dictionary)"]
    rows = list(wb["指標 (indicators)"].iter_rows(values_only=True))
    ja, header = rows[0], rows[1]
    assert "値" in ja and "全国値" in ja and "地域名" in ja
    assert list(header) == list(df.columns)
    assert len(rows) == n + 2
    rec = dict(
        zip(
            header,
            rows[
                2
                + df.index[
                    (df.area_code == "13") & (df.indicator_id == "lonely_often_always") & (df.breakdown == "total")
                ][0]
            ],
        )
    )
    assert rec["area_name"] == "東京都" and rec["national_value"] is not None
    notes = {r[0]: r[1] for r in wb["注記 (notes)"].iter_rows(values_only=True)}
    assert list(notes)[1] == "【注意】合成データ / SYNTHETIC DATA"  # the first row under the header
    assert "合成" in notes["【注意】合成データ / SYNTHETIC DATA"]
    sources = [v for k, v in notes.items() if k and k.startswith("出典ファイル")]
    assert any(v.startswith("'=HYPERLINK") for v in sources)
    assert "0.8723" in notes["16歳以上人口 / population 16+"]
    assert notes["設計効果の設定 / design effects in force"].startswith(
        "標本設計（列 stratum・psu）のある調査は、テイラー線形化"
    )
    assert f"既定値 {config.DEFAULT_DEFF:g}" in notes["設計効果の設定 / design effects in force"]
    from pipelines.domain import method_statement

    assert notes["設計効果 / Design effect"].startswith(method_statement.text("design_effect"))
    cmp = notes["全国との比較 / Comparison with national"]
    assert cmp.startswith(method_statement.text("comparison"))  # the one method statement, verbatim
    assert "Newcombe" in cmp and "Fisher" in notes["前回からの変化 / Change since the previous round"]
    assert "当該県を除く全国" in cmp
    # Every round: one tidy file with a year column, and one file per round.
    every = pd.read_csv(out / "downloads" / "indicators.csv", dtype={"area_code": str}, encoding="utf-8-sig", header=1)
    assert sorted(every.year.unique()) == [2023, 2024] and len(every[every.year == 2024]) == n
    assert {"source", "previous_year", "source_changed", "comparison_method", "change_method", "design_effect"} <= set(
        every.columns
    )
    assert (out / "downloads" / "indicators-2023.csv").is_file() and (
        out / "downloads" / "indicators-2023.xlsx"
    ).is_file()
    wb = openpyxl.load_workbook(out / "downloads" / "indicators.xlsx", read_only=True)
    notes = {r[0]: r[1] for r in wb["注記 (notes)"].iter_rows(values_only=True)}
    assert "2023～2024年（全調査回）" in notes["表題 / Title"] and "方法 fisher_rest" in notes


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outputs(nb: dict) -> str:
    """The text of every output of an executed notebook (streams, plain-text results, errors)."""
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append("".join(o["text"]))
            elif o.get("output_type") == "error":
                out.append(f"ERROR {o['ename']}: {o['evalue']}")
            else:
                out.append("".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def _record_findings(wh: Path, site: Path) -> list:
    """The published site's disclosure check of ``site/runs/indicators-2024.ipynb``."""
    from pipelines.disclosure.check import check_files, make_context

    return check_files(site, ["runs/indicators-2024.ipynb"], make_context(wh, site, 2024))


class TestNotebookByHand:
    """The indicators notebook run by hand (papermill, the defaults of its parameters cell but the
    warehouse) shows the computation in steps and leaves the warehouse file untouched."""

    def _run_by_hand(self, warehouse: Path, tmp_path: Path) -> tuple[str, Path]:
        """(the text of the outputs, the copy of `warehouse` it ran on); asserts the copy's bytes are
        unchanged and no cell failed."""
        import papermill as pm

        wh = tmp_path / "wh.duckdb"
        wh.write_bytes(warehouse.read_bytes())
        before = _sha256(wh)
        executed = tmp_path / "site" / "runs" / "indicators-2024.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)
        pm.execute_notebook(
            str(config.INDICATORS_NOTEBOOK), str(executed), parameters={"warehouse": str(wh)}, progress_bar=False
        )
        assert _sha256(wh) == before
        text = _outputs(json.loads(executed.read_text(encoding="utf-8")))
        assert "ERROR" not in text
        assert "read-only run: the warehouse was not changed" in text
        return text, wh

    def test_fresh_warehouse_is_not_changed_and_steps_are_shown(self, two_rounds, tmp_path):
        text, wh = self._run_by_hand(two_rounds, tmp_path)  # no indicators tables yet
        assert "to compute: [2023, 2024]; kept: []; removed from the warehouse: []" in text
        assert "2024: indicators 6,384 rows" in text  # section 3 (13 indicators x 48 areas ...)
        assert "indicator cells" in text and "answer-distribution cells" in text  # 4.1 aggregation
        assert "subsample" in text and "own" in text  # 4.2 sources and design effects
        assert "secondary" in text and "published" in text  # 4.3 suppression counts
        hand = re.search(r"Wilson by hand \[([0-9.]+), ([0-9.]+)\] vs with_intervals \[([0-9.]+), ([0-9.]+)\]", text)
        assert hand and hand.group(1, 2) == hand.group(3, 4)  # 4.4 intervals
        assert "newcombe_rest" in text and "fisher" in text  # 4.5 vs national / rest of nation
        assert "previous round: 2023" in text  # 4.6 change
        assert "the steps reproduce the stage's 6,192 survey rows of 2024" in text  # 4.7
        con = duckdb.connect(str(wh), read_only=True)
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        con.close()
        assert "indicators" not in tables and "indicator_rounds" not in tables

    def test_after_the_stage_the_stored_round_is_retraced_read_only(self, staged, tmp_path):
        text, wh = self._run_by_hand(staged[0], tmp_path)  # two_rounds after the stage
        assert "to compute: []; kept: [2023, 2024]" in text
        # compared with the rows the stage stored (nothing computed in section 3)
        assert "the steps reproduce the stage's 6,192 survey rows of 2024" in text
        # The record is publishable: aggregates only (the published site's disclosure check).
        assert _record_findings(wh, tmp_path / "site") == []

    def test_the_stage_record_passes_the_disclosure_check(self, staged):
        wh, site = staged  # run_indicators(2024, wh, site) on a copy of two_rounds
        executed = site / "runs" / "indicators-2024.ipynb"
        text = _outputs(json.loads(executed.read_text(encoding="utf-8")))
        assert "written / 書き込み: computed [2023, 2024], kept [], removed []" in text
        assert _record_findings(wh, site) == []


class TestStageWrite:
    def test_stage_writes_what_update_indicators_writes(self, staged, updated):
        """The notebook as the stage (computed in its kernel, written by write_rounds) and
        update_indicators in this process leave the same tables, keys included."""
        a, b = staged[0], updated[0]  # both on a copy of two_rounds
        ca, cb = duckdb.connect(str(a), read_only=True), duckdb.connect(str(b), read_only=True)
        for table in ("indicators", "distributions", "indicator_rounds"):
            sql = f"SELECT * FROM {table} ORDER BY ALL"
            pd.testing.assert_frame_equal(ca.execute(sql).df(), cb.execute(sql).df(), check_exact=True)
        ca.close()
        cb.close()

    def test_a_warehouse_changed_since_the_plan_is_not_written(self, two_rounds, tmp_path):
        from pipelines.indicators.stage import compute_rounds, plan_rounds, store_rounds

        wh = tmp_path / "wh.duckdb"
        wh.write_bytes(two_rounds.read_bytes())
        con = duckdb.connect(str(wh))
        plan = plan_rounds(con)
        assert plan.todo == [2023, 2024] and plan.kept == [] and plan.removed == []
        computed = compute_rounds(con, plan.todo)
        generate_round(con, 2025, 3_000, seed=0.44)  # another process ingests meanwhile
        with pytest.raises(DataError) as err:
            store_rounds(con, plan, computed)
        assert "the warehouse changed while the indicators were computed; run again" in str(err.value)
        assert str(wh) in str(err.value)
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert not tables & {"indicators", "distributions", "indicator_rounds"}  # nothing written, not even created
        with pytest.raises(ValueError, match=r"computed rounds \[2024\] are not the planned rounds \[2023, 2024\]"):
            store_rounds(con, plan, {2024: computed[2024]})
        con.close()

    def test_plan_reads_a_warehouse_without_derived_tables(self, two_rounds):
        from pipelines.indicators.stage import plan_rounds

        con = duckdb.connect(str(two_rounds), read_only=True)
        plan = plan_rounds(con)
        con.close()
        assert plan.todo == [2023, 2024] and sorted(plan.keys) == [2023, 2024]


def test_execute_uses_this_interpreter_despite_a_foreign_python3_kernelspec(tmp_path, monkeypatch):
    import nbformat

    from pipelines.engine.notebook import execute_notebook

    spec_dir = tmp_path / "jp" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["/nonexistent/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "foreign",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jp"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import sys, pipelines; print(sys.executable, x * 2)"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "t.ipynb"
    nbformat.write(nb, src)
    dst = execute_notebook(src, tmp_path / "runs" / "t.ipynb", {"x": 21})
    out = nbformat.read(dst, 4).cells[-1].outputs[0]["text"]
    import sys

    assert out.strip() == f"{sys.executable} 42"


def test_area_download_and_formula_neutralisation(two_rounds, computed, tmp_path):
    from pipelines.io.xlsx import neutralise_frame
    from pipelines.outputs.downloads import write_indicator_downloads

    df = pd.DataFrame({"t": ["=1+1", "+x", "-y", "@z", "ok", None], "v": [-1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    out = neutralise_frame(df)
    assert out.t.tolist()[:5] == ["'=1+1", "'+x", "'-y", "'@z", "ok"] and pd.isna(out.t.iloc[5])
    assert out.v.tolist()[0] == -1.0  # numbers untouched
    path = tmp_path / "w.duckdb"
    path.write_bytes(two_rounds.read_bytes())
    ind, dist = computed
    con = duckdb.connect(str(path))
    write_indicators(con, 2024, ind, dist)
    csv, xlsx = write_indicator_downloads(con, 2024, tmp_path / "dl", area_code="13")
    con.close()
    assert csv.name == "indicators-2024-13.csv" and xlsx.exists()
    got = pd.read_csv(csv, encoding="utf-8-sig", dtype={"area_code": str}, header=1)
    assert set(got.area_code) == {"13"} and len(got) == (ind.area_code == "13").sum()
    assert got.breakdown.iloc[0] == "total" and got.breakdown_ja.iloc[0] == "全体"


class TestReproducible:
    def test_identical_runs_give_identical_figures(self, tmp_path):
        """Weighted sums must not depend on DuckDB's thread scheduling (they did, in the last bits)."""
        import hashlib

        from pipelines.ingest.sample import write_sample
        from pipelines.ingest.stage import ingest_dir

        write_sample(tmp_path / "in", rows=6000)
        wh = tmp_path / "wh.duckdb"
        ingest_dir(tmp_path / "in", wh, validate=False)
        con = duckdb.connect(str(wh), read_only=True)
        con.execute("SET threads TO 4")
        try:
            digests = set()
            for _ in range(6):
                ind, dist = compute_indicators(con, 2024)
                digests.add(hashlib.sha256(ind.to_csv().encode() + dist.to_csv().encode()).hexdigest())
            assert len(digests) == 1
            assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 4  # setting restored
        finally:
            con.close()


class TestHomogeneity:
    def test_matches_scipy_on_the_table(self, computed):
        from scipy.stats import chi2_contingency

        from pipelines.indicators.stage import homogeneity

        ind, _ = computed
        r = homogeneity(ind, "lonely_often_always", 2024)
        rows = ind[
            (ind.indicator_id == "lonely_often_always")
            & (ind.breakdown == "total")
            & (ind.area_code != "00")
            & ~ind.suppressed
        ]
        x = rows.value.to_numpy() / 100 * rows.n_effective.to_numpy()
        n = rows.n_effective.to_numpy()
        ref = chi2_contingency(np.vstack([x, n - x]), correction=False)
        assert r["k"] == len(rows) > 30 and r["df"] == len(rows) - 1
        assert r["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
        assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)


class TestMultipleComparisons:
    def test_counts(self, computed):
        from pipelines.indicators.stage import multiple_comparisons

        ind, _ = computed
        m = multiple_comparisons(ind, 2024)
        pref = ind[(ind.area_code != "00") & ind.source.isin(["national_subsample", "own_survey"])]
        assert m["change"]["n_tests"] == (pref.change_method != "none").sum() > 0
        assert m["change"]["n_flagged"] == pref.change_vs_previous.isin(["increase", "decrease"]).sum()
        assert m["comparison"]["expected_false"] == pytest.approx(0.05 * (pref.comparison_method != "none").sum())
        one = multiple_comparisons(ind, 2024, "11")
        assert one["comparison"]["n_tests"] == (pref[pref.area_code == "11"].comparison_method != "none").sum()


# --- Design-based design effects (issue #22 item 4) -----------------------------------------------


@pytest.fixture(scope="module")
def with_design(two_rounds, tmp_path_factory) -> Path:
    """The two rounds, the 2024 national survey given a stratified cluster design: strata = the
    prefecture's region, PSUs of ~24 respondents within a prefecture, the often/always lonely
    gathered in a few PSUs per stratum (so that indicator's deff is large, the others' near 1)."""
    path = tmp_path_factory.mktemp("design") / "warehouse.duckdb"
    path.write_bytes(two_rounds.read_bytes())
    con = duckdb.connect(str(path))
    pops = pd.read_csv(config.REFERENCE_DIR / "prefectures.csv")[["pref_code", "region"]]
    con.register("_regions", pops)
    con.execute("""
    UPDATE survey_responses AS s SET stratum = r.region,
      psu = lpad(CAST(s.pref_code AS VARCHAR), 2, '0') || '-' || CAST(
        (CASE WHEN s.q_loneliness = 5 THEN 0 ELSE 1 + hash(s.respondent_id) % 4 END
         + 5 * (hash(s.respondent_id || 'x') % 10)) % 50 AS VARCHAR)
    FROM _regions AS r WHERE r.pref_code = s.pref_code AND s.survey_id = 'national-2024'""")
    con.close()
    return path


class TestDesignEffects:
    def test_national_deff_estimated_per_indicator(self, with_design):
        from pipelines.domain import survey_design
        from pipelines.indicators.stage import survey_deffs

        con = duckdb.connect(str(with_design), read_only=True)
        inds = [i for i in load_catalogue() if i.source == "survey"]
        est = survey_deffs(con, 2024, inds, {})
        ind, _ = compute_indicators(con, 2024)
        micro = con.execute(
            "SELECT weight, stratum, psu, q_loneliness, q_has_worries, q_support_received "
            "FROM survey_responses WHERE survey_id = 'national-2024'"
        ).df()
        con.close()
        assert set(est.survey_id) == {"national-2024"}  # the own survey has no design
        assert est.set_index("indicator_id").loc["lonely_often_always", "n_strata"] == 8
        # The SQL path equals the microdata path (survey_design, itself checked against R survey).
        for ind_id, y, dom in (
            ("lonely_often_always", micro.q_loneliness == 5, None),
            ("lonely_any", micro.q_loneliness.isin([3, 4, 5]), None),
            ("no_support_among_worried", micro.q_support_received == 2, (micro.q_has_worries == 1).astype(float)),
        ):
            ref = survey_design.taylor_share(y.astype(float), micro.weight, micro.stratum, micro.psu, domain=dom)
            got = est.set_index("indicator_id").loc[ind_id]
            assert got.deff == pytest.approx(ref.deff[0], rel=1e-9), ind_id
            assert got.variance == pytest.approx(ref.variance[0], rel=1e-9), ind_id
        deff = est.set_index("indicator_id").deff
        assert deff["lonely_often_always"] > 3 and 0.7 < deff["lonely_any"] < 1.6
        # Every row of the national survey (national and subsample areas) uses its indicator's deff.
        nat = ind[ind.source.isin(["national", "national_subsample"]) & ind.indicator_id.isin(deff.index)]
        assert np.allclose(nat.design_effect, nat.indicator_id.map(deff))
        row = nat[
            (nat.area_code == "00") & (nat.indicator_id == "lonely_often_always") & (nat.breakdown == "total")
        ].iloc[0]
        w = micro.weight.to_numpy()
        kish = w.sum() ** 2 / (w**2).sum()
        assert row.n_effective == pytest.approx(kish / deff["lonely_often_always"])
        lo, up = proportion_confint(row.value / 100 * row.n_effective, row.n_effective, method="wilson")
        assert (row.lower_ci95, row.upper_ci95) == pytest.approx((lo * 100, up * 100))
        # The own survey (no design columns) keeps the default.
        own = ind[ind.source == "own_survey"]
        assert len(own) and (own.design_effect == config.DEFAULT_DEFF).all()

    def test_configured_entry_wins_over_the_estimate(self, with_design, monkeypatch):
        from pipelines.indicators.stage import area_sources

        con = duckdb.connect(str(with_design), read_only=True)
        inds = [i for i in load_catalogue() if i.source == "survey"]
        for setting, nat_deff, own_deff in (
            ("national=1.2", 1.2, config.DEFAULT_DEFF),
            ("national-2024=1.3,prefecture=1.1", 1.3, 1.1),
            ("2", 2.0, 2.0),
        ):
            src = area_sources(con, 2024, config.design_effects(setting), inds).set_index("area_code")
            assert src.loc["00", "deff"] == nat_deff and src.loc["00", "deff_method"] == "configured"
            assert src.loc["00", "deff_by_indicator"] is None
            assert src.loc["11", "deff"] == own_deff
        src = area_sources(con, 2024, {}, inds).set_index("area_code")
        assert src.loc["00", "deff_method"] == "estimated" and src.loc["13", "deff_method"] == "estimated"
        assert src.loc["11", "deff_method"] == "default"
        assert src.loc["00", "deff"] == max(src.loc["00", "deff_by_indicator"].values())
        con.close()

    def test_sensitivity_line_is_the_round_recomputed(self, with_design):
        from pipelines.indicators.stage import compare_with_national, comparison_flags, deff_sensitivity, round_data

        con = duckdb.connect(str(with_design), read_only=True)
        inds = [i for i in load_catalogue() if i.source == "survey"]
        sens = deff_sensitivity(con, 2024, inds=inds, effects={}).set_index("setting")
        assert list(sens.index) == ["1.0", "1.5", "2.0", "used"]
        for d in (1.0, 2.0):
            cur = compare_with_national(round_data(con, 2024, inds, {"*": d}).cells.copy())
            assert comparison_flags(cur) == sens.loc[f"{d:.1f}", list(comparison_flags(cur))].to_dict()
            pref = cur[(cur.area_code != "00") & cur.source_kind.isin(["subsample", "own"])]
            assert sens.loc[f"{d:.1f}", "n_tests"] == (pref.comparison_method != "none").sum()
            assert (
                sens.loc[f"{d:.1f}", "n_flagged"] == pref.comparison.isin(["better", "worse", "higher", "lower"]).sum()
            )
        con.close()
        assert (sens.expected == 0.05 * sens.n_tests).all()
        assert sens.loc["1.0", "n_flagged"] >= sens.loc["1.5", "n_flagged"] >= sens.loc["2.0", "n_flagged"]
        assert sens.loc["1.0", "n_flagged"] > sens.loc["2.0", "n_flagged"]

    def test_summary_per_survey(self, with_design):
        from pipelines.indicators.stage import design_effect_summary

        con = duckdb.connect(str(with_design), read_only=True)
        s = design_effect_summary(con, {}).set_index("survey_id")
        con.close()
        assert list(s.index) == ["national-2023", "national-2024", "pref11-2024"]
        assert s.loc["national-2024", "method"] == "estimated" and s.loc["national-2024", "n_strata"] == 8
        assert s.loc["national-2024", "deff_min"] < s.loc["national-2024", "deff_max"]
        assert (
            s.loc["national-2023", "method"] == "default" and s.loc["national-2023", "deff_max"] == config.DEFAULT_DEFF
        )
        assert s.loc["pref11-2024", "n"] == 600

    def test_round_key_changes_with_the_design(self, tmp_path):
        """The design columns are part of the survey file, so a corrected design (same answers, other
        PSUs) is a new file: the round's key changes and the round is recomputed."""
        from ingest_helpers import survey_rows, write_csv

        from pipelines.indicators.stage import round_keys
        from pipelines.ingest.stage import ingest_files

        rows = survey_rows(40)
        for i, r in enumerate(rows):
            r["stratum"], r["psu"] = "A", f"p{i % 4}"
        wh = tmp_path / "wh.duckdb"
        ingest_files([write_csv(tmp_path / "a" / "national-2024.csv", rows)], wh, validate=False)
        con = duckdb.connect(str(wh))
        key = round_keys(con)[2024]
        con.close()
        for i, r in enumerate(rows):
            r["psu"] = f"p{i % 5}"
        ingest_files([write_csv(tmp_path / "b" / "national-2024.csv", rows)], wh, validate=False)
        con = duckdb.connect(str(wh))
        assert round_keys(con)[2024] != key
        con.close()
