"""Reproducible, rounded downloads (issue 22 item 5) on the bundled sample data.

Every download row that carries a label also carries what it was tested against (the reference
value and its effective size, the difference with its 95% interval, Fisher's p where Fisher decided,
the method), and the label follows again from the row alone with ``pipelines.domain.stats``. A change
across a source break is shown, not tested. Published figures are rounded (shares to 0.1 point),
the warehouse keeps full precision; a 0% / 100% share on a base under 100 is a reference value with its interval; the
disclosure gate passes the rounded files and still catches a leak in them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.disclosure.check import check_published
from pipelines.domain import audit, config, schema, stats
from pipelines.domain.catalogue import load_catalogue
from pipelines.indicators.stage import EXTREME_NOTE, update_indicators
from pipelines.outputs.downloads import published_n, published_share, write_download_csv, write_downloads
from tests.shared_builds import shared_folder, shared_sample_ingest

TESTED = schema.TESTED_AGAINST_COLUMNS
CMP_COLS = ["reference_value", "reference_n_effective", "difference", "difference_lower_ci95", "difference_upper_ci95"]
CHG_COLS = ["previous_value", "previous_n_effective", "change_difference", "change_lower_ci95", "change_upper_ci95"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, Path]:
    """(warehouse, site) of the bundled sample: every round computed, the downloads written. Made
    once per session for the xdist workers (shared_folder) from a copy of the session's ingest of
    the sample (shared_sample_ingest); read only."""

    def make(d: Path) -> None:
        wh = d / "wh.duckdb"
        for f in shared_sample_ingest(tmp_path_factory).glob("wh.duckdb*"):  # (a .wal beside it, if any)
            shutil.copy2(f, d / f.name)
        con = duckdb.connect(str(wh))
        try:
            update_indicators(con)
        finally:
            con.close()
        write_downloads(None, wh, d / "site")

    d = shared_folder(tmp_path_factory, "repro-sample", make)
    return d / "wh.duckdb", d / "site"


def _csv(site: Path, name: str = "indicators.csv") -> pd.DataFrame:
    """A download as a script reads it: line 1 Japanese headers, line 2 the column codes."""
    return pd.read_csv(
        site / "downloads" / name, encoding="utf-8-sig", dtype={"area_code": str}, keep_default_na=True, header=1
    )


def _warehouse(wh: Path) -> pd.DataFrame:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute("SELECT * FROM indicators").df()
    finally:
        con.close()


def _survey(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.source.isin(["national", "national_subsample", "own_survey"])]


# --- Every label carries its reference ------------------------------------------------------------


def test_every_labelled_row_carries_its_reference_and_difference_interval(sample):
    _, site = sample
    df = _csv(site)
    cmp = df[df.comparison != "not_compared"]
    chg = df[df.change_vs_previous != "not_compared"]
    assert len(cmp) > 1000 and len(chg) > 1000
    assert cmp[CMP_COLS].notna().all().all() and cmp.comparison_method.ne("none").all()
    assert chg[CHG_COLS].notna().all().all() and chg.change_method.isin(["newcombe", "fisher"]).all()
    # Fisher's p exactly where Fisher decided; the interval holds the difference
    assert (cmp.p_value.notna() == cmp.comparison_method.str.startswith("fisher")).all()
    assert (chg.change_p_value.notna() == (chg.change_method == "fisher")).all()
    assert cmp.comparison_method.str.startswith("fisher").any() and (chg.change_method == "fisher").any()
    assert ((cmp.difference_lower_ci95 <= cmp.difference) & (cmp.difference <= cmp.difference_upper_ci95)).all()
    # the difference is value - reference as published (both rounded to 0.1 point)
    assert np.allclose(cmp.difference, cmp.value - cmp.reference_value, atol=0.051)
    assert np.allclose(chg.change_difference, chg.value - chg.previous_value, atol=0.051)
    # an own-survey area is tested against the national value, a subsample area against the rest
    own = cmp[cmp.source == "own_survey"]
    assert len(own) and np.allclose(own.reference_value, own.national_value)
    sub = cmp[cmp.source == "national_subsample"]
    assert sub.comparison_method.str.endswith("_rest").all()
    assert (sub.reference_value != sub.national_value).any()
    # rows without a label carry nothing of a test
    quiet = df[(df.comparison == "not_compared")]
    assert quiet[CMP_COLS + ["p_value"]].isna().all().all()
    untested = df[(df.change_vs_previous == "not_compared") & (df.change_method != "source_break")]
    assert untested[CHG_COLS + ["change_p_value"]].isna().all().all()


def test_labels_are_recomputed_from_the_download_rows_alone(sample):
    """value, n_effective, reference_value, reference_n_effective (previous_value,
    previous_n_effective) and the method give the published label with pipelines.domain.stats."""
    _, site = sample
    df = _csv(site)
    polarity = {i.id: i.polarity for i in load_catalogue()}
    cmp = df[df.comparison != "not_compared"]
    r = stats.difference_test(cmp.value / 100, cmp.n_effective, cmp.reference_value / 100, cmp.reference_n_effective)
    label = stats.comparison_label(r["direction"], r["significant"], cmp.indicator_id.map(polarity).to_numpy())
    assert (label == cmp.comparison.to_numpy()).all(), cmp[label != cmp.comparison.to_numpy()].head()
    method = np.where(cmp.source == "national_subsample", r["method"] + "_rest", r["method"])
    assert (method == cmp.comparison_method.to_numpy()).all()
    assert np.allclose(published_share(r["lower"] * 100), cmp.difference_lower_ci95)
    assert np.allclose(published_share(r["upper"] * 100), cmp.difference_upper_ci95)
    fisher = ~np.isnan(r["p_value"])
    assert np.allclose(r["p_value"][fisher], cmp.p_value[fisher], rtol=5e-3)

    chg = df[df.change_vs_previous != "not_compared"]
    r = stats.difference_test(chg.value / 100, chg.n_effective, chg.previous_value / 100, chg.previous_n_effective)
    label = stats.change_label(r["direction"], r["significant"])
    assert (label == chg.change_vs_previous.to_numpy()).all(), chg[label != chg.change_vs_previous.to_numpy()].head()
    assert (r["method"] == chg.change_method.to_numpy()).all()
    assert np.allclose(published_share(r["upper"] * 100), chg.change_upper_ci95)
    # the previous value is the previous round's published value of the same cell
    prev = df[["year", "area_code", "indicator_id", "breakdown", "value", "n_effective"]].assign(
        year=lambda d: d.year + 1
    )
    m = chg.merge(prev, on=["year", "area_code", "indicator_id", "breakdown"], suffixes=("", "_prev"))
    assert len(m) == len(chg)
    assert (m.previous_value == m.value_prev).all() and (m.previous_n_effective == m.n_effective_prev).all()


def test_per_round_and_per_prefecture_files_carry_the_same_columns(sample):
    wh, site = sample
    every = _csv(site)
    one = _csv(site, "indicators-2024.csv")
    assert list(one.columns) == list(every.columns)
    key = ["year", "area_code", "indicator_id", "breakdown"]
    m = one.merge(every, on=key, suffixes=("", "_all"))
    assert len(m) == len(one)
    for c in TESTED:
        assert ((m[c] == m[c + "_all"]) | (m[c].isna() & m[c + "_all"].isna())).all(), c
    from pipelines.outputs import site as site_mod

    cat = {i.id: i for i in load_catalogue()}
    (ja, codes), rows = site_mod.xlsx_rows(_warehouse(wh).query("year == 2024 and area_code == '27'"), cat)
    got = pd.DataFrame(rows, columns=codes)
    assert codes == [c for c in every.columns if c != "synthetic"]  # the same layout, same order
    assert "比較の基準値" in ja and "前回値" in ja and "reference_value" in codes
    vals = pd.to_numeric(got.loc[got["unit"] == "percent", "value"], errors="coerce").dropna()
    assert len(vals) and np.allclose(vals, published_share(vals))


# --- Rounding -------------------------------------------------------------------------------------


def _decimals_at_most(s: pd.Series, k: int) -> bool:
    v = s.dropna().to_numpy(dtype=float)
    return bool(np.allclose(v, np.round(v, k), rtol=0, atol=1e-9))


def test_published_figures_are_rounded_and_the_warehouse_keeps_full_precision(sample):
    wh, site = sample
    df = _csv(site)
    surv = _survey(df)
    for c in (
        "value",
        "lower_ci95",
        "upper_ci95",
        "national_value",
        "reference_value",
        "difference",
        "difference_lower_ci95",
        "difference_upper_ci95",
        "previous_value",
        "change_difference",
        "change_lower_ci95",
        "change_upper_ci95",
    ):
        assert _decimals_at_most(surv[c], 1), c
    for c in ("n_effective", "reference_n_effective", "previous_n_effective"):
        assert _decimals_at_most(df[c], 1), c
    assert _decimals_at_most(df.design_effect, 2) and _decimals_at_most(df.lead_cv, 3)
    for c in ("p_value", "change_p_value"):
        p = df[c].dropna()
        assert len(p) and all(float(f"{x:.3g}") == x for x in p), c
    prog = df[df.unit == "per_10k"]  # rates per 10,000 to 0.1, as the reports and the site show them
    assert len(prog) and _decimals_at_most(prog.value, 1) and _decimals_at_most(prog.national_value, 1)
    # the text of the file: no share with more than one decimal
    text = (site / "downloads" / "indicators-2024.csv").read_text(encoding="utf-8-sig")
    assert "33.33333" not in text and "16.666666" not in text
    # the warehouse keeps full precision
    full = _survey(_warehouse(wh))
    v = full.value.dropna().to_numpy()
    assert not np.allclose(v, np.round(v, 1))
    assert not np.allclose(full.reference_value.dropna(), np.round(full.reference_value.dropna(), 1))


def test_the_tests_take_the_published_precision():
    """The rounding the tests use is the rounding the downloads publish (same floats)."""
    x = np.array([12.345678, 0.04, 99.95, 33.333333333])
    assert (published_share(x) == np.array([12.3, 0.0, 100.0, 33.3])).all()
    assert str(published_share(-0.04)) == "0.0"
    assert (published_n(np.array([123.456, 30.04])) == np.array([123.5, 30.0])).all()


# --- Source break and the 0% / 100% rule -------------------------------------------------------------


def test_a_change_across_a_source_break_is_shown_not_tested(sample):
    wh, site = sample
    df = _csv(site)
    brk = df[df.source_changed.astype(bool)]
    assert len(brk) > 100
    assert (brk.change_vs_previous == "not_compared").all() and (brk.change_method == "source_break").all()
    assert brk.note.str.contains("出典が異なるため前回との比較はしない").all()
    assert brk[["change_difference", "change_lower_ci95", "change_upper_ci95", "change_p_value"]].isna().all().all()
    shown = brk[~brk.suppressed.astype(bool)]
    assert shown.previous_value.notna().any()  # both values shown where both are published
    # Saitama 2023 and Osaka 2024: their own survey after the national subsample the round before
    for year, code in ((2023, "11"), (2024, "27")):
        row = df[
            (df.year == year)
            & (df.area_code == code)
            & (df.indicator_id == "lonely_often_always")
            & (df.breakdown == "total")
        ].iloc[0]
        assert row.source_changed and row.change_method == "source_break"
        assert row.change_vs_previous == "not_compared" and not np.isnan(row.previous_value)
    assert "source_break" in stats.METHOD_DESCRIPTIONS
    from pipelines.outputs.report_data import fmt_change

    assert "出典変更" in fmt_change(row.to_dict())


def test_exact_0_or_100_percent_on_a_small_base_is_a_reference_value_with_its_interval(sample):
    wh, site = sample
    ind = _survey(_warehouse(wh))
    pub = ind[~ind.suppressed]
    extreme = pub[pub.value.isin([0.0, 100.0]) & (pub.n_unweighted < config.REFERENCE_BASE)]
    assert len(extreme) > 10
    assert extreme.note.str.contains(EXTREME_NOTE, regex=False).all()
    assert ((extreme.upper_ci95 - extreme.lower_ci95) > 2).all()  # an interval, never a bare 0 or 100
    assert not ind[ind.suppressed].note.str.contains(EXTREME_NOTE, regex=False).any()


def test_suppressed_rows_carry_nothing_of_a_test(sample):
    wh, site = sample
    for df in (_survey(_warehouse(wh)), _survey(_csv(site))):
        sup = df[df.suppressed.astype(bool)]
        assert len(sup) and sup[TESTED].isna().all().all()


def test_notes_sheet_explains_every_new_column_and_the_rules(sample):
    _, site = sample
    notes = pd.read_excel(site / "downloads" / "indicators.xlsx", sheet_name="注記 (notes)", dtype=str)
    text = " ".join(notes.iloc[:, 0].fillna("") + " " + notes.iloc[:, 1].fillna(""))
    for c in TESTED:
        assert c in text, c
    for words in (
        "丸め / rounding",
        "0.1ポイント",
        "0%・100%",
        EXTREME_NOTE,
        "source_break",
        "reproducing a label",
        "rest of the nation",
    ):
        assert words in text, words


# --- The disclosure gate on rounded files ----------------------------------------------------------


def test_the_gate_passes_the_rounded_downloads(sample):
    wh, site = sample
    assert check_published(site, wh) == []


def test_the_gate_still_catches_a_leak_in_rounded_files(sample, tmp_path):
    """A cell hidden only to protect a primary one, published again with its value and base (as
    rounded to 0.1): the primary cell's count follows, and the gate names it."""
    wh, site = sample
    full = _warehouse(wh)
    dl = tmp_path / "site"
    shutil.copytree(site / "downloads", dl / "downloads")
    path = dl / "downloads" / "indicators-2024.csv"
    csv = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", header=1)
    # a sex cell hidden secondarily, whose partner sex cell is primary (n < 30), in a subsample area
    # of an unweighted national survey, with the total published
    con = duckdb.connect(str(wh), read_only=True)
    try:
        cells = con.execute("""
            SELECT s.area_code, s.indicator_id, s.breakdown, count(*) AS n,
                   sum(CASE WHEN q_loneliness = 5 THEN 1 ELSE 0 END) AS y
            FROM (SELECT lpad(CAST(pref_code AS VARCHAR), 2, '0') AS area_code, 'lonely_often_always' AS indicator_id,
                         'sex=' || CAST(sex AS VARCHAR) AS breakdown, q_loneliness
                  FROM survey_responses WHERE survey_year = 2024 AND survey_kind = 'national') s
            GROUP BY ALL""").df()
    finally:
        con.close()
    y24 = full[
        (full.year == 2024) & (full.indicator_id == "lonely_often_always") & (full.source == "national_subsample")
    ]
    sec = y24[y24.note.str.contains("二次秘匿") & y24.breakdown.isin(["sex=1", "sex=2"])]
    total_pub = set(y24[(y24.breakdown == "total") & ~y24.suppressed].area_code)
    primary = {(a, b) for a, b in zip(y24.area_code, y24.breakdown)} - set(
        zip(
            y24.loc[~y24.suppressed | y24.note.str.contains("二次秘匿"), "area_code"],
            y24.loc[~y24.suppressed | y24.note.str.contains("二次秘匿"), "breakdown"],
        )
    )
    other = {"sex=1": "sex=2", "sex=2": "sex=1"}
    cand = [(a, b) for a, b in zip(sec.area_code, sec.breakdown) if a in total_pub and (a, other[b]) in primary]
    if not cand:
        pytest.skip("no secondarily suppressed sex cell beside a published total in the sample")
    area, bd = cand[0]
    truth = cells[(cells.area_code == area) & (cells.breakdown == bd)].iloc[0]
    k = csv.index[(csv.area_code == area) & (csv.indicator_id == "lonely_often_always") & (csv.breakdown == bd)][0]
    csv.loc[k, ["suppressed", "value", "n_unweighted"]] = [
        "False",
        f"{published_share(truth.y / truth.n * 100):.1f}",
        str(int(truth.n)),
    ]
    write_download_csv(csv, path)  # both header rows, as published
    findings = check_published(dl, wh)
    hits = [f for f in findings if f.rule == "suppressed cell recoverable / 差し引きで絞り込める非表示セル"]
    assert hits and hits[0].file == "downloads/indicators-2024.csv"
    assert f"{area} lonely_often_always sex=" in hits[0].detail


