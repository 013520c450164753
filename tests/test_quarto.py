"""The Quarto renderer (issue 16). Tests marked `quarto` need the Quarto CLI (1.10) and are skipped by
conftest.py when it is absent (QUARTO_PATH=/path/to/bin/quarto runs them); the others run everywhere:
staging, the Lua adapter with pandoc, and Quarto's failures with stand-in `quarto` scripts."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

from pipelines.outputs.reports import area_meta
from pipelines.render import RenderError
from pipelines.render import quarto as q


def _png() -> bytes:
    """A small valid PNG: a figure output."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 114, 178)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
HOSTILE = "<script>alert(1)</script> [リンク](http://evil.example/) ![x](/etc/passwd)"
ALT = "図：孤独感の分布（東京都と全国）"
CSV = "fig-test.csv"  # the chart's data file (charts.show(..., name="fig-test"))
CSV_TEXT = "地域 (place),値 (value)\n東京都,5.1\n"


def executed_notebook(path: Path, area: str, value: str) -> Path:
    """A notebook as papermill leaves it: stored outputs (an H1, a table with a comparison span, text
    from data that must stay text, a chart with its description), a front-matter raw cell of its own,
    and a code cell that fails if re-executed."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = nbformat.v4.new_code_cell('#| echo: false\nraise RuntimeError("re-executed")', execution_count=1)
    table = (
        "| 指標 | 値 | 全国との比較 |\n|:----------|-----:|:-----|\n"
        f"| 孤独感がある人の割合 | {value} | [▲ 悪い]{{.cmp-worse}} |\n"
    )
    code.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/markdown": f"# {area} 孤独・孤立の状況（2024年）",
                "text/plain": "<IPython.core.display.Markdown object>",
            },
        ),
        nbformat.v4.new_output("display_data", data={"text/markdown": table, "text/plain": "table"}),
        nbformat.v4.new_output(
            "display_data",
            data={"text/markdown": f"注記：{HOSTILE}", "text/plain": "note", "text/html": "<script>alert(2)</script>"},
        ),
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": base64.b64encode(PNG).decode(), "text/plain": ALT, "text/csv": CSV_TEXT},
            metadata={"image/png": {"data-csv": CSV}},
        ),
        nbformat.v4.new_output("stream", name="stdout", text="debug output\n"),
    ]
    nb.cells = [
        nbformat.v4.new_raw_cell("---\ntitle: 古いタイトル\n---\n"),
        nbformat.v4.new_markdown_cell("<!-- 孤独・孤立対策 年次評価レポート -->"),
        code,
        nbformat.v4.new_markdown_cell("## 孤独感"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


AREAS = {"national": 0, "13-tokyo": 13, "47-okinawa": 47}


@pytest.fixture
def executed(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "executed"
    return {
        "national": executed_notebook(src / "national.ipynb", "全国", "4.3%"),
        "13-tokyo": executed_notebook(src / "13-tokyo.ipynb", "東京都", "5.1%"),
        "47-okinawa": executed_notebook(src / "47-okinawa.ipynb", "沖縄県", "3.9%"),
    }


def meta(synthetic: bool = True) -> dict:
    return {
        "year": 2024,
        "synthetic": synthetic,
        "areas": {slug: area_meta(code, 2024, synthetic) for slug, code in AREAS.items()},
    }


def fake_quarto(tmp_path: Path, script: str) -> Path:
    exe = tmp_path / "fakequarto" / "bin" / "quarto"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return exe


# --- runs everywhere -----------------------------------------------------------------------------


class TestProjectFile:
    def test_website_project_reusing_the_builtin_pieces(self):
        cfg = yaml.safe_load(q.PROJECT_FILE.read_text(encoding="utf-8"))
        assert cfg["project"]["type"] == "website"
        assert cfg["lang"] == "ja" and cfg["execute"]["enabled"] is False
        assert cfg["filters"] == ["reports/quarto-cells.lua", "reports/report.lua"]
        assert cfg["format-links"] is False
        html, typst = cfg["format"]["html"], cfg["format"]["typst"]
        assert html["css"][0] == "reports/report.css" and html["embed-resources"] is True
        assert typst["template"] == "reports/quarto-report.typ"
        assert typst["template-partials"] == ["reports/report.typ"]
        assert typst["papersize"] == "a4" and typst["shift-heading-level-by"] == 0
        for item in cfg["website"]["navbar"]["left"]:
            assert item["href"].endswith(".html"), item  # the site's pages, present in every build
        template = (q.DEFAULT_REPORTS_DIR / "quarto-report.typ").read_text(encoding="utf-8")
        assert "$report.typ()$" in template and "$definitions.typ()$" in template


class TestStageProject:
    def test_notebooks_front_matter_and_outputs(self, executed, tmp_path: Path):
        work = tmp_path / "work"
        stems = q.stage_project(executed, work, meta())
        assert stems == ["national", "prefectures/13-tokyo", "prefectures/47-okinawa"]
        cfg = yaml.safe_load((work / "_quarto.yml").read_text(encoding="utf-8"))
        assert cfg["project"]["render"] == [
            "national.ipynb",
            "prefectures/13-tokyo.ipynb",
            "prefectures/47-okinawa.ipynb",
        ]
        assert cfg["format"]["typst"]["font-paths"] == ["/_fonts"]  # project-relative
        assert (work / "_fonts" / "ipaexg.ttf").is_file()
        for a in q.ASSETS:
            assert (work / "reports" / a).read_bytes() == q._asset(a).read_bytes()
        nb = json.loads((work / "prefectures/13-tokyo.ipynb").read_text(encoding="utf-8"))
        first = nb["cells"][0]
        assert first["cell_type"] == "raw"
        # one line per item: Quarto joins the items as they are (a single string leaked as text)
        assert isinstance(first["source"], list) and all(s.endswith("\n") for s in first["source"])
        front = yaml.safe_load("".join(first["source"]).strip().strip("-"))
        assert "title" not in front  # no Quarto title block: the notebook's H1 is the one title
        assert front["pagetitle"] == "東京都 孤独・孤立の状況 2024年"
        assert front["area-name"] == "`東京都`{=typst}" and front["report-year"] == "`2024`{=typst}"
        assert front["synthetic"] is True and front["format"]["typst"] == "default"
        assert front["chart-data-dir"] == "13-tokyo-data"  # report.lua links 13-tokyo-data/fig-test.csv
        assert "synthetic-banner" in front["format"]["html"]["include-before-body"][0]["text"]
        assert "東京都・2024年" in front["format"]["html"]["include-before-body"][0]["text"]
        # Quarto puts it after its <main>: the bottom banner inside the publication footer (a landmark)
        after = front["format"]["html"]["include-after-body"][0]["text"]
        assert re.match(r'<footer class="report-publication">\n<div class="synthetic-banner bottom"', after), after
        assert after.count("<footer") == 1 and after.rstrip().endswith("</footer>")
        # the notebook's own front matter is gone; the other cells stay in order
        assert [c["cell_type"] for c in nb["cells"]] == ["raw", "markdown", "code", "markdown"]
        code = nb["cells"][2]
        src = "".join(code["source"])
        assert src.count("#| echo:") == 1 and 'raise RuntimeError("re-executed")' in src
        alts = json.loads(re.search(r"^#\| fig-alt: (.*)$", src, re.M).group(1))
        assert alts == [None, None, None, ALT, None]
        # the chart's data file name, for quarto-cells.lua to give back to report.lua as data-csv
        assert json.loads(re.search(r"^#\| fig-scap: (.*)$", src, re.M).group(1)) == [None, None, None, CSV, None]
        assert "text/csv" not in code["outputs"][3]["data"]
        md = "".join(code["outputs"][2]["data"]["text/markdown"])
        assert md.startswith("````{=markdown}\n") and md.endswith("\n````\n") and HOSTILE in md
        assert set(code["outputs"][2]["data"]) == {"text/markdown", "text/plain"}  # no text/html

    def test_not_synthetic_has_no_banner(self, executed, tmp_path: Path):
        q.stage_project(executed, tmp_path / "w", meta(synthetic=False))
        nb = json.loads((tmp_path / "w" / "national.ipynb").read_text(encoding="utf-8"))
        front = yaml.safe_load("".join(nb["cells"][0]["source"]).strip().strip("-"))
        assert front["synthetic"] is False
        assert "synthetic-banner" not in json.dumps(front, ensure_ascii=False)

    def test_duplicate_area_is_refused(self, executed, tmp_path: Path, monkeypatch):
        monkeypatch.setattr(q, "output_stem", lambda slug: "national")  # two slugs, one output name
        with pytest.raises(RenderError, match="two notebooks for '13-tokyo'"):
            q.stage_project(executed, tmp_path / "w", meta())


class TestTypstString:
    def test_escaped_for_a_string_literal_and_kept_raw(self):
        assert q._typst_string('A "b" \\ c') == '`A \\"b\\" \\\\ c`{=typst}'
        assert q._typst_string("x`y") == "``x`y``{=typst}"
        assert q._typst_string("a\nb") == "`a b`{=typst}"


class TestRawMarkdown:
    def test_fence_longer_than_any_backtick_run(self):
        text = "a ````` b"
        out = q._raw_markdown(text)
        assert out.startswith("``````{=markdown}\n") and out.endswith("\n``````\n")


class TestAdapterFilter:
    """reports/quarto-cells.lua then reports/report.lua on Quarto's cell structure, run by pandoc:
    the built-in renderer's rules apply (Markdown outputs without raw HTML or links, alt text)."""

    def run(self, tmp_path: Path, to: str) -> str:
        import pypandoc

        md = (
            "::: {.cell execution_count=1}\n"
            "::: {.cell-output .cell-output-display .cell-output-markdown}\n"
            + q._raw_markdown(f"# 東京都\n\n{HOSTILE} [良い]{{.cmp-better}}")
            + ":::\n\n"
            "::: {.cell-output .cell-output-display}\n"
            f'![](fig.png){{fig-alt="{ALT}" fig-scap="{CSV}"}}\n:::\n\n'
            "::: {.cell-output .cell-output-stdout}\n```\ndebug output\n```\n:::\n:::\n"
        )
        src = tmp_path / "doc.md"
        src.write_text(md, encoding="utf-8")
        (tmp_path / "fig.png").write_bytes(PNG)
        proc = subprocess.run(
            [
                pypandoc.get_pandoc_path(),
                str(src),
                "-t",
                to,
                "--wrap=none",
                "-M",
                "chart-data-dir=13-tokyo-data",
                "--lua-filter",
                str(q._asset("quarto-cells.lua")),
                "--lua-filter",
                str(q._asset("report.lua")),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )
        return proc.stdout

    def test_html(self, tmp_path: Path):
        out = self.run(tmp_path, "html")
        assert re.search(r"<h1[^>]*>東京都</h1>", out)
        assert "<script>" not in out and "&lt;script&gt;" in out  # raw HTML from data is text
        assert "evil.example" not in out and "/etc/passwd" not in out  # no link, no embedded file
        assert '<span class="cmp-better">良い</span>' in out
        assert f'alt="{ALT}"' in out
        assert "debug output" not in out
        assert f'href="13-tokyo-data/{CSV}"' in out and "fig-scap" not in out  # the chart's data link

    def test_typst(self, tmp_path: Path):
        out = self.run(tmp_path, "typst")
        assert '#text(fill: rgb("' in out and "良い" in out
        assert "debug output" not in out
        assert "#link(" not in out


class TestFailures:
    def test_missing_quarto(self, monkeypatch, executed, tmp_path: Path):
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.delenv("QUARTO_PATH", raising=False)
        assert q.quarto_available() is None
        with pytest.raises(RenderError, match="Quarto CLI not found"):
            q.render_site_quarto(executed, tmp_path / "out", meta())

    def test_older_than_1_10(self, monkeypatch, executed, tmp_path: Path):
        exe = fake_quarto(tmp_path, 'echo "1.9.37"\n')
        monkeypatch.setenv("QUARTO_PATH", str(exe.parent.parent))
        assert q.quarto_available() == exe
        with pytest.raises(RenderError, match=r"quarto 1\.9\.37: Quarto 1\.10 or later is needed"):
            q.render_site_quarto(executed, tmp_path / "out", meta())
        assert not (tmp_path / "out").exists()

    def test_error_names_the_area_and_quotes_quarto(self, monkeypatch, executed, tmp_path: Path):
        exe = fake_quarto(
            tmp_path,
            'if [ "$1" = "--version" ]; then echo 1.10.18; exit 0; fi\n'
            'echo "[1/3] national.ipynb"\necho "[2/3] prefectures/13-tokyo.ipynb"\n'
            'echo "ERROR: error: unknown variable: foo" >&2\nexit 1\n',
        )
        monkeypatch.setenv("QUARTO_PATH", str(exe))
        out = tmp_path / "out"
        with pytest.raises(RenderError) as err:
            q.render_site_quarto(executed, out, meta())
        msg = str(err.value)
        assert msg.startswith("prefectures/13-tokyo: quarto render failed (exit 1)")
        assert "ERROR: error: unknown variable: foo" in msg
        assert not out.exists()  # nothing written

    def test_font_warning_fails(self, monkeypatch, executed, tmp_path: Path):
        exe = fake_quarto(
            tmp_path,
            'if [ "$1" = "--version" ]; then echo 1.10.18; exit 0; fi\n'
            'echo "[1/1] prefectures/47-okinawa.ipynb"\n'
            'echo "[typst]: Compiling 47-okinawa.typ...warning: unknown font family: ipaexgothic" >&2\n',
        )
        monkeypatch.setenv("QUARTO_PATH", str(exe))
        with pytest.raises(RenderError, match=r"^prefectures/47-okinawa: Typst font warning.*unknown font family"):
            q.render_site_quarto({"47-okinawa": executed["47-okinawa"]}, tmp_path / "out", meta())

    def test_missing_output_fails(self, monkeypatch, executed, tmp_path: Path):
        exe = fake_quarto(tmp_path, 'if [ "$1" = "--version" ]; then echo 1.10.18; fi\nexit 0\n')
        monkeypatch.setenv("QUARTO_PATH", str(exe))
        with pytest.raises(RenderError, match="^national: quarto render wrote no national.html"):
            q.render_site_quarto({"national": executed["national"]}, tmp_path / "out", meta())


class TestParseVersion:
    def test_versions(self):
        assert q.parse_version("1.10.18") == (1, 10, 18)
        assert q.parse_version("v1.9") == (1, 9)
        with pytest.raises(RenderError, match="cannot read a version"):
            q.parse_version("quarto")


# --- needs Quarto --------------------------------------------------------------------------------


def pdf_text(pdf: Path, page: int | None = None, layout: bool = True) -> str:
    args = (
        ["pdftotext", "-layout" if layout else "-raw"]
        + (["-f", str(page), "-l", str(page)] if page else [])
        + [str(pdf), "-"]
    )
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def pdf_pages(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))


