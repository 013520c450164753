"""Charts for the area reports, drawn with matplotlib directly (Japanese labels, colour-blind-safe
palette, small deterministic PNGs).

Every chart function takes tidy DataFrames and returns a :class:`Chart`: a plain
``matplotlib.figure.Figure`` (object-oriented API, Agg; never pyplot, so nothing global to close and
the figure is garbage-collected like any object) plus its margins in inches. The margins are computed
from the label lengths instead of ``tight_layout``/``constrained`` (which cost a second layout pass),
and re-applied when ``show``/``png_bytes`` are given another size. ``show(chart, alt)`` displays it in
a notebook as a PNG whose ``text/plain`` is the alt text: the built-in renderer's Lua filter turns
that into ``<img alt>`` (Quarto uses the ``#| fig-alt`` cell option instead).

The same inputs give byte-identical PNGs in any process: no timestamps or version in the PNG metadata,
a seeded jitter, and a fixed font (IPAexGothic, which has one weight: nothing asks for bold).
"""

from __future__ import annotations

import base64
import io
import math
import re
from functools import lru_cache

import numpy as np
import pandas as pd

# Okabe-Ito palette (colour-blind safe). Judgement colours: blue good, vermillion bad, grey neutral.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
COMPARISON_COLOURS = {"better": "#0072B2", "worse": "#D55E00", "similar": "#8C8C8C", "higher": "#6A3D9A",
                      "lower": "#6A3D9A", "not_compared": "#BDBDBD"}
# Symbol = direction vs national (never colour alone): ▲ higher, ▼ lower, ● similar.
COMPARISON_SYMBOLS = {"better": None, "worse": None, "similar": "●", "higher": "▲", "lower": "▼",
                      "not_compared": "―"}
DIRECTION_MARKERS = {"higher": "^", "lower": "v", "similar": "o"}
SOURCE_COLOURS = {"area": "#0072B2", "national": "#E69F00", "uk": "#009E73"}
SOURCE_MARKERS = ["o", "s", "D"]
DPI = 120
BASE_SIZE = 10
TITLE_SIZE = BASE_SIZE + 1
TICK_SIZE = 8
LEGEND_SIZE = 8.5
TEXT_COLOUR = "#222222"
TICK_COLOUR = "#4D4D4D"
GRID_COLOUR = "#E6E6E6"
EDGE = 0.1  # inches of white space at the figure's edges


@lru_cache(maxsize=1)
def font_family() -> str:
    """The Japanese font for charts: IPAexGothic from matplotlib-fontja (always installed with pip)."""
    import matplotlib_fontja  # noqa: F401  (registers IPAexGothic with matplotlib)

    return "IPAexGothic"


@lru_cache(maxsize=1)
def _rc() -> dict:
    return {"font.family": [font_family()], "font.size": BASE_SIZE, "font.weight": "normal",
            "axes.unicode_minus": False, "axes.formatter.use_mathtext": False, "text.color": TEXT_COLOUR,
            "axes.labelcolor": TEXT_COLOUR, "path.simplify": True,
            "legend.frameon": False, "legend.fontsize": LEGEND_SIZE, "figure.dpi": DPI, "savefig.dpi": DPI}


def _context():
    import matplotlib

    return matplotlib.rc_context(_rc())


@lru_cache(maxsize=1)
def _ft_font():
    """IPAexGothic at 100 pt / 72 dpi, to measure labels without drawing them."""
    import matplotlib_fontja
    from matplotlib.ft2font import FT2Font

    font_family()
    f = FT2Font(matplotlib_fontja.get_font_ttf_path())
    f.set_size(100, 72)
    return f


@lru_cache(maxsize=4096)
def _em_width(line: str) -> float:
    """Advance width of one line of text in ems of the chart font."""
    if not line:
        return 0.0
    f = _ft_font()
    f.set_text(line, 0.0)
    return f.get_width_height()[0] / 64 / 100


def text_width(text: str, size: float) -> float:
    """Width in inches of (multi-line) `text` at `size` points."""
    return max(_em_width(line) for line in str(text).split("\n")) * size / 72


def text_height(text: str, size: float, spacing: float = 1.2) -> float:
    """Height in inches of (multi-line) `text` at `size` points."""
    return (str(text).count("\n") + 1) * size * spacing / 72


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
        tokens += [tok[i:i + width] for i in range(0, len(tok), width)] if len(tok) > width else [tok]
    lines: list[list[str]] = [[]]
    for tok in tokens:
        line = lines[-1]
        if line and sum(map(len, line)) + len(tok) > width:
            carry: list[str] = []
            # move marks that may not end a line, and the token before a mark that may not start one
            while len(line) > 1 and (line[-1][-1] in _NO_LINE_END
                                     or (not carry and tok[0] in _NO_LINE_START)):
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


