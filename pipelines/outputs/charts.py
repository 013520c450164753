"""Report charts in plotnine (a grammar of graphics a researcher can fork; docs/DESIGN.md "Rendering").

Each function takes a tidy frame from ``pipelines.outputs.report_data`` (already filtered, rescaled and
ordered by visible steps in the notebook) and returns a ``ggplot`` that a notebook cell can extend
before showing it::

    chart = charts.estimate_chart(frame, "性別・年齢別") + labs(y="割合（％）") + facet_wrap("place")
    charts.show(chart, alt_text)

One shared theme, ``charts.THEME`` (Japanese font with ``base_family`` set, sizes, grid), and the
colours of ``pipelines.domain.conventions`` (Okabe-Ito: the area blue, 全国 orange, England green; the
comparison colours of the site and the tables, always with a shape and a word). A fork changes
the look of every chart in one place: ``charts.THEME = charts.report_theme(base_size=12)`` in the
notebook (or ``+ theme(...)`` on one chart).

``show(chart, alt)`` draws the chart once to a PNG (120 dpi; smaller and faster than SVG with
Japanese glyphs embedded as paths) and displays it with the alt text as ``text/plain``: the
built-in renderer's Lua filter turns that into ``<img alt>``. plotnine draws on a plain matplotlib
Figure (no pyplot), so nothing is kept per chart.
"""

from __future__ import annotations

import base64
import io
import re
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pandas as pd

from pipelines.domain import conventions
from pipelines.domain.config import confidence_percent

DPI = 120
BASE_SIZE = 10
WIDTH = 7.2  # inches: the report's text width
TEXT_COLOUR = "#222222"
TICK_COLOUR = "#4D4D4D"
GRID_COLOUR = "#E6E6E6"
NATIONAL_NAME = "全国"
UK_NAME = "イングランド"


@lru_cache(maxsize=1)
def font_family() -> str:
    """The Japanese font for charts: Noto Sans CJK JP when installed, else IPAexGothic from
    matplotlib-fontja (always installed with pip)."""
    import matplotlib_fontja  # noqa: F401  (registers IPAexGothic with matplotlib)
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return "Noto Sans CJK JP" if "Noto Sans CJK JP" in names else "IPAexGothic"


def report_theme(base_size: float = BASE_SIZE, family: str | None = None):
    """The report theme: theme_minimal with the Japanese font, a left-aligned title, the legend
    at the bottom without a title, light major grid only."""
    from plotnine import element_blank, element_line, element_rect, element_text, theme, theme_minimal

    return theme_minimal(base_size=base_size, base_family=family or font_family()) + theme(
        plot_title=element_text(size=base_size + 1, ha="left", color=TEXT_COLOUR),
        text=element_text(color=TEXT_COLOUR),
        axis_text=element_text(size=base_size - 2, color=TICK_COLOUR),
        strip_text=element_text(size=base_size - 1, ha="left"),
        panel_grid_minor=element_blank(),
        panel_grid_major=element_line(color=GRID_COLOUR, size=0.6),
        legend_position="bottom",
        legend_title=element_blank(),
        legend_text=element_text(size=base_size - 1.5),
        plot_background=element_rect(fill="white", color="white"),
        dpi=DPI,
    )


# The shared theme of every chart (built once; a fork assigns charts.THEME to change them all).
THEME = report_theme()


def place_colours(places) -> dict[str, str]:
    """Colour of each series: 全国 orange, England green, the area (anything else) blue."""
    out = {}
    for p in places:
        out[str(p)] = (
            conventions.SERIES["national"]
            if p == NATIONAL_NAME
            else conventions.SERIES["uk"]
            if str(p).startswith(UK_NAME)
            else conventions.SERIES["area"]
        )
    return out


def place_shapes(places) -> dict[str, str]:
    shapes = iter(["o", "s", "D", "^"])
    return {
        str(p): ("s" if p == NATIONAL_NAME else "D" if str(p).startswith(UK_NAME) else next(shapes)) for p in places
    }


def _categories(s: pd.Series) -> list:
    return list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else list(dict.fromkeys(s.dropna()))


# Line breaking for Japanese labels (a simple 禁則処理): a run of Latin letters, digits and the
# signs that join them ("UCLA", "10～12", "3.5%") is not broken; a line does not start with a
# closing bracket or punctuation mark nor end with an opening bracket (the character before is
# carried to the next line instead, so no line is longer than `width`).
_TOKEN = re.compile(r"[A-Za-z0-9０-９.,%％～〜~+\-]+|.", re.S)
_NO_LINE_START = frozenset("）」』】〕〉》］｝)]}、。，．・：；？！ー々ゝゞぁぃぅぇぉっゃゅょァィゥェォッャュョ％%")
_NO_LINE_END = frozenset("（「『【〔〈《［｛([{")


def wrap(text: str, width: int = 16) -> str:
    """Wrap a Japanese label (no spaces) into lines of at most `width` characters, breaking
    between characters but not inside a number or a Latin word, nor before a closing mark or
    after an opening one (a run longer than a line is cut at `width`)."""
    text = str(text)
    width = max(1, int(width))
    tokens: list[str] = []
    for tok in _TOKEN.findall(text):
        tokens += [tok[i : i + width] for i in range(0, len(tok), width)] if len(tok) > width else [tok]
    lines: list[list[str]] = [[]]
    for tok in tokens:
        line = lines[-1]
        if line and sum(map(len, line)) + len(tok) > width:
            carry: list[str] = []
            # move marks that may not end a line, and the token before a mark that may not start one
            while len(line) > 1 and (line[-1][-1] in _NO_LINE_END or (not carry and tok[0] in _NO_LINE_START)):
                carry.insert(0, line.pop())
                if carry[0][-1] not in _NO_LINE_END:
                    break
            lines.append(carry + [tok])
            # a carried run plus the token may still be too long: then break before the token
            if sum(map(len, lines[-1])) > width and carry:
                lines[-2] += carry
                lines[-1] = [tok]
        else:
            line.append(tok)
    return "\n".join("".join(line) for line in lines if line) or text


# ---------------------------------------------------------------------------------------------
# Drawing and display
# ---------------------------------------------------------------------------------------------