def check_report(out: Path, slug: str, area_name: str, synthetic: bool = True, data_files: bool = True) -> None:
    """What issue 16 lists for a Quarto report, read from the files. data_files: the chart's data
    file is beside the report (render_site_quarto writes it; with the per-area interface
    reports.render_area does)."""
    stem = q.output_stem(slug)
    html = (out / f"{stem}.html").read_text(encoding="utf-8")
    assert re.search(r'<html[^>]*\blang="ja"', html), slug
    assert len(re.findall(r"<h1\b", html)) == 1, slug
    assert re.search(rf"<h1[^>]*>{area_name} 孤独・孤立の状況（2024年）", html)
    body = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    assert "title:" not in body and "pagetitle" not in body and "その他のフォーマット" not in body
    assert re.search(r'<span class="cmp-worse">▲ 悪い</span>', html)
    assert re.search(r"\.cmp-worse\s*\{[^}]*color", html)  # report.css, embedded
    assert f'alt="{ALT}"' in html
    # the chart's data file beside the report (UTF-8 with BOM), linked under the chart
    data_dir = f"{Path(stem).name}-data"
    assert re.search(rf'<a href="{data_dir}/{CSV}"[^>]*download', html), slug
    if data_files:
        assert (out / f"{stem}-data" / CSV).read_bytes() == ("\ufeff" + CSV_TEXT).encode("utf-8")
    assert "<script>alert" not in html and "alert(2)" not in html and 'href="http://evil.example' not in html
    assert "debug output" not in html and "re-executed" not in html
    assert not q.EXTERNAL_ASSET.search(html), f"{slug} loads a network asset"
    assert not re.search(r"""<(?:script|link|img)[^>]+(?:src|href)=["'](?!data:)[^"'#]+\.(?:js|css|png)""", html)
    assert "TsunagariJP" in html and "@font-face" in html
    assert ('class="synthetic-banner"' in html) is synthetic
    pdf = out / f"{stem}.pdf"
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    names = [line.split()[0] for line in fonts.splitlines()[2:]]
    assert names and all("IPAex" in n for n in names), fonts  # Latin too: no Libertinus
    assert b"<pdfuaid:part>1</pdfuaid:part>" in pdf.read_bytes()  # PDF/UA-1, as the built-in renderer
    for page in range(1, pdf_pages(pdf) + 1):
        text = pdf_text(pdf, page)
        assert "孤独・孤立対策 年次評価レポート" in text and f"{area_name} ・ 2024" in text  # header
        assert re.search(rf"\b{page}\s*/\s*{pdf_pages(pdf)}\s*$", text.strip())  # page numbers
        raw = pdf_text(pdf, page, layout=False)
        assert raw.count("SYNTHETIC") == (2 if synthetic else 0), raw  # the banner and the watermark
        assert ("合\n成\nデ\nー\nタ" in raw or "合成データ SYNTHETIC\n" in raw) is synthetic
    text = pdf_text(pdf)
    assert f"{area_name} 孤独・孤立の状況（2024 年）" in text or f"{area_name} 孤独・孤立の状況（2024年）" in text
    assert "title:" not in text and "debug output" not in text


