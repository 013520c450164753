"""The built-in renderer's font embedding (pipelines/render/pandoc.py): real fontTools subsets."""

from __future__ import annotations

import base64
import io
import re

import pytest
from fontTools.ttLib import TTFont

from pipelines.render import pandoc as P

PAGE = ("<html><head><title>t</title></head><body><h1>埼玉県 孤独・孤立の状況（2024年）</h1>"
        "<p>しばしばある・常にある 4.9%（95%信頼区間 4.1～5.8%）</p>{extra}</body></html>")
RARE = "鬱"   # not in any template, code or reference file: outside the base subset


def embedded_cmap(html: str) -> set[str]:
    m = re.search(r"data:font/ttf;base64,([A-Za-z0-9+/=]+)", html)
    assert m, "no embedded font"
    font = TTFont(io.BytesIO(base64.b64decode(m.group(1))))
    return {chr(c) for c in font.getBestCmap()}


class TestEmbedFont:
    def test_rare_character_is_outside_the_base_set(self):
        chars, _ = P._base_font()
        assert "孤" in chars and "埼" in chars and RARE not in chars

    @pytest.mark.parametrize("extra", ["", f"<p>出典：{RARE}の調査</p>"], ids=["base", "rare"])
    def test_every_character_of_the_page_is_in_the_font(self, extra):
        html = P._embed_font(PAGE.format(extra=extra))
        cmap = embedded_cmap(html)
        page = {c for c in PAGE.format(extra=extra) if ord(c) > 127}
        assert page <= cmap
        assert (RARE in cmap) == bool(extra)
        # a subset, not the whole font (~11,000 characters)
        assert len(cmap) < 300

    def test_same_page_same_bytes(self):
        a = P._embed_font(PAGE.format(extra=""))
        P._base_font.cache_clear()
        b = P._embed_font(PAGE.format(extra=""))
        assert a == b

    def test_font_inserted_once_before_head_end(self):
        html = P._embed_font(PAGE.format(extra=""))
        assert html.count("@font-face") == 1
        assert html.index("@font-face") < html.index("</head>")
