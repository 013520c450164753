"""Quarto renderer (Quarto 1.10 or later; `--renderer quarto`, or `auto` when Quarto is installed).

Renders executed report notebooks (papermill has run them) without re-executing them, to
self-contained HTML and to Typst PDF, with the same file names and the same report pieces as the
built-in renderer (pipelines/render/pandoc.py):

* the Lua filter reports/report.lua (run after reports/quarto-cells.lua, which maps Quarto's cell
  structure onto the one of pandoc's ipynb reader), so the same rules pick outputs and neutralise
  markup from data;
* the stylesheet reports/report.css and the HTML put before and after the body
  (``pandoc.html_includes``), and the same embedded Japanese font subset (``pandoc.embed_font``);
* the Typst template reports/report.typ (running header with area and year, page numbers, the
  synthetic banner and watermark on every page, the Japanese font for all text), as a template
  partial of reports/quarto-report.typ.

Entry points:

* ``render_site_quarto(executed, out_dir, meta, jobs)``: the whole set as the Quarto website project
  of the repository's ``_quarto.yml``: one ``quarto render`` per worker (``jobs`` projects of about
  equal size rendered at once; one with jobs=1), instead of a process per area and format.
* ``render_html`` / ``render_pdf`` (the renderer interface of ``pipelines.render``): one area; the
  first call renders both formats in one run and keeps the other file for the second call.

Before Quarto sees a notebook it is staged (``stage_notebook``): front matter with the page title
and the template's variables first (Quarto's title block is not used: the notebook's own H1 is the
only title), Markdown outputs wrapped in a ```{=markdown} raw block (Quarto would otherwise parse
them with raw HTML and links enabled before any filter runs), and each image's text/plain
description given as the cell's ``fig-alt``, and a chart's data file name (the image's ``data-csv``
metadata, ``charts.show(..., name=)``) as the cell's ``fig-scap`` (Quarto passes only its own figure
options on to an image; reports/quarto-cells.lua turns it back into ``data-csv`` for report.lua,
which links the file under the chart; ``chart-data-dir`` in the front matter says where). A leading
raw cell with YAML front matter in the source notebook is dropped (it would otherwise compete with
the staged one). The charts' data files themselves are written beside the reports
(``render.common.write_chart_data``), as the built-in renderer's build does.

Failures (Quarto missing or older than 1.10, a Quarto or Typst error, a Typst font warning, an
output missing) raise RenderError naming the area and quoting Quarto's output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.domain import config
from pipelines.engine import interrupt
from pipelines.render.common import CHART_DATA_NAME, RenderError, chart_data_dir, shown_cells, write_chart_data

log = logging.getLogger("tsunagari.render.quarto")

name = "quarto"
MIN_VERSION = (1, 10)
PROJECT_FILE = config.REPO_ROOT / "_quarto.yml"
DEFAULT_REPORTS_DIR = config.REPO_ROOT / "reports"
# The report pieces staged beside the notebooks (under reports/ in the work folder).
ASSETS = ("report.lua", "report.css", "report.typ", "quarto-cells.lua", "quarto-report.typ", "quarto-report.css")
FONT_LINK = "_fonts"
OUTPUT_TAIL = 25  # lines of Quarto's output quoted in a RenderError

# Typst warnings that mean text would be set in a fallback font or as boxes (fails the render, as in
# the built-in renderer).
FONT_WARNING = re.compile(r"warning:.*(font|glyph)", re.IGNORECASE)
# Quarto's progress line for a project file: "[ 3/49] prefectures/13-tokyo.ipynb"
PROGRESS = re.compile(r"^\s*\[\s*\d+/\d+\]\s+(\S+\.ipynb)", re.MULTILINE)
EXTERNAL_ASSET = re.compile(
    r"""<(?:script|link|img|iframe|source|video|audio)\b[^>]*?\b(?:src|href)\s*=\s*["']?\s*"""
    r"""(?:https?:)?//""",
    re.IGNORECASE,
)
# Output types a staged notebook keeps (report.lua never uses text/html; Quarto would pass it through).
KEPT_MIME = ("text/markdown", "text/plain", "image/png", "image/jpeg", "image/svg+xml")
# Cell options the staging sets (an existing line with one of them would be a duplicate YAML key).
OWN_OPTION = re.compile(r"^#\|\s*(echo|output|fig-alt|fig-scap)\s*:")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

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


