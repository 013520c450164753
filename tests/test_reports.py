"""Reports stage end to end: papermill executes reports/report.ipynb, the built-in renderer writes
HTML + PDF; the outputs are parsed and checked against the indicators table of the warehouse."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from pipelines.domain import conventions
from pipelines.domain.catalogue import PILLARS
from pipelines.outputs.reports import executed_dir, report_notebook, run_reports

YEAR = 2024

# Sections: the 重点計画's 基本方針 that the catalogue's `section` field fills (every one has an
# indicator in the shipped catalogue), between the fixed opening and closing sections.
SECTIONS = ["要点", "主な指標", "推移"] + list(PILLARS.values()) + ["方法と注意事項"]
SUBSECTIONS = [
    "回答分布：孤独感が「しばしばある・常にある」人の割合（イングランドとの比較）",
    "年齢別（イングランドと同じ年齢区分）：孤独感が「しばしばある・常にある」人の割合",
    "回答分布：UCLA孤独感尺度（3項目）10～12点の人の割合",
    "性別・年齢別：孤独感が「しばしばある・常にある」人の割合",
    "施策データ",
]
BANNER = "合成データ"
# Charts per report: spine (strip in the national report), trend; 基本方針(1) estimates, sex/age,
# programme; (2) estimates, programme; (3) estimates, direct-question distribution, UK age, sex/age,
# UCLA distribution.
N_CHARTS = 12


class Page(HTMLParser):
    """Headings, images, tables (cell texts) and the html lang of a rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.lang = None
        self.headings: list[str] = []
        self.images: list[dict] = []
        self.tables: list[list[list[str]]] = []
        self.links: list[str] = []
        self.texts: list[str] = []
        self._h: list[str] | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        elif tag in ("style", "script"):
            self._skip += 1
        elif re.fullmatch(r"h[1-4]", tag):
            self._h = []
        elif tag == "img":
            self.images.append(a)
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        if tag in ("a", "link", "script", "img", "iframe", "source"):
            for k in ("href", "src"):
                if a.get(k):
                    self.links.append(a[k])

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip -= 1
        elif re.fullmatch(r"h[1-4]", tag) and self._h is not None:
            self.headings.append(" ".join("".join(self._h).split()))
            self._h = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._skip:
            return
        self.texts.append(data)
        if self._h is not None:
            self._h.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> tuple[Page, str]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return page, text


def table_with_header(page: Page, first: str, contains: str) -> list[list[str]]:
    for t in page.tables:
        if t and t[0] and t[0][0] == first and any(contains in h for h in t[0]):
            return t
    raise AssertionError(f"no table with header {first!r}/{contains!r}")


def shown(row) -> str:
    """What the report must show for an indicators row (the same rule the report states)."""
    if row["suppressed"]:
        return "x"
    text = f"{row['value']:.1f}"
    return text + "※" if 30 <= row["n_unweighted"] < 100 else text


@pytest.fixture(scope="module")
def built(built_reports):
    result, out, wh = built_reports  # conftest.py: one build shared with test_pdf_structure.py
    con = duckdb.connect(str(wh), read_only=True)
    ind = con.execute("SELECT * FROM indicators WHERE year = ?", [YEAR]).df()
    con.close()
    return result, out, ind, wh


