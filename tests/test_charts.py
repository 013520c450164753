"""Unit tests of pipelines/outputs/charts.py (plotnine): each chart function returns a ggplot a notebook cell
can extend, drawn from the frames pipelines.outputs.report_data gives for a real fixture warehouse; the PNG
it gives (decoded with Pillow: size at 120 dpi, the conventions' colours), the alt text passed
through `show`, one shared theme with the Japanese font, no missing glyph, identical bytes twice,
nothing kept alive; and the Japanese label wrapping."""

from __future__ import annotations

import base64
import gc
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from plotnine import facet_wrap, ggplot, labs

from pipelines.domain import conventions
from pipelines.outputs import charts
from pipelines.outputs.report_data import load_report_data
from tests.fixtures_reports import build_fixture_warehouse

BLUE = (0x00, 0x72, 0xB2)
ORANGE = (0xE6, 0x9F, 0x00)
GREEN = (0x00, 0x9E, 0x73)
VERMILLION = (0xD5, 0x5E, 0x00)


@pytest.fixture(autouse=True)
def draw_every_chart(monkeypatch):
    """These tests look at what drawing does (warnings, figures, bytes): no chart from the cache
    (pipelines/outputs/chart_cache.py has its own tests)."""
    monkeypatch.setenv("TSUNAGARI_CHART_CACHE", "0")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    return build_fixture_warehouse(tmp_path_factory.mktemp("charts") / "wh.duckdb")


@pytest.fixture(scope="module")
def tokyo(warehouse):
    return load_report_data(warehouse, 2024, 13)


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def has_colour(img: Image.Image, rgb: tuple[int, int, int], tol: int = 8, min_pixels: int = 20) -> bool:
    a = np.asarray(img.convert("RGB")).astype(int)
    close = (np.abs(a - np.array(rgb)) <= tol).all(axis=2)
    return int(close.sum()) >= min_pixels


def spine(data, area_comparison: str | None = None):
    """The spine chart as the notebook builds it (rescaling in a data step)."""
    ids = data.ids("survey")
    prefs = data.prefectures(ids)
    prefs["gap"] = prefs.value - prefs.national_value
    largest = prefs.groupby("indicator_id").gap.transform(lambda g: g.abs().max())
    prefs["scaled"] = prefs.gap / largest
    if area_comparison:
        prefs.loc[prefs.is_area, "comparison"] = area_comparison
    return charts.spine_chart(prefs, "位置")


def make_all(data, wrapped: bool = False) -> dict[str, ggplot]:
    """wrapped: the panel titles of the trend chart wrapped as the report notebook wraps them."""
    survey = data.ids("survey")
    trend = data.trends(data.headline_ids())
    if wrapped:
        trend["indicator"] = trend.indicator.cat.rename_categories(lambda name: charts.wrap(name, 16))
    prefs = data.prefectures(data.ids("programme")[:2])
    prefs["x"] = 100 * prefs.value / prefs.national_value
    return {
        "estimate": charts.estimate_chart(data.estimates(survey[:3], {"sex=1": "男性", "sex=2": "女性"}), "性別"),
        "estimate_flip": charts.estimate_chart(
            data.estimates(survey).assign(group=lambda f: f.indicator), "割合", flip=True
        ),
        "distribution": charts.distribution_chart(data.distribution("q_loneliness"), "回答分布（％）"),
        "trend": charts.trend_chart(trend, "推移"),
        "spine": spine(data),
        "strip": charts.strip_chart(prefs, "施策", "指数", ref=100.0),
    }


class TestTheme:
    def test_japanese_font_is_registered_and_is_the_base_family(self):
        from matplotlib import font_manager

        family = charts.font_family()
        assert family in ("IPAexGothic", "Noto Sans CJK JP")
        font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        assert charts.THEME.themeables["text"].properties["family"] == family

    def test_one_shared_theme_object_changes_every_chart(self, tokyo, monkeypatch):
        before = charts.png_bytes(make_all(tokyo)["estimate"])
        monkeypatch.setattr(charts, "THEME", charts.report_theme(base_size=16))
        after = charts.png_bytes(make_all(tokyo)["estimate"])
        assert before != after

    def test_report_theme_sizes(self):
        t = charts.report_theme(base_size=12)
        assert t.themeables["plot_title"].properties["size"] == 13