def _fit(label: str, inches: float, size: float = TICK_SIZE) -> str:
    """Break a tick label into lines that fit `inches` (at a ・ near the middle when it has one)."""
    label = str(label)
    if "\n" in label or text_width(label, size) <= inches:
        return label
    dots = [i for i, ch in enumerate(label) if ch == "・" and 0 < i < len(label) - 1]
    if dots:
        i = min(dots, key=lambda k: abs(k - len(label) / 2))
        head, tail = label[: i + 1], label[i + 1:]
        if max(text_width(head, size), text_width(tail, size)) <= inches:
            return head + "\n" + tail
    per_line = max(2, int(inches / (size / 72)))
    return wrap(label, per_line)


class Chart:
    """A matplotlib Figure and its margins in inches (kept when the figure is resized).

    ``fig`` is an ordinary ``matplotlib.figure.Figure``; ``png()`` gives the PNG bytes at 120 dpi.
    """

    __slots__ = ("fig", "ax", "left", "right", "top", "bottom", "title", "__weakref__")

    def __init__(self, fig, ax, *, left: float, right: float, top: float, bottom: float, title=None):
        self.fig, self.ax = fig, ax
        self.left, self.right, self.top, self.bottom, self.title = left, right, top, bottom, title
        self.resize()

    @property
    def size(self) -> tuple[float, float]:
        w, h = self.fig.get_size_inches()
        return float(w), float(h)

    def resize(self, width: float | None = None, height: float | None = None) -> None:
        """Set the size (inches) when both are given, and place the Axes and title for the size."""
        if width and height:
            self.fig.set_size_inches(width, height, forward=False)
        w, h = self.size
        left, bottom = self.left / w, self.bottom / h
        right, top = max(1 - self.right / w, left + 0.05), max(1 - self.top / h, bottom + 0.05)
        self.ax.set_position((left, bottom, right - left, top - bottom))
        if self.title is not None:
            self.title.set_position((EDGE / w, 1 - EDGE / h))

    def png(self, width: float | None = None, height: float | None = None, dpi: int = DPI) -> bytes:
        if width and height:
            self.resize(width, height)
        return _png(self.fig, dpi)

    def _repr_png_(self) -> bytes:
        return self.png()

    def __repr__(self) -> str:
        # matplotlib's "<Figure size ...>": the Lua filter knows it is not alt text
        return repr(self.fig)


@lru_cache(maxsize=1)
def _canvas_class():
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg

    renderers: dict = {}

    class Canvas(FigureCanvasAgg):
        """Agg canvas sharing one renderer per pixel size between figures: matplotlib caches text
        metrics per renderer, and the reports draw the same labels at the same sizes 48 times.
        At most RENDERERS renderers (one pixel buffer each, ~2-3 MB) are kept: more than the
        distinct sizes of one report, so that cycling through them does not evict each one."""

        RENDERERS = 12

        def get_renderer(self):
            w, h = self.get_width_height(physical=True)
            key = (w, h, self.figure.dpi)
            renderer = renderers.pop(key, None) or RendererAgg(w, h, self.figure.dpi)
            renderers[key] = renderer  # most recently used last
            while len(renderers) > self.RENDERERS:
                renderers.pop(next(iter(renderers)))
            self.renderer, self._lastKey = renderer, key
            return renderer

    return Canvas