def ggplot_class():
    from plotnine import ggplot

    return ggplot


# The renditions of a chart (issue #23). The page shows the wide PNG (WIDTH at DPI: 864 px, shown at
# its own size on a desktop); a phone (PHONE_MEDIA) gets the phone layout (``phone_layout``) drawn
# PHONE_WIDTH wide, so that the smallest text (8 pt) is still >= 9 CSS px when the image is scaled to
# a 390 px screen's 342 px column; the PDF gets the wide chart as SVG (vector, text as text in the
# report's font: Typst draws it with the same font file, so the PDF embeds no other font).
PHONE_WIDTH = 4.0  # inches: 8 pt at 342 CSS px is 8 / 72 * 342 / 4.0 = 9.5 CSS px
PHONE_DPI = 160  # 640 px: about two device pixels per CSS pixel on a phone
PHONE_MEDIA = "(max-width: 640px)"  # wider: the wide PNG keeps 8 pt >= 9 CSS px (592 / 864 * 13.3)
PHONE_WRAP = 11  # characters per line of a wrapped category label on a phone
PHONE_TITLE_WRAP = 18  # characters per line of a title, axis title or caption on a phone (11 pt
# from the panel's left edge, after the row labels: ~200 pt)
PHONE_MIN_TEXT = 8.0  # points: the smallest text drawn on a phone (a smaller geom_text is enlarged)
SVG_PARAMS = {"svg.fonttype": "none", "svg.hashsalt": "tsunagari", "svg.id": None}
MIN_TEXT_KEY = "Tsunagari:min-text-px"  # PNG text chunk: the smallest text drawn, in image pixels


def smallest_text_pt(fig) -> float | None:
    """The size in points of the smallest visible, non-empty text of a drawn figure (None: none)."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) if sizes else None


def _png_encode(fig, dpi: int, palette: bool = False) -> bytes:
    """The drawn figure's pixels as PNG: RGB, no time or software chunk (the same chart gives the same
    bytes in any process), and its smallest text in image pixels (MIN_TEXT_KEY). palette: 256
    colours, no dithering (the phone rendition: fewer bytes; flat colours and anti-aliased
    edges look the same)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image, PngImagePlugin

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    img = Image.frombuffer("RGBA", (rgba.shape[1], rgba.shape[0]), rgba, "raw", "RGBA", 0, 1).convert("RGB")
    info = PngImagePlugin.PngInfo()
    smallest = smallest_text_pt(fig)
    if smallest is not None:
        info.add_text(MIN_TEXT_KEY, f"{smallest * dpi / 72:.2f}")
    buf = io.BytesIO()
    if palette:
        img = img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(buf, format="png", compress_level=3, dpi=(dpi, dpi), pnginfo=info)
    return buf.getvalue()