class TestChartsExtendAndDraw:
    @pytest.mark.parametrize("name", ["estimate", "estimate_flip", "distribution", "trend", "spine", "strip"])
    def test_returns_a_ggplot_that_a_cell_can_extend(self, tokyo, name):
        chart = make_all(tokyo)[name]
        assert isinstance(chart, ggplot)
        extended = chart + labs(title="フォークで変えた題")
        assert extended.labels.title == "フォークで変えた題"
        img = decode(charts.png_bytes(extended, 7.2, 3.6))
        assert img.size == (864, 432) and round(img.info["dpi"][0]) == 120

    def test_facet_wrap_added_by_a_cell(self, tokyo):
        frame = tokyo.estimates(tokyo.ids("survey")[:2], {"sex=1": "男性", "sex=2": "女性"})
        plain = charts.estimate_chart(frame, "性別")
        faceted = plain + facet_wrap("indicator")
        assert charts.png_bytes(plain) != charts.png_bytes(faceted)

    @pytest.mark.parametrize("name", ["estimate", "distribution", "trend", "spine", "strip"])
    def test_no_font_warning_or_missing_glyph(self, tokyo, name, caplog):
        with caplog.at_level(logging.WARNING, logger="matplotlib"), warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # "Glyph ... missing from font(s)"
            charts.png_bytes(make_all(tokyo)[name])
        assert not [r for r in caplog.records if "findfont" in r.getMessage() or "Glyph" in r.getMessage()]


class TestColours:
    def test_area_blue_national_orange(self, tokyo):
        img = decode(charts.png_bytes(make_all(tokyo)["estimate"]))
        assert has_colour(img, BLUE) and has_colour(img, ORANGE)

    def test_national_report_draws_national_in_orange_only(self, warehouse):
        national = load_report_data(warehouse, 2024, 0)
        img = decode(charts.png_bytes(make_all(national)["estimate"]))
        assert has_colour(img, ORANGE) and not has_colour(img, BLUE)

    def test_england_is_green(self, tokyo):
        frame = tokyo.distribution("q_loneliness")
        england = pd.DataFrame(
            {
                "place": "イングランド 2021/22",
                "category_label": frame.category_label.cat.categories[:5],
                "value": [6.0, 19.0, 22.0, 32.0, 21.0],
            }
        )
        both = pd.concat([frame.assign(place=frame.place.astype(str)), england], ignore_index=True)
        both["place"] = pd.Categorical(both.place, categories=list(dict.fromkeys(both.place)))
        both["category_label"] = pd.Categorical(both.category_label, categories=frame.category_label.cat.categories)
        assert has_colour(decode(charts.png_bytes(charts.distribution_chart(both, "分布"))), GREEN)

    def test_spine_area_marker_takes_the_comparison_fill(self, tokyo):
        from plotnine import theme

        # without the legend, so that only the marks can carry the colour (plotnine drew the 'X' of
        # worse black, its fill left to the orange legend key)
        worse = decode(charts.png_bytes(spine(tokyo, "worse") + theme(legend_position="none")))
        better = decode(charts.png_bytes(spine(tokyo, "better") + theme(legend_position="none")))
        assert conventions.COMPARISON["worse"].fill == "#D55E00"
        assert has_colour(worse, VERMILLION) and not has_colour(worse, BLUE)
        assert has_colour(better, BLUE) and not has_colour(better, VERMILLION)


class TestTrendChart:
    def test_significant_changes_and_source_changes_are_layers(self, warehouse):
        saitama = load_report_data(warehouse, 2024, 11)
        trend = saitama.trends(saitama.headline_ids())
        assert trend[(trend.area_code == "11") & (trend.year == 2024)].source_changed.all()
        chart = charts.trend_chart(trend, "推移")
        layers = [type(layer.geom).__name__ for layer in chart.layers]
        assert "geom_vline" in layers
        significant = trend[trend.change.isin(["increase", "decrease"])].dropna(subset=["value"])
        assert ("geom_text" in layers) == (len(significant) > 0)

    def test_suppressed_rounds_are_not_drawn(self, tokyo):
        trend = tokyo.trends(tokyo.headline_ids())
        trend.loc[0, "value"] = np.nan
        chart = charts.trend_chart(trend, "推移")
        assert len(chart.data) == int(trend.value.notna().sum())


