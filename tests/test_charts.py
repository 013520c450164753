"""Unit tests of pipelines/charts.py (matplotlib, no pyplot): what each chart draws, the PNG it
gives (decoded with Pillow: size at 120 dpi, colours), the alt text passed through `show`, byte-identical
output in another process, no font warnings or missing glyphs, and no figure kept alive."""

from __future__ import annotations

import base64
import gc
import io
import logging
import subprocess
import sys
import warnings
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines import charts

ROOT = Path(__file__).resolve().parents[1]
VERMILLION = (0xD5, 0x5E, 0x00)
BLUE = (0x00, 0x72, 0xB2)


# ---------------------------------------------------------------------------------------------
# Inputs shaped as reports/report.ipynb builds them
# ---------------------------------------------------------------------------------------------

IDS = ["lonely_often_always", "no_contact_inperson", "help_intention"]
LABELS = {"lonely_often_always": charts.wrap("孤独感が「しばしばある・常にある」人の割合", 18),
          "no_contact_inperson": charts.wrap("直接会って話すことが「全くない」人の割合", 18),
          "help_intention": charts.wrap("声掛けや手助けを「しようと思う」人の割合", 18)}
POLARITY = {"lonely_often_always": "low_is_good", "no_contact_inperson": "low_is_good",
            "help_intention": "high_is_good"}
NATIONAL = {"lonely_often_always": 4.5, "no_contact_inperson": 10.0, "help_intention": 50.0}


def spine_frame(area: str = "11", comparison: str = "worse", offset: float = 3.0) -> pd.DataFrame:
    """47 prefectures x 3 indicators; `area` is `offset` points above national on every indicator."""
    rng = np.random.default_rng(5)
    rows = []
    for ind in IDS:
        for code in range(1, 48):
            ac = f"{code:02d}"
            value = NATIONAL[ind] + (offset if ac == area else float(rng.normal(0, 1.5)))
            rows.append({"area_code": ac, "indicator_id": ind, "value": value, "national_value": NATIONAL[ind],
                         "comparison": comparison if ac == area else "similar"})
    return pd.DataFrame(rows)


def distribution_frame(sources=("埼玉県", "全国", "英国 CLS 2021/22")) -> pd.DataFrame:
    cats = ["しばしばある・常にある", "時々ある", "たまにある", "ほとんどない", "決してない", "無回答"]
    vals = [4.1, 15.2, 19.0, 38.5, 22.4, 0.8]
    rows = [{"source": s, "category_label": c, "value": v + k} for k, s in enumerate(sources) for c, v in zip(cats, vals)]
    df = pd.DataFrame(rows)
    df["source"] = pd.Categorical(df.source, categories=list(sources))
    df["category_label"] = pd.Categorical(df.category_label, categories=cats)
    return df


def estimate_frame(groups=("16-24歳", "25-34歳", "35-49歳"), uk: bool = True) -> pd.DataFrame:
    rows = []
    for i, g in enumerate(groups):
        rows.append({"group": g, "source": "東京都", "value": 5.0 + i, "lower_ci95": 3.0 + i, "upper_ci95": 7.5 + i})
        rows.append({"group": g, "source": "全国", "value": 4.0 + i, "lower_ci95": 3.6 + i, "upper_ci95": 4.4 + i})
        if uk:
            rows.append({"group": g, "source": "英国 CLS 2024/25", "value": 8.0 - i, "lower_ci95": np.nan,
                         "upper_ci95": np.nan})
    df = pd.DataFrame(rows)
    df["group"] = pd.Categorical(df.group, categories=list(groups))
    df["source"] = pd.Categorical(df.source, categories=list(dict.fromkeys(df.source)))
    return df


def trend_frame(n_indicators: int = 4, years=(2022, 2023, 2024)) -> pd.DataFrame:
    labels = [charts.wrap(f"指標{i}の割合（テスト用の長いラベル）", 15) for i in range(n_indicators)]
    rows = []
    for i, lab in enumerate(labels):
        for source, base in (("東京都", 10.0 * (i + 1)), ("全国", 10.0 * (i + 1) - 2)):
            for k, y in enumerate(years):
                change = "increase" if (source == "東京都" and i == 0 and y == years[-1]) else "no_change"
                rows.append({"indicator": lab, "year": y, "source": source, "value": base + k,
                             "lower_ci95": base + k - 1, "upper_ci95": base + k + 1, "change": change})
    df = pd.DataFrame(rows)
    df["indicator"] = pd.Categorical(df.indicator, categories=labels)
    df["source"] = pd.Categorical(df.source, categories=["東京都", "全国"])
    return df