def _svg_encode(fig) -> bytes:
    """The drawn figure as SVG: text as <text> in the chart font (svg.fonttype none), no date, ids
    from a fixed salt (the same chart gives the same bytes)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(SVG_PARAMS):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def _sized(chart, width, height):
    """A ggplot at width x height inches, as a copy (drawing stores the figure on the ggplot, and
    the cell's chart must not keep it alive)."""
    from plotnine import theme

    return chart + (theme(figure_size=(width, height)) if width and height else None)


def _cache_digest(chart, width, height, dpi, cache: bool) -> str | None:
    """The chart cache's digest of a sized ggplot (``chart_cache.digest``: one walk of the chart for
    all its renditions), or None (cache off, or a chart the key cannot describe)."""
    from pipelines.outputs import chart_cache

    if not (cache and chart_cache.enabled()):
        return None
    try:
        return chart_cache.digest(chart, width or 0.0, height or 0.0, dpi)
    except chart_cache.Uncacheable:
        return None


INFER_STRING = "future.infer_string"


@lru_cache(maxsize=1)
def object_strings_option() -> bool:
    """Whether pandas still has the option that makes it infer text as object (pandas 3; not 4)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pd.get_option(INFER_STRING)
        return True
    except pd.errors.OptionError:
        return False


@contextmanager
def _plotnine_frames():
    """plotnine's drawing with pandas inferring text columns (and column labels) as object rather
    than pandas 3's pyarrow-backed ``str``: the many small frames plotnine builds, indexes and extends
    per layer and scale cost less of a chart's drawing (bench/bench_charts.py), and the pictures
    are the same (tests/test_chart_pixels.py). Public pandas API, but deprecated (the option goes in
    pandas 4): without it, drawing runs as it is (tests/test_charts.py notices when it is gone)."""
    import warnings

    if not object_strings_option():
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{INFER_STRING}", category=Warning)
        with pd.option_context(INFER_STRING, False):
            yield


def _draw(chart):
    """The figure of a sized ggplot (plotnine's ``draw``, in ``_plotnine_frames``)."""
    with _plotnine_frames():
        return chart.draw()


def _encode(fig, dpi: int, fmt: str) -> bytes:
    return _svg_encode(fig) if fmt == "svg" else _png_encode(fig, dpi, palette=fmt == "png8")


def renditions(
    chart,
    width: float | None = None,
    height: float | None = None,
    dpi: int = DPI,
    formats: tuple[str, ...] = ("png",),
    cache: bool = True,
) -> dict[str, bytes]:
    """Draw a ggplot (or a matplotlib Figure) once and return it in each of `formats` ("png",
    "png8": PNG of 256 colours, "svg"). A ggplot whose key (its data, specification, size and environment:
    pipelines/outputs/chart_cache.py) was drawn before is read from the chart cache instead, per format
    (``cache=False`` or ``TSUNAGARI_CHART_CACHE=0``: always drawn)."""
    return _renditions(chart, width, height, dpi, formats, cache)[0]


def _renditions(chart, width, height, dpi, formats, cache) -> tuple[dict[str, bytes], str | None]:
    """``renditions``, and the chart cache digest of the sized chart (None: not cached)."""
    from pipelines.outputs import chart_cache

    out: dict[str, bytes] = {}
    keys: dict[str, str | None] = {}
    base = None
    if isinstance(chart, ggplot_class()):
        chart = _sized(chart, width, height)
        base = _cache_digest(chart, width, height, dpi, cache)
        for fmt in formats:
            keys[fmt] = chart_cache.derive(base, fmt) if base else None
            cached = chart_cache.get(keys[fmt], fmt) if keys[fmt] else None
            if cached is not None:
                out[fmt] = cached
        if len(out) == len(formats):
            return out, base
        fig = _draw(chart)
    else:
        fig = chart
        if width and height:
            fig.set_size_inches(width, height, forward=False)
    for fmt in formats:
        if fmt not in out:
            out[fmt] = _encode(fig, dpi, fmt)
            if keys.get(fmt):
                chart_cache.put(keys[fmt], out[fmt], fmt)
    return out, base


def png_bytes(
    chart, width: float | None = None, height: float | None = None, dpi: int = DPI, cache: bool = True
) -> bytes:
    """Draw a ggplot (or a matplotlib Figure) once and return PNG bytes (``renditions``)."""
    return renditions(chart, width, height, dpi, ("png",), cache)["png"]


def svg_bytes(chart, width: float | None = None, height: float | None = None, cache: bool = True) -> bytes:
    """Draw a ggplot (or a matplotlib Figure) once and return SVG bytes (``renditions``)."""
    return renditions(chart, width, height, DPI, ("svg",), cache)["svg"]


def _rewrap(value, width: int):
    """A label the notebook wrapped (it holds a line break) or a long one, wrapped again at `width`."""
    if isinstance(value, str) and ("\n" in value or len(value) > width):
        return wrap(value.replace("\n", ""), width)
    return value


def _rewrap_frame(frame, columns, width: int):
    """`frame` with the labels of `columns` (categorical or text) wrapped at `width`."""
    if not isinstance(frame, pd.DataFrame) or not any(c in frame.columns for c in columns):
        return frame
    frame = frame.copy()
    for col in columns:
        if col not in frame.columns:
            continue
        s = frame[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cats = [_rewrap(c, width) for c in s.cat.categories]
            if cats != list(s.cat.categories) and len(set(cats)) == len(cats):
                frame[col] = s.cat.rename_categories(cats)
        elif s.dtype == object:
            frame[col] = s.map(lambda v: _rewrap(v, width))
    return frame


def _discrete_levels(chart, aesthetic: str) -> list | None:
    """The levels of a discrete position aesthetic (a column of the plot data that is categorical or
    text, in the order of its scale's limits when set), or None."""
    col = (chart.mapping or {}).get(aesthetic)
    data = chart.data if isinstance(chart.data, pd.DataFrame) else None
    if not isinstance(col, str) or data is None or col not in data.columns:
        return None
    s = data[col]
    if not (isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object):
        return None
    scale = next((sc for sc in chart.scales if aesthetic in sc.aesthetics), None)
    limits = getattr(scale, "limits", None)
    return list(limits) if isinstance(limits, (list, tuple)) else _categories(s)


def phone_layout(chart, height: float):
    """The chart arranged for a phone (drawn PHONE_WIDTH wide): returns (ggplot, height in inches).

    Generic, so that every figure cell gets it without a line of its own (``show(..., phone=...)``
    takes a chart of the cell's own instead): labels the notebook wrapped (category names with a
    line break) wrapped again at PHONE_WRAP characters, titles at PHONE_TITLE_WRAP; small multiples
    in two columns; a chart with four or more categories along x turned on its side (categories
    down the page, first on top; a value printed above a bar is printed beside it); no text smaller
    than PHONE_MIN_TEXT; legends stacked; the height from the rows to show."""
    import copy

    from plotnine import coord_flip, labs, scale_x_discrete, scale_y_continuous
    from plotnine.coords import coord_flip as coord_flip_class
    from plotnine.facets import facet_wrap as facet_wrap_class

    chart = copy.deepcopy(chart)
    # the labels along the axes and of the panels (the columns of x, y and the facets)
    facet = chart.facet if isinstance(chart.facet, facet_wrap_class) else None
    columns = [v for k, v in (chart.mapping or {}).items() if k in ("x", "y") and isinstance(v, str)]
    columns += list(facet.vars) if facet is not None else []
    chart.data = _rewrap_frame(chart.data, columns, PHONE_WRAP)
    for i, layer in enumerate(chart.layers):
        if isinstance(layer.geom.data, pd.DataFrame):
            # a layer's own frame: rewrapped on its geom, the layer made again from it (plotnine's
            # public layer.from_geom, as `chart + geom` does)
            layer.geom.data = _rewrap_frame(layer.geom.data, columns, PHONE_WRAP)
            chart.layers[i] = layer = type(layer).from_geom(layer.geom)
        params = layer.geom.aes_params
        if (
            type(layer.geom).__name__ in ("geom_text", "geom_label")
            and params.get("size", PHONE_MIN_TEXT) < PHONE_MIN_TEXT
        ):
            params["size"] = PHONE_MIN_TEXT
    for scale in chart.scales:
        limits = getattr(scale, "limits", None)
        position = bool({"x", "y"} & set(scale.aesthetics))
        if position and isinstance(limits, (list, tuple)) and any(isinstance(v, str) for v in limits):
            scale.limits = type(limits)(_rewrap(v, PHONE_WRAP) for v in limits)
        expand = getattr(scale, "expand", None)
        if scale.__class__.__name__.startswith("scale_x_continuous") and isinstance(expand, tuple) and len(expand) == 2:
            # room kept beside the outermost marks (for their names) is a length: the panel is
            # narrower, so its share of the axis grows
            scale.expand = (expand[0] * 1.8, expand[1])
    texts = {k: getattr(chart.labels, k, None) for k in ("title", "subtitle", "caption", "x", "y")}
    extra_lines = 0
    relabel = {}
    for k, v in texts.items():
        width = PHONE_TITLE_WRAP + 12 if k == "caption" else PHONE_TITLE_WRAP  # 8 pt, across the figure
        if isinstance(v, str) and len(v.replace("\n", "")) > width:
            relabel[k] = wrap(v.replace("\n", ""), width)
            extra_lines += relabel[k].count("\n") - v.count("\n")
    if relabel:
        chart += labs(**relabel)
    flipped = isinstance(chart.coordinates, coord_flip_class)
    if facet is not None:
        n = int(chart.data[facet.vars[0]].nunique()) if facet.vars and facet.vars[0] in chart.data else 1
        ncol_wide = facet._ncol or int(np.ceil(np.sqrt(n)))
        rows_wide, rows = int(np.ceil(n / ncol_wide)), int(np.ceil(n / min(2, ncol_wide)))
        facet._ncol, facet._nrow = min(2, ncol_wide), None
        return chart, max(height, 1.4 + 0.2 * extra_lines + (height - 1.2) / max(rows_wide, 1) * rows * 0.85)
    xs = _discrete_levels(chart, "x")
    turned = not flipped and xs is not None and len(xs) >= 4
    if turned:
        chart += [coord_flip(), scale_x_discrete(limits=xs[::-1])]
        beside = False
        for layer in chart.layers:
            params = layer.geom.aes_params
            if params.get("va") == "bottom":
                params["va"], params["ha"] = "center", "left"
                beside = True
        if beside and not any("y" in sc.aesthetics for sc in chart.scales):
            chart += scale_y_continuous(expand=(0.05, 0, 0.15, 0))  # room for the values beside the ends
        flipped = True
    rows = _discrete_levels(chart, "x") if flipped else _discrete_levels(chart, "y")
    if rows is None:
        return chart, height
    lines = max([str(r).count("\n") + 1 for r in rows] or [1])
    series = int(chart.data["place"].nunique()) if isinstance(chart.data, pd.DataFrame) and "place" in chart.data else 1
    row_h = max(0.42, 0.14 * lines + 0.16, 0.2 * series + 0.06)
    # a chart turned on its side: its own height was for categories across the page
    return chart, max(0.0 if turned else height, 1.6 + 0.2 * extra_lines + len(rows) * row_h)


def _phone_rendition(chart, height: float, phone, base: str | None) -> bytes | None:
    """The phone rendition (PNG of 256 colours) of a ggplot shown `height` inches high: `phone` (a
    (ggplot, height) of the cell's own; False: none) or ``phone_layout(chart, height)``. The generic
    layout's cache key comes from the wide chart's digest `base` (phone_layout is a function of the
    chart and its height, and its source is in the digest): the chart is walked once for all its
    renditions, and a cached phone rendition needs no phone layout."""
    from pipelines.outputs import chart_cache

    if phone is not None:
        if not phone:
            return None
        small, small_height = phone
        return renditions(small, PHONE_WIDTH, small_height, PHONE_DPI, ("png8",))["png8"]
    key = chart_cache.derive(base, "phone_layout", PHONE_WIDTH, PHONE_DPI, "png8") if base else None
    cached = chart_cache.get(key, "png8") if key else None
    if cached is not None:
        return cached
    small, small_height = phone_layout(chart, height)
    data = renditions(small, PHONE_WIDTH, small_height, PHONE_DPI, ("png8",), cache=False)["png8"]
    if key:
        chart_cache.put(key, data, "png8")
    return data


NO_DATA = "（図なし：表示できる値がありません。データがないか、集計対象が少ないため全て非表示です）"


def has_data(chart) -> bool:
    """Whether a ggplot has any row to draw (a chart of a frame whose values are all missing or
    suppressed has none; plotnine cannot draw it)."""
    data = getattr(chart, "data", None)
    return not isinstance(chart, ggplot_class()) or (isinstance(data, pd.DataFrame) and len(data) > 0)


def show(
    chart,
    alt: str,
    width: float = WIDTH,
    height: float = 3.6,
    name: str | None = None,
    phone: tuple | bool | None = None,
) -> None:
    """Display a chart in the notebook: image/png (WIDTH wide, DPI) plus the alt text as text/plain.
    A ggplot with no row to draw is not drawn: the report says so in Japanese (NO_DATA) instead.
    The built-in renderer's other renditions travel in the image's metadata (Jupyter and Quarto
    show the PNG): ``data-phone``, the phone layout as PNG (``phone_layout``, or `phone`: a
    (ggplot, height) of the cell's own; False: none), shown below PHONE_MEDIA; ``data-print``, the
    chart as SVG for the PDF.
    name: the chart's data file (``{name}.csv``, letters, digits, - and _): the rows drawn
    (``chart_table``) travel with the image as text/csv, and the renderer publishes them beside
    the report with a link under the chart (pipelines/render/common.py ``write_chart_data``)."""
    from IPython.display import Markdown, display

    if not has_data(chart):
        display(Markdown(NO_DATA))
        return
    if name is not None and not DATA_NAME.fullmatch(name):
        raise ValueError(f"chart data name {name!r}: letters, digits, - and _ only")
    drawn, base = _renditions(chart, width, height, DPI, ("png", "svg"), True)
    bundle = {"image/png": base64.b64encode(drawn["png"]).decode("ascii"), "text/plain": alt}
    meta = {"data-print": drawn["svg"].decode("utf-8")}
    if isinstance(chart, ggplot_class()):
        drawn_small = _phone_rendition(chart, height, phone, base)
        if drawn_small is not None:
            meta["data-phone"] = base64.b64encode(drawn_small).decode("ascii")
        if name is not None:
            bundle["text/csv"] = table_csv(chart_table(chart))
            meta["data-csv"] = f"{name}.csv"
    display(bundle, metadata={"image/png": meta}, raw=True)


# ---------------------------------------------------------------------------------------------
# The data of a chart (issue #23): what is drawn, as a table a reader can open
# ---------------------------------------------------------------------------------------------

DATA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,80}")
# Columns of a chart's frame that a data file carries, in this order, with Japanese headers (the
# contract name in brackets, as in the downloads: pipelines/outputs/downloads.py HEADERS_JA). The drawn
# value of a frame with `estimate_method` is the leading estimate (direct, pooled or model-based).
LEVEL = confidence_percent()  # the intervals' level (the settings when this module loads)
TABLE_COLUMNS = [
    ("area_code", "地域コード (area_code)"),
    ("place", "地域 (place)"),
    ("area_name", "都道府県 (area_name)"),
    ("indicator_id", "指標ID (indicator_id)"),
    ("indicator", "指標 (indicator)"),
    ("group", "区分 (group)"),
    ("category_label", "回答 (category_label)"),
    ("year", "調査年 (year)"),
    ("value", "値 (value)"),
    ("lower_ci95", f"{LEVEL}%信頼区間 下限 (lower_ci95)"),
    ("upper_ci95", f"{LEVEL}%信頼区間 上限 (upper_ci95)"),
    ("label", "図に示した値 (label)"),
    ("national_value", "全国値 (national_value)"),
    ("comparison", "全国との比較 (comparison_ja)"),
    ("change", "前回からの変化 (change_vs_previous_ja)"),
    ("estimate_method", "推計方法 (estimate_method)"),
    ("method_label", "推計方法 表示 (estimate_method_ja)"),
    ("suppressed", "非表示 (suppressed)"),
]
LEAD_HEADERS = {
    "value": "図の値（表示する推計値） (lead_value)",
    "lower_ci95": f"{LEVEL}%区間 下限 (lead_lower_ci95)",
    "upper_ci95": f"{LEVEL}%区間 上限 (lead_upper_ci95)",
}
POSITIONS = ("scaled", "x")  # the position a spine or strip chart draws (a data step of the notebook)


def chart_table(chart) -> pd.DataFrame:
    """The rows a chart draws from its data (a row with a value, or with a position for a spine or
    strip chart), with the columns of TABLE_COLUMNS it has, at the published precision, under
    Japanese headers; a position column is headed by the chart's x-axis label. Nothing else: no
    base (n_unweighted) and no row whose value is not drawn (missing or suppressed)."""
    from pipelines.domain.formatting import round_published

    data = chart.data if isinstance(getattr(chart, "data", None), pd.DataFrame) else pd.DataFrame()
    position = next((c for c in POSITIONS if c in data.columns and "year" not in data.columns), None)
    drawn = data[position] if position else data.get("value", pd.Series(np.nan, index=data.index))
    rows = data[drawn.notna()].copy()
    cols = [c for c, _ in TABLE_COLUMNS if c in rows.columns]
    out = round_published(rows[cols + ([position] if position else [])])
    for c in ("place", "area_name", "indicator", "group", "category_label"):
        if c in out.columns:  # wrapped labels (charts.wrap) back on one line
            out[c] = out[c].astype(str).str.replace("\n", "", regex=False)
    if "comparison" in out.columns:
        out["comparison"] = out.comparison.map(lambda c: conventions.comparison(c).label if isinstance(c, str) else "")
    if "change" in out.columns:
        out["change"] = out.change.map(lambda c: conventions.change(c).label if isinstance(c, str) else "")
    if position:
        out[position] = np.round(out[position].astype(float), 3) + 0.0
    headers = dict(TABLE_COLUMNS)
    if "estimate_method" in out.columns:
        headers.update(LEAD_HEADERS)
    if position:
        xlab = str(getattr(chart.labels, "x", None) or "図の横位置")
        headers[position] = f"{xlab} ({position})"
    return out.rename(columns=headers).reset_index(drop=True)


def table_csv(table: pd.DataFrame) -> str:
    """A chart table as CSV text (comma separated, CRLF; a text cell that a spreadsheet would read
    as a formula is quoted with '); the renderer writes it as UTF-8 with BOM."""
    from pipelines.io.xlsx import neutralise_frame

    return neutralise_frame(table).to_csv(index=False, lineterminator="\r\n")


def warm_up() -> None:
    """Import plotnine and matplotlib, load the font and draw once: a warm report kernel runs this
    while it waits for its first area."""
    from plotnine import aes, geom_point, ggplot, labs

    from pipelines.outputs import chart_cache

    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0]})
    chart = ggplot(frame, aes("x", "y")) + geom_point() + labs(title="孤独・孤立の状況 2024年（％）") + THEME
    png_bytes(chart, 2.0, 1.2, cache=False)  # really drawn: the font and the drawing code loaded
    if chart_cache.enabled():
        chart_cache.key(chart, 2.0, 1.2, DPI)  # the cache key's fixed part (library versions, fonts)