class TestNothingCutOff:
    """Every text of every chart (titles, axis and strip labels, legends) lies inside the drawn
    figure at the report's width: a label wider than the figure is cut off in the PNG (the spine
    chart's axis title was, before it was put on two lines)."""

    @pytest.mark.parametrize("name", ["estimate", "estimate_flip", "distribution", "trend", "spine", "strip"])
    @pytest.mark.parametrize("code", [0, 13, 31])
    def test_texts_inside_the_figure(self, warehouse, name, code):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.text import Text
        from plotnine import theme

        data = load_report_data(warehouse, 2024, code)
        chart = make_all(data, wrapped=True)[name]
        fig = (chart + theme(figure_size=(charts.WIDTH, 3.6))).draw()
        canvas = FigureCanvasAgg(fig)
        fig.set_dpi(charts.DPI)
        canvas.draw()
        renderer = canvas.get_renderer()
        width, height = fig.bbox.width, fig.bbox.height
        outside = []
        for t in fig.findobj(Text):
            if t.get_visible() and t.get_text().strip():
                box = t.get_window_extent(renderer)
                if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
                    outside.append((t.get_text(), round(box.x0), round(box.x1), round(width)))
        assert outside == []


class TestPngBytesAndShow:
    def test_same_bytes_twice_and_no_time_or_software_chunk(self, tokyo):
        first = {k: charts.png_bytes(v) for k, v in make_all(tokyo).items()}
        again = {k: charts.png_bytes(v) for k, v in make_all(tokyo).items()}
        assert first == again
        assert not {"Software", "Creation Time", "Date"} & set(decode(first["strip"]).info)

    def test_bare_matplotlib_figure(self):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2, 1))
        fig.add_subplot().plot([0, 1], [0, 1])
        assert decode(charts.png_bytes(fig)).size == (240, 120)

    def test_show_displays_raw_png_with_the_alt_text(self, tokyo, monkeypatch):
        import IPython.display

        seen = []
        monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: seen.append((objs, kw)))
        alt = "スパインチャート：9指標について都道府県の範囲と全国値に対する東京都の位置。"
        charts.show(spine(tokyo), alt, width=7.2, height=2.85)
        ((objs, kw),) = seen
        assert kw["raw"] is True
        (data,) = objs
        assert set(data) == {"image/png", "text/plain"} and data["text/plain"] == alt
        assert decode(base64.b64decode(data["image/png"])).size == (864, 342)
        # the other renditions in the image's metadata: the phone layout (PNG) and the SVG for print
        meta = kw["metadata"]["image/png"]
        phone = decode(base64.b64decode(meta["data-phone"]))
        assert phone.size[0] == charts.PHONE_WIDTH * charts.PHONE_DPI
        assert float(phone.text[charts.MIN_TEXT_KEY]) >= charts.PHONE_MIN_TEXT * charts.PHONE_DPI / 72 - 0.01
        assert meta["data-print"].startswith("<?xml") and meta["data-print"].rstrip().endswith("</svg>")


