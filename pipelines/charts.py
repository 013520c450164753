"""plotnine charts for the area reports (Japanese labels, colour-blind-safe palette, small PNGs).

Every chart function takes tidy DataFrames and returns a plotnine ``ggplot``. ``show(plot, alt)``
displays it in a notebook as a PNG whose ``text/plain`` is the alt text: the built-in renderer's Lua
filter turns that into ``<img alt>`` (Quarto uses the ``#| fig-alt`` cell option instead).
"""

from __future__ import annotations

import base64
import io
import textwrap
import warnings
from functools import lru_cache

import pandas as pd

# Okabe-Ito palette (colour-blind safe). Judgement colours: blue good, vermillion bad, grey neutral.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
COMPARISON_COLOURS = {"better": "#0072B2", "worse": "#D55E00", "similar": "#8C8C8C", "higher": "#6A3D9A",
                      "lower": "#6A3D9A", "not_compared": "#BDBDBD"}
# Symbol = direction vs national (never colour alone): ▲ higher, ▼ lower, ● similar.
COMPARISON_SYMBOLS = {"better": None, "worse": None, "similar": "●", "higher": "▲", "lower": "▼",
                      "not_compared": "―"}
SOURCE_COLOURS = {"area": "#0072B2", "national": "#E69F00", "uk": "#009E73"}
DPI = 120
BASE_SIZE = 10


@lru_cache(maxsize=1)
def font_family() -> str:
    """The Japanese font for charts: IPAexGothic from matplotlib-fontja (always installed with pip)."""
    import matplotlib_fontja  # noqa: F401  (registers IPAexGothic with matplotlib)

    return "IPAexGothic"


def _theme():
    from plotnine import element_blank, element_line, element_text, theme, theme_minimal

    fam = font_family()
    return theme_minimal(base_size=BASE_SIZE, base_family=fam) + theme(
        text=element_text(family=fam),
        panel_grid_minor=element_blank(),
        panel_grid_major_y=element_line(color="#EEEEEE"),
        legend_position="bottom",
        legend_title=element_blank(),
        plot_title=element_text(size=BASE_SIZE + 1, weight="bold", family=fam),
        figure_size=(7.0, 3.6),
    )


def wrap(text: str, width: int = 16) -> str:
    """Wrap a Japanese label (no spaces) every `width` characters."""
    return "\n".join(textwrap.wrap(str(text), width=width, break_long_words=True)) or str(text)


def png_bytes(plot, width: float | None = None, height: float | None = None, dpi: int = DPI) -> bytes:
    from plotnine import theme

    if width and height:
        plot = plot + theme(figure_size=(width, height))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plot.save(buf, format="png", dpi=dpi, verbose=False)
    return buf.getvalue()


def show(plot, alt: str, width: float | None = None, height: float | None = None) -> None:
    """Display a chart in the notebook: image/png plus the alt text as text/plain."""
    from IPython.display import display

    data = png_bytes(plot, width, height)
    display({"image/png": base64.b64encode(data).decode("ascii"), "text/plain": alt}, raw=True)


