"""pipelines/domain/conventions.py: WCAG 2 contrast computed, and the static CSS / Lua / site files use
exactly the module's colours and symbols (a fork that edits one of them is told here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.domain import conventions
from pipelines.domain.conventions import CHANGE, COMPARISON, contrast_ratio, relative_luminance
from pipelines.outputs import site

ROOT = Path(__file__).resolve().parents[1]
AA_TEXT = 4.5
AA_GRAPHICS = 3.0  # WCAG 1.4.11, chart marks against the white background


class TestContrastRatio:
    def test_black_on_white_is_21_and_equal_colours_1(self):
        assert contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
        assert contrast_ratio("#777777", "#777777") == pytest.approx(1.0)

    def test_against_hand_computed_values(self):
        # #0072B2: R 0/255, G 114/255 -> ((0.447+0.055)/1.055)^2.4 = 0.1683, B 178/255 -> 0.4452
        assert relative_luminance("#0072B2") == pytest.approx(
            0.2126 * 0 + 0.7152 * 0.16827 + 0.0722 * 0.44520, abs=1e-4
        )
        assert contrast_ratio("#0072B2", "#FFFFFF") == pytest.approx(1.05 / (relative_luminance("#0072B2") + 0.05))
        # the old report colour for 悪い fails AA for text: why `text` is darker than the Okabe-Ito fill
        assert contrast_ratio("#D55E00", "#FFFFFF") < AA_TEXT

    def test_bad_colour_is_an_error(self):
        with pytest.raises(ValueError, match="colour must be #RRGGBB, got 'red'"):
            relative_luminance("red")


class TestStyles:
    @pytest.mark.parametrize("style", list(COMPARISON.values()) + list(CHANGE.values()), ids=lambda s: s.key)
    def test_text_on_white_and_text_on_fill_pass_aa(self, style):
        assert contrast_ratio(style.text, "#FFFFFF") >= AA_TEXT, style
        assert contrast_ratio(style.on_fill, style.fill) >= AA_TEXT, style

    @pytest.mark.parametrize("key", ["better", "worse", "higher"])
    def test_judgement_marks_in_charts_pass_graphics_contrast(self, key):
        assert contrast_ratio(COMPARISON[key].fill, "#FFFFFF") >= AA_GRAPHICS

    def test_symbols_are_distinct_so_colour_is_never_the_only_cue(self):
        symbols = [s.symbol for k, s in COMPARISON.items()]
        assert len(set(symbols)) == len(symbols)
        assert len({s.symbol for s in CHANGE.values()}) == len(CHANGE)


def _css_colours(css: str, prefix: str) -> dict[str, str]:
    return {
        m.group(1): m.group(2).upper() for m in re.finditer(rf"\.({prefix}-\w+) \{{ color: (#[0-9A-Fa-f]{{6}})", css)
    }


class TestStaticFilesAgree:
    def test_report_css(self):
        css = (ROOT / "reports" / "report.css").read_text(encoding="utf-8")
        found = {**_css_colours(css, "cmp"), **_css_colours(css, "chg")}
        expected = {f"cmp-{k}": s.text for k, s in COMPARISON.items() if k != "suppressed"}
        expected.update({f"chg-{k}": s.text for k, s in CHANGE.items() if k in ("increase", "decrease")})
        assert found == expected

    def test_report_lua(self):
        lua = (ROOT / "reports" / "report.lua").read_text(encoding="utf-8")
        block = lua[lua.index("local COLOURS = {") : lua.index("}", lua.index("local COLOURS = {"))]
        found = {k: v.upper() for k, v in re.findall(r'\["([\w-]+)"\] = "(#[0-9A-Fa-f]{6})"', block)}
        css = (ROOT / "reports" / "report.css").read_text(encoding="utf-8")
        assert found == {**_css_colours(css, "cmp"), **_css_colours(css, "chg")}

    def test_site_css_tiles_and_badges(self):
        css = (ROOT / "pipelines" / "outputs" / "templates" / "site.css").read_text(encoding="utf-8")
        for key, style in COMPARISON.items():
            rule = re.search(rf"\.cmp-{key} \{{([^}}]*)\}}", css).group(1)
            colours = [c.upper() for c in re.findall(r"#[0-9A-Fa-f]{6}|#[0-9A-Fa-f]{3}\b", rule)]
            colours = ["#" + "".join(ch * 2 for ch in c[1:]) if len(c) == 4 else c for c in colours]
            assert style.on_fill in colours and style.fill in colours, (key, rule)

    def test_site_uses_the_module(self):
        assert site.COMPARISON_SYMBOLS == {k: s.symbol for k, s in COMPARISON.items()}
        assert site.COMPARISON_TEXT == {k: s.label for k, s in COMPARISON.items()}
        assert site.LEGEND_ORDER == conventions.COMPARISON_ORDER


class TestGlyphs:
    def test_every_symbol_has_a_glyph_in_the_shipped_font(self):
        """The symbols print in the charts and PDFs (IPAexGothic is the font every install has)."""
        import matplotlib_fontja
        from matplotlib.ft2font import FT2Font

        font = FT2Font(matplotlib_fontja.get_font_ttf_path())
        symbols = [s.symbol for s in list(COMPARISON.values()) + list(CHANGE.values())]
        symbols += [conventions.MISSING_MARK, conventions.REFERENCE_MARK, "★", "◆"]
        missing = [ch for ch in "".join(symbols) if font.get_char_index(ord(ch)) == 0]
        assert missing == []