class TestRenditions:
    """The phone layout, the smallest text measured on the drawn figure, and the SVG for print."""

    def test_smallest_text_is_measured_on_the_figure(self, tokyo):
        from plotnine import aes, geom_text

        chart = make_all(tokyo)["distribution"]
        base = float(decode(charts.png_bytes(chart, 7.2, 3.6)).text[charts.MIN_TEXT_KEY])
        assert base == pytest.approx(6.5 * charts.DPI / 72, abs=0.01)  # the value labels (6.5 pt)
        tiny = chart + geom_text(aes(label="label", y="value"), size=5, family=charts.font_family())
        assert float(decode(charts.png_bytes(tiny, 7.2, 3.6)).text[charts.MIN_TEXT_KEY]) == pytest.approx(
            5 * charts.DPI / 72, abs=0.01
        )

    @pytest.mark.parametrize("name", ["estimate", "estimate_flip", "distribution", "trend", "spine", "strip"])
    def test_phone_layout_is_legible_in_a_342_px_column(self, tokyo, name):
        """Drawn PHONE_WIDTH wide and shown 342 CSS px wide (a 390 px phone less the page's
        padding), the smallest text of each chart is >= 9 CSS px; a wide chart there is not."""
        chart = make_all(tokyo, wrapped=True)[name]
        small, height = charts.phone_layout(chart, 3.6)
        img = decode(charts.png_bytes(small, charts.PHONE_WIDTH, height, charts.PHONE_DPI))
        assert 342 / img.size[0] * float(img.text[charts.MIN_TEXT_KEY]) >= 9.0
        wide = decode(charts.png_bytes(chart, 7.2, 3.6))
        assert 342 / wide.size[0] * float(wide.text[charts.MIN_TEXT_KEY]) < 9.0

    def test_phone_layout_arrangement(self, tokyo):
        from plotnine.coords import coord_flip

        made = make_all(tokyo, wrapped=True)
        # many categories across the page: turned on its side, first category on top
        dist, _ = charts.phone_layout(made["distribution"], 3.4)
        assert isinstance(dist.coordinates, coord_flip)
        assert not isinstance(made["distribution"].coordinates, coord_flip)  # the cell's chart unchanged
        # small multiples in two columns; panel names wrapped at PHONE_WRAP
        trend, h = charts.phone_layout(made["trend"], 6.0)
        assert trend.facet._ncol == 2 and h >= 6.0
        names = [str(c) for c in trend.data["indicator"].cat.categories]
        assert all(len(line) <= charts.PHONE_WRAP for n in names for line in n.split("\n"))
        # row labels of the spine wrapped, the rows given room
        spine_chart, h = charts.phone_layout(made["spine"], 0.45 * 9 + 1.8)
        rows = [str(c) for c in spine_chart.data["indicator"].cat.categories]
        assert all(len(line) <= charts.PHONE_WRAP for r in rows for line in r.split("\n"))
        assert h >= 0.45 * 9 + 1.8

    def test_svg_keeps_text_as_text_and_is_reproducible(self, tokyo):
        chart = make_all(tokyo)["estimate"]
        first, again = charts.svg_bytes(chart, 7.2, 3.6), charts.svg_bytes(chart, 7.2, 3.6)
        assert first == again
        text = first.decode("utf-8")
        assert "<text" in text and "男性" in text and charts.font_family() in text
        assert "<dc:date>" not in text

    def test_figures_are_collected_and_no_pyplot(self, tokyo):
        import sys

        from matplotlib.figure import Figure

        chart = make_all(tokyo)["estimate"]
        charts.png_bytes(chart)
        gc.collect()
        before = sum(isinstance(o, Figure) for o in gc.get_objects())
        for _ in range(3):
            charts.png_bytes(chart, 7.2, 3.0)
        gc.collect()
        assert sum(isinstance(o, Figure) for o in gc.get_objects()) <= before
        assert getattr(chart, "figure", None) is None  # the cell's chart does not hold a figure
        if "matplotlib.pyplot" in sys.modules:
            assert sys.modules["matplotlib.pyplot"].get_fignums() == []


class TestWrap:
    def test_wraps_japanese_without_spaces(self):
        text = "同居していない家族や友人と直接会って話すことが「全くない」人の割合"
        lines = charts.wrap(text, 18).split("\n")
        assert all(len(x) <= 18 for x in lines) and len(lines) == 2
        assert "".join(lines) == text

    def test_short_and_empty(self):
        assert charts.wrap("全国", 16) == "全国"
        assert charts.wrap("", 16) == ""
        assert charts.wrap(12345, 3) == "123\n45"  # a run longer than a line is cut

    def test_numbers_and_latin_words_are_not_split(self):
        # the catalogue's label: 18 characters would have cut "12" into "1" / "2点"
        assert (
            charts.wrap("UCLA孤独感尺度（3項目）10～12点の人の割合", 18)
            == "UCLA孤独感尺度（3項目）\n10～12点の人の割合"
        )
        assert charts.wrap("施策（16歳以上人口1万人当たり）", 6) == "施策（16歳\n以上人口1万\n人当たり）"

    def test_no_line_starts_with_a_closing_mark_or_ends_with_an_opening_one(self):
        assert charts.wrap("あいうえおかきくけ、こさしすせそ", 9) == "あいうえおかきく\nけ、こさしすせそ"
        assert charts.wrap("あいうえおかきく「こさしすせそ", 9) == "あいうえおかきく\n「こさしすせそ"
        for text in (
            "孤独感が「しばしばある・常にある」人の割合",
            "声掛けや手助けを「しようと思う」人の割合",
            "同居していない家族や友人と直接会って話すことが「全くない」人の割合",
        ):
            for width in range(4, 20):
                lines = charts.wrap(text, width).split("\n")
                assert "".join(lines) == text and all(len(x) <= width for x in lines), (text, width)
                assert not any(x[0] in "）」、。・" for x in lines[1:]), (text, width, lines)
                assert not any(x[-1] in "（「" for x in lines[:-1]), (text, width, lines)


