"""The report notebook's data layer (pipelines/reports.py): a real DuckDB warehouse."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from pipelines import report_data as reports
from pipelines.reports import load_report_data, row_index
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
        d = pd.DataFrame({"year": [2024, 2024, 2024], "area_code": ["13", "13", "13"],
                          "breakdown": ["total", "total", "sex=1"], "indicator_id": ["a", "a", "a"],
                          "value": [1.0, 2.0, 3.0]})
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
        con.execute("UPDATE indicators SET value = 99.5 WHERE year = 2024 AND area_code = '13' "
                    "AND indicator_id = 'lonely_often_always' AND breakdown = 'total'")
        con.close()
        after = load_report_data(wh, 2024, 13).row("lonely_often_always")["value"]
        assert before != 99.5 and after == 99.5

    def test_a_change_made_in_one_report_does_not_leak_into_the_next(self, wh):
        a = load_report_data(wh, 2024, 13)
        a.indicators.loc[a.indicators.index[0], "value"] = -1.0
        b = load_report_data(wh, 2024, 13)
        assert b.indicators["value"].iloc[0] != -1.0
