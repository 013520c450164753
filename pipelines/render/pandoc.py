"""The built-in renderer: pandoc (pypandoc-binary) -> self-contained HTML, and -> Typst -> A4 PDF.

Renders the stored outputs of an executed notebook (never re-executes). The Lua filter
reports/report.lua hides code and picks the best output per cell (pandoc's ipynb reader is run with
``--ipynb-output=all``). Any Typst font warning fails the render with a RenderError naming the file.
"""

from __future__ import annotations

import html as _html
import logging
import os
import re
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from pipelines.domain import config, conventions
from pipelines.domain.config import cache_dir, file_key
from pipelines.engine import interrupt
from pipelines.render.common import RenderError, pdf_font

log = logging.getLogger("tsunagari.render.pandoc")

name = "pandoc"


def _piece(name_: str) -> Path:
    """A report piece (report.lua, report.css, report.typ) of the reports folder in use
    (paths.reports_dir: a fork), read at call time."""
    return Path(config.REPORTS_DIR) / name_


BANNER_TEXT = "合成データ SYNTHETIC DATA — 実際の調査結果ではありません / not real survey results"
EXTERNAL_URL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _pandoc() -> str:
    import pypandoc

    return pypandoc.get_pandoc_path()


def _run(args: list[str], source: Path, cwd: Path | None = None) -> None:
    proc = subprocess.run([_pandoc(), *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RenderError(f"{source}: pandoc failed ({proc.returncode}): {proc.stderr.strip()[:800]}")
    if proc.stderr.strip():
        log.info("pandoc %s: %s", source.name, proc.stderr.strip()[:400])


def _reader_args(executed: Path) -> list[str]:
    # chart-data-dir: where report.lua links each chart's data file (render.common.chart_data_dir;
    # the executed notebook is named after the report: 13-tokyo.ipynb -> 13-tokyo-data/)
    return [
        str(executed),
        "-f",
        "ipynb",
        "--ipynb-output=all",
        "--lua-filter",
        str(_piece("report.lua")),
        "-M",
        "lang=ja",
        "-M",
        f"chart-data-dir={Path(executed).stem}-data",
        "--wrap=none",
    ]


class _Ast:
    """pandoc's reading of one executed notebook (ipynb reader + the Lua filter) as pandoc JSON,
    with the notebook's images extracted beside it (media/). The HTML and the Typst writers both
    start from it, so the notebook is read and filtered once per area instead of twice. One is
    kept per process (a worker renders one area after another); its folder is removed when the
    next notebook is read, or at exit."""

    _current: "_Ast | None" = None

    def __init__(self, executed: Path) -> None:
        self.key = file_key(executed)
        self.dir = Path(tempfile.mkdtemp(prefix="tsunagari-ast-"))
        self.json = self.dir / "report.json"
        try:
            _run(
                _reader_args(executed) + ["-t", "json", "--extract-media=media", "-o", str(self.json)],
                executed,
                cwd=self.dir,
            )
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def of(cls, executed: Path) -> "_Ast":
        cur = cls._current
        if cur is not None and cur.key == file_key(executed) and cur.json.exists():
            return cur
        if cur is not None:
            cur.remove()
            cls._current = None
        cls._current = cls(executed)
        return cls._current


@interrupt.at_exit
def _remove_ast() -> None:
    if _Ast._current is not None:
        _Ast._current.remove()
        _Ast._current = None


def _writer_args(ast: _Ast) -> list[str]:
    return [str(ast.json), "-f", "json", "-M", "lang=ja", "--wrap=none"]


def report_nav(meta: dict) -> str:
    """The site navigation at the top of a report page: back to the map, the national report, the
    compare page (a prefecture's report opens it with itself chosen), the methodology and the downloads; this report's PDF and its data (XLSX, CSV); and a prefecture
    picker (a labelled <select> and a button: typing the two-digit code, e.g. 1 3, reaches Tokyo).
    Links are relative (national.html at the top, prefecture reports one folder down)."""
    from pipelines.domain.reference import pref_slug, prefectures

    code = str(meta.get("area_code", "00"))
    year = int(meta.get("year", 0) or 0)
    national = code == "00"
    up = "" if national else "../"
    slug = pref_slug(int(code))
    pdf = f"{slug}.pdf"
    xlsx = f"{up}downloads/indicators-{year}.xlsx" if national else f"{up}downloads/{slug}-{year}.xlsx"
    csv = f"{up}downloads/indicators-{year}.csv"
    # compare.html: the compare page with this prefecture chosen (site.write_compare_page)
    compare = (
        (f"{up}compare.html", "都道府県の比較")
        if national
        else (f"{up}compare.html?a={int(code):02d}", "他の都道府県と比較")
    )
    links = [
        (f"{up}index.html", "地図・都道府県一覧"),
        (f"{up}national.html", "全国の報告書"),
        compare,
        (f"{up}methodology.html", "方法"),
        (f"{up}downloads/index.html", "ダウンロード"),
    ]
    own = [(pdf, "この報告書のPDF"), (xlsx, "この報告書のデータ（Excel）"), (csv, "全都道府県のデータ（CSV）")]

    def page_of(pref: int) -> str:
        return f"prefectures/{pref_slug(pref)}.html" if national else f"{pref_slug(pref)}.html"

    options = [(page_of(int(r.pref_code)), f"{int(r.pref_code):02d} {r.name_ja}") for r in prefectures().itertuples()]
    picker = conventions.prefecture_picker(options, None if national else page_of(int(code)))
    current = f"{up}national.html" if national else None
    items = "".join(
        f'<li><a href="{_html.escape(h)}"'
        + (' aria-current="page"' if h == current else "")
        + f">{_html.escape(t)}</a></li>"
        for h, t in links
    )
    own_items = "".join(f'<li><a href="{_html.escape(h)}">{_html.escape(t)}</a></li>' for h, t in own)
    return (
        '<header class="report-nav">\n<nav aria-label="サイト内ナビゲーション">\n'
        f'<ul class="nav">{items}</ul>\n<ul class="nav own">{own_items}</ul>\n'
        f"{picker}\n</nav>\n</header>\n"
    )


def html_includes(meta: dict) -> tuple[str, str]:
    """The HTML put before and after a report's body (the Quarto renderer uses them too): the
    synthetic banner at the top and bottom when the data are synthetic, and the area and year line."""
    parts = []
    if meta.get("synthetic"):
        parts.append(f'<div class="synthetic-banner" role="note">{_html.escape(BANNER_TEXT)}</div>')
    crumbs = f"{_html.escape(str(meta.get('area_name', '')))}・{_html.escape(str(meta.get('year', '')))}年"
    parts.append(f'<p class="report-context">孤独・孤立対策 年次評価レポート｜{crumbs}</p>')
    after = (
        '<div class="synthetic-banner bottom" role="note">' + _html.escape(BANNER_TEXT) + "</div>\n"
        if meta.get("synthetic")
        else ""
    )
    return "\n".join(parts) + "\n", after + publication_html()


def publication_html() -> str:
    """The publication details at the foot of a report page (as under the PDF's title)."""
    from pipelines.domain.config import publication

    pub = {k: _html.escape(v) for k, v in publication().items()}
    return (
        '<footer class="report-publication">\n'
        f'<p>発行：{pub["publisher"]}（<time datetime="{pub["iso"]}">{pub["date"]}</time>）　'
        f"問い合わせ先：{pub['contact']}</p>\n<p>利用条件：{pub['terms']}</p>\n</footer>\n"
    )


def render_html(executed: Path, html_out: Path, meta: dict) -> Path:
    """Self-contained HTML (images and CSS embedded, no external loads), lang="ja"."""
    executed, html_out = Path(executed).resolve(), Path(html_out).resolve()
    if not executed.exists():
        raise RenderError(f"{executed}: executed notebook not found")
    html_out.parent.mkdir(parents=True, exist_ok=True)
    ast = _Ast.of(executed)
    with tempfile.TemporaryDirectory(prefix="tsunagari-html-") as tmp:
        tmpd = Path(tmp)
        before, after = tmpd / "before.html", tmpd / "after.html"
        # The whole body is the page's main landmark (Quarto's own template has one; this one has not).
        head, tail = html_includes(meta)
        before.write_text(report_nav(meta) + "<main>\n" + head, encoding="utf-8")
        after.write_text(tail + "</main>\n", encoding="utf-8")
        args = _writer_args(ast) + [
            "-t",
            "html5",
            "--standalone",
            "--embed-resources",
            f"--css={_piece('report.css')}",
            "--toc",
            "--toc-depth=2",
            "-V",
            "toc-title=目次",
            "-M",
            f"pagetitle={meta.get('title', executed.stem)}",
            "-V",
            "lang=ja",
            f"--include-before-body={before}",
            f"--include-after-body={after}",
            "-o",
            str(html_out),
        ]
        _run(args, executed, cwd=ast.dir)  # media/ paths resolve against the AST's folder
    text = _embed_font(html_out.read_text(encoding="utf-8"))
    html_out.write_text(text, encoding="utf-8")
    m = EXTERNAL_URL.search(text)
    if m:
        raise RenderError(f"{html_out}: external resource in the HTML ({text[m.start() : m.start() + 80]!r})")
    return html_out


def _subset_options():
    from fontTools import subset

    opts = subset.Options()
    opts.layout_features = ["*"]
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    return opts


def _subset(source, chars: set[str], names_pruned: bool = False) -> bytes:
    """`source` subset to `chars`. names_pruned: the source's name table is already what subsetting
    keeps (the base subset's): it is set aside meanwhile, as fontTools would visit every table to
    prune it again (40% of the time), and put back unchanged (the same bytes, tested)."""
    import io

    from fontTools import subset

    opts = _subset_options()
    font = subset.load_font(source, opts, dontLoadGlyphNames=True)
    name = None
    if names_pruned and "name" in font:
        name = font["name"]
        del font["name"]
    sub = subset.Subsetter(opts)
    sub.populate(text="".join(sorted(chars)))
    sub.subset(font)
    if name is not None:
        font["name"] = name
    buf = io.BytesIO()
    subset.save_font(font, buf, opts)
    return buf.getvalue()


@lru_cache(maxsize=1)
def _base_font() -> tuple[frozenset[str], bytes]:
    """A first subset of the full font (~1,100 characters: ASCII, kana, CJK and full-width
    punctuation, and every character of the report notebook, templates, code, catalogue and
    reference tables). Subsetting a page from it is quicker than from the full font.
    It depends only on the installed files, so every worker makes the same one and a page's font
    does not depend on which worker rendered it. Making it is costly, so it is kept in
    the cache folder (config.cache_dir) under a name that is the hash of everything it depends on
    (the characters, the font file's bytes, the fontTools version and the subset options)."""
    from pipelines.domain.config import PACKAGE_DIR, REFERENCE_DIR

    chars = (
        {chr(i) for i in range(32, 127)}
        | {chr(i) for i in range(0x3000, 0x3100)}
        | {chr(i) for i in range(0xFF00, 0xFFF0)}
    )
    sources = (
        sorted(p for p in Path(config.REPORTS_DIR).rglob("*") if p.is_file())
        + sorted(PACKAGE_DIR.rglob("*.py"))
        + sorted(PACKAGE_DIR.rglob("*.yml"))
        + sorted((PACKAGE_DIR / "outputs" / "templates").glob("*"))
        + sorted(REFERENCE_DIR.glob("*.csv"))
    )
    for p in sources:
        try:
            chars |= {c for c in p.read_text(encoding="utf-8") if ord(c) > 127}
        except (UnicodeDecodeError, OSError):
            continue
    _, font_file = _html_font()
    cached = _font_cache_file(font_file, chars)
    try:
        data = cached.read_bytes()
        if data[:4] in _SFNT_MAGIC:
            return frozenset(chars), data
    except OSError:
        pass
    data = _subset(str(font_file), chars)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)  # two workers writing the same file at once: either one wins whole
    except OSError as exc:
        log.debug("font cache not written (%s): %s", cached, exc)
    return frozenset(chars), data


_SFNT_MAGIC = (b"\x00\x01\x00\x00", b"true", b"OTTO")


def _font_cache_file(font_file: Path, chars: set[str]) -> Path:
    """The cache file of the base subset of `font_file` to `chars`."""
    import hashlib

    import fontTools

    h = hashlib.sha256()
    h.update(Path(font_file).read_bytes())
    h.update("".join(sorted(chars)).encode("utf-8"))
    h.update(f"fontTools {fontTools.version} {sorted(vars(_subset_options()).items())!r}".encode())
    return cache_dir() / "fonts" / f"base-subset-{h.hexdigest()[:32]}.ttf"


def _embed_font(text: str, extra: str = "") -> str:
    """Embed the Japanese font, subset to the characters of this page (and `extra`, e.g. text a
    script shows), as an @font-face data URI, so that the page renders without tofu on machines
    with no Japanese font."""
    import base64
    import io

    visible = re.sub(r"data:[^\"')\s]+", "", text) + extra
    chars = {c for c in visible if ord(c) > 127} | {chr(i) for i in range(32, 127)}
    base_chars, base = _base_font()
    if chars <= base_chars:
        font = _subset(io.BytesIO(base), chars, names_pruned=True)
    else:  # a character from the data outside the base set (e.g. a rare kanji in a source note)
        font = _subset(str(_html_font()[1]), chars)
    data = base64.b64encode(font).decode("ascii")
    style = (
        "<style>@font-face{font-family:'TsunagariJP';font-weight:100 900;"
        f"src:url(data:font/ttf;base64,{data}) format('truetype');}}</style>\n"
    )
    return text.replace("</head>", style + "</head>", 1)


embed_font = _embed_font  # public: the Quarto renderer embeds the same font in its HTML


def _html_font() -> tuple[str, Path]:
    """The font embedded in HTML: IPAexGothic (a single TTF, always installed with matplotlib-fontja)."""
    import matplotlib_fontja

    return "IPAexGothic", Path(matplotlib_fontja.__file__).parent / "fonts" / "ipaexg.ttf"


def _typst_escape(text: str) -> str:
    """Text for the inside of a Typst string literal ("..."), where report.typ puts every value:
    backslash and quote escaped, line breaks and other control characters as a space."""
    text = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", str(text))
    return text.replace("\\", "\\\\").replace('"', '\\"')


typst_escape = _typst_escape  # public: the Quarto renderer passes report.typ's variables the same way


def publication_vars() -> dict[str, str]:
    """report.typ's publication variables (the date, publisher, contact and terms under the title:
    pipelines/domain/config.py, the one place a fork sets them)."""
    from pipelines.domain.config import publication

    pub = publication()
    return {"published": pub["date"], "publisher": pub["publisher"], "contact": pub["contact"], "terms": pub["terms"]}


# PDF/UA-1: Typst refuses to write the PDF when an image has no alternative text (and checks the
# rest of what the standard asks of a tagged PDF).
PDF_STANDARDS = ["ua-1"]


def render_typst(executed: Path, workdir: Path, meta: dict) -> Path:
    """pandoc -> Typst source in `workdir`, with the notebook's images copied beside it (media/)."""
    import shutil

    family, _ = pdf_font()
    ast = _Ast.of(Path(executed).resolve())
    if (ast.dir / "media").is_dir():
        shutil.copytree(ast.dir / "media", Path(workdir) / "media", dirs_exist_ok=True)
    typ = Path(workdir) / "report.typ"
    # The filter again, for its Typst pass: charts as images with their alternative text, charts
    # kept with their tables, coloured comparison words (the reading pass wrote JSON, not Typst).
    args = (
        _writer_args(ast)
        + ["--lua-filter", str(_piece("report.lua"))]
        + [
            "-t",
            "typst",
            "--standalone",
            f"--template={_piece('report.typ')}",
            "-V",
            f"mainfont={_typst_escape(family)}",
            "-V",
            f"area-name={_typst_escape(meta.get('area_name', ''))}",
            "-V",
            f"report-year={int(meta.get('year', 0))}",
            "-V",
            f"doc-title={_typst_escape(meta.get('title', ''))}",
            "-V",
            f"banner-text={_typst_escape(BANNER_TEXT)}",
            *(a for k, v in publication_vars().items() for a in ("-V", f"{k}={_typst_escape(v)}")),
            "-o",
            str(typ),
        ]
    )
    if meta.get("synthetic"):
        args += ["-V", "synthetic=true"]
    _run(args, executed, cwd=workdir)
    return typ


def render_pdf(executed: Path, pdf_out: Path, meta: dict) -> Path:
    """A4 PDF through Typst, Japanese font embedded; any font warning raises RenderError."""
    import typst

    executed, pdf_out = Path(executed).resolve(), Path(pdf_out).resolve()
    if not executed.exists():
        raise RenderError(f"{executed}: executed notebook not found")
    pdf_out.parent.mkdir(parents=True, exist_ok=True)
    _, font_file = pdf_font()
    with tempfile.TemporaryDirectory(prefix="tsunagari-typst-") as tmp:
        workdir = Path(tmp)
        typ = render_typst(executed.resolve(), workdir, meta)
        try:
            pdf, warnings = typst.compile_with_warnings(
                str(typ),
                root=str(workdir),
                font_paths=[str(font_file.parent)],
                ignore_system_fonts=True,
                pdf_standards=PDF_STANDARDS,
            )
        except typst.TypstError as exc:
            raise RenderError(f"{pdf_out.name}: typst failed: {exc}") from exc
        msgs = [str(getattr(w, "message", w)) for w in (warnings or [])]
        font_msgs = [m for m in msgs if "font" in m.lower() or "glyph" in m.lower()]
        if font_msgs:
            raise RenderError(f"{pdf_out.name}: Typst font warning: {'; '.join(font_msgs)[:500]}")
        for m in msgs:
            log.warning("typst %s: %s", pdf_out.name, m)
        pdf_out.write_bytes(pdf)
    return pdf_out
