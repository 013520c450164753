"""Quarto renderer (written for Quarto 1.10; `--renderer quarto`).

Renders executed report notebooks (papermill has run them) without re-executing them, to HTML and
to Typst PDF, with the same file names as the built-in pandoc renderer. Two entry points:

* ``render_site_quarto(executed, out_dir, meta)``: the whole set at once as the Quarto website project
  defined by the repository's ``_quarto.yml`` (one ``quarto render`` run). The project is staged in a
  temporary folder: a copy of ``_quarto.yml`` adjusted (``project.render``, absolute ``font-paths``,
  watermark), one notebook per area named by its slug (unique stems, so each page has its own
  ``{stem}_files/`` folder), and an ``index.qmd`` listing. Results are moved to ``national.html|pdf`` and
  ``prefectures/{slug}.html|pdf`` plus Quarto's ``site_libs/`` and ``*_files/`` folders.
* ``render_html`` / ``render_pdf`` (the renderer interface of ``pipelines.render``): one area, one
  format, ``quarto render NB.ipynb --to html|typst`` in a staged single-document project; the HTML is
  self-contained (``embed-resources``, which Quarto does not support inside website projects).

Quarto facts relied on (Quarto 1.10 docs): .ipynb inputs are not executed unless ``execute: enabled:
true`` or ``--execute``; ``format: typst`` takes ``mainfont``, ``font-paths`` and ``papersize``;
``lang: ja`` sets ``<html lang="ja">`` and the Typst text language; ``project.output-dir`` and
``project.render`` control a website project's outputs; front matter of an .ipynb is its first raw cell.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .. import config

try:  # the shared class of the render package
    from . import RenderError
except ImportError:  # pragma: no cover - when the package module is absent
    from ..errors import TsunagariError

    class RenderError(TsunagariError):  # type: ignore[no-redef]
        exit_code = 1

log = logging.getLogger("tsunagari.render.quarto")

name = "quarto"
QUARTO_VERSION = "1.10"
PROJECT_FILE = config.REPO_ROOT / "_quarto.yml"
TIMEOUT_S = int(os.environ.get("TSUNAGARI_QUARTO_TIMEOUT", "1800"))
OUTPUT_TAIL = 40  # lines of Quarto's output quoted in a RenderError

WATERMARK_TEXT = "合成データ（SYNTHETIC）：数値は架空の合成データに基づくもので、実際の調査結果ではありません。"

TYPST_WATERMARK = ('#set page(background: rotate(-35deg, text(size: 56pt, fill: rgb(200, 200, 200, 110))'
                   '[合成データ SYNTHETIC]))\n')
TYPST_BANNER = f'#block(fill: rgb("#fff3b0"), inset: 6pt, width: 100%)[*{WATERMARK_TEXT}*]\n'


# --- locating Quarto and the font ----------------------------------------------------------------

def quarto_available() -> Path | None:
    """The Quarto CLI: $QUARTO_PATH (the binary, or a folder holding bin/quarto) or `quarto` on PATH."""
    env = os.environ.get("QUARTO_PATH")
    if env:
        p = Path(env)
        for cand in (p, p / "bin" / "quarto", p / "quarto"):
            if cand.is_file() and os.access(cand, os.X_OK):
                return cand
    found = shutil.which("quarto")
    return Path(found) if found else None


def typst_font() -> tuple[str, Path]:
    """(family, folder) for Typst: IPAexGothic, a static .ttf shipped with matplotlib-fontja.
    (Noto Sans CJK JP is usually installed as a .ttc collection, which Typst renders as boxes.)"""
    import matplotlib_fontja

    folder = Path(matplotlib_fontja.__file__).resolve().parent / "fonts"
    if not (folder / "ipaexg.ttf").is_file():
        raise RenderError(f"{folder / 'ipaexg.ttf'}: Japanese font not found / 日本語フォントがありません")
    return "IPAexGothic", folder


# --- staging -------------------------------------------------------------------------------------

def output_stem(slug: str) -> str:
    """Path (without suffix) of an area's outputs relative to the site: 'national' or 'prefectures/{slug}'."""
    return "national" if slug == "national" else f"prefectures/{slug}"


def project_config(meta: dict[str, Any], stems: list[str], font_dir: Path, font_family: str) -> dict[str, Any]:
    """The repository's _quarto.yml adjusted for one run."""
    cfg = config.load_yaml(PROJECT_FILE.read_text(encoding="utf-8"))
    cfg = copy.deepcopy(cfg)
    cfg["project"]["render"] = ["index.qmd"] + [f"{s}.ipynb" for s in stems]
    cfg["lang"] = "ja"
    cfg.setdefault("execute", {})["enabled"] = False
    typst = cfg["format"]["typst"]
    typst["font-paths"] = [str(font_dir)]
    typst["mainfont"] = font_family
    if meta.get("synthetic"):
        _add_watermark(cfg["format"])
    return cfg


def _add_watermark(formats: dict[str, Any]) -> None:
    formats["html"]["include-before-body"] = [{"text": (
        '<div class="synthetic-banner" role="note" style="background:#fff3b0;border:2px solid #8a6d00;'
        f'padding:6px 12px;margin:0 0 12px;color:#3d3000"><strong>{WATERMARK_TEXT}</strong></div>')}]
    # Typst: a watermark on every page (a page set rule in the preamble; the template's own page
    # settings do not touch `background`) and a banner at the top of the document.
    formats["typst"]["include-in-header"] = [{"text": TYPST_WATERMARK}]
    formats["typst"]["include-before-body"] = [{"text": TYPST_BANNER}]