def strip_frame(n_indicators: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    labels = [charts.wrap(f"施策{i}（16歳以上人口1万人当たり）", 16) for i in range(n_indicators)]
    rows = [{"indicator": lab, "area_code": f"{c:02d}", "x": float(100 + rng.normal(0, 20))}
            for lab in labels for c in range(1, 48)]
    df = pd.DataFrame(rows)
    df["indicator"] = pd.Categorical(df.indicator, categories=labels)
    return df


def decode(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def colour_pixels(img: Image.Image, rgb: tuple[int, int, int], tol: int = 6) -> int:
    a = np.asarray(img.convert("RGB")).astype(int)
    return int((np.abs(a - np.array(rgb)).max(axis=2) <= tol).sum())


def texts(chart) -> list[str]:
    """Every text of a chart: title, tick labels, axis labels, legend, value labels."""
    fig = chart.fig
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        out += [ax.get_xlabel(), ax.get_ylabel()]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    return [t for t in out if t]


def size_px(chart) -> tuple[int, int]:
    w, h = chart.size
    return round(w * charts.DPI), round(h * charts.DPI)


ALL_CHARTS = {
    "spine": lambda: charts.spine_chart(spine_frame(), "11", LABELS, POLARITY, "埼玉県"),
    "distribution": lambda: charts.distribution_chart(distribution_frame(), "回答分布（％）"),
    "estimate": lambda: charts.estimate_chart(estimate_frame(), "年齢別の割合（縦線は95%信頼区間）"),
    "estimate_flip": lambda: charts.estimate_chart(estimate_frame(), "孤立の指標", flip=True, height=3.0),
    "trend": lambda: charts.trend_chart(trend_frame(), "調査年ごとの推移（★は有意な変化）"),
    "strip": lambda: charts.strip_chart(strip_frame(), "11", "◆ 埼玉県、点：各都道府県", "全国を100とした指数", ref=100.0),
    "histogram": lambda: charts.histogram_chart(pd.DataFrame({"value": np.linspace(2, 8, 47)}), "分布", 4.5),
}


# ---------------------------------------------------------------------------------------------
# Helpers: font, wrap, png_bytes, show
# ---------------------------------------------------------------------------------------------

class TestFontFamily:
    def test_ipaexgothic_is_registered_and_found_without_fallback(self):
        from matplotlib import font_manager

        assert charts.font_family() == "IPAexGothic"
        path = font_manager.findfont(font_manager.FontProperties(family="IPAexGothic"), fallback_to_default=False)
        assert Path(path).name == "ipaexg.ttf"

    @pytest.mark.parametrize("name", sorted(ALL_CHARTS))
    def test_every_character_of_every_chart_has_a_glyph(self, name):
        from matplotlib.ft2font import FT2Font
        import matplotlib_fontja

        font = FT2Font(matplotlib_fontja.get_font_ttf_path())
        chart = ALL_CHARTS[name]()
        missing = {ch for t in texts(chart) for ch in t if ch not in "\n" and font.get_char_index(ord(ch)) == 0}
        assert not missing, f"tofu in {name}: {missing}"

    @pytest.mark.parametrize("name", sorted(ALL_CHARTS))
    def test_no_font_warnings_when_drawing(self, name, caplog):
        with caplog.at_level(logging.WARNING, logger="matplotlib"), warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "Glyph ... missing from font(s)"
            charts.png_bytes(ALL_CHARTS[name]())
        assert not [r for r in caplog.records if "findfont" in r.getMessage() or "Glyph" in r.getMessage()], \
            [r.getMessage() for r in caplog.records]


class TestWrap:
    def test_wraps_japanese_without_spaces(self):
        text = "同居していない家族や友人と直接会って話すことが「全くない」人の割合"
        lines = charts.wrap(text, 18).split("\n")
        assert all(len(x) <= 18 for x in lines) and len(lines) == 2
        assert "".join(lines) == text

    def test_short_and_empty(self):
        assert charts.wrap("全国", 16) == "全国"
        assert charts.wrap("", 16) == ""
        assert charts.wrap(12345, 3) == "123\n45"   # a run longer than a line is cut

    def test_numbers_and_latin_words_are_not_split(self):
        # the catalogue's label: 18 characters would have cut "12" into "1" / "2点"
        assert charts.wrap("UCLA孤独感尺度（3項目）10～12点の人の割合", 18) == "UCLA孤独感尺度（3項目）\n10～12点の人の割合"
        assert charts.wrap("施策（16歳以上人口1万人当たり）", 6) == "施策（16歳\n以上人口1万\n人当たり）"

    def test_no_line_starts_with_a_closing_mark_or_ends_with_an_opening_one(self):
        assert charts.wrap("あいうえおかきくけ、こさしすせそ", 9) == "あいうえおかきく\nけ、こさしすせそ"
        assert charts.wrap("あいうえおかきく「こさしすせそ", 9) == "あいうえおかきく\n「こさしすせそ"
        for text in ("孤独感が「しばしばある・常にある」人の割合", "声掛けや手助けを「しようと思う」人の割合",
                     "同居していない家族や友人と直接会って話すことが「全くない」人の割合"):
            for width in range(4, 20):
                lines = charts.wrap(text, width).split("\n")
                assert "".join(lines) == text and all(len(x) <= width for x in lines), (text, width)
                assert not any(x[0] in "）」、。・" for x in lines[1:]), (text, width, lines)
                assert not any(x[-1] in "（「" for x in lines[:-1]), (text, width, lines)


class TestPngBytes:
    def test_png_decodes_at_120_dpi_of_the_chart_size(self):
        chart = ALL_CHARTS["distribution"]()
        img = decode(charts.png_bytes(chart))
        assert img.format == "PNG"
        assert img.size == (840, 432)  # 7.0 x 3.6 in
        assert img.info.get("dpi") and round(img.info["dpi"][0]) == 120

    def test_resize_when_both_sizes_are_given(self):
        chart = ALL_CHARTS["distribution"]()
        assert decode(charts.png_bytes(chart, 7.2, 3.4)).size == (864, 408)
        assert decode(charts.png_bytes(chart, 7.2, None)).size == (864, 408)  # one size alone: unchanged

    def test_no_software_or_time_chunks(self):
        img = decode(charts.png_bytes(ALL_CHARTS["strip"]()))
        assert not {"Software", "Creation Time", "Date"} & set(img.info)

    def test_bare_matplotlib_figure(self):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2, 1))
        fig.add_subplot().plot([0, 1], [0, 1])
        assert decode(charts.png_bytes(fig)).size == (240, 120)

    def test_same_bytes_twice_and_in_another_process(self):
        first = {name: charts.png_bytes(make()) for name, make in ALL_CHARTS.items()}
        again = {name: charts.png_bytes(make()) for name, make in ALL_CHARTS.items()}
        assert first == again
        code = ("import hashlib, sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests'];"
                "import test_charts as t; from pipelines import charts;"
                "print(' '.join(n + '=' + hashlib.sha256(charts.png_bytes(m())).hexdigest() for n, m in sorted(t.ALL_CHARTS.items())))")
        out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
        import hashlib

        expected = " ".join(f"{n}={hashlib.sha256(b).hexdigest()}" for n, b in sorted(first.items()))
        assert out.stdout.strip() == expected