def _figure(width: float, height: float):
    """A Figure on the shared-renderer Agg canvas with one styled Axes (placed later by Chart)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    _canvas_class()(fig)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    _style(ax)
    return fig, ax


def warm_up() -> None:
    """Import matplotlib and load the Japanese font once: a warm report kernel runs this while it
    waits for its first area, so that area does not pay for it."""
    fig, ax = _figure(2.0, 1.0)
    ax.set_title("孤独・孤立の状況 2024年（％）")
    _png(fig)


def _style(ax, grid: str = "both") -> None:
    """theme_minimal: no frame, no tick marks, grey tick labels, light major grid."""
    for s in ax.spines.values():
        s.set_visible(False)
    ax.tick_params(length=0, labelsize=TICK_SIZE, labelcolor=TICK_COLOUR, pad=3)
    ax.set_axisbelow(True)
    if grid:
        ax.grid(True, axis=grid, color=GRID_COLOUR, linewidth=0.8)


def _title(fig, title: str, width: float):
    """Title at the top left; a smaller size when a long one would not fit the width."""
    size = TITLE_SIZE
    room = width - 2 * EDGE
    if title and text_width(title, size) > room:
        size = max(7.0, size * room / text_width(title, size))
    return fig.text(EDGE / width, 1, title or "", ha="left", va="top", fontsize=size, color=TEXT_COLOUR)


def _title_height(title: str) -> float:
    return EDGE + (text_height(title, TITLE_SIZE) + 0.1 if title else 0.0)


def _legend(fig, handles, labels) -> float:
    """One row of legend entries centred at the bottom; returns the inches from the bottom edge to
    just above it (the plain edge when there is no legend)."""
    if not handles:
        return EDGE
    from matplotlib.transforms import blended_transform_factory

    fig.legend(handles, labels, loc="lower center", ncol=len(handles), frameon=False, fontsize=LEGEND_SIZE,
               bbox_to_anchor=(0.5, EDGE * 0.5),
               bbox_transform=blended_transform_factory(fig.transFigure, fig.dpi_scale_trans),
               handletextpad=0.4, columnspacing=1.4, borderaxespad=0.0, borderpad=0.0)
    return EDGE * 0.5 + LEGEND_SIZE * 1.5 / 72 + 0.12


def _ylabel_room(ylab: str) -> float:
    return text_height(ylab, BASE_SIZE) + 0.06 if ylab else 0.0


def _xlabel_room(xlab: str) -> float:
    return text_height(xlab, BASE_SIZE) + 0.08 if xlab else 0.0


def _marker_line(colour, marker, *, line: bool = False, fill: str = "white", size: float = 6.5, edge: float = 1.4):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=colour, marker=marker, markersize=size, markerfacecolor=fill,
                  markeredgecolor=colour, markeredgewidth=edge, linestyle="-" if line else "none", linewidth=1.4)


def _categories(s: pd.Series) -> list:
    return list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else list(dict.fromkeys(s.dropna()))


def _codes(s: pd.Series, cats: list) -> np.ndarray:
    """Position of each value of `s` in `cats` (-1 when absent)."""
    if isinstance(s.dtype, pd.CategoricalDtype) and list(s.cat.categories) == cats:
        return s.cat.codes.to_numpy()
    index = {c: i for i, c in enumerate(cats)}
    return np.fromiter((index.get(v, -1) for v in s), dtype=int, count=len(s))


def _floats(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _dodge(n: int, width: float) -> np.ndarray:
    """Offsets of n dodged groups inside `width` (as ggplot's position_dodge)."""
    return (np.arange(n) + 0.5) * width / n - width / 2


def _bands(ax, y, low, high, half: float, colour, zorder: float) -> None:
    """Horizontal bands from `low` to `high` at each `y` (±`half`), as one PolyCollection."""
    from matplotlib.collections import PolyCollection

    bottom, top = y - half, y + half
    verts = np.stack([np.column_stack([low, bottom]), np.column_stack([high, bottom]),
                      np.column_stack([high, top]), np.column_stack([low, top])], axis=1)
    ax.add_collection(PolyCollection(verts, facecolors=colour, edgecolors="none", linewidths=0, zorder=zorder),
                      autolim=False)


def _error_bars(ax, pos, low, high, colour, cap: float, *, horizontal: bool = False, width: float = 1.3,
                alpha: float = 1.0) -> None:
    """Interval lines with end caps (`cap`: half the cap length in data units) as one LineCollection:
    much cheaper to build and draw than ``Axes.errorbar`` (which makes three artists per call)."""
    from matplotlib.collections import LineCollection

    ok = ~(np.isnan(pos) | np.isnan(low) | np.isnan(high))
    if not ok.any():
        return
    p, lo, hi = pos[ok], low[ok], high[ok]
    segs = np.concatenate([
        np.stack([np.column_stack([p, lo]), np.column_stack([p, hi])], axis=1),
        np.stack([np.column_stack([p - cap, lo]), np.column_stack([p + cap, lo])], axis=1),
        np.stack([np.column_stack([p - cap, hi]), np.column_stack([p + cap, hi])], axis=1),
    ])
    if horizontal:
        segs = segs[:, :, ::-1]
    ax.add_collection(LineCollection(segs, colors=colour, linewidths=width, alpha=alpha, capstyle="butt",
                                     zorder=2), autolim=True)


def _png(fig, dpi: int = DPI) -> bytes:
    """Draw with Agg and write an RGB PNG (zlib level 3: about as small as level 6 and faster; no
    alpha channel, no text chunks such as matplotlib's "Software", so the bytes depend on the chart
    only)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else _canvas_class()(fig)
    if fig.dpi != dpi:
        fig.set_dpi(dpi)
    with _context():
        canvas.draw()
    # a copy (convert): the renderer's buffer is reused by the next figure of this size
    rgba = np.asarray(canvas.buffer_rgba())
    img = Image.frombuffer("RGBA", (rgba.shape[1], rgba.shape[0]), rgba, "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="png", compress_level=3, dpi=(dpi, dpi))
    return buf.getvalue()


def png_bytes(plot, width: float | None = None, height: float | None = None, dpi: int = DPI) -> bytes:
    """PNG bytes of a chart (a Chart, or a bare matplotlib Figure), resized first when both sizes are given."""
    if isinstance(plot, Chart):
        return plot.png(width, height, dpi)
    if width and height:
        plot.set_size_inches(width, height, forward=False)
    return _png(plot, dpi)


def show(plot, alt: str, width: float | None = None, height: float | None = None) -> None:
    """Display a chart in the notebook: image/png plus the alt text as text/plain."""
    from IPython.display import display

    data = png_bytes(plot, width, height)
    display({"image/png": base64.b64encode(data).decode("ascii"), "text/plain": alt}, raw=True)


# ---------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------

def _comparison_key(comparison: str, value: float, national: float) -> tuple[str, str]:
    """(judgement, direction) of the area's marker: colour from the first, shape from the second."""
    if comparison in ("similar", "not_compared") or comparison not in COMPARISON_COLOURS:
        return (comparison if comparison in COMPARISON_COLOURS else "not_compared"), "similar"
    if comparison in ("higher", "lower"):
        return comparison, comparison
    if math.isnan(value) or math.isnan(national):
        return comparison, "similar"
    return comparison, "higher" if value > national else "lower"


def _comparison_label(judgement: str, direction: str) -> str:
    from .schema import COMPARISON_LABELS

    if judgement in ("better", "worse"):
        return f"全国より{COMPARISON_LABELS[judgement]}（{'高い' if direction == 'higher' else '低い'}）" \
            if direction != "similar" else f"全国より{COMPARISON_LABELS[judgement]}"
    if judgement in ("higher", "lower"):
        return f"全国より{COMPARISON_LABELS[judgement]}"
    if judgement == "similar":
        return "全国と同程度"
    return COMPARISON_LABELS["not_compared"]


LEGEND_ORDER = [("better", "higher"), ("better", "lower"), ("better", "similar"), ("worse", "higher"),
                ("worse", "lower"), ("worse", "similar"), ("higher", "higher"), ("lower", "lower"),
                ("similar", "similar"), ("not_compared", "similar")]


def spine_chart(df: pd.DataFrame, area_code: str, labels: dict[str, str], polarity: dict[str, str],
                area_name: str):
    """Spine chart: each indicator's spread over the 47 prefectures, centred on the national value.

    df: one row per prefecture x indicator with columns area_code, indicator_id, value,
    national_value, comparison. Values are rescaled per indicator so that the national value is 0
    and the farthest prefecture is ±1, oriented so that the right-hand side is better. The area's
    marker: colour = judgement (as in the tables), shape = direction vs national (▲ higher, ▼ lower,
    ● similar).
    """
    ids = df.indicator_id.to_numpy()
    value = _floats(df.value)
    national = _floats(df.national_value)
    codes = df.area_code.astype(str).to_numpy()
    comparison = df.comparison.fillna("not_compared").astype(str).to_numpy()
    present = set(ids)
    rows = []  # (label, x of every prefecture, x of the area or nan, judgement, direction)
    for ind in (i for i in labels if i in present):
        m = (ids == ind) & ~np.isnan(value)
        nat = national[m & ~np.isnan(national)]
        if not m.any() or not len(nat):
            continue
        nat = float(nat[0])
        sign = -1.0 if polarity.get(ind) == "low_is_good" else 1.0
        diff = value[m] - nat
        spread = float(np.abs(diff).max()) or 1.0
        x = sign * diff / spread
        mine = np.flatnonzero(codes[m] == str(area_code))
        if len(mine):
            k = mine[0]
            key = _comparison_key(comparison[m][k], value[m][k], national[m][k] if not math.isnan(national[m][k]) else nat)
            rows.append((labels[ind], x, float(x[k]), *key))
        else:
            rows.append((labels[ind], x, math.nan, "not_compared", "similar"))
    if not rows:
        return None

    n = len(rows)
    width, height = 7.2, 0.45 * n + 1.5
    tick_labels = [r[0] for r in rows]
    title = f"{area_name}の位置（灰色の帯：都道府県の範囲と中央50%、縦線：全国値）"
    with _context():
        fig, ax = _figure(width, height)
        ax.grid(False, axis="y")
        y = np.arange(n)[::-1].astype(float)  # the first indicator at the top
        qs = np.array([np.quantile(r[1], [0.0, 0.25, 0.75, 1.0]) for r in rows])
        _bands(ax, y, qs[:, 0], qs[:, 3], 0.17, "#E3E3E3", zorder=1)  # min-max
        _bands(ax, y, qs[:, 1], qs[:, 2], 0.17, "#B8B8B8", zorder=1.1)  # IQR
        allx = np.concatenate([r[1] for r in rows])
        ally = np.concatenate([np.full(len(r[1]), yy) for r, yy in zip(rows, y)])
        ax.scatter(allx, ally, s=7, c="#7A7A7A", alpha=0.6, linewidths=0, zorder=2)
        ax.axvline(0, color="#000000", linewidth=1.6, zorder=3)
        seen: dict[tuple[str, str], list] = {}  # (judgement, direction) -> the area's points
        for (_, _, mx, judgement, direction), yy in zip(rows, y):
            if not math.isnan(mx):
                seen.setdefault((judgement, direction), []).append((mx, yy))
        for (judgement, direction), pts in seen.items():
            colour = COMPARISON_COLOURS[judgement]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="none", marker=DIRECTION_MARKERS[direction],
                    markersize=11, markerfacecolor="white", markeredgecolor=colour, markeredgewidth=2.4, zorder=4)
        ax.set_xlim(-1.08, 1.08)
        ax.set_ylim(-0.6, n - 0.4)
        ax.set_xticks([-1, 0, 1], ["より悪い", "全国", "より良い"])
        ax.set_yticks(y, tick_labels)
        keys = [k for k in LEGEND_ORDER if k in seen] + [k for k in seen if k not in LEGEND_ORDER]
        legend = _legend(fig, [_marker_line(COMPARISON_COLOURS[j], DIRECTION_MARKERS[d], size=8, edge=2)
                               for j, d in keys], [_comparison_label(j, d) for j, d in keys])
        return Chart(fig, ax, left=EDGE + text_width("\n".join(tick_labels), TICK_SIZE) + 0.1, right=0.25,
                     top=_title_height(title), bottom=legend + text_height("全国", TICK_SIZE) + 0.1,
                     title=_title(fig, title, width))