def _quarto() -> Path:
    quarto = quarto_available()
    if quarto is None:
        raise RenderError("quarto: Quarto CLI not found (PATH or QUARTO_PATH) / Quarto が見つかりません")
    return quarto


@lru_cache(maxsize=4)
def _version_of(binary: str, key: tuple) -> str:
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=120)
    text = (proc.stdout or "").strip() or (proc.stderr or "").strip()
    if proc.returncode != 0:
        raise RenderError(f"quarto --version failed (exit {proc.returncode}): {text[:300]}")
    return text.splitlines()[-1].strip() if text else ""


def quarto_version() -> str:
    """The installed Quarto's version string (e.g. '1.10.18'); part of the reports' input hash."""
    q = _quarto()
    return _version_of(str(q), config.file_key(q))


def parse_version(text: str) -> tuple[int, ...]:
    m = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        raise RenderError(f"quarto --version: cannot read a version from {text[:80]!r}")
    return tuple(int(x) for x in m.groups() if x is not None)


def check_version() -> str:
    """The version, or RenderError when Quarto is older than 1.10 (the project file needs 1.10)."""
    v = quarto_version()
    if parse_version(v)[:2] < MIN_VERSION:
        raise RenderError(
            f"quarto {v}: Quarto {'.'.join(map(str, MIN_VERSION))} or later is needed "
            f"({_quarto()}) / Quarto {'.'.join(map(str, MIN_VERSION))} 以降が必要です"
        )
    return v


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


def _asset(name_: str) -> Path:
    """A report piece from the reports folder (a fork with TSUNAGARI_REPORTS_DIR may lack the
    Quarto-specific ones: then the repository's are used)."""
    for folder in (config.REPORTS_DIR, DEFAULT_REPORTS_DIR):
        if (folder / name_).is_file():
            return folder / name_
    raise RenderError(f"{config.REPORTS_DIR / name_}: report template not found / テンプレートがありません")


def project_config(stems: list[str], font_dir: Path, font_family: str) -> dict[str, Any]:
    """The repository's _quarto.yml adjusted for one run."""
    cfg = config.load_yaml(PROJECT_FILE.read_text(encoding="utf-8"))
    cfg["project"]["render"] = [f"{s}.ipynb" for s in stems]
    cfg["lang"] = "ja"
    cfg.setdefault("execute", {})["enabled"] = False
    typst = cfg["format"]["typst"]
    typst["font-paths"] = [f"/{FONT_LINK}"]  # "/..." is project-relative in Quarto (an absolute
    # path would be read as one inside the project): the font folder is linked there by stage_project
    typst["mainfont"] = font_family
    return cfg


def _link_fonts(font_dir: Path, link: Path) -> None:
    """The font folder inside the project (a symbolic link; a copy of its .ttf files where links
    cannot be made)."""
    try:
        link.symlink_to(font_dir, target_is_directory=True)
    except OSError:
        link.mkdir(parents=True, exist_ok=True)
        for f in font_dir.glob("*.ttf"):
            shutil.copyfile(f, link / f.name)