def stage_notebook(src: Path, dst: Path, title: str | None) -> Path:
    """Copy an executed notebook, giving it a front-matter raw cell with its title (outputs untouched)."""
    nb = json.loads(Path(src).read_text(encoding="utf-8"))
    cells = nb.get("cells", [])
    front: dict[str, Any] = {}
    first = cells[0] if cells else None
    if first and first.get("cell_type") == "raw":
        text = "".join(first.get("source", []))
        if text.strip().startswith("---"):
            front = config.load_yaml(text.strip().strip("-")) or {}
            cells.pop(0)
    if title and "title" not in front:
        front["title"] = title
    if front:
        cells.insert(0, {"cell_type": "raw", "metadata": {},
                         "source": "---\n" + yaml.safe_dump(front, allow_unicode=True, sort_keys=False) + "---\n"})
    nb["cells"] = cells
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")
    return dst


INDEX_QMD = """---
title: "地域別レポート一覧"
format: html
listing:
  contents:
    - national.ipynb
    - "prefectures/*.ipynb"
  type: table
  sort: "filename"
  fields: [title, filename]
---
"""


def stage_project(executed: dict[str, Path], work: Path, meta: dict[str, Any]) -> list[str]:
    """Write the Quarto project into `work`; return the staged stems (unique by construction)."""
    family, font_dir = typst_font()
    titles = meta.get("titles", {})
    stems = []
    for slug, src in executed.items():
        stem = output_stem(slug)
        if stem in stems:
            raise RenderError(f"{src}: two notebooks for '{slug}' / 同じ地域のノートブックが重複しています")
        stage_notebook(Path(src), work / f"{stem}.ipynb", titles.get(slug) or meta.get("title"))
        stems.append(stem)
    (work / "index.qmd").write_text(INDEX_QMD, encoding="utf-8")
    cfg = project_config(meta, stems, font_dir, family)
    (work / "_quarto.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return stems


# --- running Quarto ------------------------------------------------------------------------------

def _run(args: list[str], cwd: Path) -> str:
    quarto = quarto_available()
    if quarto is None:
        raise RenderError("quarto: Quarto CLI not found (PATH or QUARTO_PATH) / Quarto が見つかりません")
    cmd = [str(quarto), *args]
    log.info("running %s (cwd %s)", " ".join(cmd), cwd)
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env={**os.environ, "QUARTO_PYTHON": os.environ.get("QUARTO_PYTHON", _python())})
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"quarto {' '.join(args)}: timed out after {TIMEOUT_S}s") from exc
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-OUTPUT_TAIL:])
        raise RenderError(f"quarto {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return output


def _python() -> str:
    import sys

    return sys.executable


def render_site_quarto(executed: dict[str, Path], out_dir: Path, meta: dict[str, Any]) -> None:
    """Render all executed notebooks ({slug: path}, slug 'national' or e.g. '13-tokyo') as one Quarto
    website project; write national.html|pdf and prefectures/{slug}.html|pdf (+ site_libs/, *_files/)
    under out_dir. meta: 'year', 'synthetic', optional 'titles' {slug: title}. Raises RenderError."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="tsunagari-quarto-") as tmp:
        work = Path(tmp)
        stems = stage_project(executed, work, meta)
        _run(["render", "."], cwd=work)
        built = work / "_out"
        missing = [f"{s}{ext}" for s in stems for ext in (".html", ".pdf") if not (built / f"{s}{ext}").is_file()]
        if missing:
            raise RenderError(f"quarto render: expected outputs missing: {', '.join(missing[:5])}")
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in built.iterdir():
            if item.name in ("index.html",):  # the site's own index (pipelines.site) stays
                continue
            target = out_dir / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
    log.info("quarto: rendered %d areas to %s", len(stems), out_dir)


def _render_one(executed: Path, target: Path, to: str, meta: dict[str, Any]) -> Path:
    """One notebook to one format in a staged single-document project (no website chrome)."""
    family, font_dir = typst_font()
    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="tsunagari-quarto-") as tmp:
        work = Path(tmp)
        nb = stage_notebook(Path(executed), work / f"{target.stem}.ipynb", meta.get("title"))
        cfg = project_config(meta, [target.stem], font_dir, family)
        cfg["project"] = {"type": "default"}
        cfg.pop("website", None)
        cfg["format"]["html"]["embed-resources"] = True  # one self-contained file, like the pandoc renderer
        cfg["format"]["html"].pop("toc", None)
        (work / "_quarto.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        _run(["render", nb.name, "--to", to], cwd=work)
        produced = work / f"{target.stem}.{'html' if to == 'html' else 'pdf'}"
        if not produced.is_file():
            raise RenderError(f"quarto render {nb.name} --to {to}: no output {produced.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), str(target))
    return target


def render_html(executed: Path, html_out: Path, meta: dict[str, Any]) -> Path:
    """Renderer interface: one executed notebook -> self-contained HTML at html_out."""
    return _render_one(executed, html_out, "html", meta)


def render_pdf(executed: Path, pdf_out: Path, meta: dict[str, Any]) -> Path:
    """Renderer interface: one executed notebook -> Typst PDF at pdf_out."""
    return _render_one(executed, pdf_out, "typst", meta)
