"""The built-in renderer's font embedding (pipelines/render/pandoc.py): real fontTools subsets."""

from __future__ import annotations

import base64
import io
import re

import pytest
from fontTools.ttLib import TTFont

from pipelines.render import pandoc as P

PAGE = (
    "<html><head><title>t</title></head><body><h1>埼玉県 孤独・孤立の状況（2024年）</h1>"
    "<p>しばしばある・常にある 4.9%（95%信頼区間 4.1～5.8%）</p>{extra}</body></html>"
)
RARE = "鬱"  # not in any template, code or reference file: outside the base subset


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


class TestBaseFontCache:
    """The base subset is made once and kept in the cache folder (TSUNAGARI_CACHE_DIR)."""

    @pytest.fixture
    def cache(self, tmp_path, monkeypatch):
        monkeypatch.setenv("TSUNAGARI_CACHE_DIR", str(tmp_path / "cache"))
        P._base_font.cache_clear()
        yield tmp_path / "cache"
        P._base_font.cache_clear()

    def test_second_process_reads_the_cached_subset(self, cache, monkeypatch):
        chars, made = P._base_font()
        files = list((cache / "fonts").glob("base-subset-*.ttf"))
        assert len(files) == 1 and files[0].read_bytes() == made
        TTFont(io.BytesIO(made))  # a font fontTools reads

        P._base_font.cache_clear()  # as a new worker process would start
        monkeypatch.setattr(P, "_subset", lambda *a: pytest.fail("subset made again"))
        chars2, read = P._base_font()
        assert read == made and chars2 == chars

    def test_cached_subset_equals_a_fresh_one(self, cache, tmp_path, monkeypatch):
        _, cached = P._base_font()
        monkeypatch.setenv("TSUNAGARI_CACHE_DIR", str(tmp_path / "other"))
        P._base_font.cache_clear()
        _, fresh = P._base_font()
        assert fresh == cached

    def test_page_subset_with_the_name_table_set_aside_is_the_same_font(self, cache):
        _, base = P._base_font()
        chars = set("孤独・孤立対策 東京都 鳥取県 ◎＝×▲▼") | {chr(i) for i in range(32, 127)}
        fast = P._subset(io.BytesIO(base), chars, names_pruned=True)
        assert fast == P._subset(io.BytesIO(base), chars)
        assert len(TTFont(io.BytesIO(fast))["name"].names) > 0

    def test_a_damaged_cache_file_is_made_again(self, cache):
        _, made = P._base_font()
        (file,) = (cache / "fonts").glob("base-subset-*.ttf")
        file.write_bytes(b"<html>not a font")
        P._base_font.cache_clear()
        assert P._base_font()[1] == made
        assert file.read_bytes() == made

    def test_a_cache_folder_that_cannot_be_written_is_not_an_error(self, tmp_path, monkeypatch):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        monkeypatch.setenv("TSUNAGARI_CACHE_DIR", str(blocker / "cache"))  # under a file
        P._base_font.cache_clear()
        try:
            chars, data = P._base_font()
        finally:
            P._base_font.cache_clear()
        assert data[:4] == b"\x00\x01\x00\x00" and "孤" in chars

    def test_other_characters_other_file(self):
        font = P._html_font()[1]
        assert P._font_cache_file(font, {"孤", "立"}) != P._font_cache_file(font, {"孤"})
        assert P._font_cache_file(font, {"孤", "立"}) == P._font_cache_file(font, {"立", "孤"})


class TestNotebookReadOnce:
    """HTML and PDF start from one pandoc reading of the executed notebook (pandoc JSON)."""

    @pytest.fixture
    def executed(self, tmp_path):
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_markdown_cell("# 埼玉県 孤独・孤立の状況（2024年）"),
            nbformat.v4.new_markdown_cell("本文です。"),
        ]
        path = tmp_path / "11-saitama.ipynb"
        nbformat.write(nb, str(path))
        return path

    def test_one_read_for_both_formats_and_a_new_read_after_a_change(self, executed, tmp_path, monkeypatch):
        import os

        from pipelines.outputs.reports import area_meta

        calls = []
        real = P._run
        monkeypatch.setattr(P, "_run", lambda args, source, cwd=None: calls.append(args) or real(args, source, cwd))
        meta = area_meta(11, 2024, False)
        P.render_html(executed, tmp_path / "a.html", meta)
        P.render_pdf(executed, tmp_path / "a.pdf", meta)
        reads = [a for a in calls if "ipynb" in a]
        assert len(reads) == 1 and len(calls) == 3
        assert "本文です。" in (tmp_path / "a.html").read_text(encoding="utf-8")

        first = P._Ast._current.dir
        text = executed.read_text(encoding="utf-8").replace("本文です。", "訂正後の本文。")
        executed.write_text(text, encoding="utf-8")
        os.utime(executed, ns=(executed.stat().st_atime_ns, executed.stat().st_mtime_ns + 10**9))
        P.render_html(executed, tmp_path / "b.html", meta)
        assert len([a for a in calls if "ipynb" in a]) == 2
        assert "訂正後の本文。" in (tmp_path / "b.html").read_text(encoding="utf-8")
        assert not first.exists()  # the previous reading's folder is removed


class TestReportKindCells:
    """A Markdown cell tagged national or prefecture is shown in that kind of report only: the
    built-in renderer (report.lua, real pandoc) and the Quarto staging (render.common.shown_cells)."""

    @staticmethod
    def executed(tmp_path, pref_code):
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["papermill"] = {"parameters": {"year": 2024, "pref_code": pref_code}}
        nb.cells = [
            nbformat.v4.new_markdown_cell("# 表題"),
            nbformat.v4.new_markdown_cell("全国だけの段落。", metadata={"tags": ["national"]}),
            nbformat.v4.new_markdown_cell("都道府県だけの段落。", metadata={"tags": ["prefecture"]}),
            nbformat.v4.new_markdown_cell("どちらにも出る段落。"),
        ]
        path = tmp_path / f"{pref_code}.ipynb"
        nbformat.write(nb, str(path))
        return path

    @pytest.mark.parametrize(
        "code,shown,hidden",
        [(0, "全国だけの段落。", "都道府県だけの段落。"), (13, "都道府県だけの段落。", "全国だけの段落。")],
    )
    def test_only_the_cells_of_this_kind(self, tmp_path, code, shown, hidden):
        import json

        from pipelines.outputs.reports import area_meta
        from pipelines.render.common import shown_cells

        path = self.executed(tmp_path, code)
        html = P.render_html(path, tmp_path / "r.html", area_meta(code, 2024, False)).read_text(encoding="utf-8")
        assert shown in html and "どちらにも出る段落。" in html and hidden not in html
        texts = ["".join(c["source"]) for c in shown_cells(json.loads(path.read_text(encoding="utf-8")))]
        assert shown in texts and "どちらにも出る段落。" in texts and hidden not in texts

    def test_without_the_parameter_every_cell_is_kept(self, tmp_path):
        import json

        from pipelines.render.common import shown_cells

        nb = json.loads(self.executed(tmp_path, 13).read_text(encoding="utf-8"))
        del nb["metadata"]["papermill"]
        assert len(shown_cells(nb)) == 4
