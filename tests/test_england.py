"""England (Community Life Survey) in the reports (issue #22, item 2).

The age-band chart draws England's published often/always values of CLS 2024/25 (points with no
interval) and its table has an イングランド column; the answer-distribution chart uses 2021/22, the
only year with all five categories here, and says why; every number cites its publication; the
figures are called イングランド, never 英国. The CLS year of each chart is the closest one not after
the Japanese round among the years that hold what the chart needs.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from pipelines.domain import config
from pipelines.outputs import charts
from pipelines.outputs.report_data import (
    UK_LABEL,
    _read_uk,
    choose_uk_year,
    closest_uk_year,
    load_report_data,
    uk_reason,
)
from tests.fixtures_reports import build_fixture_warehouse

YEAR = 2024
IND = "lonely_often_always"
# DCMS, Community Life Survey 2024/25: Annual Publication (2025), often/always by age band
ENGLAND_2024_25 = {"16-24歳": "9", "25-34歳": "8", "35-49歳": "7", "50-64歳": "5", "65-74歳": "4", "75歳以上": "5"}
AGE_COLUMN = "イングランド（CLS 2024/25）（%）"
DIST_COLUMN = "イングランド（CLS 2021/22）（%）"
PUBLISHER_OK = ("英国デジタル・文化・メディア・スポーツ省", "英国国家統計局")


def uk_rows() -> pd.DataFrame:
    uk = _read_uk()
    return uk[uk.question == "loneliness"].assign(jp_code=lambda d: d.jp_code.astype(str))


# --- the year of each chart -------------------------------------------------------------------------


class TestClosestYear:
    def test_closest_year_not_after_the_round(self):
        years = ["2021/22", "2023/24", "2024/25"]
        assert closest_uk_year(years, 2024) == "2024/25"  # starts in 2024: brackets the December round
        assert closest_uk_year(years, 2023) == "2023/24"
        assert closest_uk_year(years, 2022) == "2021/22"  # 2023/24 is after the round
        assert closest_uk_year(years, 2025) == "2024/25"
        assert closest_uk_year(years, 2020) is None

    @pytest.mark.parametrize(
        "round_, age, dist",
        [
            (2024, "2024/25", "2021/22"),
            (2023, "2023/24", "2021/22"),
            (2022, None, "2021/22"),
            (2021, None, "2021/22"),
            (2020, None, None),
            (2025, "2024/25", "2021/22"),
        ],
    )
    def test_per_chart_need(self, round_, age, dist):
        uk = uk_rows()
        assert choose_uk_year(uk, round_, "age").year == age
        assert choose_uk_year(uk, round_, "distribution").year == dist

    def test_reasons(self):
        uk = uk_rows()
        dist = choose_uk_year(uk, 2024, "distribution")
        assert dist.skipped == ("2023/24", "2024/25") and dist.closest == "2024/25"
        text = uk_reason(dist, 2024)
        assert "2023/24年度・2024/25年度は全カテゴリーの割合が" in text and "2021/22年度の値を示します" in text
        age = choose_uk_year(uk, 2024, "age")
        assert age.skipped == () and age.missing == ()
        # 2023/24 publishes only two bands one by one: the report says which are missing
        age23 = choose_uk_year(uk, 2023, "age")
        assert age23.missing == ("35-49歳", "50-64歳", "65-74歳", "75歳以上")
        assert "35-49歳・50-64歳・65-74歳・75歳以上の値が" in uk_reason(age23, 2023)
        assert "示していません" in uk_reason(choose_uk_year(uk, 2022, "age"), 2022)


class TestReferenceFile:
    def test_sources_name_publications(self):
        uk = pd.read_csv(config.REFERENCE_DIR / "uk_cls.csv", dtype=str)
        release = re.compile(r"DCMS, Community Life Survey (\d{4})/\d\d: Annual Publication \((\d{4})\)")
        for row in uk.itertuples():
            src = row.source
            assert not re.search(
                r"seed|internal|domain-facts|\.md\b|\.txt\b|/",
                src.replace("2021/22", "").replace("2023/24", "").replace("2024/25", ""),
            ), src
            if row.note and str(row.note).startswith("derived"):
                assert row.status == "uncertain" and "大西連「" in src and release.search(src), src
            else:
                assert release.search(src) or src.startswith("大西連「孤独・孤立対策の現在とこれから"), src
        ages = uk[(uk.year == "2024/25") & uk.breakdown.str.startswith("uk_age=")]
        assert dict(zip(ages.breakdown, ages.value_pct)) == {
            "uk_age=16-24": "9",
            "uk_age=25-34": "8",
            "uk_age=35-49": "7",
            "uk_age=50-64": "5",
            "uk_age=65-74": "4",
            "uk_age=75+": "5",
        }


# --- the report's data, chart and table ------------------------------------------------------------


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Path:
    return build_fixture_warehouse(tmp_path_factory.mktemp("england") / "warehouse.duckdb")


@pytest.mark.parametrize("code", [13, 0])
def test_age_frame_has_england_points_without_interval(wh, code):
    data = load_report_data(wh, YEAR, code)
    frame = data.uk_age_frame(IND)
    england = frame[frame.place.astype(str) == "イングランド（CLS 2024/25）"]
    assert dict(zip(england.group.astype(str), england.value)) == {k: float(v) for k, v in ENGLAND_2024_25.items()}
    assert england.lower_ci95.isna().all() and england.upper_ci95.isna().all()
    # the chart draws them: a point layer holds the England rows, the interval layer only rows with one
    chart = charts.estimate_chart(frame, "年齢")
    chart.draw()
    geoms = {type(layer.geom).__name__: layer.data for layer in chart.layers}
    assert set(geoms) - {"geom_blank"} == {"geom_point", "geom_linerange"}  # (blank: the axis span)
    green = charts.place_colours(["イングランド（CLS 2024/25）"])["イングランド（CLS 2024/25）"]
    points = geoms["geom_point"]
    drawn = points[points.color == green]
    assert sorted(drawn.y) == sorted(float(v) for v in ENGLAND_2024_25.values()) and set(drawn["shape"]) == {"D"}
    assert not (geoms["geom_linerange"].color == green).any()
    assert len(geoms["geom_linerange"]) == len(frame[frame.lower_ci95.notna()])
    # England keeps its own slot beside the others (same dodge in both layers)
    assert points.groupby(points.x.round(3)).size().max() == 1
    # the legend lists exactly the places that have a point
    legend = next(s for s in chart.scales if "color" in s.aesthetics)
    assert list(legend.limits) == charts.marked_places(frame)
    assert "イングランド（CLS 2024/25）" in legend.limits


def test_legend_leaves_out_a_place_without_marks(wh):
    data = load_report_data(wh, YEAR, 13)
    frame = data.uk_age_frame(IND)
    frame.loc[frame.place == "東京都", ["value", "lower_ci95", "upper_ci95"]] = float("nan")
    chart = charts.estimate_chart(frame, "年齢")
    for aes in ("color", "shape"):
        scale = next(s for s in chart.scales if aes in s.aesthetics)
        assert list(scale.limits) == ["全国", "イングランド（CLS 2024/25）"]
    assert charts.png_bytes(chart, cache=False)


@pytest.mark.parametrize("code", [13, 0])
def test_tables_and_sources(wh, code):
    data = load_report_data(wh, YEAR, code)
    table = md_rows(data.uk_age_table(IND), AGE_COLUMN)
    assert table == ENGLAND_2024_25
    year, uk = data.uk_distribution()
    assert year == "2021/22"
    assert dict(zip(uk.jp_code, uk.label)) == {"5": "6", "4": "19", "3": "22", "2": "32†", "1": "21"}
    cited = data.uk_sources(uk)
    assert "大西連「孤独・孤立対策の現在とこれから" in cited
    assert "DCMS, Community Life Survey 2023/24: Annual Publication (2024)" in cited
    assert "「ほとんどない」†" in cited
    assert data.uk_sources(data.uk_by_age()[1]) == (
        "出典：DCMS, Community Life Survey 2024/25: Annual Publication (2025), Loneliness and support networks。"
    )


def md_rows(md: str, column: str) -> dict[str, str]:
    """{first cell: cell of `column`} of the first Markdown pipe table in `md` with that header."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    unescape = lambda s: re.sub(r"\\(.)", r"\1", s.strip())  # noqa: E731 (md_escape undone)
    header = [unescape(c) for c in lines[0].strip("|").split("|")]
    assert column in header, header
    k = header.index(column)
    return {unescape(r.strip("|").split("|")[0]): unescape(r.strip("|").split("|")[k]) for r in lines[2:]}