@pytest.mark.slow
def test_reports_built_for_two_prefectures_and_national(built):
    result, out, _, _ = built
    assert result.ok, result.summary()
    assert result.built == ["13-tokyo", "31-tottori", "national"]
    for rel in (
        "prefectures/13-tokyo.html",
        "prefectures/13-tokyo.pdf",
        "prefectures/31-tottori.html",
        "prefectures/31-tottori.pdf",
        "national.html",
        "national.pdf",
    ):
        assert (out / rel).stat().st_size > 10_000, rel
    assert (executed_dir(out) / "13-tokyo.ipynb").exists()  # beside the output folder, not in it
    assert executed_dir(out) == out.parent / f".{out.name}.tsunagari-work" / "executed"
    assert not [p for p in out.rglob("*") if p.suffix == ".ipynb" or p.name.startswith(".")]
    for a in result.areas:
        assert a.execute_seconds > 0 and a.render_seconds > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "rel,name",
    [("prefectures/13-tokyo.html", "東京都"), ("prefectures/31-tottori.html", "鳥取県"), ("national.html", "全国")],
)
def test_html_sections_charts_and_self_contained(built, rel, name):
    _, out, _, _ = built
    page, text = parse(out / rel)
    assert page.lang == "ja"
    assert page.headings[0].startswith("目次") or name in " ".join(page.headings)
    assert any(h.startswith(f"{name} 孤独・孤立の状況") for h in page.headings)
    for h in SECTIONS + SUBSECTIONS:
        assert h in page.headings, h
    charts = [i for i in page.images if i.get("src", "").startswith("data:image/png;base64,")]
    assert len(charts) == len(page.images) == N_CHARTS
    for img in charts:
        assert len(img.get("alt", "").strip()) > 10, img.get("alt")
    assert not [u for u in page.links if re.match(r"(https?:)?//", u)], "external URL in the HTML"
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "mathjax" not in text.lower()
    assert text.count("synthetic-banner") >= 2 and BANNER in text and "SYNTHETIC DATA" in text
    assert "@font-face" in text  # Japanese font embedded (no tofu on machines without one)


@pytest.mark.slow
def test_markdown_cells_of_one_kind_of_report(built):
    """The notebook's Markdown cells tagged national or prefecture appear in that kind of report only."""
    import json

    nb = json.loads(report_notebook().read_text(encoding="utf-8"))
    tagged = {
        kind: [
            re.sub(r"\s+", "", "".join(c["source"]).lstrip("#"))
            for c in nb["cells"]
            if c["cell_type"] == "markdown" and kind in c["metadata"].get("tags", [])
        ]
        for kind in ("national", "prefecture")
    }
    assert tagged["national"] and tagged["prefecture"]
    _, out, _, _ = built
    for rel, shown, hidden in (
        ("national.html", "national", "prefecture"),
        ("prefectures/13-tokyo.html", "prefecture", "national"),
    ):
        page, _ = parse(out / rel)
        text = re.sub(r"\s+", "", "".join(page.texts))
        assert all(t in text for t in tagged[shown]), rel
        assert not any(t in text for t in tagged[hidden]), rel


@pytest.mark.slow
@pytest.mark.parametrize("code,slug,name", [("13", "13-tokyo", "東京都"), ("31", "31-tottori", "鳥取県")])
def test_headline_figures_match_indicators_table(built, code, slug, name):
    _, out, ind, _ = built
    page, _ = parse(out / "prefectures" / f"{slug}.html")
    table = table_with_header(page, "指標", "全国との比較")
    body = {r[0]: r for r in table[1:]}
    total = ind[(ind.area_code == code) & (ind.breakdown == "total") & ind.n_unweighted.notna()]
    assert len(total) >= 9
    from pipelines.outputs.reports import catalogue, indicator_name

    cat = catalogue()
    for _, row in total.iterrows():
        cells = body[indicator_name(cat, row.indicator_id)]
        # the leading estimate (issue #24) with its method; the comparison is the direct estimate's
        method = row.estimate_method if isinstance(row.estimate_method, str) else "direct"  # a table without them
        assert cells[4].startswith(conventions.estimate_method_label(method, row.lead_years)), cells
        assert cells[5] == f"{row.national_value:.1f}"
        if method == "direct":
            assert cells[1] == shown(row), (row.indicator_id, cells)
            assert cells[2] == f"{row.lower_ci95:.1f}～{row.upper_ci95:.1f}"
            assert cells[3] == f"{int(row.n_unweighted):,}"
            style = conventions.comparison(row.comparison)
            assert f"{style.symbol} {style.label}" in cells[6]
        else:
            assert cells[1] == f"{row.lead_value:.1f}", (row.indicator_id, cells)
            assert cells[2] == f"{row.lead_lower_ci95:.1f}～{row.lead_upper_ci95:.1f}"
            # the base, the comparison and the change are the direct estimate's, its value beside the method
            assert cells[3] == f"{int(row.n_unweighted):,}"
            assert f"（直接推計 {shown(row)}）" in cells[4], cells
            style = conventions.comparison(row.comparison)
            assert row.comparison == "not_compared" or f"{style.symbol} {style.label}" in cells[6]
    # the lede quotes the headline value (the leading estimate, and the direct one beside it)
    head = total[total.indicator_id == "lonely_often_always"].iloc[0]
    text = (out / "prefectures" / f"{slug}.html").read_text(encoding="utf-8")
    assert f"{head.value:.1f}%" in text
    if head.estimate_method in ("pooled", "model"):
        assert f"{head.lead_value:.1f}%" in text


