"""The published national series as a check (pipelines/indicators/published_check.py), on a real DuckDB warehouse
whose 2022 national round reproduces the published direct-question distribution except for one
category moved by 2 points; the quality page section is parsed from the written HTML."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.indicators import published_check as published
from pipelines.indicators.stage import update_indicators
from pipelines.outputs import quality
from tests.test_indicators import counts_for, create_tables, insert_rows

PUBLISHED_2022 = {5: 4.9, 4: 15.8, 3: 19.6, 2: 40.6, 1: 18.4, 9: 0.6}
N = 11_218


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    """2022: the published shares, but 2 points moved from 'hardly ever' (2) to 'never' (1)."""
    pct = {**PUBLISHED_2022, 2: 38.6, 1: 20.4}
    path = tmp_path_factory.mktemp("pub") / "w.duckdb"
    con = duckdb.connect(str(path))
    create_tables(con)
    rows = []
    for code, c in counts_for(N, pct).items():
        rows += [dict(q_loneliness=code, pref_code=1 + len(rows) % 47) for _ in range(c)]
    for i, r in enumerate(rows):
        r.update(survey_id="national-2022", survey_year=2022, respondent_id=str(i))
    insert_rows(con, rows)
    update_indicators(con)
    con.close()
    return path


class TestCompareNational:
    def test_published_beside_computed(self, warehouse):
        con = duckdb.connect(str(warehouse), read_only=True)
        t = published.compare_national(con)
        con.close()
        lon = t[(t.question == "q_loneliness") & (t.breakdown == "total")].set_index("category")
        assert sorted(lon.index) == ["1", "2", "3", "4", "5", "9"]
        assert set(t.year) == {2022}  # only the round in the warehouse
        assert lon.loc["5", "published"] == 4.9 and lon.loc["5", "difference"] == pytest.approx(
            lon.loc["5", "computed"] - 4.9
        )
        assert abs(lon.loc["5", "difference"]) < 0.05 and not lon.loc["5", "above_tolerance"]
        assert lon.loc["2", "difference"] == pytest.approx(-2.0, abs=0.05) and lon.loc["2", "above_tolerance"]
        assert lon.loc["1", "difference"] == pytest.approx(2.0, abs=0.05) and lon.loc["1", "above_tolerance"]
        assert lon.loc["5", "n_published"] == N and lon.loc["5", "n_computed"] == N
        # An indicator restricted to a sub-population is compared too (here: nobody has worries,
        # so the base is 0 and suppressed: left out).
        assert "indicators: no_support_among_worried" not in set(t.compared_with)
        assert list(t.columns) == published.COLUMNS

    def test_indicator_rows_and_empty(self, warehouse):
        pub = pd.DataFrame(
            [
                {
                    "year": 2022,
                    "question": "q_support_received",
                    "category": "2",
                    "category_label": "受けていない",
                    "breakdown": "has_worries=1",
                    "value_pct": 88.2,
                    "n": 8484,
                    "source": "s",
                    "status": "confirmed",
                }
            ]
        )
        con = duckdb.connect(str(warehouse))
        con.execute(
            "UPDATE indicators SET value = 88.0, suppressed = FALSE, n_unweighted = 8000 "
            "WHERE area_code = '00' AND indicator_id = 'no_support_among_worried' AND breakdown = 'total'"
        )
        t = published.compare_national(con, pub)
        assert len(t) == 1 and t.compared_with.iloc[0] == "indicators: no_support_among_worried"
        assert t.difference.iloc[0] == pytest.approx(-0.2) and t.above_tolerance.iloc[0]
        assert published.compare_national(con, pub.iloc[:0]).empty
        con.close()

    def test_tolerance_is_not_fooled_by_binary_rounding(self):
        # 4.9 - 4.8 is 0.10000000000000053 in binary: exactly one rounding step is not listed.
        pub = pd.DataFrame(
            [
                {
                    "year": 2022,
                    "question": "q_loneliness",
                    "category": "5",
                    "category_label": "x",
                    "breakdown": "total",
                    "value_pct": 4.8,
                    "n": 1,
                    "source": "s",
                    "status": "confirmed",
                }
            ]
        )
        con = duckdb.connect()
        con.execute(
            "CREATE TABLE distributions AS SELECT 2022 AS year, '00' AS area_code, "
            "'q_loneliness' AS question, 'total' AS breakdown, '5' AS category, 4.9 AS value, "
            "100 AS n_unweighted, FALSE AS suppressed"
        )
        assert not published.compare_national(con, pub).above_tolerance.iloc[0]
        con.close()


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text: list[str] = []

    def handle_data(self, data):
        self.text.append(data)


class TestQualityPage:
    def test_section_lists_every_difference_above_tolerance(self, warehouse, tmp_path):
        q = tmp_path / "quality"
        q.mkdir()
        (q / "index.html").write_text("<html><body><h1>x</h1><footer>f</footer></body></html>", encoding="utf-8")
        con = duckdb.connect(str(warehouse), read_only=True)
        t = quality.add_to_quality_page(con, q, synthetic=True)
        con.close()
        html = (q / "index.html").read_text(encoding="utf-8")
        assert html.index('id="published-national"') < html.index("<footer>")
        p = _Text()
        p.feed(html)
        text = " ".join(p.text)
        above = t[t.above_tolerance]
        assert len(above) >= 2
        assert f"（{len(above)} 件）" in text and "合成（架空）データ" in text
        for r in above.itertuples():
            assert f"{r.difference:+.1f}" in text
        assert "-2.0" in text and "+2.0" in text
        csv = pd.read_csv(q / "published-national.csv", encoding="utf-8-sig", dtype={"category": str})
        assert len(csv) == len(t)
