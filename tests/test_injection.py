"""Issue 8, item 3: injection. Free text from inputs (survey ids, notes, indicator names, file names,
programme sources) reaches the reports (Markdown -> pandoc -> HTML and Typst/PDF), the site (Jinja2)
and the downloads (CSV/XLSX); area codes and years build file paths; years are bound into SQL.

Each test uses real components: a real DuckDB warehouse, the real report notebook executed by the
real kernel, pandoc with reports/report.lua, Typst, Jinja2, openpyxl.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures_reports import build_fixture_warehouse  # noqa: E402

from pipelines.domain.errors import DataError, UsageError  # noqa: E402

YEAR = 2024
PREF = 31  # Tottori: small, fast
SLUG = "31-tottori"

# Text that would be markup in Markdown, HTML, pandoc raw attributes or Typst if it were not escaped.
EVIL_NOTE = (
    "<script>alert(1)</script> <img src=x onerror=alert(2)> `<b>RAWB</b>`{=html} "
    '`#read("/etc/passwd")`{=typst} #set page(fill: red) #import "/etc/passwd": * '
    "[click](javascript:alert(3)) ![pic](/etc/passwd) @evilcite $x^2$ *em* // c"
)
# A note that spans lines: a heading and a raw HTML block if it were read as Markdown.
EVIL_PROG_NOTE = 'line1\n\n# INJECTED HEADING\n\n```{=html}\n<iframe src="javascript:alert(4)"></iframe>\n```\n'
# An indicator name (catalogue name_ja, via TSUNAGARI_CATALOGUE): the report shows it in the opening
# paragraph, the headline and section tables and the chart captions. The same text is also inserted as
# an indicator id unknown to the catalogue (its rows are not shown: the report lists catalogue ids).
EVIL_ID = '<b>BOLDID</b>`#eval("1")`{=typst}'
EVIL_NAME_OF = "lonely_often_always"  # a headline survey indicator: shown in the lede and every table
FORMULAS = ['=HYPERLINK("http://x","y")', "+1+2", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def _pdftext(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())


def _evil_catalogue(path: Path, changes: dict[str, dict[str, str]]) -> Path:
    """A copy of the real catalogue with the given fields of the given entries replaced."""
    import yaml

    from pipelines.domain import config

    doc = yaml.safe_load(Path(config.INDICATOR_CATALOGUE).read_text(encoding="utf-8"))
    ids = {e["id"] for e in doc["indicators"]}
    assert set(changes) <= ids, set(changes) - ids
    for e in doc["indicators"]:
        e.update(changes.get(e["id"], {}))
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _tamper(wh: Path) -> None:
    """Malicious free text in the places data text reaches the report and the downloads."""
    con = duckdb.connect(str(wh))
    try:
        con.execute(
            "UPDATE indicators SET note = ? WHERE area_code IN ('31', '00') AND breakdown = 'total' "
            "AND indicator_id = 'lonely_often_always'",
            ["出典: " + EVIL_NOTE],
        )
        con.execute(
            "UPDATE indicators SET note = ? WHERE area_code IN ('31', '00') AND indicator_id = 'consultations_per_10k'",
            ["出典: " + EVIL_PROG_NOTE],
        )
        con.execute(
            "INSERT INTO indicators SELECT * REPLACE (? AS indicator_id) FROM indicators "
            "WHERE indicator_id = 'no_participation'",
            [EVIL_ID],
        )
        # Spreadsheet formulas in text cells; a negative NUMBER that must stay a number.
        for i, f in enumerate(FORMULAS):
            con.execute(
                "UPDATE indicators SET note = ? WHERE year = ? AND area_code = '31' AND indicator_id = "
                "'no_reliable_person' AND breakdown = ?",
                [f, YEAR, ["total", "sex=1", "sex=2", "age=16-19", "age=20-29", "age=30-39"][i]],
            )
        con.execute(
            "UPDATE indicators SET value = -1.5, national_value = -2.25, suppressed = false "
            "WHERE year = ? AND area_code = '31' AND indicator_id = 'supporters_per_10k'",
            [YEAR],
        )
    finally:
        con.close()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A hand-made warehouse with malicious text, a catalogue with a malicious indicator name, one
    area's report (pandoc: HTML + PDF) and the site."""
    from pipelines.domain.catalogue import CATALOGUE_ENV
    from pipelines.outputs.reports import run_reports

    root = tmp_path_factory.mktemp("inj")
    wh = root / "warehouse.duckdb"
    build_fixture_warehouse(wh, years=(2023, YEAR))
    _tamper(wh)
    cat = _evil_catalogue(root / "indicators.yml", {EVIL_NAME_OF: {"name_ja": EVIL_ID}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CATALOGUE_ENV, str(cat))  # the notebook's kernel inherits it
        out = root / "site"
        res = run_reports(YEAR, wh, out, prefs=[PREF], renderer="pandoc")
        assert res.ok, res.summary()
        yield {
            "root": root,
            "wh": wh,
            "out": out,
            "html": out / "prefectures" / f"{SLUG}.html",
            "pdf": out / "prefectures" / f"{SLUG}.pdf",
        }


# --- 1. reports: Markdown / HTML / Typst ---------------------------------------------------------

NASTY = [
    EVIL_NOTE,
    EVIL_PROG_NOTE,
    EVIL_ID,
    "a|b",
    "1. not a list",
    "- not a list",
    "::: {.x}",
    "\\",
    "&amp; &lt;",
    "<!-- c -->",
    "= head",
    "x_y_z *a* **b**",
    "[a]{.cmp-worse}",
    "^sup^ ~sub~",
    "<https://example.org>",
]


def _pandoc(text: str, to: str) -> str:
    import pypandoc

    return pypandoc.convert_text(text, to, format="markdown", extra_args=["--wrap=none"])


@pytest.mark.parametrize("text", NASTY)
def test_md_escape_shows_text_literally_in_html_and_typst(text):
    from pipelines.outputs.reports import md_escape

    expected = " ".join(text.replace("|", "｜").split())
    html = _pandoc(md_escape(text), "html")
    # One paragraph, no element other than <p>, and the text itself after unescaping entities.
    import html as h
    import re

    assert re.findall(r"<(\w+)", html) == ["p"], html
    assert " ".join(h.unescape(re.sub(r"</?p>", "", html)).split()) == expected
    typ = _pandoc(md_escape(text), "typst")
    plain = _pandoc(md_escape(text), "plain")
    assert " ".join(plain.split()) == expected
    # No Typst code from data: every # is escaped, no raw block.
    assert re.search(r"(?<!\\)#", typ) is None, typ


def test_md_table_escapes_data_cells_keeps_our_markup():
    from pipelines.outputs.reports import MdText, fmt_comparison, md_table

    row = {"comparison": "worse", "suppressed": False, "value": 5.0, "national_value": 4.0}
    table = md_table(["<h>", "c"], [["<script>x</script>", fmt_comparison(row)]])
    assert isinstance(fmt_comparison(row), MdText)
    html = _pandoc(table, "html")
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html and "&lt;h&gt;" in html
    assert '<span class="cmp-worse">' in html  # our span survives


def test_report_html_escapes_data_text(rendered):
    html = rendered["html"].read_text(encoding="utf-8")
    for bad in (
        "<script>alert",
        'onerror="alert',
        '<img src="x"',
        "<b>RAWB",
        "<b>BOLDID",
        "<iframe",
        'href="javascript:',
        "INJECTED HEADING</h1>",
        'id="injected-heading"',
        "data-cites=",
        'class="math',
    ):
        assert bad not in html, bad
    # /etc/passwd was neither embedded (![pic](/etc/passwd) with --embed-resources) nor read.
    assert "root:x:0:0" not in html and "<embed" not in html
    for shown in (
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&lt;img src=x onerror=alert(2)&gt;",
        "`&lt;b&gt;RAWB&lt;/b&gt;`{=html}",
        "[click](javascript:alert(3))",
        "![pic](/etc/passwd)",
        "@evilcite $x^2$ *em*",
        "# INJECTED HEADING",
        "&lt;b&gt;BOLDID&lt;/b&gt;`#eval(&quot;1&quot;)`{=typst}",
    ):
        assert shown in html, shown


def test_report_pdf_shows_data_text_literally(rendered):
    text = "".join(_pdftext(rendered["pdf"]).split())  # line breaks fall anywhere: compare without spaces
    for shown in (
        "<script>alert(1)</script>",
        '`#read("/etc/passwd")`{=typst} #set page(fill: red) #import',
        "[click](javascript:alert(3)) ![pic](/etc/passwd) @evilcite $x^2$ *em* // c",
        "# INJECTED HEADING",
        '<b>BOLDID</b>`#eval("1")`{=typst}',
    ):
        assert "".join(shown.split()) in text, shown
    assert "root:x:0:0" not in text


def test_typst_source_from_data_has_no_code(rendered, tmp_path):
    """The Typst that pandoc writes carries the data text escaped: no #read/#import/#set from data,
    and compiling it (root = its own folder) reads no file outside."""
    import re

    from pipelines.outputs.reports import area_meta
    from pipelines.render.pandoc import render_typst

    executed = rendered["root"] / ".site.tsunagari-work" / "executed" / f"{SLUG}.ipynb"  # beside the site
    typ = render_typst(executed.resolve(), tmp_path, area_meta(PREF, YEAR, True)).read_text(encoding="utf-8")
    assert "/etc/passwd" in typ  # the text is there ...
    for code in ('#read("/etc/passwd")', '#import "/etc/passwd"', "#set page(fill: red)", '#eval("1")'):
        assert not re.search(r"(?<!\\)" + re.escape(code), typ), code  # ... but never as code


def test_lua_filter_neutralises_raw_output(tmp_path):
    """Second line of defence: a Markdown output that was NOT escaped (e.g. a future notebook cell)
    still cannot inject HTML/Typst, links, citations, or make pandoc embed a local file."""
    from pipelines.render.pandoc import render_html, render_pdf

    raw = EVIL_NOTE + "\n\n" + EVIL_PROG_NOTE
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "P", "language": "python"}},
        "cells": [
            {
                "cell_type": "code",
                "id": "a",
                "metadata": {},
                "execution_count": 1,
                "source": "md(x)",
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"text/markdown": raw, "text/plain": "<IPython.core.display.Markdown>"},
                    },
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"text/html": "<script>alert(5)</script>", "text/plain": "plain5"},
                    },
                ],
            }
        ],
    }
    src = tmp_path / "n.ipynb"
    src.write_text(json.dumps(nb), encoding="utf-8")
    meta = {"title": "t", "area_name": "鳥取県", "year": YEAR, "synthetic": False}
    html = render_html(src, tmp_path / "n.html", meta).read_text(encoding="utf-8")
    for bad in (
        "<script>",
        '<img src="x"',
        "<b>RAWB",
        "<iframe",
        'href="javascript:',
        "<embed",
        "root:x:0:0",
        "data-cites=",
    ):
        assert bad not in html, bad
    assert "plain5" in html  # the text/plain sibling instead of the raw text/html
    pdf = render_pdf(src, tmp_path / "n.pdf", meta)  # raises if #read("/etc/passwd") were compiled
    text = "".join(_pdftext(pdf).split())
    assert '#read("/etc/passwd")' in text and "root:x:0:0" not in text