def _typst_string(value: object) -> str:
    """A value for report.typ, which puts its variables inside Typst string literals: escaped for
    one (pandoc.typst_escape, as the built-in renderer does) and given as a raw Typst inline, so
    that pandoc writes it as it is (metadata text would be written as Typst markup: "—" as "---",
    "#" as "\\#", which is wrong, or an error, inside a string)."""
    from pipelines.render.pandoc import typst_escape

    text = typst_escape(value)
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    tick = "`" * (run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{tick}{pad}{text}{pad}{tick}{{=typst}}"


def front_matter(slug: str, area: dict[str, Any]) -> dict[str, Any]:
    """A staged notebook's front matter: the page title (no Quarto title block: the notebook's H1 is
    the title), report.typ's variables, and the HTML before and after the body."""
    from pipelines.render.pandoc import BANNER_TEXT, html_includes, publication_html, publication_vars, report_nav

    year = int(area.get("year", 0))
    title = str(area.get("title") or f"{area.get('area_name', slug)} {year}年")
    before, after = html_includes(area)
    before = report_nav(area) + before
    # Quarto puts the HTML after the body after its <main>: the bottom synthetic banner goes inside
    # the publication footer, a landmark (outside any, axe's `region` rule fails the page)
    pub = publication_html()
    if after.endswith(pub) and after != pub:
        opening = pub.split("\n", 1)[0] + "\n"
        after = opening + after[: -len(pub)] + pub[len(opening) :]
    front: dict[str, Any] = {
        "pagetitle": title,
        "area-name": _typst_string(area.get("area_name", "")),
        "report-year": _typst_string(year),
        "doc-title": _typst_string(title),
        "banner-text": _typst_string(BANNER_TEXT),
        **{k: _typst_string(v) for k, v in publication_vars().items()},
        "synthetic": bool(area.get("synthetic")),
        # where report.lua links each chart's data file (render.common.chart_data_dir: 13-tokyo-data)
        "chart-data-dir": chart_data_dir(Path(output_stem(slug))).name,
        # A document's `format` names the formats it is rendered to: both, the project's options.
        "format": {"html": {"include-before-body": [{"text": before}]}, "typst": "default"},
    }
    if after:
        front["format"]["html"]["include-after-body"] = [{"text": after}]
    return front


def _raw_markdown(text: str) -> str:
    """Markdown output as a raw block, so Quarto passes it to the filters unparsed (report.lua reads
    it with raw HTML, links, images and math disabled). The fence is longer than any backtick run
    in the text, so the text cannot close it."""
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(4, run + 1)
    return f"{fence}{{=markdown}}\n{text.rstrip()}\n{fence}\n"


def _is_front_matter(cell: dict) -> bool:
    return cell.get("cell_type") == "raw" and "".join(cell.get("source", [])).lstrip().startswith("---")


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _lines(text: str) -> list[str]:
    """A cell source as nbformat writes it: a list of lines with their line ends (Quarto 1.10 joins
    the items of `source` as they are, so one string holding several lines runs them together:
    the front matter then leaked into the page as text)."""
    return text.splitlines(keepends=True)


def stage_notebook(src: Path, dst: Path, slug: str, area: dict[str, Any]) -> Path:
    """Copy an executed notebook for Quarto (outputs kept; nothing executed): front matter first,
    Markdown outputs as raw blocks, image descriptions as `fig-alt`, no raw HTML or script output."""
    nb = json.loads(Path(src).read_text(encoding="utf-8"))
    cells = [c for c in shown_cells(nb) if not _is_front_matter(c)]
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        alts: list[str | None] = []
        csvs: list[str | None] = []
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            # a chart's data file (render.common.chart_data: the name in the image's metadata, the
            # rows as text/csv beside it), read before text/csv is dropped below
            csv = ((out.get("metadata") or {}).get("image/png") or {}).get("data-csv")
            csvs.append(csv if "text/csv" in data and isinstance(csv, str) and CHART_DATA_NAME.fullmatch(csv) else None)
            for mime in [m for m in data if not m.startswith(KEPT_MIME)]:
                del data[mime]  # text/html, JavaScript, LaTeX...: never used (report.lua's rule)
            if "text/markdown" in data:
                data["text/markdown"] = _raw_markdown(_text(data["text/markdown"]))
            image = any(k.startswith("image/") for k in data)
            plain = _text(data.get("text/plain", "")).strip()
            alts.append(plain if image and plain and not plain.startswith(("<Figure", "<ggplot", "<IPython")) else None)
        source = _text(cell.get("source", ""))
        source = "\n".join(line for line in source.splitlines() if not OWN_OPTION.match(line))
        opts = ["#| echo: false", "#| output: true"]
        if any(alts):
            opts.append("#| fig-alt: " + json.dumps(alts, ensure_ascii=False))  # JSON is YAML
        if any(csvs):
            opts.append("#| fig-scap: " + json.dumps(csvs))  # read back by quarto-cells.lua
        cell["source"] = _lines("\n".join(opts) + "\n" + source)
    front = yaml.safe_dump(front_matter(slug, area), allow_unicode=True, sort_keys=False, width=10_000)
    cells.insert(
        0, {"cell_type": "raw", "id": "tsunagari-front-matter", "metadata": {}, "source": _lines(f"---\n{front}---\n")}
    )
    nb["cells"] = cells
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    return dst


def area_of(slug: str, meta: dict[str, Any]) -> dict[str, Any]:
    """One area's metadata: meta['areas'][slug] (pipelines.outputs.reports.area_meta) over the common keys."""
    area = {k: v for k, v in meta.items() if k not in ("areas", "titles")}
    area.update((meta.get("areas") or {}).get(slug) or {})
    if (meta.get("titles") or {}).get(slug):
        area["title"] = meta["titles"][slug]
    return area


def stage_project(executed: dict[str, Path], work: Path, meta: dict[str, Any]) -> list[str]:
    """Write the Quarto project into `work`; return the staged stems (unique by construction)."""
    family, font_dir = typst_font()
    stems = []
    for slug, src in executed.items():
        stem = output_stem(slug)
        if stem in stems:
            raise RenderError(f"{src}: two notebooks for '{slug}' / 同じ地域のノートブックが重複しています")
        stage_notebook(Path(src), work / f"{stem}.ipynb", slug, area_of(slug, meta))
        stems.append(stem)
    (work / "reports").mkdir(parents=True, exist_ok=True)
    for a in ASSETS:
        shutil.copyfile(_asset(a), work / "reports" / a)
    _link_fonts(font_dir, work / FONT_LINK)
    cfg = project_config(stems, font_dir, family)
    (work / "_quarto.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return stems


# --- running Quarto ------------------------------------------------------------------------------


def _area_in(output: str, stems: list[str]) -> str:
    """The area Quarto was rendering when it stopped (its last progress line), or all of them."""
    started = PROGRESS.findall(output)
    if started:
        return started[-1].removesuffix(".ipynb")
    return (
        stems[0] if len(stems) == 1 else f"{len(stems)} areas ({', '.join(stems[:3])}{' …' if len(stems) > 3 else ''})"
    )


def _tail(output: str) -> str:
    return "\n".join(output.strip().splitlines()[-OUTPUT_TAIL:])


def _run(args: list[str], cwd: Path, stems: list[str] | None = None) -> str:
    """Run Quarto; RenderError naming the area (from Quarto's progress lines) and quoting its output."""
    cmd = [str(_quarto()), *args]
    stems = stems or []
    log.info("running %s (cwd %s)", " ".join(cmd), cwd)
    from pipelines.domain.config import exported_environ, settings

    timeout = settings().quarto_timeout  # run.quarto_timeout ($TSUNAGARI_QUARTO_TIMEOUT)
    env = {**os.environ, "QUARTO_PYTHON": os.environ.get("QUARTO_PYTHON", _python()), **exported_environ()}
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise RenderError(
            f"quarto {' '.join(args)}: timed out after {timeout}s ({_area_in(str(exc.output or ''), stems)})"
        ) from exc
    output = ANSI.sub("", (proc.stdout or "") + (proc.stderr or ""))
    if proc.returncode != 0:
        raise RenderError(
            f"{_area_in(output, stems)}: quarto {' '.join(args)} failed (exit {proc.returncode}) "
            f"/ Quarto のエラー:\n{_tail(output)}"
        )
    fonts = [line.strip() for line in output.splitlines() if FONT_WARNING.search(line)]
    if fonts:
        raise RenderError(f"{_area_in(output, stems)}: Typst font warning / フォントの警告: {'; '.join(fonts)[:500]}")
    return output


def _python() -> str:
    import sys

    return sys.executable


def _render_project(executed: dict[str, Path], meta: dict[str, Any], results: Path) -> list[str]:
    """Stage one project with `executed`, run `quarto render` once, move its HTML and PDF to
    `results` (site-relative names). Returns the stems."""
    with tempfile.TemporaryDirectory(prefix="tsunagari-quarto-") as tmp:
        work = Path(tmp)
        stems = stage_project(executed, work, meta)
        output = _run(["render"], cwd=work, stems=stems)
        built = work / "_out"
        for stem in stems:
            for ext in (".html", ".pdf"):
                if not (built / f"{stem}{ext}").is_file():
                    raise RenderError(
                        f"{stem}: quarto render wrote no {Path(stem).name}{ext} / 出力がありません:\n{_tail(output)}"
                    )
            html = _finish_html(built / f"{stem}.html", stem)
            target = results / f"{stem}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(html, encoding="utf-8")
            shutil.move(str(built / f"{stem}.pdf"), str(results / f"{stem}.pdf"))
    return stems


def _finish_html(path: Path, stem: str) -> str:
    """The embedded Japanese font (as in the built-in HTML); refuse a page that loads anything from
    the network."""
    from pipelines.render.pandoc import embed_font

    text = embed_font(path.read_text(encoding="utf-8"))
    m = EXTERNAL_ASSET.search(text)
    if m:
        raise RenderError(f"{stem}.html: external resource in the HTML ({text[m.start() : m.start() + 120]!r})")
    return text


def _chunks(items: list, n: int) -> list[list]:
    n = max(1, min(n, len(items)))
    return [items[i::n] for i in range(n)]


def render_site_quarto(executed: dict[str, Path], out_dir: Path, meta: dict[str, Any], jobs: int = 1) -> list[str]:
    """Render executed notebooks ({slug: path}, slug 'national' or e.g. '13-tokyo') as Quarto website
    projects, `jobs` of them at once (each one `quarto render`); write national.html|pdf and
    prefectures/{slug}.html|pdf under out_dir, and each report's chart data files beside it
    (prefectures/{slug}-data/*.csv), each file complete or not at all (written under a temporary
    name and renamed once every area rendered). meta: 'year', 'synthetic', and 'areas'
    {slug: pipelines.outputs.reports.area_meta(...)}. Returns the stems written; raises RenderError."""
    check_version()
    out_dir = Path(out_dir)
    items = list(executed.items())
    if not items:
        return []
    with tempfile.TemporaryDirectory(prefix="tsunagari-quarto-out-") as tmp:
        results = Path(tmp)
        errors: list[RenderError] = []
        lock = threading.Lock()

        def one(chunk: list) -> list[str]:
            try:
                return _render_project(dict(chunk), meta, results)
            except RenderError as exc:
                with lock:
                    errors.append(exc)
                return []

        groups = _chunks(items, jobs)
        with ThreadPoolExecutor(len(groups), thread_name_prefix="quarto") as pool:
            stems = [s for done in pool.map(one, groups) for s in done]
        if errors:
            raise errors[0] if len(errors) == 1 else RenderError("\n".join(str(e) for e in errors))
        by_stem = {output_stem(slug): Path(src) for slug, src in items}
        for stem in stems:
            # the charts' data files beside the report (prefectures/13-tokyo-data/*.csv), linked
            # under each chart, as the built-in renderer's build writes them (reports.render_area)
            write_chart_data(by_stem[stem], chart_data_dir(out_dir / f"{stem}.html"))
            for ext in (".html", ".pdf"):
                target = out_dir / f"{stem}{ext}"
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp_target = target.with_name(f"{target.stem}.tmp{ext}")
                shutil.copyfile(results / f"{stem}{ext}", tmp_target)
                tmp_target.replace(target)
    log.info("quarto: rendered %d areas to %s in %d project(s)", len(stems), out_dir, len(groups))
    return stems


# --- the per-area renderer interface -------------------------------------------------------------

_PENDING: dict[tuple, Path] = {}  # (executed file key, format) -> the other format's file, kept
_PENDING_DIR: list[Path] = []


def _slug_for(executed: Path, meta: dict[str, Any]) -> str:
    code = str(meta.get("area_code", ""))
    if code in ("00", "0"):
        return "national"
    return Path(executed).stem


def _render_one(executed: Path, target: Path, ext: str, meta: dict[str, Any]) -> Path:
    """One area: both formats in one `quarto render`; the file not asked for is kept for the call
    that asks for it (render_area renders HTML, then PDF)."""
    executed, target = Path(executed), Path(target)
    key = (config.file_key(executed), json.dumps(meta, sort_keys=True, default=str))
    kept = _PENDING.pop((key, ext), None)
    if kept is None or not kept.is_file():
        check_version()
        slug = _slug_for(executed, meta)
        if not _PENDING_DIR:
            _PENDING_DIR.append(Path(tempfile.mkdtemp(prefix="tsunagari-quarto-kept-")))
        results = Path(tempfile.mkdtemp(prefix="area-", dir=_PENDING_DIR[0]))
        (stem,) = _render_project({slug: executed}, {**meta, "areas": {slug: meta}}, results)
        other = ".pdf" if ext == ".html" else ".html"
        _PENDING[(key, other)] = results / f"{stem}{other}"
        kept = results / f"{stem}{ext}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(kept), str(target))
    return target


def render_html(executed: Path, html_out: Path, meta: dict[str, Any]) -> Path:
    """Renderer interface: one executed notebook -> self-contained HTML at html_out."""
    return _render_one(executed, html_out, ".html", meta)


def render_pdf(executed: Path, pdf_out: Path, meta: dict[str, Any]) -> Path:
    """Renderer interface: one executed notebook -> Typst PDF at pdf_out."""
    return _render_one(executed, pdf_out, ".pdf", meta)


@interrupt.at_exit
def _remove_kept() -> None:
    for d in _PENDING_DIR:
        shutil.rmtree(d, ignore_errors=True)