# ---------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------


def marked_places(frame: pd.DataFrame, column: str = "value") -> list:
    """The places (series) that have at least one mark, in the frame's order: a legend lists only
    these (a place whose values are all missing or suppressed draws nothing)."""
    shown = set(frame.loc[frame[column].notna(), "place"].astype(str))
    return [p for p in _categories(frame["place"]) if str(p) in shown]


# Point fills by estimate method (issue #24): a direct value is filled with its series' colour.
METHOD_FILLS = {"pooled": "#BBBBBB", "model": "#FFFFFF"}


def _method_fills(frame: pd.DataFrame, places) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """``frame`` with a column ``mark``: the place for a direct value, the method's words for a
    pooled or model-based one (``estimate_method``, ``method_label``); the fill of each mark and
    the legend breaks (the non-direct marks present, in the order pooled, model)."""
    f = frame.copy()
    place = f["place"].astype(str)
    method = f["estimate_method"] if "estimate_method" in f.columns else pd.Series(None, index=f.index)
    label = (f["method_label"] if "method_label" in f.columns else method).astype(object)
    other = method.isin(list(METHOD_FILLS)) & f["value"].notna()
    f["mark"] = place.where(~other, label.astype(str))
    colours = place_colours(places)
    fills = {str(p): colours[str(p)] for p in places}
    breaks = []
    for m in ("pooled", "model"):
        for lab in dict.fromkeys(label[other & (method == m)].astype(str)):
            fills[lab] = METHOD_FILLS[m]
            breaks.append(lab)
    return f, fills, breaks