@pytest.mark.quarto
class TestRenderSiteQuarto:
    def test_whole_set_in_parallel(self, executed, tmp_path: Path):
        out = tmp_path / "_site"
        out.mkdir()
        (out / "index.html").write_text("the site's own index", encoding="utf-8")
        stems = q.render_site_quarto(executed, out, meta(), jobs=2)
        assert sorted(stems) == ["national", "prefectures/13-tokyo", "prefectures/47-okinawa"]
        for slug, name_ in (("national", "全国"), ("13-tokyo", "東京都"), ("47-okinawa", "沖縄県")):
            check_report(out, slug, name_)
        assert (out / "index.html").read_text(encoding="utf-8") == "the site's own index"
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
            "index.html",
            f"national-data/{CSV}",
            "national.html",
            "national.pdf",
            f"prefectures/13-tokyo-data/{CSV}",
            "prefectures/13-tokyo.html",
            "prefectures/13-tokyo.pdf",
            f"prefectures/47-okinawa-data/{CSV}",
            "prefectures/47-okinawa.html",
            "prefectures/47-okinawa.pdf",
        ]
        nav = (out / "prefectures/13-tokyo.html").read_text(encoding="utf-8")
        for href in ("../index.html", "../national.html", "../methodology.html", "../quality/index.html"):
            assert f'href="{href}"' in nav, href

    def test_not_synthetic(self, executed, tmp_path: Path):
        out = tmp_path / "_site"
        q.render_site_quarto({"47-okinawa": executed["47-okinawa"]}, out, meta(synthetic=False))
        check_report(out, "47-okinawa", "沖縄県", synthetic=False)

    def test_per_area_interface_renders_once(self, executed, tmp_path: Path, monkeypatch):
        calls = []
        real = q._render_project
        monkeypatch.setattr(q, "_render_project", lambda *a: calls.append(a) or real(*a))
        m = area_meta(13, 2024, True)
        q.render_html(executed["13-tokyo"], tmp_path / "prefectures" / "13-tokyo.html", m)
        q.render_pdf(executed["13-tokyo"], tmp_path / "prefectures" / "13-tokyo.pdf", m)
        assert len(calls) == 1  # both formats from one quarto render
        check_report(tmp_path, "13-tokyo", "東京都", data_files=False)

    def test_missing_font_names_the_area(self, executed, tmp_path: Path, monkeypatch):
        _, folder = q.typst_font()
        monkeypatch.setattr(q, "typst_font", lambda: ("No Such Font JP", folder))
        out = tmp_path / "_site"
        with pytest.raises(RenderError, match=r"^prefectures/13-tokyo: Typst font warning.*no such font jp"):
            q.render_site_quarto({"13-tokyo": executed["13-tokyo"]}, out, meta())
        assert not out.exists()