class TestShow:
    def test_displays_raw_png_with_the_alt_text(self, monkeypatch):
        import IPython.display

        seen = []
        monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: seen.append((objs, kw)))
        alt = "スパインチャート：3指標について都道府県の範囲と全国値に対する埼玉県の位置。"
        charts.show(ALL_CHARTS["spine"](), alt, width=7.2, height=2.85)
        (objs, kw), = seen
        assert kw == {"raw": True}
        (data,) = objs
        assert set(data) == {"image/png", "text/plain"}
        assert data["text/plain"] == alt
        assert decode(base64.b64decode(data["image/png"])).size == (864, 342)


# ---------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------

class Marker:
    def __init__(self, line, i):
        self.marker, self.colour = line.get_marker(), line.get_markeredgecolor()
        self.x, self.y = float(line.get_xdata()[i]), float(line.get_ydata()[i])


def area_markers(chart) -> list[Marker]:
    """The area's markers in the spine chart (white-filled), one per indicator."""
    lines = [ln for ln in chart.ax.lines if ln.get_markerfacecolor() == "white"]
    return [Marker(ln, i) for ln in lines for i in range(len(ln.get_xdata()))]


class TestSpineChart:
    def test_worse_area_marker_is_vermillion_in_the_image(self):
        chart = charts.spine_chart(spine_frame(comparison="worse"), "11", LABELS, POLARITY, "埼玉県")
        img = decode(charts.png_bytes(chart, 7.2, 0.45 * 3 + 1.5))
        assert img.size == (864, 342)
        assert colour_pixels(img, VERMILLION) > 40
        assert colour_pixels(img, BLUE) == 0

    def test_better_area_marker_is_blue_and_no_vermillion(self):
        chart = charts.spine_chart(spine_frame(comparison="better", offset=-3.0), "11",
                                   {"lonely_often_always": LABELS["lonely_often_always"]}, POLARITY, "埼玉県")
        img = decode(charts.png_bytes(chart))
        assert colour_pixels(img, BLUE) > 40
        assert colour_pixels(img, VERMILLION) == 0

    def test_shape_is_direction_and_right_is_better(self):
        chart = charts.spine_chart(spine_frame(comparison="worse", offset=8.0), "11", LABELS, POLARITY, "埼玉県")
        marks = area_markers(chart)
        assert len(marks) == 3
        # higher than national on every indicator: ▲ on all; x < 0 (worse side) where low is good
        assert {m.marker for m in marks} == {"^"}
        order = [m.x for m in sorted(marks, key=lambda m: -m.y)]  # indicator order, top to bottom
        assert order[0] < 0 and order[1] < 0 and order[2] > 0
        assert all(abs(x) == pytest.approx(1.0) for x in order)  # the area is the farthest prefecture
        assert "全国より悪い（高い）" in [t.get_text() for t in chart.fig.legends[0].get_texts()]

    def test_similar_is_a_grey_circle_and_labels_and_national_line(self):
        chart = charts.spine_chart(spine_frame(comparison="similar", offset=0.5), "11", LABELS, POLARITY, "埼玉県")
        marks = area_markers(chart)
        assert len(marks) == 3 and {m.marker for m in marks} == {"o"}
        assert {m.colour for m in marks} == {charts.COMPARISON_COLOURS["similar"]}
        top_down = sorted(zip(chart.ax.get_yticks(), (t.get_text() for t in chart.ax.get_yticklabels())), reverse=True)
        assert [lab for _, lab in top_down] == [LABELS[i] for i in IDS]  # the first indicator at the top
        assert [t.get_text() for t in chart.ax.get_xticklabels()] == ["より悪い", "全国", "より良い"]
        assert any(list(ln.get_xdata()) == [0, 0] and ln.get_color() == "#000000" for ln in chart.ax.lines)
        assert chart.title.get_text().startswith("埼玉県の位置")

    def test_range_bands_and_one_dot_per_prefecture(self):
        chart = charts.spine_chart(spine_frame(), "11", LABELS, POLARITY, "埼玉県")
        minmax, iqr, dots = chart.ax.collections
        assert len(minmax.get_paths()) == len(iqr.get_paths()) == 3  # a band per indicator
        assert len(dots.get_offsets()) == 47 * 3
        # the IQR band lies inside the min-max band
        for outer, inner in zip(minmax.get_paths(), iqr.get_paths()):
            assert outer.vertices[:, 0].min() <= inner.vertices[:, 0].min() <= inner.vertices[:, 0].max() \
                <= outer.vertices[:, 0].max()

    def test_suppressed_values_and_nothing_to_draw(self):
        df = spine_frame()
        df.loc[df.area_code == "11", "value"] = None
        chart = charts.spine_chart(df, "11", LABELS, POLARITY, "埼玉県")
        assert area_markers(chart) == []
        assert len(chart.ax.collections[2].get_offsets()) == 46 * 3
        assert charts.spine_chart(df.iloc[0:0], "11", LABELS, POLARITY, "埼玉県") is None