def _fill_scale(fills: dict[str, str], breaks: list[str]):
    """The fill scale of the marks: a legend ('推計方法') listing only the non-direct kinds present."""
    from plotnine import guide_legend, scale_fill_manual

    if not breaks:
        return scale_fill_manual(values=fills, guide=None)
    return scale_fill_manual(
        values=fills,
        breaks=breaks,
        name="推計方法",
        guide=guide_legend(override_aes={"shape": "o", "colour": "#333333"}),
    )


# Honest value axes (issue #23): a percentage axis spans at least MIN_SPAN points, so that a
# difference of a point or two is not drawn across the whole panel (an axis of 87.0-88.0 made
# sampling noise look like a trend); the span is centred on the data and kept within 0-100.
MIN_SPAN = 10.0


def span_limits(
    lo: float, hi: float, span: float = MIN_SPAN, bounds: tuple[float, float] = (0.0, 100.0)
) -> tuple[float, float]:
    """Axis limits around [lo, hi] at least `span` wide, shifted to stay within `bounds`."""
    lo, hi = float(lo), float(hi)
    width = max(hi - lo, span)
    centre = (lo + hi) / 2
    a, b = centre - width / 2, centre + width / 2
    if a < bounds[0]:
        a, b = bounds[0], bounds[0] + width
    if b > bounds[1]:
        a, b = max(bounds[0], bounds[1] - width), bounds[1]
    return a, b