def distribution_chart(df: pd.DataFrame, title: str):
    """Grouped bars: the answer distribution for several sources side by side, values on the bars.

    df columns: source (display label, ordered), category_label (ordered), value.
    """
    from matplotlib.patches import Patch

    sources = _categories(df.source)
    cats = _categories(df.category_label)
    grid = np.full((len(sources), len(cats)), np.nan)
    si, ci = _codes(df.source, sources), _codes(df.category_label, cats)
    ok = (si >= 0) & (ci >= 0)
    grid[si[ok], ci[ok]] = _floats(df.value)[ok]
    colours = [SOURCE_COLOURS["area"], SOURCE_COLOURS["national"], SOURCE_COLOURS["uk"], *OKABE_ITO[5:]]
    width, height = 7.0, 3.6
    ylab = "％"
    top_value = float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0
    with _context():
        fig, ax = _figure(width, height)
        ax.grid(False, axis="x")
        x = np.arange(len(cats), dtype=float)
        k = max(len(sources), 1)
        offsets = _dodge(k, 0.85)
        for j in range(len(sources)):
            xs = x + offsets[j]
            vals = grid[j]
            ax.bar(xs, np.nan_to_num(vals), width=0.82 / k, color=colours[j % len(colours)], linewidth=0.6,
                   edgecolor="white", zorder=2)
            for xx, v in zip(xs, vals):
                if not math.isnan(v):
                    ax.text(xx, v + top_value * 0.012, f"{v:.1f}", ha="center", va="bottom", fontsize=7,
                            color=TEXT_COLOUR, zorder=3)
        ax.set_xlim(-0.5, len(cats) - 0.5)
        ax.set_ylim(0, top_value * 1.12)
        ax.set_ylabel(ylab, rotation=0, labelpad=8, va="center", fontsize=BASE_SIZE)
        left = EDGE + text_width("100", TICK_SIZE) + _ylabel_room(ylab) + 0.2
        slot = (width - left - 0.2) / max(len(cats), 1) * 0.95
        tick_labels = [_fit(c, slot) for c in cats]
        ax.set_xticks(x, tick_labels)
        legend = _legend(fig, [Patch(facecolor=colours[j % len(colours)]) for j in range(len(sources))],
                         [str(s) for s in sources])
        ticks = max((text_height(t, TICK_SIZE) for t in tick_labels), default=0.2)
        return Chart(fig, ax, left=left, right=0.2, top=_title_height(title),
                     bottom=legend + ticks + 0.1, title=_title(fig, title, width))