class TestDistributionChart:
    def test_grouped_bars_value_labels_and_source_colours(self):
        chart = ALL_CHARTS["distribution"]()
        bars = chart.ax.patches
        assert len(bars) == 3 * 6
        assert {tuple(round(c, 3) for c in b.get_facecolor()[:3]) for b in bars[:6]} == {(0.0, 0.447, 0.698)}
        labels = [t.get_text() for t in chart.ax.texts]
        assert "4.1" in labels and "39.5" in labels and len(labels) == 18
        assert [t.get_text() for t in chart.fig.legends[0].get_texts()] == ["埼玉県", "全国", "英国 CLS 2021/22"]
        # bars of one category side by side, in source order
        xs = [b.get_x() for b in bars]
        assert xs[0] < xs[6] < xs[12] < xs[1]

    def test_missing_value_has_no_bar_height_and_no_label(self):
        df = distribution_frame(("鳥取県", "全国"))
        df.loc[(df.source == "鳥取県") & (df.category_label == "無回答"), "value"] = np.nan
        chart = charts.distribution_chart(df, "回答分布")
        assert len(chart.ax.texts) == 11
        assert chart.ax.patches[5].get_height() == 0

    def test_long_category_labels_are_broken_to_fit(self):
        chart = ALL_CHARTS["distribution"]()
        first = chart.ax.get_xticklabels()[0].get_text()
        assert first.replace("\n", "") == "しばしばある・常にある"
        assert decode(charts.png_bytes(chart, 7.2, 3.4)).size == (864, 408)