@pytest.mark.slow
def test_suppressed_values_are_never_shown(built):
    _, out, ind, _ = built
    page, _ = parse(out / "prefectures" / "31-tottori.html")
    rows = ind[
        (ind.area_code == "31") & (ind.indicator_id == "lonely_often_always") & ind.breakdown.isin(["sex=1", "sex=2"])
    ]
    assert rows.suppressed.all() and rows.value.notna().all()  # the fixture keeps the hidden value
    table = next(t for t in page.tables if t and t[0][0] == "区分" and any(r[0] == "男性" for r in t))
    assert "鳥取県（%）" in table[0]
    by_label = {r[0]: r for r in table[1:]}
    for label, bd in (("男性", "sex=1"), ("女性", "sex=2")):
        cells = by_label[label]
        hidden = float(rows[rows.breakdown == bd].value.iloc[0])
        assert cells[1] == "x" and cells[2] == "x"
        assert f"{hidden:.1f}" not in " ".join(cells[1:3])
    assert "30人未満のため、または他の値からの差し引きで算出されるのを防ぐため（二次秘匿）数値を表示していません" in (
        out / "prefectures" / "31-tottori.html"
    ).read_text("utf-8")


@pytest.mark.slow
def test_national_report_shows_prefecture_distribution_in_jis_order(built):
    _, out, ind, wh = built
    page, _ = parse(out / "national.html")
    assert "都道府県別の分布" in page.headings
    table = table_with_header(page, "都道府県", "全国との比較")
    codes = [r[0].split()[0] for r in table[1:]]
    assert codes == [f"{i:02d}" for i in range(1, 48)]
    head = ind[(ind.area_code == "00") & (ind.indicator_id == "lonely_often_always") & (ind.breakdown == "total")]
    nat = table_with_header(page, "指標", "前回")
    assert nat[1][1] == f"{head.value.iloc[0]:.1f}"
    assert any("イングランド（CLS 2021/22）" in h for t in page.tables for h in t[0])
    # 前回（%） is the previous round's value (it used to repeat this round's)
    con = duckdb.connect(str(wh), read_only=True)
    prev = con.execute(
        "SELECT value FROM indicators WHERE year = 2023 AND area_code = '00' AND breakdown = 'total' "
        "AND indicator_id = 'lonely_often_always'"
    ).fetchone()[0]
    con.close()
    assert nat[0][4] == "前回 2023年（%）" and nat[1][4] == f"{prev:.1f}"


def _pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="poppler-utils not installed")
@pytest.mark.parametrize("rel,name", [("prefectures/13-tokyo.pdf", "東京都"), ("national.pdf", "全国")])
def test_pdf_a4_embedded_japanese_font_headings_banner(built, rel, name):
    _, out, _, _ = built
    pdf = out / rel
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    size = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info)
    assert size and round(float(size[1])) == 595 and round(float(size[2])) == 842
    pages = int(re.search(r"Pages:\s+(\d+)", info)[1])
    assert pages >= 3
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    jp = [line for line in fonts.splitlines() if "IPAexGothic" in line or "NotoSansCJK" in line]
    assert jp, fonts
    assert all(line.split()[-5] == "yes" for line in jp), fonts  # emb column
    text = _pdf_text(pdf)
    flat = re.sub(r"\s+", "", text)
    for h in SECTIONS:  # a long 基本方針 heading wraps, and the watermark's text can fall between its lines
        assert re.sub(r"\s+", "", h)[:24] in flat, h
    assert name in text
    # banner on every page (header), and page numbers "n / N"
    per_page = text.split("\f")
    assert sum(BANNER in p for p in per_page) >= pages
    numbers = re.findall(r"(\d+)\s*/\s*" + str(pages) + r"\s*$", text, flags=re.M)
    assert [int(n) for n in numbers] == list(range(1, pages + 1))