def test_typst_meta_is_a_string_not_markup(tmp_path):
    """Template variables go inside Typst string literals: an area name with Typst code renders as text."""
    from pipelines.render.pandoc import _typst_escape

    assert _typst_escape('a"b\\c\n#d') == 'a\\"b\\\\c #d'
    tpl = (Path(__file__).resolve().parents[1] / "reports" / "report.typ").read_text(encoding="utf-8")
    assert "[*$area-name$*" not in tpl and '#let area-name = "$area-name$"' in tpl


# --- 1b. site and quality page -------------------------------------------------------------------


def test_site_escapes_catalogue_and_data_text(rendered, monkeypatch):
    import pipelines.outputs.site as site
    from pipelines.domain.catalogue import CATALOGUE_ENV, load_catalogue

    first = load_catalogue()[0].id
    evil = _evil_catalogue(
        rendered["root"] / "indicators-site.yml",
        {
            first: {
                "name_ja": "<script>alert('name')</script>",
                "description_ja": '<img src=x onerror=alert("d")>',
                "numerator": "</script><script>alert(9)</script>",
            }
        },
    )
    monkeypatch.setenv(CATALOGUE_ENV, str(evil))
    out = rendered["root"] / "site2"
    site.build_site(YEAR, rendered["wh"], out)
    for page in ("index.html", "compare.html", "methodology.html", "downloads/index.html"):
        text = (out / page).read_text(encoding="utf-8")
        assert "<script>alert" not in text and "<img src=x" not in text, page
    meth = (out / "methodology.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;" in meth
    assert "&lt;img src=x onerror=alert(&#34;d&#34;)&gt;" in meth
    index = (out / "index.html").read_text(encoding="utf-8")
    # the JSON for the map cannot close its <script> element
    data = index.split('id="map-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and json.loads(data)["indicators"]
    compare = (out / "compare.html").read_text(encoding="utf-8")
    data = compare.split('id="compare-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and json.loads(data)["indicators"][0]["name"] == "<script>alert('name')</script>"


def test_quality_page_escapes_file_names_and_survey_ids(tmp_path):
    """A file name with HTML in it is shown escaped on the quality page; a survey_id column value
    that is not a survey id (HTML, Typst, Markdown, a path) is refused by ingest."""
    from pipelines.ingest.sample import write_sample
    from pipelines.ingest.stage import ingest_files
    from pipelines.validate.stage import validate_warehouse

    src = tmp_path / "src"
    write_sample(src, rows=3000)
    evil_name = "<img src=x onerror=alert(1)>.csv"
    shutil.copy(src / "national-2024.csv", tmp_path / evil_name)
    wh = tmp_path / "wh.duckdb"
    ingest_files([tmp_path / evil_name], wh)
    report = validate_warehouse(wh)
    report.write(tmp_path / "quality")
    page = (tmp_path / "quality" / "index.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;.csv" in page and "<img src=x" not in page

    rows = list(csv.reader((src / "national-2024.csv").open(encoding="utf-8-sig", newline="")))[:50]
    for bad in [
        "<script>alert(1)</script>",
        '#read("/etc/passwd")',
        "#set page(fill: red)",
        "[x](javascript:alert(1))",
        "`<b>`{=html}",
        "../../x",
    ]:
        f = tmp_path / "bad" / "survey.csv"
        f.parent.mkdir(exist_ok=True)
        with f.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows([rows[0]] + [[bad if c == "national-2024" else c for c in r] for r in rows[1:]])
        before = sorted(p.name for p in tmp_path.parent.iterdir())
        with pytest.raises(DataError) as ei:
            ingest_files([f], tmp_path / "wh-bad.duckdb")
        assert "column 'survey_id'" in str(ei.value) and repr(bad) in str(ei.value)
        assert sorted(p.name for p in tmp_path.parent.iterdir()) == before  # nothing created outside


# --- 2. CSV / XLSX formula injection -------------------------------------------------------------


def _xl(text: str) -> str:
    return text.replace("\r", "\n")  # XLSX (XML) stores CR as LF


def test_all_area_downloads_neutralise_formulas_keep_numbers(rendered, tmp_path):
    from openpyxl import load_workbook

    from pipelines.outputs.downloads import write_indicator_downloads

    con = duckdb.connect(str(rendered["wh"]), read_only=True)
    try:
        for area in (None, "31"):
            csv_path, xlsx_path = write_indicator_downloads(con, YEAR, tmp_path / str(area), area_code=area)
            with csv_path.open(encoding="utf-8-sig", newline="") as f:
                next(f)  # line 1: the Japanese headers; line 2: the column codes
                rows = list(csv.DictReader(f))
            notes = {r["note"] for r in rows if r["area_code"] == "31" and r["indicator_id"] == "no_reliable_person"}
            for f in FORMULAS:
                assert "'" + f in notes, (area, f)
                assert f not in notes
            neg = [r for r in rows if r["area_code"] == "31" and r["indicator_id"] == "supporters_per_10k"]
            # a rate per 10,000 as the reports show it (0.1; -2.25 rounds half to even)
            assert neg and neg[0]["value"] == "-1.5" and neg[0]["national_value"] == "-2.2"
            ws = load_workbook(xlsx_path).worksheets[0]
            header = [c.value for c in ws[2]]
            vi, ni = header.index("value"), header.index("note")
            assert ws.cell(1, vi + 1).value == "値" and ws.cell(1, ni + 1).value == "注記"
            cells = list(ws.iter_rows(min_row=3))
            texts = {r[ni].value for r in cells}
            assert all(_xl("'" + f) in texts for f in FORMULAS)
            assert all(c.data_type != "f" for r in cells for c in r)  # no formula cell anywhere
            nums = [r[vi] for r in cells if r[vi].value == -1.5]
            assert nums and nums[0].data_type == "n"
    finally:
        con.close()


def test_prefecture_xlsx_neutralises_formulas_keep_numbers(rendered):
    from openpyxl import load_workbook

    out = rendered["root"] / "site3"
    from pipelines.outputs.site import build_site

    build_site(YEAR, rendered["wh"], out)
    ws = load_workbook(out / "downloads" / f"{SLUG}-{YEAR}.xlsx").worksheets[0]
    header = [c.value for c in ws[2]]
    vi, ni = header.index("value"), header.index("note")
    cells = list(ws.iter_rows(min_row=3))
    texts = {r[ni].value for r in cells}
    assert all(_xl("'" + f) in texts for f in FORMULAS) and not any(_xl(f) in texts for f in FORMULAS)
    assert all(c.data_type != "f" for r in cells for c in r)
    nums = [r[vi] for r in cells if r[vi].value == -1.5]
    assert nums and nums[0].data_type == "n"


# --- 3. paths -----------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["reports", "--year", "2024", "--pref", "../../etc"],
            "error: --pref: '../../etc' is not a prefecture code (1–47, JIS X 0401) / 都道府県コードではありません",
        ),
        (
            ["reports", "--year", "2024/../../x", "--pref", "31"],
            "error: --year: '2024/../../x' is not a survey year (e.g. 2024) / 調査年ではありません",
        ),
        (
            ["build", "--pref", "../../etc"],
            "error: --pref: '../../etc' is not a prefecture code (1–47, JIS X 0401) / 都道府県コードではありません",
        ),
        (
            ["build", "--year", "2024/../../x"],
            "error: --year: '2024/../../x' is not a survey year (e.g. 2024) / 調査年ではありません",
        ),
        (
            ["indicators", "--year", "2024; DROP TABLE indicators"],
            "error: --year: '2024; DROP TABLE indicators' is not a survey year (e.g. 2024) / 調査年ではありません",
        ),
    ],
)
def test_cli_refuses_traversal_in_parameters(tmp_path, args, message):
    out = tmp_path / "out"
    r = _cli(*args, "--out", str(out), "--warehouse", str(tmp_path / "wh.duckdb"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == message
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere


def test_api_refuses_traversal(rendered, tmp_path):
    from pipelines.outputs.downloads import write_indicator_downloads
    from pipelines.outputs.reports import load_report_data, run_reports
    from pipelines.outputs.site import build_site, write_pref_xlsx

    with pytest.raises(UsageError, match=r"^--year: '2024/\.\./\.\./x' is not a survey year"):
        run_reports("2024/../../x", rendered["wh"], tmp_path / "o", prefs=[31], renderer="pandoc")
    with pytest.raises(UsageError, match=r"^--pref: '\.\./\.\./etc' is not a prefecture code"):
        run_reports(YEAR, rendered["wh"], tmp_path / "o", prefs=["../../etc"], renderer="pandoc")
    with pytest.raises(UsageError, match=r"^year: '\.\./x' is not a survey year"):
        build_site("../x", rendered["wh"], tmp_path / "o")
    with pytest.raises(UsageError, match=r"^year: '2024/\.\.' is not a survey year"):
        write_pref_xlsx(None, 31, "鳥取県", "2024/..", tmp_path / "o", {}, True)
    with pytest.raises(UsageError, match=r"^pref_code: '\.\./\.\./x' is not a prefecture code"):
        write_pref_xlsx(None, "../../x", "鳥取県", YEAR, tmp_path / "o", {}, True)
    with pytest.raises(UsageError, match=r"^year: '2024; DROP TABLE indicators' is not a survey year"):
        load_report_data(rendered["wh"], "2024; DROP TABLE indicators", 31)
    con = duckdb.connect(str(rendered["wh"]), read_only=True)
    try:
        with pytest.raises(UsageError, match=r"^area_code: '\.\./\.\./x' is not an area code"):
            write_indicator_downloads(con, YEAR, tmp_path / "o", area_code="../../x")
        with pytest.raises(UsageError, match=r"^year: '\.\./2024' is not a survey year"):
            write_indicator_downloads(con, "../2024", tmp_path / "o")
    finally:
        con.close()
    assert not (tmp_path / "o").exists()


# --- 4. SQL -------------------------------------------------------------------------------------


def test_notebook_year_parameter_cannot_inject_sql(rendered, tmp_path):
    """The report notebook run with year = '2024; DROP TABLE indicators' fails before any query;
    the warehouse is opened read-only and keeps its tables and rows."""
    from papermill.exceptions import PapermillExecutionError

    from pipelines.domain import config
    from pipelines.engine.notebook import execute_notebook

    wh = tmp_path / "wh.duckdb"
    shutil.copy(rendered["wh"], wh)
    con = duckdb.connect(str(wh), read_only=True)
    before = con.execute("SELECT count(*) FROM indicators").fetchone()[0]
    con.close()
    with pytest.raises(PapermillExecutionError) as ei:
        execute_notebook(
            config.REPORTS_DIR / "report.ipynb",
            tmp_path / "x.ipynb",
            {"year": "2024; DROP TABLE indicators", "pref_code": 31, "warehouse": str(wh)},
            cwd=tmp_path,
        )
    assert ei.value.ename in ("ValueError", "UsageError")
    con = duckdb.connect(str(wh), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM indicators").fetchone()[0] == before
    finally:
        con.close()


def test_sql_in_package_binds_values():
    """Every SQL text built with an f-string or .format() in the package interpolates only our own
    constants (table names, column lists, catalogue expressions, CONTEXT_SQL); values go through
    bound parameters. A new interpolation must be added here after review."""
    import re

    pkg = Path(__file__).resolve().parents[1] / "pipelines"
    allowed = {
        # SQL texts and column expressions of the module itself (built from constant column lists)
        # row digests: the declared columns, and the stages' constant conditions and queries
        "engine/keys.py": ["{by or repr('all')}", "{read.row_text()}", "{frm}", "{where}"],
        "outputs/reports.py": ["{OWN_SURVEY_MARK}"],
        "ingest/stage.py": [
            "{schema.AGE_BAND_SQL}",
            "{schema.UK_AGE_BAND_SQL}",
            "{table}",
            "{name}",
            "{col}",
        ],  # constant table names and schema.SURVEY_DESIGN_COLUMNS
        "validate/stage.py": ["{table}", "{cols}", "{order}"],
        "outputs/report_data.py": ["{CONTEXT_COLUMNS_SQL}", "{OWN_SURVEY_MARK}"],  # CONTEXT_SQL (declared columns)
        "disclosure/check.py": ["{select}"],  # a constant column list (missing ones as NULL); year bound
        "io/warehouse.py": ["{META_TABLE}"],  # the metadata table's name (a constant); values are bound (?)
        "indicators/stage.py": None,  # catalogue expressions and constants; year is bound ($year / ?)
    }
    found = []
    for path in sorted(pkg.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(
            r'(execute\(\s*f["\']|f"""\s*\n?\s*(SELECT|WITH|INSERT|DELETE|UPDATE)|'
            r'f"(SELECT|DELETE|INSERT|UPDATE|CREATE|DROP)\b)',
            text,
        ):
            line = text[m.start() : text.find("\n", m.end()) if text.find("\n", m.end()) > 0 else None]
            found.append((path.relative_to(pkg).as_posix(), line))
    for name, line in found:
        assert name in allowed, (name, line)
        if allowed[name] is None:
            continue
        for ph in re.findall(r"\{[^{}]*\}", line):
            assert ph in allowed[name], (name, ph, line)
    # the year reaches the report's SQL only as a bound parameter (report_data.load_report_data)
    report_data = (pkg / "outputs" / "report_data.py").read_text(encoding="utf-8")
    assert 'FROM indicators WHERE year <= ? ORDER BY year, area_code", [year]' in report_data
    assert 'FROM distributions WHERE year <= ?", [year]' in report_data