@pytest.mark.quarto
@pytest.mark.slow
def test_build_with_quarto_renderer(tmp_path: Path):
    """The whole build with --renderer quarto: the site pages, the reports with the built-in names,
    the checks above; a second build renders nothing."""
    exe = shutil.which("tsunagari")
    assert exe
    out = tmp_path / "_site"
    cmd = [
        exe,
        "build",
        "--renderer",
        "quarto",
        "--out",
        str(out),
        "--quiet",
        "--warehouse",
        str(tmp_path / "wh.duckdb"),
        "--pref",
        "0",
        "--pref",
        "13",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in ("index.html", "methodology.html", "quality/index.html", "downloads/index.html"):
        assert (out / page).is_file(), page
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="prefectures/13-tokyo.html"' in index and 'href="prefectures/13-tokyo.pdf"' in index
    html = (out / "prefectures/13-tokyo.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<h1\b", html)) == 1 and "title:" not in re.sub(
        r"<(script|style)\b.*?</\1>", "", html, flags=re.S
    )
    assert re.search(r'<span class="cmp-(better|worse|similar|higher|lower|not_compared)">', html)
    assert not q.EXTERNAL_ASSET.search(html)
    # each chart's data file beside the report, linked under the chart (as the built-in renderer)
    links = re.findall(r'<a href="(13-tokyo-data/[^"]+\.csv)"', html)
    assert links and all((out / "prefectures" / h).is_file() for h in links), links
    assert sorted(p.name for p in (out / "prefectures/13-tokyo-data").glob("*.csv")) == sorted(
        {h.split("/")[1] for h in links}
    )
    for pdf in (out / "national.pdf", out / "prefectures/13-tokyo.pdf"):
        fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
        assert all("IPAex" in line.split()[0] for line in fonts.splitlines()[2:]), fonts
        n = pdf_pages(pdf)
        assert all(
            re.search(rf"\b{p}\s*/\s*{n}\s*$", pdf_text(pdf, p).strip())
            and pdf_text(pdf, p, layout=False).count("SYNTHETIC") >= 2
            for p in range(1, n + 1)
        )
    assert "東京都 ・ 2024" in pdf_text(out / "prefectures/13-tokyo.pdf", 1)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = (tmp_path / f".{out.name}.tsunagari-work" / "build-summary.txt").read_text(encoding="utf-8")
    assert "built / 作成: 0" in summary, summary


@pytest.mark.slow
def test_build_stops_on_a_quarto_error(tmp_path: Path):
    """A Quarto error in the build (a stand-in quarto that fails on Tokyo's Typst): exit 1, the
    message names the area and quotes Quarto, and nothing is published."""
    exe = shutil.which("tsunagari")
    assert exe
    fake = fake_quarto(
        tmp_path,
        'if [ "$1" = "--version" ]; then echo 1.10.18; exit 0; fi\n'
        'echo "[1/1] prefectures/13-tokyo.ipynb"\n'
        'echo "ERROR: error: failed to decode image" >&2\nexit 1\n',
    )
    out = tmp_path / "_site"
    proc = subprocess.run(
        [
            exe,
            "build",
            "--renderer",
            "quarto",
            "--out",
            str(out),
            "--quiet",
            "--warehouse",
            str(tmp_path / "wh.duckdb"),
            "--pref",
            "13",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=tmp_path,
        env={**os.environ, "QUARTO_PATH": str(fake)},
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "quarto: prefectures/13-tokyo: quarto render failed (exit 1)" in proc.stderr
    assert "ERROR: error: failed to decode image" in proc.stderr
    assert "NOT published" in proc.stderr
    assert not out.exists()