def test_typst_font_warning_fails_the_render(tmp_path, monkeypatch, built):
    from pipelines.render import RenderError
    from pipelines.render import pandoc as rp

    _, out, _, _ = built
    real = rp.pdf_font()
    monkeypatch.setattr(rp, "pdf_font", lambda: ("No Such Font JP", real[1]))
    with pytest.raises(RenderError, match=r"x\.pdf: Typst font warning"):
        rp.render_pdf(
            executed_dir(out) / "13-tokyo.ipynb",
            tmp_path / "x.pdf",
            {"area_name": "東京都", "year": YEAR, "title": "t", "synthetic": True},
        )
    assert not (tmp_path / "x.pdf").exists()


def test_failure_of_one_area_does_not_stop_the_others(tmp_path, built, monkeypatch):
    """A forked notebook that raises for Tottori: its area fails with the error, Hokkaido is
    executed and rendered (the one path that runs an area: reports.run_areas)."""
    import json

    from pipelines.domain import config

    _, _, _, wh = built
    fork = tmp_path / "fork"
    shutil.copytree(config.REPORTS_DIR, fork)
    nb = json.loads((fork / "report.ipynb").read_text(encoding="utf-8"))
    nb["cells"].append(
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["if int(pref_code) == 31:\n", "    raise RuntimeError('boom')\n"],
        }
    )
    (fork / "report.ipynb").write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("TSUNAGARI_REPORTS_DIR", str(fork))
    result = run_reports(YEAR, wh, tmp_path / "o", prefs=[31, 1], renderer="pandoc", jobs=2)
    assert not result.ok and result.failed == ["31-tottori"] and result.built == ["01-hokkaido"]
    assert "boom" in result.areas[0].error
    assert (tmp_path / "o" / "prefectures" / "01-hokkaido.pdf").exists()
    assert not (tmp_path / "o" / "prefectures" / "31-tottori.html").exists()


def test_cli_refuses_invalid_prefecture_code(tmp_path):
    wh = tmp_path / "w.duckdb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "reports",
            "--year",
            "2024",
            "--pref",
            "48",
            "--warehouse",
            str(wh),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "--pref: '48' is not a prefecture code (1–47, JIS X 0401)" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_invalid_prefecture_code_refused_by_run_reports(tmp_path):
    from pipelines.domain.errors import UsageError

    with pytest.raises(UsageError, match="'99' is not a prefecture code"):
        run_reports(YEAR, tmp_path / "w.duckdb", tmp_path, prefs=[13, 99])


@pytest.mark.slow
def test_cli_reports_with_relative_out_dir(tmp_path, built):
    """`tsunagari reports` from the project-like cwd with a relative --out (pandoc runs in a temp dir)."""
    _, _, _, wh = built
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "reports",
            "--year",
            str(YEAR),
            "--pref",
            "31",
            "--warehouse",
            str(wh),
            "--out",
            "site",
            "--renderer",
            "pandoc",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = tmp_path / "site" / "prefectures" / "31-tottori.html"
    assert html.exists() and (tmp_path / "site" / "prefectures" / "31-tottori.pdf").exists()
    assert "鳥取県" in html.read_text(encoding="utf-8")
    assert "31-tottori: ok in" in proc.stderr  # per-area timings are logged