class TestEstimateChart:
    def test_points_dodged_by_source_with_intervals(self):
        chart = ALL_CHARTS["estimate"]()
        points = [ln for ln in chart.ax.lines if ln.get_linestyle() == "None"]
        assert [ln.get_marker() for ln in points] == ["o", "s", "D"]
        x_area, x_nat, x_uk = (np.asarray(p.get_xdata()) for p in points)
        assert np.allclose(x_area, [-0.2, 0.8, 1.8]) and np.allclose(x_nat, [0, 1, 2]) and np.allclose(x_uk, [0.2, 1.2, 2.2])
        # intervals for the two sources that have them (3 segments each: line and two caps), none for the UK
        assert len(chart.ax.collections) == 2
        assert all(len(c.get_segments()) == 3 * 3 for c in chart.ax.collections)
        assert [t.get_text() for t in chart.ax.get_xticklabels()] == ["16-24歳", "25-34歳", "35-49歳"]
        assert decode(charts.png_bytes(chart)).size == (840, 408)

    def test_flip_puts_categories_on_the_vertical_axis(self):
        chart = charts.estimate_chart(estimate_frame(uk=False), "孤立", flip=True, height=0.75 * 3 + 1.4)
        assert [t.get_text() for t in chart.ax.get_yticklabels()] == ["16-24歳", "25-34歳", "35-49歳"]
        seg = chart.ax.collections[0].get_segments()[0]
        assert seg[0][1] == seg[1][1]  # horizontal interval
        assert chart.ax.get_xlabel() == "％"
        assert decode(charts.png_bytes(chart)).size == (840, 438)

    def test_hidden_group_keeps_its_slot_and_every_source_in_the_legend(self):
        df = estimate_frame(uk=False)
        df = df[~((df.source == "東京都") & (df.group == "16-24歳"))]
        chart = charts.estimate_chart(df, "年齢別", height=3.6)
        assert len(chart.ax.get_xticklabels()) == 3
        assert [t.get_text() for t in chart.fig.legends[0].get_texts()] == ["東京都", "全国"]
        assert decode(charts.png_bytes(chart)).size == (840, 432)


class TestTrendChart:
    def test_small_multiples_three_columns_free_y(self):
        chart = ALL_CHARTS["trend"]()
        assert chart.size == pytest.approx((7.2, 2.3 * 2 + 0.8))
        assert decode(charts.png_bytes(chart)).size == (864, 648)
        labels = set(texts(chart))
        for lab in trend_frame().indicator.cat.categories:
            assert lab in labels
        assert {"2022", "2023", "2024", "調査年", "％"} <= labels
        # free y: the first panel (10-13) and the fourth (38-43) get different tick labels
        assert "10" in labels or "11" in labels
        assert "40" in labels or "42" in labels

    def test_significant_change_is_a_black_star_and_in_the_legend(self):
        chart = ALL_CHARTS["trend"]()
        stars = [ln for ln in chart.ax.lines if ln.get_marker() == "*"]
        assert len(stars) == 1 and len(stars[0].get_xdata()) == 1
        assert stars[0].get_color() == "#000000"
        assert "前回から有意な変化" in [t.get_text() for t in chart.fig.legends[0].get_texts()]
        nostar = trend_frame().assign(change="no_change")
        chart = charts.trend_chart(nostar, "推移")
        assert not [ln for ln in chart.ax.lines if ln.get_marker() == "*"]

    def test_lines_and_error_bars_per_source(self):
        chart = ALL_CHARTS["trend"]()
        lines = [ln for ln in chart.ax.lines if ln.get_marker() == "o"]
        assert [ln.get_color() for ln in lines] == [charts.SOURCE_COLOURS["area"], charts.SOURCE_COLOURS["national"]]
        # 4 panels x 3 years per source; a NaN between panels so lines do not join across panels
        assert np.isfinite(np.asarray(lines[0].get_ydata(), dtype=float)).sum() == 12
        bars = [c for c in chart.ax.collections if len(c.get_segments()) == 3 * 12]
        assert len(bars) == 2

    def test_tick_labels_have_the_decimals_the_step_needs(self):
        assert charts._nice_ticks(0.0, 10.0)[1] == ["0.0", "2.5", "5.0", "7.5", "10.0"]
        assert charts._nice_ticks(36.0, 55.0)[1] == ["40", "45", "50", "55"]
        assert charts._nice_ticks(7.0, 8.0)[1] == ["7.00", "7.25", "7.50", "7.75", "8.00"]

    def test_suppressed_values_break_the_line_and_have_no_interval(self):
        df = trend_frame(n_indicators=1)
        df.loc[(df.source == "東京都") & (df.year == 2023), ["value", "lower_ci95", "upper_ci95"]] = np.nan
        chart = charts.trend_chart(df, "推移")
        area = [ln for ln in chart.ax.lines if ln.get_color() == charts.SOURCE_COLOURS["area"]][0]
        assert np.isnan(np.asarray(area.get_ydata(), dtype=float)).sum() >= 1
        assert decode(charts.png_bytes(chart)).size == (864, round((2.3 + 0.8) * 120))