def _value_range(frame: pd.DataFrame) -> tuple[float | None, float | None]:
    """The smallest and largest of value and interval over the rows drawn (None, None: none)."""
    cols = [c for c in ("value", "lower_ci95", "upper_ci95") if c in frame.columns]
    v = frame[cols].to_numpy(dtype=float) if cols and len(frame) else np.empty((0, 0))
    v = v[~np.isnan(v)]
    return (float(v.min()), float(v.max())) if v.size else (None, None)


def estimate_chart(frame: pd.DataFrame, title: str, x: str = "group", flip: bool = False):
    """Point and 95% interval per `x` category, one dodged series per `place` (area, 全国,
    England), from ReportData.estimates (NaN values are not drawn; their category keeps its slot).
    A row without an interval (England's published figures: lower_ci95/upper_ci95 NaN) is drawn
    as a point alone. The legend lists the places that have a point.
    flip: categories on the vertical axis (long indicator names), first category on top."""
    from plotnine import (
        aes,
        coord_flip,
        expand_limits,
        geom_linerange,
        geom_point,
        geom_pointrange,
        ggplot,
        labs,
        position_dodge,
        scale_colour_manual,
        scale_shape_manual,
        scale_x_discrete,
    )

    places = _categories(frame["place"])
    marked = marked_places(frame)
    dodge = position_dodge(width=0.6)
    cats = _categories(frame[x])
    # Every row stays in the data (a missing value too): the dodge then gives each place the same
    # slot in every category; rows without a value or an interval are dropped when drawn (na_rm).
    shown = frame if len(marked) else frame.iloc[0:0]
    no_interval = shown.value.notna() & (shown.lower_ci95.isna() | shown.upper_ci95.isna())
    # group = place: plotnine draws each group separately, and one group per series (not per
    # series x category) makes this chart much faster to draw (bench/bench_charts.py)
    # How each value was estimated (issue #24): direct values filled with their series' colour,
    # pooled ones grey, model-based ones hollow (white); a legend entry only for the kinds present
    shown, fills, breaks = _method_fills(shown, places)
    chart = ggplot(
        shown,
        aes(
            x=x,
            y="value",
            ymin="lower_ci95",
            ymax="upper_ci95",
            colour="place",
            shape="place",
            fill="mark",
            group="place",
        ),
    )
    if no_interval.any():
        # some points have no interval: the interval layer draws where lower/upper exist (the
        # others are dropped, na_rm), the point layer draws every value
        chart += [
            geom_linerange(position=dodge, size=0.7, na_rm=True, show_legend=False),
            geom_point(position=dodge, size=0.7 * 3.7, na_rm=True),
        ]
    else:
        # one geom_pointrange (point and interval) rather than geom_linerange + geom_point: one layer less
        chart += geom_pointrange(position=dodge, size=0.7, fatten=3.7, na_rm=True)
    chart += [
        scale_colour_manual(values=place_colours(places), limits=marked, drop=False),
        scale_shape_manual(values=place_shapes(places), limits=marked, drop=False),
        _fill_scale(fills, breaks),
        scale_x_discrete(limits=cats[::-1] if flip else cats),
        labs(title=title, x="", y="％"),
        THEME,
    ]
    lo, hi = _value_range(shown)
    if lo is not None:
        # no zoom that exaggerates: the value axis spans at least MIN_SPAN points (issue #23)
        chart += expand_limits(y=list(span_limits(lo, hi)))
    if flip:
        chart += coord_flip()
    return chart


def distribution_chart(frame: pd.DataFrame, title: str):
    """Grouped bars of an answer distribution (ReportData.distribution, plus England when given):
    category_label on x, one bar per place, the value printed above each bar (`label` when given,
    e.g. England's published precision). The legend lists the places that have a bar."""
    from plotnine import aes, geom_col, geom_text, ggplot, labs, position_dodge, scale_fill_manual

    places = _categories(frame["place"])
    dodge = position_dodge(width=0.85)
    shown = frame.dropna(subset=["value"]).assign(label=lambda d: d.get("label", d.value.map(lambda v: f"{v:.1f}")))
    chart = ggplot(shown, aes(x="category_label", y="value", fill="place", group="place"))
    chart += [
        geom_col(position=dodge, width=0.8),
        geom_text(
            aes(label="label", y="value + 0.8"),
            position=dodge,
            size=6.5,
            va="bottom",
            color=TEXT_COLOUR,
            family=font_family(),
        ),
        scale_fill_manual(values=place_colours(places), limits=marked_places(frame), drop=False),
        labs(title=title, x="", y="％"),
        THEME,
    ]
    return chart