class TestSparseWarehouse:
    """A report on a warehouse with little to show (tests.fixtures_reports.build_sparse_warehouse:
    one round, every prefecture cell suppressed, no distributions, no programme values) is still
    executed by papermill and rendered; each section says in Japanese what it cannot show."""

    @pytest.fixture(scope="class")
    def sparse(self, tmp_path_factory):
        from tests.fixtures_reports import build_sparse_warehouse

        root = tmp_path_factory.mktemp("sparse")
        wh = build_sparse_warehouse(root / "warehouse.duckdb")
        return run_reports(YEAR, wh, root / "site", prefs=[13, 0], renderer="pandoc"), root / "site"

    @pytest.mark.slow
    def test_every_area_is_built(self, sparse):
        result, out = sparse
        assert result.ok, result.summary()
        assert result.built == ["13-tokyo", "national"]
        assert (out / "prefectures" / "13-tokyo.pdf").stat().st_size > 10_000

    @pytest.mark.slow
    @pytest.mark.parametrize("rel", ["prefectures/13-tokyo.html", "national.html"])
    def test_sections_say_what_is_missing(self, sparse, rel):
        _, out = sparse
        page, text = parse(out / rel)
        assert "2024年のみのデータのため、推移は表示できません。" in text
        assert "2024年度の施策データがありません" in text
        assert "2024年の回答分布のデータがありません。" in text
        for heading in SECTIONS:
            assert heading in text, heading
        if rel.startswith("prefectures"):
            # every prefecture cell is suppressed: the charts of the area say so instead of drawing
            assert charts_no_data() in text
            assert "x" in text

    @pytest.mark.slow
    def test_no_suppressed_value_is_shown(self, sparse):
        """The prefecture rows keep their value in the warehouse; the headline table shows x for
        each survey indicator, ― for the programme metrics, and the national value beside them."""
        _, out = sparse
        page, _ = parse(out / "prefectures" / "13-tokyo.html")
        table = table_with_header(page, "指標", "全国との比較")
        assert len(table) > 9
        assert {r[1] for r in table[1:]} == {"x"}
        assert all(re.fullmatch(r"\d+\.\d", r[5]) for r in table[1:]), table  # after 推計方法


def charts_no_data() -> str:
    from pipelines.outputs.charts import NO_DATA

    return NO_DATA


@pytest.mark.slow
@pytest.mark.parametrize("rel", ["prefectures/13-tokyo.html", "prefectures/31-tottori.html", "national.html"])
def test_every_chart_links_its_data_file_beside_the_report(built, rel):
    """Issue #23: a link under each chart to a CSV (UTF-8 with BOM, Japanese headers) of the rows
    drawn, published beside the report; the files pass the disclosure check and the allow-list."""
    import pandas as pd

    from pipelines.disclosure.check import check_files, make_context
    from pipelines.engine.publish import scan_site

    _, out, _, wh = built
    page, text = parse(out / rel)
    links = [u for u in page.links if u.endswith(".csv") and "-data/" in u]
    assert len(links) == N_CHARTS == len(set(links))
    folder = (out / rel).with_name((out / rel).stem + "-data")
    assert sorted(folder.glob("*.csv")) == sorted((out / rel).parent / u for u in links)  # each link resolves
    for u in links:
        raw = ((out / rel).parent / u).read_bytes()
        assert raw.startswith("\ufeff".encode("utf-8"))
        table = pd.read_csv((out / rel).parent / u, encoding="utf-8-sig")
        assert len(table) > 0 and all(re.search(r"[ぁ-んァ-ン一-龥]", h) for h in table.columns)
    rels = [f.relative_to(out).as_posix() for f in folder.glob("*.csv")]
    assert check_files(out, rels, make_context(wh, out, year=YEAR)) == []
    assert not [f for f in scan_site(out) if "-data/" in f]


@pytest.mark.slow
def test_disclosure_check_finds_a_suppressed_value_in_a_chart_data_file(built, tmp_path):
    import pandas as pd

    from pipelines.disclosure.check import check_files, make_context

    _, out, _, wh = built
    src = out / "prefectures" / "31-tottori-data" / "fig-breakdown-lonely_often_always.csv"
    table = pd.read_csv(src, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    # a direct value for a suppressed cell, as a mistaken chart would have drawn it
    table.loc[0, "非表示 (suppressed)"] = "True"
    table.loc[0, "推計方法 (estimate_method)"] = "direct"
    bad = tmp_path / "prefectures" / "31-tottori-data" / src.name
    bad.parent.mkdir(parents=True)
    table.to_csv(bad, index=False, encoding="utf-8-sig")
    findings = check_files(tmp_path, [bad.relative_to(tmp_path).as_posix()], make_context(wh, year=YEAR))
    assert any("suppressed" in f.rule for f in findings), findings