def test_the_audit_reads_counts_from_rounded_shares():
    """Tottori-like: total 31/62, men 3/32, women 28/28 hidden. Published to 0.1 point the counts
    are still exact (base < 1,000): the women's complement follows as [0, 2]."""

    def table(value_total, value_men):
        return pd.DataFrame(
            {
                "area_code": "31",
                "indicator_id": "x",
                "breakdown": ["total", "sex=1", "sex=2"],
                "value": [value_total, value_men, np.nan],
                "n_unweighted": [62, 32, np.nan],
                "suppressed": [False, False, True],
            }
        )

    exact = audit.audit_published(table(31 / 62 * 100, 3 / 32 * 100))
    rounded = audit.audit_published(table(50.0, 9.4))
    assert [str(e) for e in rounded] == [str(e) for e in exact]
    assert any(e.quantity == "complement" and (e.lo, e.hi) == (0, 2) for e in rounded)
    lo, hi, w = audit.published_counts([50.0, 9.4, 12.3], [62, 32, 2000])
    assert (lo[:2] == [31, 3]).all() and (hi[:2] == [31, 3]).all() and not w.any()
    assert (lo[2], hi[2]) == (245, 247)  # 12.25 %..12.35 % of 2,000
    # a weighted survey: n_effective x design_effect is not the base, so no count follows
    _, _, w = audit.published_counts([50.0], [62], n_effective=[55.3], design_effect=[1.0])
    assert w.all()
    _, _, w = audit.published_counts([50.0], [62], n_effective=[41.3], design_effect=[1.5])
    assert not w.any()


def test_the_report_check_reads_the_trend_table_by_round(sample):
    """A trend table (one column per round) is checked in the column of the round checked: an
    earlier round's published value beside this round's suppressed one is not a finding, a number
    in this round's column is. (Tottori's 2024 total is marked suppressed in the check's context.)"""
    from pipelines.disclosure import check as disclosure

    wh, _ = sample
    ctx = disclosure.make_context(wh, year=2024)
    totals = [i for (a, i, b) in ctx.report_rows if a == "31" and b == "total"]
    assert totals
    ctx.report_rows[("31", totals[0], "total")] = (True, frozenset({"x"}), frozenset({"x"}))
    hidden = totals[:1]
    name = {i: n for i, n, _, _ in ctx.catalogue}[hidden[0]]
    table = [["指標", "2022年（%）", "2023年（%）", "2024年（%）", "前回からの変化"], [name, "2.0※", "x", "x", "―"]]
    assert disclosure._check_report("p.html", [table], "31", ctx) == []
    table[1][3] = "1.0"
    found = disclosure._check_report("p.html", [table], "31", ctx)
    assert len(found) == 1 and "(2024) shows '1.0'" in found[0].detail