class TestStripChart:
    def test_area_is_a_blue_diamond_at_its_value_and_reference_line(self):
        df = strip_frame()
        chart = charts.strip_chart(df, "11", "◆ 埼玉県", "全国を100とした指数", ref=100.0)
        (diamond,) = [ln for ln in chart.ax.lines if ln.get_marker() == "D"]
        assert diamond.get_color() == charts.SOURCE_COLOURS["area"]
        assert sorted(diamond.get_xdata()) == sorted(df[df.area_code == "11"].x)
        assert any(list(ln.get_xdata()) == [100.0, 100.0] and ln.get_color() == charts.SOURCE_COLOURS["national"]
                   for ln in chart.ax.lines)
        assert decode(charts.png_bytes(chart)).size == (864, round((0.5 * 2 + 1.4) * 120))
        assert colour_pixels(decode(charts.png_bytes(chart)), BLUE) > 40

    def test_seeded_jitter_within_rows_and_first_indicator_on_top(self):
        df = strip_frame(3)
        a = charts.strip_chart(df, None, "分布", "全国との差").ax.collections[0].get_offsets()
        b = charts.strip_chart(df, None, "分布", "全国との差").ax.collections[0].get_offsets()
        assert np.array_equal(np.asarray(a), np.asarray(b))
        y = np.asarray(a)[:, 1]
        assert len(y) == 3 * 47
        assert np.all(np.abs(y - np.round(y)) <= 0.18)
        assert np.allclose(np.round(y[:47]), 2)  # first indicator: top row
        chart = charts.strip_chart(df, None, "分布", "全国との差")
        assert not [ln for ln in chart.ax.lines if ln.get_marker() == "D"]
        assert chart.ax.get_yticklabels()[-1].get_text() == df.indicator.cat.categories[0]


class TestHistogramChart:
    def test_fifteen_bins_and_national_line(self):
        values = pd.DataFrame({"value": np.linspace(2, 8, 47)})
        chart = charts.histogram_chart(values, "都道府県の分布", 4.5, xlab="％")
        assert len(chart.ax.patches) == 15
        assert sum(p.get_height() for p in chart.ax.patches) == 47
        assert any(list(ln.get_xdata()) == [4.5, 4.5] for ln in chart.ax.lines)
        assert chart.ax.get_ylabel() == "都道府県数"
        assert decode(charts.png_bytes(chart)).size == (840, 432)

    def test_without_national_value(self):
        chart = charts.histogram_chart(pd.DataFrame({"value": [1.0, 2.0, np.nan]}), "分布", None)
        assert not chart.ax.lines
        assert sum(p.get_height() for p in chart.ax.patches) == 2


class TestMemory:
    def test_figures_are_collected_and_no_pyplot(self):
        refs = []
        for make in ALL_CHARTS.values():
            chart = make()
            charts.png_bytes(chart)
            refs.append(weakref.ref(chart.fig))
            del chart
        gc.collect()
        assert [r() for r in refs] == [None] * len(refs)
        assert "matplotlib.pyplot" not in sys.modules or not __import__("matplotlib.pyplot").pyplot.get_fignums()

    def test_memory_does_not_grow_over_many_charts(self):
        import tracemalloc

        def batch():
            for make in ALL_CHARTS.values():
                charts.png_bytes(make())
            gc.collect()

        batch()
        batch()
        tracemalloc.start()
        try:
            batch()
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(5):
                batch()
            grown = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        assert grown < 2_000_000, grown