class TestDecodable:
    """Issue #23: the area named, prefectures that stand out named, honest value axes."""

    def _drawn_texts(self, chart) -> list[str]:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.text import Text
        from plotnine import theme

        fig = (chart + theme(figure_size=(charts.WIDTH, 3.6))).draw()
        FigureCanvasAgg(fig).draw()
        return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]

    def test_prefecture_report_names_its_area_in_the_spine_and_programme_strip(self, tokyo):
        all_ = make_all(tokyo)
        assert "東京都" in self._drawn_texts(all_["spine"])
        assert "東京都" in self._drawn_texts(all_["strip"])

    def test_national_strip_names_the_lowest_and_highest_prefecture_of_each_row(self, warehouse):
        national = load_report_data(warehouse, 2024, 0)
        prefs = national.prefectures(national.ids("survey"))
        prefs["x"] = prefs.value - prefs.national_value
        texts = self._drawn_texts(charts.strip_chart(prefs, "分布", "差"))
        shown = prefs.dropna(subset=["x"])
        for _, rows in shown.groupby("indicator", observed=True):
            # (a tie at the end: one of the tied prefectures is named)
            low = rows[rows.x == rows.x.min()].area_name.map(charts.short_name)
            high = rows[rows.x == rows.x.max()].area_name.map(charts.short_name)
            assert set(low) & set(texts) and set(high) & set(texts), (list(low), list(high))
        # the prefectures judged different from national: the comparison's fill, and a legend
        flagged = shown[shown.comparison.isin(charts.FLAGGED)]
        assert len(flagged)
        from plotnine import theme

        img = decode(charts.png_bytes(charts.strip_chart(prefs, "分布", "差") + theme(legend_position="none"), 7.2, 6))
        for key in set(flagged.comparison):
            fill = conventions.COMPARISON[key].fill.lstrip("#")
            assert has_colour(img, tuple(int(fill[i : i + 2], 16) for i in (0, 2, 4)), tol=4), key
            assert charts._legend_label(key) in self._drawn_texts(charts.strip_chart(prefs, "分布", "差"))

    def test_short_names(self):
        assert [charts.short_name(n) for n in ("東京都", "大阪府", "神奈川県", "北海道", "全国")] == [
            "東京",
            "大阪",
            "神奈川",
            "北海道",
            "全国",
        ]

    def test_trend_panels_share_one_axis_width_stated_in_the_caption(self, tokyo):
        from plotnine import theme

        trend = tokyo.trends(tokyo.headline_ids())
        chart = charts.trend_chart(trend, "推移")
        fig = (chart + theme(figure_size=(charts.WIDTH, 3.6))).draw()
        panels = [ax for ax in fig.axes if ax.get_visible()]
        widths = [round(ax.get_ylim()[1] - ax.get_ylim()[0], 6) for ax in panels]
        assert len(panels) == len(tokyo.headline_ids()) and len(set(widths)) == 1, widths
        span, _ = charts.trend_span(trend.dropna(subset=["value"]))
        assert span >= charts.MIN_SPAN
        assert widths[0] >= span  # the panel shows the whole common width (plus plotnine's margin)
        assert f"{span:g}ポイント" in chart.labels.caption

    def test_a_percentage_axis_is_never_zoomed_below_the_minimum_span(self, warehouse):
        from plotnine import theme

        national = load_report_data(warehouse, 2024, 0)
        frame = national.estimates(["no_support_among_worried"]).assign(group=lambda f: f.indicator)
        hi, lo = frame.upper_ci95.max(), frame.lower_ci95.min()
        assert hi - lo < 3  # the chart that was drawn as 87.0-88.0
        fig = (charts.estimate_chart(frame, "割合", flip=True) + theme(figure_size=(7.2, 2))).draw()
        ax = fig.axes[0]
        low, high = ax.get_xlim()  # flipped: the values run along x
        assert high - low >= charts.MIN_SPAN and low <= lo and high >= hi

    @pytest.mark.parametrize(
        "lo,hi,expect",
        [(87.0, 88.0, (82.5, 92.5)), (1.0, 2.0, (0.0, 10.0)), (97.0, 99.0, (90.0, 100.0)), (10.0, 40.0, (10.0, 40.0))],
    )
    def test_span_limits(self, lo, hi, expect):
        assert charts.span_limits(lo, hi) == pytest.approx(expect)