# --- the executed report notebook ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def executed(wh, tmp_path_factory):
    from pipelines.engine.notebook import execute_notebook

    out = tmp_path_factory.mktemp("england-nb")
    notebooks = {}
    for code in (0, 13):
        path = execute_notebook(
            config.REPORTS_DIR / "report.ipynb",
            out / f"{code}.ipynb",
            {"year": YEAR, "pref_code": code, "warehouse": str(wh)},
            cwd=config.REPORTS_DIR,
        )
        notebooks[code] = nbformat.read(path, as_version=4)
    return notebooks


def outputs(nb, kind: str) -> list[str]:
    return [
        o["data"][kind]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if kind in o.get("data", {})
    ]


def section_outputs(nb) -> list[str]:
    """Markdown and alt texts of the cell that draws the report sections (the figure functions)."""
    cell = next(
        c for c in nb.cells if c.cell_type == "code" and "for number, heading, ids in data.sections()" in c.source
    )
    return [o["data"].get("text/markdown") or o["data"].get("text/plain", "") for o in cell.outputs if "data" in o]


@pytest.mark.slow
@pytest.mark.parametrize("code", [13, 0])
def test_report_shows_england_by_age(executed, code):
    nb = executed[code]
    md = outputs(nb, "text/markdown")
    tables = [m for m in md if AGE_COLUMN.replace("/", "\\/").replace("%", "\\%") in m]
    assert len(tables) == 1
    assert md_rows(tables[0], AGE_COLUMN) == ENGLAND_2024_25
    heading = f"### 年齢別（{UK_LABEL}と同じ年齢区分）：孤独感が「しばしばある・常にある」人の割合"
    assert heading in md
    # the chart is drawn, and its alt text gives England's values
    alts = [
        o["data"]["text/plain"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    alt = next(a for a in alts if a.startswith(f"{UK_LABEL}と同じ年齢区分ごとの"))
    assert (
        "イングランド（CLS 2024/25）（信頼区間なし）：16-24歳 9%、25-34歳 8%、35-49歳 7%、50-64歳 5%、65-74歳 4%、75歳以上 5%"
        in alt
    )
    note = next(m for m in md if m.startswith(f"{UK_LABEL}の値は"))
    assert "DCMS, Community Life Survey 2024/25: Annual Publication (2025)" in note.replace("\\", "")
    assert "有意差は判定していません" in note and "信頼区間は公表されていない" in note


@pytest.mark.slow
@pytest.mark.parametrize("code", [13, 0])
def test_report_distribution_uses_2021_22_and_says_why(executed, code):
    md = outputs(executed[code], "text/markdown")
    table = next(m for m in md if DIST_COLUMN.replace("/", "\\/").replace("%", "\\%") in m)
    rows = md_rows(table, DIST_COLUMN)
    assert rows["しばしばある・常にある"] == "6" and rows["ほとんどない"] == "32†" and rows["決してない"] == "21"
    assert "公表値ではなく" in table  # the derived value is marked as such
    note = next(m for m in md if m.startswith(f"**{UK_LABEL}との比較についての注意**")).replace("\\", "")
    assert "2023/24年度・2024/25年度は全カテゴリーの割合が" in note and "2021/22年度の値を示します" in note
    assert "大西連「孤独・孤立対策の現在とこれから" in note and "Annual Publication (2024)" in note
    assert "有意差は判定していません" in note


@pytest.mark.slow
@pytest.mark.parametrize("code", [13, 0])
def test_england_is_never_called_uk(executed, code):
    nb = executed[code]
    everything = outputs(nb, "text/markdown") + outputs(nb, "text/plain")
    assert not [t for t in everything if "英国の値" in t]
    for text in section_outputs(nb):  # the figure functions: 英国 only in a publisher's name
        rest = text
        for name in PUBLISHER_OK:
            rest = rest.replace(name, "")
        assert "英国" not in rest and "UK" not in rest, text