def spine_chart(df: pd.DataFrame, area_code: str, labels: dict[str, str], polarity: dict[str, str],
                area_name: str):
    """Spine chart: each indicator's spread over the 47 prefectures, centred on the national value.

    df: one row per prefecture x indicator with columns area_code, indicator_id, value,
    national_value, comparison. Values are rescaled per indicator so that the national value is 0
    and the farthest prefecture is ±1, oriented so that the right-hand side is better.
    """
    from plotnine import (aes, element_text, geom_point, geom_segment, geom_vline, ggplot, labs,
                          scale_colour_manual, scale_shape_manual, scale_x_continuous, scale_y_discrete,
                          theme)

    rows = []
    order = [i for i in labels if i in set(df.indicator_id)]
    for ind in order:
        d = df[(df.indicator_id == ind) & df.value.notna()]
        nat = d.national_value.dropna()
        if d.empty or nat.empty:
            continue
        nat = float(nat.iloc[0])
        sign = -1.0 if polarity.get(ind) == "low_is_good" else 1.0
        spread = float((d.value - nat).abs().max()) or 1.0
        x = sign * (d.value - nat) / spread
        rows.append(pd.DataFrame({
            "indicator": labels[ind], "x": x.values, "area_code": d.area_code.values,
            "comparison": d.comparison.fillna("not_compared").values,
        }))
    if not rows:
        return None
    s = pd.concat(rows, ignore_index=True)
    cats = [labels[i] for i in order if labels[i] in set(s.indicator)][::-1]
    s["indicator"] = pd.Categorical(s.indicator, categories=cats)
    q = s.groupby("indicator", observed=True).x.quantile([0.0, 0.25, 0.75, 1.0]).unstack().reset_index()
    q.columns = ["indicator", "q0", "q25", "q75", "q100"]
    me = s[s.area_code == area_code].copy()
    # Colour = judgement (as in the tables); shape = direction vs national (▲ higher, ▼ lower, ● similar).
    from .schema import COMPARISON_LABELS

    raw = df[df.area_code == area_code].set_index("indicator_id")
    def direction(row) -> str:
        ind = next((i for i in order if labels[i] == row.indicator), None)
        r = raw.loc[ind] if ind in raw.index else None
        if row.comparison in ("similar", "not_compared") or r is None:
            return "差なし" if row.comparison == "similar" else "比較なし"
        return "全国より高い" if float(r.value) > float(r.national_value) else "全国より低い"
    me["direction"] = me.apply(direction, axis=1)
    me["judgement"] = me.comparison.map(COMPARISON_LABELS)
    present = list(dict.fromkeys(me.judgement))
    colours = {COMPARISON_LABELS[k]: v for k, v in COMPARISON_COLOURS.items() if COMPARISON_LABELS[k] in present}
    shapes = {k: v for k, v in {"全国より高い": "^", "全国より低い": "v", "差なし": "o", "比較なし": "o"}.items()
              if k in set(me.direction)}

    p = (ggplot()
         + geom_segment(q, aes(x="q0", xend="q100", y="indicator", yend="indicator"), size=6,
                        color="#E3E3E3")
         + geom_segment(q, aes(x="q25", xend="q75", y="indicator", yend="indicator"), size=6,
                        color="#B8B8B8")
         + geom_point(s, aes(x="x", y="indicator"), size=0.8, color="#7A7A7A", alpha=0.6)
         + geom_vline(xintercept=0, color="#000000", size=0.8)
         + geom_point(me, aes(x="x", y="indicator", colour="judgement", shape="direction"), size=4.2,
                      fill="white", stroke=1.4)
         + scale_colour_manual(values=colours, name="全国との比較")
         + scale_shape_manual(values=shapes, name="値")
         + scale_x_continuous(limits=(-1.08, 1.08), breaks=[-1, 0, 1],
                              labels=["より悪い", "全国", "より良い"])
         + scale_y_discrete()
         + labs(x="", y="", title=f"{area_name}の位置（灰色の帯：都道府県の範囲と中央50%、縦線：全国値）")
         + _theme())
    return p + theme(legend_title=element_text(size=BASE_SIZE - 1, family=font_family()))


def distribution_chart(df: pd.DataFrame, title: str):
    """Grouped bars: the answer distribution for several sources side by side.

    df columns: source (display label, ordered), category_label (ordered), value.
    """
    from plotnine import (aes, geom_col, geom_text, ggplot, labs, position_dodge, scale_fill_manual,
                          scale_y_continuous)

    d = df.copy()
    d["label"] = d.value.map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    dodge = position_dodge(width=0.85)
    fills = dict(zip(d.source.cat.categories, [SOURCE_COLOURS["area"], SOURCE_COLOURS["national"],
                                               SOURCE_COLOURS["uk"]][: len(d.source.cat.categories)]))
    return (ggplot(d, aes(x="category_label", y="value", fill="source"))
            + geom_col(position=dodge, width=0.82)
            + geom_text(aes(label="label"), position=dodge, va="bottom", size=6.5,
                        family=font_family())
            + scale_fill_manual(values=fills)
            + scale_y_continuous(expand=(0, 0, 0.12, 0))
            + labs(x="", y="％", title=title)
            + _theme())


def estimate_chart(df: pd.DataFrame, title: str, x: str = "group", colour: str = "source",
                   flip: bool = False, width: float = 7.0, height: float = 3.4):
    """Point estimates with 95% intervals (pointrange), dodged by source.

    df columns: `x` (ordered categorical), `colour` (ordered categorical), value, lower_ci95,
    upper_ci95 (NaN for sources without an interval, e.g. the UK reference).
    """
    from plotnine import (aes, coord_flip, geom_errorbar, geom_point, ggplot, labs, position_dodge,
                          scale_colour_manual, scale_shape_manual, theme)

    d = df.copy()
    dodge = position_dodge(width=0.6)
    cats = list(d[colour].cat.categories)
    cols = dict(zip(cats, [SOURCE_COLOURS["area"], SOURCE_COLOURS["national"], SOURCE_COLOURS["uk"]]))
    shapes = dict(zip(cats, ["o", "s", "D"]))
    ci = d[d.lower_ci95.notna()]
    p = (ggplot(d, aes(x=x, y="value", colour=colour, shape=colour))
         + geom_errorbar(ci, aes(ymin="lower_ci95", ymax="upper_ci95"), width=0.25, position=dodge)
         + geom_point(position=dodge, size=2.6, fill="white")
         + scale_colour_manual(values=cols)
         + scale_shape_manual(values=shapes)
         + labs(x="", y="％", title=title)
         + _theme() + theme(figure_size=(width, height)))
    if flip:
        p = p + coord_flip()
    return p