class TestChartData:
    """Issue #23: each chart's data, as published beside the report, is exactly the rows drawn."""

    @pytest.mark.parametrize("name", ["estimate", "estimate_flip", "distribution", "trend", "spine", "strip"])
    @pytest.mark.parametrize("code", [0, 13, 31])
    def test_table_rows_are_the_rows_drawn(self, warehouse, name, code):
        from plotnine import theme

        data = load_report_data(warehouse, 2024, code)
        chart = make_all(data, wrapped=True)[name]
        table = charts.chart_table(chart)
        # what plotnine draws: the main layer's data after the build (rows without a value dropped)
        built = chart + theme(figure_size=(7.2, 3.6))
        built.draw()
        drawn = built.layers[0 if name in ("estimate", "estimate_flip", "distribution", "trend") else -1].data
        ends = {"spine": ("(scaled)",), "strip": ("(x)",)}.get(name, ("(value)", "(lead_value)"))
        value = next(h for h in table.columns if h.endswith(ends))
        if name in ("spine", "strip"):
            src = chart.data.dropna(subset=["scaled" if name == "spine" else "x"])
            assert len(table) == len(src)
            assert sorted(table[value]) == pytest.approx(sorted(src["scaled" if name == "spine" else "x"]), abs=5e-4)
        else:
            src = chart.data.dropna(subset=["value"])
            assert len(table) == len(src) == len(drawn.dropna(subset=["y"]) if "y" in drawn else src)
            assert sorted(table[value]) == pytest.approx(sorted(np.round(src["value"], 1)), abs=1e-9)
        assert not any("n_unweighted" in h for h in table.columns)  # no base in a chart's data
        assert all("\n" not in str(v) for v in table.select_dtypes(include=["object", "str"]).stack())

    def test_suppressed_values_are_not_in_the_table(self, warehouse):
        tottori = load_report_data(warehouse, 2024, 31)
        frame = tottori.estimates(["lonely_often_always"], {"sex=1": "男性", "sex=2": "女性"})
        table = charts.chart_table(charts.estimate_chart(frame, "性別"))
        sup = frame[frame.suppressed & (frame.estimate_method == "direct")]
        for hidden in tottori.indicators[
            (tottori.indicators.area_code == "31")
            & tottori.indicators.suppressed
            & (tottori.indicators.year == 2024)
            & (tottori.indicators.indicator_id == "lonely_often_always")
            & tottori.indicators.breakdown.isin(["sex=1", "sex=2"])
        ].itertuples():
            rows = table[
                (table["地域コード (area_code)"] == "31")
                & (table["区分 (group)"] == {"sex=1": "男性", "sex=2": "女性"}[hidden.breakdown])
            ]
            # only a pooled or model-based estimate may stand in for a suppressed cell
            assert set(rows["推計方法 (estimate_method)"]) <= {"pooled", "model"}, rows
        assert sup.empty

    def test_show_carries_the_table_as_csv_beside_the_image(self, tokyo, monkeypatch):
        shown = []
        monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append((obj, kw)))
        chart = make_all(tokyo)["trend"]
        charts.show(chart, "推移の図", name="fig-trend")
        bundle, kw = shown[-1]
        assert kw["metadata"]["image/png"]["data-csv"] == "fig-trend.csv"
        assert bundle["text/csv"] == charts.table_csv(charts.chart_table(chart))
        assert pd.read_csv(io.StringIO(bundle["text/csv"])).shape[0] == len(chart.data)
        with pytest.raises(ValueError):
            charts.show(chart, "図", name="../etc/passwd")


class TestDrawingFrames:
    def test_plotnine_draws_with_object_text_while_pandas_has_the_option(self):
        """charts._plotnine_frames makes plotnine's frames infer text as object (~8% of a chart's
        drawing, same pictures). The option is deprecated in pandas 3 and goes in pandas 4: this fails
        then, to say that the saving is gone (drop _plotnine_frames, or find another way)."""
        assert charts.object_strings_option(), f"pandas {pd.__version__} has no {charts.INFER_STRING}"
        with charts._plotnine_frames():
            inside = pd.DataFrame({"a": ["x"]})
        outside = pd.DataFrame({"a": ["x"]})
        assert inside["a"].dtype == object and inside.columns.dtype == object
        assert outside["a"].dtype == pd.DataFrame({"a": ["x"]})["a"].dtype  # restored

    def test_no_deprecation_warning_escapes(self, recwarn):
        with charts._plotnine_frames():
            pass
        assert not [w for w in recwarn if charts.INFER_STRING in str(w.message)]
