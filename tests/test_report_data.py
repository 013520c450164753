"""The report notebook's data layer (pipelines/outputs/report_data.py): a real DuckDB warehouse."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from pipelines.outputs import report_data as reports
from pipelines.outputs.reports import load_report_data, row_index
from tests.fixtures_reports import build_fixture_warehouse


@pytest.fixture
def wh(tmp_path):
    return build_fixture_warehouse(tmp_path / "warehouse.duckdb")


def _filter(d: pd.DataFrame, year, area, breakdown, ind):
    """What R.row used to do: filter the whole table, first match."""
    m = d[(d.year == year) & (d.area_code == area) & (d.breakdown == breakdown) & (d.indicator_id == ind)]
    return None if m.empty else m.iloc[0]


class TestRowIndex:
    def test_first_match_wins(self):
        d = pd.DataFrame(
            {
                "year": [2024, 2024, 2024],
                "area_code": ["13", "13", "13"],
                "breakdown": ["total", "total", "sex=1"],
                "indicator_id": ["a", "a", "a"],
                "value": [1.0, 2.0, 3.0],
            }
        )
        assert row_index(d) == {(2024, "13", "total", "a"): 0, (2024, "13", "sex=1", "a"): 2}

    def test_row_equals_the_filter_for_every_row(self, wh):
        R = load_report_data(wh, 2024, 13)
        d = R.indicators
        for r in d.sample(200, random_state=1).itertuples():
            got = R.row(r.indicator_id, area=r.area_code, breakdown=r.breakdown, year=r.year)
            want = _filter(d, r.year, r.area_code, r.breakdown, r.indicator_id)
            pd.testing.assert_series_equal(got, want)

    def test_missing_row_is_none(self, wh):
        R = load_report_data(wh, 2024, 13)
        assert R.row("no_such_indicator") is None
        assert R.row("lonely_often_always", breakdown="sex=9") is None


class TestLoadReportDataCache:
    def test_second_area_reuses_the_tables(self, wh):
        a = load_report_data(wh, 2024, 13)
        b = load_report_data(wh, 2024, 31)
        assert a.area_code == "13" and b.area_code == "31"
        assert reports._CACHE["data"][1][0] is not None
        # shallow copies of one cached frame: equal content
        pd.testing.assert_frame_equal(a.indicators, b.indicators)

    def test_a_write_to_the_warehouse_is_seen(self, wh):
        before = load_report_data(wh, 2024, 13).row("lonely_often_always")["value"]
        con = duckdb.connect(str(wh))
        con.execute(
            "UPDATE indicators SET value = 99.5 WHERE year = 2024 AND area_code = '13' "
            "AND indicator_id = 'lonely_often_always' AND breakdown = 'total'"
        )
        con.close()
        after = load_report_data(wh, 2024, 13).row("lonely_often_always")["value"]
        assert before != 99.5 and after == 99.5

    def test_a_change_made_in_one_report_does_not_leak_into_the_next(self, wh):
        a = load_report_data(wh, 2024, 13)
        a.indicators.loc[a.indicators.index[0], "value"] = -1.0
        b = load_report_data(wh, 2024, 13)
        assert b.indicators["value"].iloc[0] != -1.0


class TestPreviousRound:
    def test_a_year_the_table_does_not_hold_is_none_not_this_year(self, wh):
        data = load_report_data(wh, 2024, 0)
        assert data.previous_year == 2023
        assert data.row("lonely_often_always", year=2019) is None
        assert data.row("lonely_often_always", year=0) is None  # the national 前回 column used to show 2024 here

    def test_national_headline_table_shows_the_previous_rounds_value(self, wh):
        from pipelines.outputs.report_data import headline_table

        data = load_report_data(wh, 2024, 0)
        table = headline_table(data)
        header = table.splitlines()[0]
        assert "前回 2023年（\\%）" in header  # md_escape escapes %
        line = next(x for x in table.splitlines() if x.startswith("| " + data.name("lonely_often_always")))
        cells = [c.strip().replace("\\", "") for c in line.strip("|").split("|")]
        assert cells[4] == f"{data.row('lonely_often_always', year=2023)['value']:.1f}"
        assert data.row("lonely_often_always", year=2023)["value"] != data.row("lonely_often_always")["value"]

    def test_first_round_has_no_previous(self, wh):
        from pipelines.outputs.report_data import headline_table

        data = load_report_data(wh, 2022, 0)
        assert data.previous_year is None
        assert "| ― | ― |" in headline_table(data) or "―" in headline_table(data).splitlines()[2]


class TestFrames:
    def test_estimates_area_then_national_suppressed_blank(self, wh):
        data = load_report_data(wh, 2024, 31)
        f = data.estimates(["lonely_often_always"], {"sex=1": "男性", "sex=2": "女性"})
        assert list(f.place.cat.categories) == ["鳥取県", "全国"]
        tottori = f[f.area_code == "31"]
        assert tottori.suppressed.all() and tottori.value.isna().all() and tottori.lower_ci95.isna().all()
        nat = f[(f.area_code == "00") & (f.breakdown == "sex=1")].iloc[0]
        assert nat.value == pytest.approx(data.row("lonely_often_always", area="00", breakdown="sex=1")["value"])

    def test_national_report_has_one_place(self, wh):
        data = load_report_data(wh, 2024, 0)
        assert data.places() == [("00", "全国")]
        assert set(data.estimates(["lonely_often_always"]).place) == {"全国"}

    def test_trends_every_round_and_source_change(self, wh):
        data = load_report_data(wh, 2024, 11)  # the fixture's Saitama switches to its own survey in 2024
        t = data.trends(["lonely_often_always"])
        assert sorted(t.year.unique()) == [2022, 2023, 2024]
        mine = t[t.area_code == "11"].set_index("year")
        assert mine.loc[2024, "source"] == "own_survey" and mine.loc[2023, "source"] == "national_subsample"
        assert mine.source_changed.tolist() == [False, False, True]
        assert not t[t.area_code == "00"].source_changed.any()

    def test_headline_and_sections_come_from_the_catalogue(self, wh):
        from pipelines.domain.catalogue import PILLARS, load_catalogue

        data = load_report_data(wh, 2024, 13)
        cat = load_catalogue()
        assert data.headline_ids() == [i.id for i in cat if i.headline and i.source == "survey"]
        sections = data.sections()
        assert [k for k, _, _ in sections] == sorted(k for k in PILLARS if any(i.section == k for i in cat))
        for k, label, ids in sections:
            assert label == PILLARS[k] and ids == [i.id for i in cat if i.section == k]


class TestUkYear:
    def test_closest_year_to_the_round(self):
        from pipelines.outputs.report_data import closest_uk_year

        years = ["2021/22", "2023/24", "2024/25"]
        assert closest_uk_year(years, 2024) == "2024/25"
        assert closest_uk_year(years, 2022) == "2021/22"  # tie 2021/22 vs 2023/24: the earlier
        assert closest_uk_year(years, 2023) == "2023/24"

    def test_one_uk_year_per_chart_at_published_precision(self, wh):
        data = load_report_data(wh, 2024, 13)
        year, dist = data.uk_distribution()
        assert year == "2021/22" and set(dist.year) == {"2021/22"}  # the only year with every category
        assert dist.set_index("jp_code").loc["5", "value_text"] == "6"  # not 6.0
        year, ages = data.uk_by_age()
        assert year == "2024/25" and set(ages.year) == {"2024/25"} and len(ages) == 6


class TestFootnotes:
    """A table's footnotes explain every mark it shows, and only those (issue 23: a suppressed direct
    value printed beside a model estimate, 'モデル推計（直接推計 x）', had no note saying what x means)."""

    def test_a_hidden_direct_value_beside_a_model_estimate_is_explained(self):
        from pipelines.outputs import report_data as rd

        row = {
            "value": 0.5,
            "suppressed": True,
            "n_unweighted": 12,
            "estimate_method": "model",
            "lead_value": 0.04,
            "lead_lower_ci95": 0.02,
            "lead_upper_ci95": 0.07,
            "lead_cv": 0.2,
        }
        cell = rd.fmt_method_direct(row)
        assert f"直接推計 {rd.SUPPRESSED}）" in cell
        assert rd.FOOTNOTE_SUPPRESSED in rd.footnotes("2.6", cell)

    def test_only_the_marks_shown_get_a_note(self):
        from pipelines.outputs import report_data as rd

        assert rd.footnotes("2.6", "モデル推計（直接推計 0.0※）") == f"[{rd.FOOTNOTE_REFERENCE}]{{.footnote}}"
        assert rd.footnotes("2.6", "直接推計", "ox") == ""