def trend_chart(df: pd.DataFrame, title: str):
    """Lines across rounds for the area and national; significant changes marked with a filled star.

    df columns: indicator (label, categorical), year, source (categorical), value, lower_ci95,
    upper_ci95, change (change_vs_previous).
    """
    from plotnine import (aes, facet_wrap, geom_errorbar, geom_line, geom_point, ggplot, labs,
                          position_dodge, scale_colour_manual, scale_fill_manual, scale_x_continuous, theme)

    d = df.copy()
    cats = list(d.source.cat.categories)
    cols = dict(zip(cats, [SOURCE_COLOURS["area"], SOURCE_COLOURS["national"]]))
    sig = d[d.change.isin(["increase", "decrease"])]
    years = sorted(d.year.unique())
    dodge = position_dodge(width=0.25)
    p = (ggplot(d, aes(x="year", y="value", colour="source", group="source"))
         + geom_errorbar(d[d.lower_ci95.notna()], aes(ymin="lower_ci95", ymax="upper_ci95"), width=0.15,
                         alpha=0.7, position=dodge)
         + geom_line(size=0.9, position=dodge)
         + geom_point(size=1.8, position=dodge)
         + geom_point(sig, size=6, shape="*", colour="#000000", position=dodge)
         + scale_colour_manual(values=cols)
         + scale_fill_manual(values=cols, guide=None)
         + scale_x_continuous(breaks=years, labels=[str(y) for y in years])
         + facet_wrap("indicator", scales="free_y", ncol=3)
         + labs(x="調査年", y="％", title=title)
         + _theme() + theme(figure_size=(7.2, 2.3 * ((d.indicator.nunique() + 2) // 3) + 0.8)))
    return p


def strip_chart(df: pd.DataFrame, area_code: str | None, title: str, xlab: str, ref: float = 0.0,
                height: float | None = None):
    """All prefectures as dots, one row per indicator on one common scale, the area highlighted.

    df columns: indicator (label, ordered categorical), area_code, x (value on the common scale:
    e.g. points difference from national, or an index with national = 100). `ref` is drawn as the
    national line.
    """
    from plotnine import (aes, element_blank, geom_point, geom_vline, ggplot, labs, position_jitter,
                          scale_y_discrete, theme)

    d = df.copy()
    d["indicator"] = pd.Categorical(d.indicator, categories=list(d.indicator.cat.categories)[::-1])
    me = d[d.area_code == area_code] if area_code else d.iloc[0:0]
    n = d.indicator.nunique()
    return (ggplot(d, aes(x="x", y="indicator"))
            + geom_vline(xintercept=ref, color=SOURCE_COLOURS["national"], size=1.2)
            + geom_point(position=position_jitter(width=0, height=0.18, random_state=1), color="#7A7A7A",
                         size=1.6, alpha=0.75)
            + geom_point(me, size=4.5, color=SOURCE_COLOURS["area"], shape="D")
            + scale_y_discrete()
            + labs(x=xlab, y="", title=title)
            + _theme()
            + theme(panel_grid_major_y=element_line_light(),
                    figure_size=(7.2, height or (0.5 * n + 1.4))))


def element_line_light():
    from plotnine import element_line

    return element_line(color="#DDDDDD", size=0.5)


def histogram_chart(df: pd.DataFrame, title: str, national: float | None, xlab: str = "％"):
    """Distribution across the 47 prefectures (national report), national value as a line."""
    from plotnine import aes, geom_dotplot, geom_histogram, geom_vline, ggplot, labs

    p = (ggplot(df, aes(x="value"))
         + geom_histogram(bins=15, fill="#56B4E9", color="white")
         + labs(x=xlab, y="都道府県数", title=title)
         + _theme())
    if national is not None:
        p = p + geom_vline(xintercept=national, color=SOURCE_COLOURS["national"], size=1)
    return p