def trend_chart(frame: pd.DataFrame, title: str, ncol: int = 3):
    """Small multiples over the rounds (ReportData.trends): one panel per indicator, a line with 95%
    intervals per place, the places side by side at each year; ★ (in the colour of its series) a
    significant change vs the previous round; a dashed vertical line where the estimate's source
    changed (national subsample -> own survey).
    Every panel's value axis is equally wide (in points: the widest panel's range of values and
    intervals, at least MIN_SPAN), each centred on its own data: a change of one point has the same
    slope in every panel, and a panel of small values is not stretched to fill its height (issue
    #23). The caption states the width (``trend_span``)."""
    from plotnine import (
        aes,
        facet_wrap,
        geom_blank,
        geom_line,
        geom_pointrange,
        geom_text,
        geom_vline,
        ggplot,
        labs,
        scale_colour_manual,
        scale_x_continuous,
    )

    places = _categories(frame["place"])
    years = sorted(frame.year.unique())
    # Each place a little left or right of its year, so the intervals of the area and of national
    # do not hide one another; a ★ sits above the point of its own series, in its colour.
    offsets = {p: (k - (len(places) - 1) / 2) * 0.14 for k, p in enumerate(places)}
    shown = frame.dropna(subset=["value"]).copy()
    shown["x_dodged"] = shown.year + shown.place.astype(str).map(offsets).astype(float)
    significant = shown[shown.change.isin(["increase", "decrease"])].assign(y=lambda d: d.upper_ci95)
    switches = frame[frame.source_changed].drop_duplicates(["indicator", "year"]).assign(x=lambda d: d.year - 0.5)
    span, limits = trend_span(shown)
    shown, fills, breaks = _method_fills(shown, places)
    chart = ggplot(shown, aes(x="x_dodged", y="value", colour="place", group="place"))
    chart += [
        geom_line(size=0.9),
        geom_pointrange(aes(ymin="lower_ci95", ymax="upper_ci95", fill="mark"), size=0.6, fatten=3.3),
        scale_colour_manual(values=place_colours(places), limits=places, drop=False),
        _fill_scale(fills, breaks),
        scale_x_continuous(breaks=years, labels=[str(y) for y in years], limits=(min(years) - 0.35, max(years) + 0.35)),
        facet_wrap("indicator", ncol=ncol, scales="free_y"),
        labs(title=title, x="", y="％", caption=f"縦軸の幅は全パネル共通（{span:g}ポイント）"),
        THEME,
    ]
    if len(limits):
        # invisible points at each panel's two limits: the same width everywhere
        chart += geom_blank(limits, aes(x="x_dodged", y="value"), inherit_aes=False)
    if len(significant):
        chart += geom_text(
            significant,
            aes(x="x_dodged", y="y", label='"★"', colour="place"),
            va="bottom",
            size=9,
            show_legend=False,
            family=font_family(),
        )
    if len(switches):
        chart += geom_vline(switches, aes(xintercept="x"), linetype="dashed", colour="#595959", size=0.6)
    return chart


def trend_span(shown: pd.DataFrame, min_span: float = MIN_SPAN) -> tuple[float, pd.DataFrame]:
    """(the common width of the trend panels' value axes in points, rounded up to a whole number;
    a frame of two rows per indicator at the limits of its panel: indicator, x_dodged, value)."""
    cols = [c for c in ("value", "lower_ci95", "upper_ci95") if c in shown.columns]
    if not len(shown):
        return min_span, pd.DataFrame(columns=["indicator", "x_dodged", "value"])
    long = shown.melt(id_vars=["indicator"], value_vars=cols, value_name="v").dropna(subset=["v"])
    ranges = long.groupby("indicator", observed=True)["v"].agg(["min", "max"])
    span = float(np.ceil(max((ranges["max"] - ranges["min"]).max(), min_span)))
    rows = []
    for ind, r in ranges.iterrows():
        a, b = span_limits(r["min"], r["max"], span)
        x = float(shown.x_dodged.iloc[0]) if "x_dodged" in shown.columns else float(shown.year.iloc[0])
        rows += [{"indicator": ind, "x_dodged": x, "value": a}, {"indicator": ind, "x_dodged": x, "value": b}]
    limits = pd.DataFrame(rows)
    # the same dtype as the data's (an ordered categorical): else the panels come in sorted order
    limits["indicator"] = limits.indicator.astype(shown["indicator"].dtype)
    return span, limits


def spine_chart(frame: pd.DataFrame, title: str, x: str = "scaled"):
    """Where the area stands among the prefectures, one row per indicator, national at 0.

    `frame` (ReportData.prefectures, rescaled in the notebook): one row per prefecture and
    indicator with `x` (the position, right = better), `is_area` and `comparison`. Light grey:
    the range of prefectures; dark grey: the middle half; small dots: each prefecture; the area is
    the large marker, coloured and shaped by its comparison (pipelines.domain.conventions)."""
    from plotnine import (
        aes,
        geom_point,
        geom_segment,
        geom_text,
        geom_vline,
        ggplot,
        guide_legend,
        guides,
        labs,
        scale_colour_manual,
        scale_fill_manual,
        scale_shape_manual,
        scale_y_discrete,
    )

    rows = _categories(frame["indicator"])
    spread = (
        frame.dropna(subset=[x])
        .groupby("indicator", observed=True)[x]
        .agg(low="min", q1=lambda v: v.quantile(0.25), q3=lambda v: v.quantile(0.75), high="max")
        .reset_index()
    )
    area = frame[frame.is_area].dropna(subset=[x]).copy()
    area["judgement"] = area.comparison.map(lambda c: _legend_label(c))
    keys = [k for k in conventions.COMPARISON_ORDER if k != "suppressed"]
    labels = [_legend_label(k) for k in keys]
    chart = ggplot(frame.dropna(subset=[x]), aes(y="indicator", group=1))  # one group: drawn at once
    chart += [
        geom_vline(xintercept=0, colour="#222222", size=0.8),
        geom_segment(spread, aes(x="low", xend="high", y="indicator", yend="indicator"), size=7, colour="#DDDDDD"),
        geom_segment(spread, aes(x="q1", xend="q3", y="indicator", yend="indicator"), size=7, colour="#A6A6A6"),
        geom_point(aes(x=x), size=0.9, colour="#595959"),
        scale_y_discrete(limits=rows[::-1]),
        labs(title=title, x="全国（0）との差（最大の差を1とする）", y=""),  # the direction: in the caption
        THEME,
    ]
    if len(area):
        # the area named once, above its marker in the first row where it has one
        first = area.sort_values("indicator").head(1).assign(name=lambda d: d.area_name.astype(str))
        chart += geom_text(
            first, aes(x=x, label="name"), nudge_y=0.34, va="bottom", size=8, colour=TEXT_COLOUR, family=font_family()
        )
        shown = [lb for lb in labels if lb in set(area.judgement)]
        legend_rows = 1 if len(shown) <= 2 else 2  # the legend sits under the panel, right of the row labels
        chart += [
            geom_point(area, aes(x=x, fill="judgement", shape="judgement", colour="judgement"), size=4.5, stroke=0.6),
            guides(
                fill=guide_legend(nrow=legend_rows),
                shape=guide_legend(nrow=legend_rows),
                colour=guide_legend(nrow=legend_rows),
            ),
            scale_fill_manual(values=dict(zip(labels, [conventions.COMPARISON[k].fill for k in keys])), limits=shown),
            scale_colour_manual(values=dict(zip(labels, [mark_outline(k, "#000000") for k in keys])), limits=shown),
            scale_shape_manual(values=dict(zip(labels, [SPINE_SHAPES[k] for k in keys])), limits=shown),
        ]
    return chart