def estimate_chart(df: pd.DataFrame, title: str, x: str = "group", colour: str = "source",
                   flip: bool = False, width: float = 7.0, height: float = 3.4):
    """Point estimates with 95% intervals (point + error bar), dodged by source.

    df columns: `x` (ordered categorical), `colour` (ordered categorical), value, lower_ci95,
    upper_ci95 (NaN for sources without an interval, e.g. the UK reference). `flip`: categories on
    the vertical axis, the first at the bottom (horizontal intervals).
    """
    cats = _categories(df[x])
    sources = _categories(df[colour])
    ci, si = _codes(df[x], cats), _codes(df[colour], sources)
    value, lower, upper = _floats(df.value), _floats(df.lower_ci95), _floats(df.upper_ci95)
    colours = [SOURCE_COLOURS["area"], SOURCE_COLOURS["national"], SOURCE_COLOURS["uk"], *OKABE_ITO[5:]]
    ylab = "％"
    with _context():
        fig, ax = _figure(width, height)
        offsets = _dodge(max(len(sources), 1), 0.6)
        handles = []
        for j, _src in enumerate(sources):
            col, marker = colours[j % len(colours)], SOURCE_MARKERS[j % len(SOURCE_MARKERS)]
            m = (si == j) & (ci >= 0) & ~np.isnan(value)
            pos = ci[m] + offsets[j]
            v, lo, hi = value[m], lower[m], upper[m]
            _error_bars(ax, pos, lo, hi, col, 0.06, horizontal=flip)
            px, py = (v, pos) if flip else (pos, v)
            ax.plot(px, py, linestyle="none", marker=marker, markersize=7 if marker != "D" else 6.5,
                    markerfacecolor="white", markeredgecolor=col, markeredgewidth=1.4, zorder=3)
            handles.append(_marker_line(col, marker, line=True))
        legend = _legend(fig, handles, [str(s) for s in sources])
        if flip:
            ax.grid(False, axis="y")
            ax.set_ylim(-0.5, len(cats) - 0.5)
            tick_labels = [str(c) for c in cats]
            ax.set_yticks(np.arange(len(cats)), tick_labels)
            ax.set_xlabel(ylab, fontsize=BASE_SIZE)
            left = EDGE + text_width("\n".join(tick_labels), TICK_SIZE) + 0.1
            bottom = legend + _xlabel_room(ylab) + text_height("0", TICK_SIZE) + 0.1
        else:
            ax.grid(False, axis="x")
            ax.set_xlim(-0.5, len(cats) - 0.5)
            ax.set_ylabel(ylab, rotation=0, labelpad=8, va="center", fontsize=BASE_SIZE)
            left = EDGE + text_width("10.0", TICK_SIZE) + _ylabel_room(ylab) + 0.2
            slot = (width - left - 0.2) / max(len(cats), 1) * 0.95
            tick_labels = [_fit(c, slot) for c in cats]
            ax.set_xticks(np.arange(len(cats)), tick_labels)
            ticks = max((text_height(t, TICK_SIZE) for t in tick_labels), default=0.2)
            bottom = legend + ticks + 0.1
        return Chart(fig, ax, left=left, right=0.25, top=_title_height(title), bottom=bottom,
                     title=_title(fig, title, width))


