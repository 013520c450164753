"""The Quarto renderer (issue 6). Tests marked `quarto` need the Quarto CLI (1.10) and are skipped by
conftest.py when it is absent; the staging tests run everywhere."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

from pipelines.render import quarto as q

# 1x1 PNG: a figure output, so each page needs its own {stem}_files/ folder.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==")


def executed_notebook(path: Path, area: str, value: str) -> Path:
    """A notebook as papermill leaves it: stored outputs, and a code cell that fails if re-executed."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = nbformat.v4.new_code_cell('raise RuntimeError("re-executed")', execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"text/markdown": f"## {area}の主な指標\n\n孤独感：**{value}**",
                                                     "text/plain": value}),
        nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(PNG).decode(),
                                                     "text/plain": "<Figure>"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell(f"{area}の孤独・孤立の状況"), code]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def executed(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "executed"
    return {
        "national": executed_notebook(src / "national.ipynb", "全国", "4.3%"),
        "13-tokyo": executed_notebook(src / "13-tokyo.ipynb", "東京都", "5.1%"),
        "47-okinawa": executed_notebook(src / "47-okinawa.ipynb", "沖縄県", "3.9%"),
    }


META = {"year": 2024, "synthetic": True,
        "titles": {"national": "全国 孤独・孤立の状況 2024年", "13-tokyo": "東京都 孤独・孤立の状況 2024年",
                   "47-okinawa": "沖縄県 孤独・孤立の状況 2024年"}}


# --- runs everywhere -----------------------------------------------------------------------------

def test_repository_quarto_yml_is_a_website_project_without_execution():
    cfg = yaml.safe_load((q.PROJECT_FILE).read_text(encoding="utf-8"))
    assert cfg["project"]["type"] == "website"
    assert cfg["lang"] == "ja"
    assert cfg["execute"]["enabled"] is False
    assert set(cfg["format"]) == {"html", "typst"}
    assert cfg["format"]["typst"]["papersize"] == "a4"
    assert cfg["format"]["typst"]["mainfont"] == "IPAexGothic"


def test_staged_project_is_valid_yaml_with_unique_stems(executed, tmp_path: Path):
    work = tmp_path / "work"
    stems = q.stage_project(executed, work, META)
    assert stems == ["national", "prefectures/13-tokyo", "prefectures/47-okinawa"]
    assert len({Path(s).name for s in stems}) == len(stems)  # unique stems -> one _files/ folder each
    cfg = yaml.safe_load((work / "_quarto.yml").read_text(encoding="utf-8"))
    assert cfg["project"]["type"] == "website"
    assert cfg["project"]["output-dir"] == "_out"
    assert cfg["project"]["render"] == ["index.qmd", "national.ipynb", "prefectures/13-tokyo.ipynb",
                                        "prefectures/47-okinawa.ipynb"]
    for entry in cfg["project"]["render"]:
        assert (work / entry).is_file(), entry
    assert cfg["execute"]["enabled"] is False and cfg["lang"] == "ja"
    typst = cfg["format"]["typst"]
    family, _ = q.typst_font()
    assert typst["mainfont"] == family
    (font_dir,) = typst["font-paths"]
    assert Path(font_dir).is_absolute() and (Path(font_dir) / "ipaexg.ttf").is_file()
    assert not list(Path(font_dir).glob("*.ttc"))
    # synthetic watermark in both formats
    assert "合成データ" in cfg["format"]["html"]["include-before-body"][0]["text"]
    assert "合成データ" in cfg["format"]["typst"]["include-in-header"][0]["text"]
    # staged notebooks: front matter with the title first, stored outputs untouched
    nb = json.loads((work / "prefectures/13-tokyo.ipynb").read_text(encoding="utf-8"))
    front = nb["cells"][0]
    assert front["cell_type"] == "raw"
    assert yaml.safe_load(front["source"].strip().strip("-"))["title"] == "東京都 孤独・孤立の状況 2024年"
    orig = json.loads(executed["13-tokyo"].read_text(encoding="utf-8"))
    assert nb["cells"][1:] == orig["cells"]
    listing = yaml.safe_load((work / "index.qmd").read_text(encoding="utf-8").split("---")[1])
    assert "prefectures/*.ipynb" in listing["listing"]["contents"]


def test_not_synthetic_means_no_watermark(executed, tmp_path: Path):
    q.stage_project(executed, tmp_path / "w", {**META, "synthetic": False})
    cfg = yaml.safe_load((tmp_path / "w" / "_quarto.yml").read_text(encoding="utf-8"))
    assert "include-before-body" not in cfg["format"]["html"]
    assert "include-in-header" not in cfg["format"]["typst"]


def test_typst_watermark_snippets_compile_with_the_japanese_font(tmp_path: Path):
    import typst

    family, font_dir = q.typst_font()
    src = tmp_path / "wm.typ"
    src.write_text(q.TYPST_WATERMARK + f'#set text(font: "{family}", lang: "ja")\n' + q.TYPST_BANNER + "本文\n",
                   encoding="utf-8")
    typst.compile(str(src), output=str(tmp_path / "wm.pdf"), font_paths=[str(font_dir)])
    assert (tmp_path / "wm.pdf").read_bytes().startswith(b"%PDF")


def test_missing_quarto_is_a_render_error(monkeypatch, executed, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no quarto here
    monkeypatch.delenv("QUARTO_PATH", raising=False)
    assert q.quarto_available() is None
    with pytest.raises(q.RenderError, match="Quarto CLI not found"):
        q.render_site_quarto(executed, tmp_path / "out", META)


def test_quarto_path_env_is_honoured(monkeypatch, tmp_path: Path):
    fake = tmp_path / "qdir" / "bin" / "quarto"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'ERROR: boom' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("QUARTO_PATH", str(tmp_path / "qdir"))
    assert q.quarto_available() == fake
    with pytest.raises(q.RenderError, match=r"(?s)failed \(exit 3\).*ERROR: boom"):
        q._run(["render", "."], cwd=tmp_path)


# --- needs Quarto --------------------------------------------------------------------------------

def _check_outputs(out: Path, slugs: list[str]) -> None:
    for slug in slugs:
        stem = q.output_stem(slug)
        html = (out / f"{stem}.html").read_text(encoding="utf-8")
        assert re.search(r'<html[^>]*\blang="ja"', html), slug
        assert "孤独" in html
        assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html), f"{slug} loads a network asset"
        pdf = out / f"{stem}.pdf"
        assert pdf.read_bytes().startswith(b"%PDF")
        fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
        jp = [line for line in fonts.splitlines() if "IPAex" in line or "CJK" in line]
        assert jp and all(" yes " in line for line in jp), fonts  # embedded
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert "孤独" in text


@pytest.mark.quarto
def test_render_site_quarto_names_lang_and_fonts(executed, tmp_path: Path):
    out = tmp_path / "_site"
    q.render_site_quarto(executed, out, META)
    _check_outputs(out, list(executed))
    assert (out / "prefectures" / "13-tokyo_files").is_dir() or (out / "site_libs").is_dir()
    assert "re-executed" not in (out / "prefectures" / "13-tokyo.html").read_text(encoding="utf-8")
    assert "合成データ" in (out / "national.html").read_text(encoding="utf-8")


@pytest.mark.quarto
def test_per_area_render_html_and_pdf(executed, tmp_path: Path):
    out = tmp_path / "_site"
    meta = {"year": 2024, "synthetic": False, "title": "東京都 孤独・孤立の状況 2024年"}
    q.render_html(executed["13-tokyo"], out / "prefectures" / "13-tokyo.html", meta)
    q.render_pdf(executed["13-tokyo"], out / "prefectures" / "13-tokyo.pdf", meta)
    _check_outputs(out, ["13-tokyo"])
    html = (out / "prefectures" / "13-tokyo.html").read_text(encoding="utf-8")
    assert not re.search(r"""<(script|link)[^>]+(src|href)="(?!data:)[^"#]+""", html)  # self-contained


@pytest.mark.quarto
@pytest.mark.slow
def test_build_with_quarto_renderer(tmp_path: Path):
    """The whole build with --renderer quarto: the same file names and checks as the built-in renderer."""
    exe = shutil.which("tsunagari")
    assert exe
    out = tmp_path / "_site"
    proc = subprocess.run([exe, "build", "--renderer", "quarto", "--out", str(out), "--quiet",
                           "--warehouse", str(tmp_path / "wh.duckdb"), "--pref", "13", "--pref", "47"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_outputs(out, ["13-tokyo", "47-okinawa"])
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="prefectures/13-tokyo.html"' in index and 'href="prefectures/13-tokyo.pdf"' in index