SPINE_SHAPES = {"better": "o", "worse": "X", "similar": "D", "higher": "^", "lower": "v", "not_compared": "s"}


def mark_outline(comparison: str, outline: str) -> str:
    """The colour aesthetic of a comparison's marker: the outline for shapes plotnine fills, and the
    fill colour itself for the ones it draws unfilled (plotnine fills only its FILLED_SHAPES, so an
    'X' takes its colour, not its fill: it was drawn black beside an orange legend key)."""
    from plotnine.geoms.geom_point import FILLED_SHAPES

    shape = SPINE_SHAPES[comparison]
    return outline if shape in FILLED_SHAPES else conventions.COMPARISON[comparison].fill


def _legend_label(comparison: str) -> str:
    style = conventions.comparison(comparison)
    return (
        f"{style.symbol} 全国より{style.label}"
        if style.key not in ("similar", "not_compared")
        else f"{style.symbol} {'全国と同程度' if style.key == 'similar' else style.label}"
    )


def short_name(name: str) -> str:
    """A prefecture's name without 都, 府 or 県 (北海道 and 全国 as they are): 東京都 -> 東京."""
    name = str(name)
    return name[:-1] if len(name) > 2 and name[-1] in "都府県" else name


def strip_chart(frame: pd.DataFrame, title: str, xlab: str, x: str = "x", ref: float = 0.0, label_extremes: int = 1):
    """Each prefecture as a dot per indicator row (seeded jitter), a vertical reference line at
    `ref` (national), and the area (`is_area`) as a large blue diamond with its name beside it.
    Without an area (the national report) the `label_extremes` lowest and highest prefectures of
    each row are named beside their dots, and a prefecture judged different from national
    (`comparison`: better, worse, higher, lower) is drawn in the comparison's colour and shape,
    with a legend: every dot that stands out is identified (the chart's data file names all)."""
    from plotnine import (
        aes,
        geom_jitter,
        geom_point,
        geom_text,
        geom_vline,
        ggplot,
        labs,
        scale_colour_manual,
        scale_fill_manual,
        scale_shape_manual,
        scale_x_continuous,
        scale_y_discrete,
    )

    rows = _categories(frame["indicator"])
    shown = frame.dropna(subset=[x])
    others = shown[~shown.is_area]
    area = shown[shown.is_area]
    is_flagged = (
        others["comparison"].isin(FLAGGED)
        if "comparison" in others.columns and label_extremes and not len(area)
        else pd.Series(False, index=others.index)
    )
    flagged = others[is_flagged]
    chart = ggplot(shown, aes(x=x, y="indicator", group=1))  # one group: drawn at once
    chart += [
        geom_vline(xintercept=ref, colour=conventions.SERIES["national"], size=1.0),
        geom_jitter(others[~is_flagged], width=0, height=0.18, random_state=1, size=1.6, colour="#595959", alpha=0.8),
        scale_y_discrete(limits=rows[::-1]),
        # room for the names beside the outermost dots
        scale_x_continuous(expand=(0.14, 0)),
        labs(title=title, x=xlab, y=""),
        THEME,
    ]
    family = font_family()
    if len(area):
        chart += [
            geom_point(area, shape="D", size=4, fill=conventions.SERIES["area"], colour="#000000"),
            geom_text(
                area.assign(name=area.area_name.astype(str)),
                aes(label="name"),
                nudge_y=0.32,
                va="bottom",
                size=8,
                colour=TEXT_COLOUR,
                family=family,
            ),
        ]
    elif label_extremes and len(others):
        if len(flagged):  # on the row's line, not jittered
            keys = [k for k in FLAGGED if k in set(flagged.comparison)]
            labels = {k: _legend_label(k) for k in keys}
            chart += [
                geom_point(
                    flagged.assign(judgement=flagged.comparison.map(labels)),
                    aes(fill="judgement", shape="judgement", colour="judgement"),
                    size=3.2,
                    stroke=0.25,
                ),
                scale_fill_manual(
                    values={labels[k]: conventions.COMPARISON[k].fill for k in keys}, limits=[labels[k] for k in keys]
                ),
                scale_colour_manual(
                    values={labels[k]: mark_outline(k, "#333333") for k in keys}, limits=[labels[k] for k in keys]
                ),
                scale_shape_manual(values={labels[k]: SPINE_SHAPES[k] for k in keys}, limits=[labels[k] for k in keys]),
            ]
        ranked = others.assign(name=others.area_name.map(short_name)).sort_values(x, kind="stable")
        by_row = ranked.groupby("indicator", observed=True)
        low, high = by_row.head(label_extremes), by_row.tail(label_extremes)
        width = float(shown[x].max() - shown[x].min()) or 1.0
        chart += [
            geom_text(
                low, aes(label="name"), ha="right", nudge_x=-0.012 * width, size=7, colour=TEXT_COLOUR, family=family
            ),
            geom_text(
                high, aes(label="name"), ha="left", nudge_x=0.012 * width, size=7, colour=TEXT_COLOUR, family=family
            ),
        ]
    return chart


# Comparisons that mark a prefecture as different from national in the national report's strips.
FLAGGED = ("better", "worse", "higher", "lower")
