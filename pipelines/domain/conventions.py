"""Display conventions: one table of labels, symbols and colours for every published output.

The comparison with the national value (better / worse / similar, or higher / lower for an
indicator without a good direction, not_compared, and suppressed cells) and the change since the
previous round (increase / decrease / no_change / not_compared) are shown the same way on the
site (tiles, badges), in the reports (table spans coloured by report.css in HTML and by report.lua
in Typst) and in the charts: a symbol and a Japanese word, never colour alone (docs/DESIGN.md,
"Statistical conventions").

Colours (Okabe-Ito based, colour-blind safe):

* ``text``  the colour of the word on a white page: WCAG 2 AA contrast >= 4.5:1 against white;
* ``fill``  the tile / badge background and the chart marker colour (Okabe-Ito where it exists);
* ``on_fill`` the text colour on that background: >= 4.5:1 against ``fill``.

tests/test_conventions.py checks the ratios computationally and that report.css, report.lua and
site.css use exactly these values (those files are static so that a fork can edit them; the test
tells the fork when they drift from this module).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from pipelines.domain import config, schema


@dataclass(frozen=True)
class Style:
    key: str
    label: str  # Japanese word
    symbol: str  # shown before the word (and on tiles / chart legends)
    text: str  # text colour on white
    fill: str  # background / chart marker colour
    on_fill: str  # text colour on `fill`

    @property
    def css_class(self) -> str:
        return self.key


SUPPRESSED_MARK = "x"  # the mark of Japanese official tables for a hidden (秘匿) cell
MISSING_MARK = "―"
REFERENCE_MARK = "※"  # 参考値 (base 30-99)

COMPARISON: dict[str, Style] = {
    "better": Style("better", schema.COMPARISON_LABELS["better"], "◎", "#005A8C", "#0072B2", "#FFFFFF"),
    "worse": Style("worse", schema.COMPARISON_LABELS["worse"], "×", "#A33F00", "#D55E00", "#000000"),
    "similar": Style("similar", schema.COMPARISON_LABELS["similar"], "＝", "#595959", "#EEEEEE", "#1A1A1A"),
    "higher": Style("higher", schema.COMPARISON_LABELS["higher"], "▲", "#6A3D9A", "#CC79A7", "#000000"),
    "lower": Style("lower", schema.COMPARISON_LABELS["lower"], "▼", "#6A3D9A", "#F0E442", "#000000"),
    "not_compared": Style(
        "not_compared", schema.COMPARISON_LABELS["not_compared"], "－", "#595959", "#FFFFFF", "#1A1A1A"
    ),
    "suppressed": Style(
        "suppressed",
        f"非表示（集計対象{config.MIN_BASE}人未満・二次秘匿）",
        SUPPRESSED_MARK,
        "#595959",
        "#DDDDDD",
        "#1A1A1A",
    ),
}
COMPARISON_ORDER = ["better", "similar", "worse", "higher", "lower", "not_compared", "suppressed"]

CHANGE: dict[str, Style] = {
    "increase": Style("increase", schema.CHANGE_LABELS["increase"], "↑", "#8F4A00", "#E69F00", "#000000"),
    "decrease": Style("decrease", schema.CHANGE_LABELS["decrease"], "↓", "#005A8C", "#56B4E9", "#000000"),
    "no_change": Style("no_change", schema.CHANGE_LABELS["no_change"], "→", "#595959", "#EEEEEE", "#1A1A1A"),
    "not_compared": Style("not_compared", schema.CHANGE_LABELS["not_compared"], "－", "#595959", "#FFFFFF", "#1A1A1A"),
}

# How a shown value was estimated (issue #24, pipelines/domain/small_area.py): the words of a table's
# 推計方法 column and of a chart's legend. A pooled value names its years.
ESTIMATE_METHODS = {"direct": "直接推計", "pooled": "プール推計", "model": "モデル推計"}
ESTIMATE_METHODS_EN = {"direct": "direct", "pooled": "pooled", "model": "model-based"}


# The mark after a value where a table has no method column (e.g. the trend table).
ESTIMATE_MARKS = {"pooled": "△", "model": "◇"}


def estimate_method_label(method: str | None, years: str | None = None) -> str:
    """'直接推計', '3年プール（2022–2024年平均）' (from years '2022-2024'), 'モデル推計'; '' for none."""
    if method == "pooled" and years:
        a, _, b = str(years).partition("-")
        if a.isdigit() and b.isdigit():
            return f"{int(b) - int(a) + 1}年プール（{a}–{b}年平均）"
    return ESTIMATE_METHODS.get(str(method), "") if method else ""


# Series colours of the charts (Okabe-Ito): the area, the national figure, England (UK).
SERIES = {"area": "#0072B2", "national": "#E69F00", "uk": "#009E73"}
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]


def comparison(key: str | None) -> Style:
    """The style of a comparison value (unknown or missing -> not_compared)."""
    return COMPARISON.get(str(key or "not_compared"), COMPARISON["not_compared"])


def change(key: str | None) -> Style:
    return CHANGE.get(str(key or "not_compared"), CHANGE["not_compared"])


def change_words(change: str, polarity: str) -> str:
    """The word a reader sees for a change since an earlier round: 改善/悪化 where the indicator
    has a direction of good, 増加/減少 where it has none, 変化なし, or 比較なし (not tested)."""
    if change == "no_change":
        return "変化なし"
    if change not in ("increase", "decrease"):
        return "比較なし"
    if polarity == "low_is_good":
        return "改善" if change == "decrease" else "悪化"
    if polarity == "high_is_good":
        return "改善" if change == "increase" else "悪化"
    return CHANGE_LABELS_SHORT[change]


CHANGE_LABELS_SHORT = {"increase": "増加", "decrease": "減少"}


def relative_luminance(colour: str) -> float:
    """WCAG 2 relative luminance of an sRGB colour '#RRGGBB'."""
    c = colour.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colour must be #RRGGBB, got {colour!r}")
    channels = []
    for i in (0, 2, 4):
        s = int(c[i : i + 2], 16) / 255
        channels.append(s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2 contrast ratio (1-21) of two colours."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def legend_items() -> list[Style]:
    return [COMPARISON[k] for k in COMPARISON_ORDER]


# --- Published precision (the warehouse keeps full precision) -------------------------------------

SHARE_DECIMALS = 1  # percent and percentage points
RATE_DECIMALS = 1  # programme rates per 10,000 (as the reports and the site show them)
N_DECIMALS = 1  # effective sample sizes
P_DIGITS = 3  # p-values: significant digits
DEFF_DECIMALS = 2  # design effects (as the quality page shows them)
CV_DECIMALS = 3  # coefficients of variation (ratios)


def published_share(x):
    """Percent (or percentage points) as published: rounded to 0.1 (numpy's round, half to even on
    the binary value; -0.0 becomes 0.0). The tests of ``indicators`` take shares through this
    function, so a label recomputed from the published figures is the published label."""
    import numpy as np

    return np.round(np.asarray(x, dtype=float), SHARE_DECIMALS) + 0.0


def published_n(x):
    """An effective sample size as published: rounded to 0.1."""
    import numpy as np

    return np.round(np.asarray(x, dtype=float), N_DECIMALS) + 0.0


def published_deff(x):
    """A design effect as published: rounded to 0.01."""
    import numpy as np

    return np.round(np.asarray(x, dtype=float), DEFF_DECIMALS) + 0.0


def published_p(x):
    """A p-value as published: 3 significant digits."""
    import numpy as np

    a = np.asarray(x, dtype=float)
    flat = [float(f"{v:.{P_DIGITS}g}") if np.isfinite(v) else v for v in a.ravel().tolist()]
    return np.asarray(flat, dtype=float).reshape(a.shape)


# --- tables on narrow screens ---------------------------------------------------------------------
# A wide table scrolls inside its own region instead of the page (WCAG 1.4.10 reflow); the region
# can take keyboard focus (so it can be scrolled without a mouse) and is named after the table.
TABLE_REGION_CLASS = "table-wrap"
_TABLE = re.compile(r'(<div class="table-wrap"[^>]*>\s*)?(<table\b.*?</table>)', re.S | re.I)
_CAPTION = re.compile(r"<caption\b[^>]*>(.*?)</caption>", re.S | re.I)
_HEADING = re.compile(r"<h[1-6]\b[^>]*>(.*?)</h[1-6]>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


def _plain(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", fragment)).split())


def scrollable_tables(page: str) -> str:
    """Every <table> of an HTML page inside a focusable, labelled scroll region (its caption, else
    the nearest heading above it, names the region). A table already in such a region is kept."""

    def wrap(m: re.Match) -> str:
        table = m.group(2)
        caption = _CAPTION.search(table)
        if caption is not None and _plain(caption.group(1)):
            name = _plain(caption.group(1))
        else:
            headings = _HEADING.findall(page, 0, m.start())
            name = (_plain(headings[-1]) + "（表）") if headings else "表"
        opening = (
            f'<div class="{TABLE_REGION_CLASS}" role="region" tabindex="0" '
            f'aria-label="{html.escape(name[:120], quote=True)}">'
        )
        return opening + table + ("" if m.group(1) else "</div>")

    return _TABLE.sub(wrap, page)


# --- the prefecture picker (site header and report pages) -----------------------------------------
PICKER_LABEL = "都道府県を選ぶ（コード2桁を入力してEnter）"


def prefecture_picker(options: list[tuple[str, str]], selected: str | None = None, ident: str = "pref-picker") -> str:
    """A labelled <select> of (href, text) options and a button. Keyboard: focus the list, type the
    two-digit code (1 3 selects "13 東京都") and press Enter, which opens the page (Enter on a closed
    list is handled here: browsers do not submit a form from a <select>)."""
    opts = "".join(
        f'<option value="{html.escape(href, quote=True)}"'
        + (" selected" if href == selected else "")
        + f">{html.escape(text)}</option>"
        for href, text in options
    )
    if selected is None:  # a page of no prefecture: the list says what it is for, not 北海道
        opts = '<option value="" selected>（選んでください）</option>' + opts
    return (
        '<form class="picker" action="#" onsubmit="if(this.elements.pref.value)'
        'location.href=this.elements.pref.value;return false;">'
        f'<label for="{ident}">{PICKER_LABEL}</label> '
        f'<select id="{ident}" name="pref" onkeydown="if(event.key===\'Enter\'){{event.preventDefault();'
        f'if(this.value)location.href=this.value;}}">{opts}</select> '
        '<button type="submit">表示</button></form>'
    )


# Marks a row estimated from a prefecture's own survey (reports use it to pick context rows).
OWN_SURVEY_MARK = "独自調査"
# The note of a share of 0% or 100% on a base below REFERENCE_BASE (its interval is what the sample says).
EXTREME_NOTE = f"0%または100%（集計対象{config.REFERENCE_BASE}人未満）：信頼区間を参照"