def _nice_ticks(low: float, high: float, bins: int = 4) -> tuple[np.ndarray, list[str]]:
    """Round tick values inside [low, high] and their labels (as many decimals as the step needs)."""
    from matplotlib.ticker import MaxNLocator

    ticks = MaxNLocator(nbins=bins, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    ticks = ticks[(ticks >= low - 1e-9) & (ticks <= high + 1e-9)]
    decimals = next((d for d in range(6) if np.allclose(np.round(ticks, d), ticks, rtol=0, atol=1e-9)), 6)
    return ticks, [f"{t:.{decimals}f}" for t in ticks]


def trend_chart(df: pd.DataFrame, title: str):
    """Small multiples (3 columns, free y) of each indicator across rounds for the area and national:
    error bars, lines, points; significant changes vs the previous round marked with a black star.

    df columns: indicator (label, categorical), year, source (categorical), value, lower_ci95,
    upper_ci95, change (change_vs_previous).

    The panels are drawn on one Axes in inch coordinates (with their own grid and tick labels):
    nine matplotlib Axes cost more than everything else in the report's charts together.
    """
    present = set(df.indicator.dropna())
    panels = [c for c in _categories(df.indicator) if c in present]
    sources = _categories(df.source)
    pi, si = _codes(df.indicator, panels), _codes(df.source, sources)
    year = _floats(df.year)
    value, lower, upper = _floats(df.value), _floats(df.lower_ci95), _floats(df.upper_ci95)
    lower, upper = np.where(np.isnan(value), np.nan, lower), np.where(np.isnan(value), np.nan, upper)
    sig = df.change.isin(["increase", "decrease"]).to_numpy() & ~np.isnan(value)
    years = sorted({int(y) for y in year[~np.isnan(year)]}) or [0]
    colours = [SOURCE_COLOURS["area"], SOURCE_COLOURS["national"], SOURCE_COLOURS["uk"]]
    ncols = 3
    nrows = max(1, -(-len(panels) // ncols))
    width, height = 7.2, 2.3 * nrows + 0.8
    offsets = _dodge(max(len(sources), 1), 0.25)

    # y scale and ticks of each panel
    scales = []
    for p in range(len(panels)):
        m = pi == p
        vals = np.concatenate([value[m], lower[m], upper[m]])
        vals = vals[~np.isnan(vals)]
        lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 1, hi + 1
        pad = (hi - lo) * 0.06
        lo, hi = lo - pad, hi + pad
        scales.append((lo, hi, *_nice_ticks(lo, hi)))
    ytw = max((text_width(t, TICK_SIZE) for sc in scales for t in sc[3]), default=0.2) + 0.06
    strip_h = max((text_height(p, TICK_SIZE) for p in panels), default=0.2) + 0.08
    xt = text_height("2024", TICK_SIZE) + 0.06

    with _context():
        fig, ax = _figure(width, height)
        ax.set_axis_off()
        handles = [_marker_line(colours[j % 3], "o", line=True, fill=colours[j % 3], size=4.5)
                   for j in range(len(sources))]
        labels = [str(s) for s in sources]
        if sig.any():
            handles.append(_marker_line("#000000", "*", fill="#000000", size=9, edge=0))
            labels.append("前回から有意な変化")
        legend = _legend(fig, handles, labels)
        left = EDGE + _ylabel_room("％") + ytw
        right, wgap, hgap = 0.15, ytw + 0.2, strip_h + 0.14
        top, bottom = _title_height(title) + strip_h, legend + _xlabel_room("調査年") + xt
        aw, ah = width - left - right, height - top - bottom
        pw, ph = (aw - (ncols - 1) * wgap) / ncols, (ah - (nrows - 1) * hgap) / nrows
        ax.set_xlim(0, aw)
        ax.set_ylim(0, ah)
        xlo, xhi = years[0] - 0.4, years[-1] + 0.4

        grid, text = [], dict(fontsize=TICK_SIZE, color=TICK_COLOUR, clip_on=False)
        lines = [[] for _ in sources]  # per source: x, y with a NaN between panels
        bars = [([], [], []) for _ in sources]
        stars_x, stars_y = [], []
        for p, (lo, hi, ticks, tick_labels) in enumerate(scales):
            r, c = divmod(p, ncols)
            x0, y0 = c * (pw + wgap), ah - (r + 1) * ph - r * hgap
            def X(v, x0=x0):
                return x0 + (np.asarray(v, dtype=float) - xlo) / (xhi - xlo) * pw
            def Y(v, y0=y0, lo=lo, hi=hi):
                return y0 + (np.asarray(v, dtype=float) - lo) / (hi - lo) * ph
            ax.text(x0 + pw / 2, y0 + ph + 0.06, panels[p], ha="center", va="bottom", fontsize=TICK_SIZE,
                    color=TEXT_COLOUR, clip_on=False)
            for t, label in zip(Y(ticks), tick_labels):
                grid.append([(x0, t), (x0 + pw, t)])
                ax.text(x0 - 0.05, t, label, ha="right", va="center_baseline", **text)
            # years under the bottom panel of each column
            below = p + ncols >= len(panels)
            for yx in X(years):
                grid.append([(yx, y0), (yx, y0 + ph)])
            if below:
                for yx, yl in zip(X(years), years):
                    ax.text(yx, y0 - 0.05, str(yl), ha="center", va="top", **text)
            for j in range(len(sources)):
                m = (pi == p) & (si == j) & ~np.isnan(year)
                if not m.any():
                    continue
                order = np.argsort(year[m], kind="stable")
                yx = X(year[m][order] + offsets[j])
                lines[j] += [(yx, Y(value[m][order])), (np.array([np.nan]), np.array([np.nan]))]
                bars[j][0].append(yx)
                bars[j][1].append(Y(lower[m][order]))
                bars[j][2].append(Y(upper[m][order]))
                st = sig[m][order]
                stars_x.append(yx[st])
                stars_y.append(Y(value[m][order])[st])
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(grid, colors=GRID_COLOUR, linewidths=0.8, zorder=1))
        for j in range(len(sources)):
            if not lines[j]:
                continue
            col = colours[j % 3]
            _error_bars(ax, np.concatenate(bars[j][0]), np.concatenate(bars[j][1]), np.concatenate(bars[j][2]),
                        col, 0.05, width=1.0, alpha=0.7)
            ax.plot(np.concatenate([a for a, _ in lines[j]]), np.concatenate([b for _, b in lines[j]]), color=col,
                    linewidth=1.6, marker="o", markersize=4, zorder=3, clip_on=False)
        if stars_x and sum(len(s) for s in stars_x):
            ax.plot(np.concatenate(stars_x), np.concatenate(stars_y), linestyle="none", marker="*", markersize=13,
                    color="#000000", markeredgewidth=0, zorder=4, clip_on=False)
        fig.text(0.5, 0, "調査年", ha="center", va="bottom", fontsize=BASE_SIZE, color=TEXT_COLOUR,
                 transform=_bottom_transform(fig, legend))
        fig.text(0, 0.5, "％", ha="left", va="center", fontsize=BASE_SIZE, color=TEXT_COLOUR,
                 transform=_left_transform(fig, EDGE))
        return Chart(fig, ax, left=left, right=right, top=top, bottom=bottom, title=_title(fig, title, width))


def _bottom_transform(fig, inches: float):
    """x in figure fraction, y in inches from the bottom (independent of the figure's size)."""
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    return blended_transform_factory(fig.transFigure, fig.dpi_scale_trans) + ScaledTranslation(
        0, inches, fig.dpi_scale_trans)


def _left_transform(fig, inches: float):
    """x in inches from the left, y in figure fraction."""
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    return blended_transform_factory(fig.dpi_scale_trans, fig.transFigure) + ScaledTranslation(
        inches, 0, fig.dpi_scale_trans)


def strip_chart(df: pd.DataFrame, area_code: str | None, title: str, xlab: str, ref: float = 0.0,
                height: float | None = None):
    """All prefectures as dots, one row per indicator on one common scale, the area highlighted.

    df columns: indicator (label, ordered categorical), area_code, x (value on the common scale:
    e.g. points difference from national, or an index with national = 100). `ref` is drawn as the
    national line. The vertical jitter is seeded: the same data give the same picture.
    """
    cats = _categories(df.indicator)
    n = len(cats)
    ci = _codes(df.indicator, cats)
    xv = _floats(df.x)
    ok = (ci >= 0) & ~np.isnan(xv)
    y = (n - 1 - ci).astype(float)  # the first indicator at the top
    rng = np.random.default_rng(1)
    jitter = rng.uniform(-0.18, 0.18, len(df))
    width, height = 7.2, height or (0.5 * n + 1.4)
    with _context():
        fig, ax = _figure(width, height)
        ax.grid(True, axis="y", color="#DDDDDD", linewidth=0.6)
        ax.axvline(ref, color=SOURCE_COLOURS["national"], linewidth=2.4, zorder=1.5)
        ax.scatter(xv[ok], y[ok] + jitter[ok], s=22, c="#7A7A7A", alpha=0.75, linewidths=0, zorder=2)
        if area_code:
            me = ok & (df.area_code.astype(str).to_numpy() == str(area_code))
            ax.plot(xv[me], y[me], linestyle="none", marker="D", markersize=10, color=SOURCE_COLOURS["area"],
                    markeredgecolor="white", markeredgewidth=0.8, zorder=3)
        ax.set_ylim(-0.6, n - 0.4)
        tick_labels = [str(c) for c in cats][::-1]
        ax.set_yticks(np.arange(n), tick_labels)
        ax.set_xlabel(xlab, fontsize=BASE_SIZE)
        return Chart(fig, ax, left=EDGE + text_width("\n".join(tick_labels) or "x", TICK_SIZE) + 0.1, right=0.25,
                     top=_title_height(title), bottom=EDGE + _xlabel_room(xlab) + text_height("0", TICK_SIZE) + 0.1,
                     title=_title(fig, title, width))


def histogram_chart(df: pd.DataFrame, title: str, national: float | None, xlab: str = "％"):
    """Distribution across the 47 prefectures (national report): 15 bins, national value as a line."""
    values = _floats(df.value)
    values = values[~np.isnan(values)]
    width, height = 7.0, 3.6
    ylab = "都道府県数"
    with _context():
        fig, ax = _figure(width, height)
        ax.grid(False, axis="x")
        if len(values):
            counts, edges = np.histogram(values, bins=15)
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#56B4E9", edgecolor="white",
                   linewidth=0.8, zorder=2)
        if national is not None and not (isinstance(national, float) and math.isnan(national)):
            ax.axvline(float(national), color=SOURCE_COLOURS["national"], linewidth=2, zorder=3)
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlab, fontsize=BASE_SIZE)
        ax.set_ylabel(ylab, fontsize=BASE_SIZE)
        return Chart(fig, ax, left=EDGE + _ylabel_room(ylab) + text_width("10", TICK_SIZE) + 0.15, right=0.25,
                     top=_title_height(title), bottom=EDGE + _xlabel_room(xlab) + text_height("0", TICK_SIZE) + 0.1,
                     title=_title(fig, title, width))
