"""The published site (issue 6): index with tile map and table, methodology, downloads, links."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest
from fixtures_site import FORMULA_NOTE, build_site_warehouse, catalogue, write_placeholder_outputs
from openpyxl import load_workbook

from pipelines.domain import config, conventions, schema
from pipelines.domain.errors import DataError
from pipelines.domain.reference import pref_slug, prefectures
from pipelines.io.xlsx import neutralise
from pipelines.outputs.site import build_site, short_name

YEAR = 2024
NAV_TEXTS = ["トップ", "全国", "比較", "方法", "データ品質", "ダウンロード"]


class Page(HTMLParser):
    """Collects elements with their attributes and text, enough for structural checks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.scripts: dict[str, str] = {}
        self._script_id: str | None = None
        self.html_lang: str | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "html":
            self.html_lang = a.get("lang")
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "script":
            self._script_id = a.get("id", "")

    def handle_endtag(self, tag):
        if tag == "script":
            self._script_id = None

    def handle_data(self, data):
        if self._script_id is not None:
            self.scripts[self._script_id] = self.scripts.get(self._script_id, "") + data
        else:
            self.text.append(data)

    @property
    def body_text(self) -> str:
        return "".join(self.text)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        out = []
        for t, a in self.elements:
            if t != tag:
                continue
            if all((k == "class_" and v in a.get("class", "").split()) or a.get(k) == v for k, v in attrs.items()):
                out.append(a)
        return out


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    wh = build_site_warehouse(root / "wh.duckdb", year=YEAR, synthetic=True)
    out = root / "_site"
    write_placeholder_outputs(out, YEAR)
    build_site(YEAR, wh, out)  # synthetic=None: read from the warehouse files table
    return out


def site_pages(out: Path) -> list[Path]:
    return [
        out / "index.html",
        out / "methodology.html",
        out / "downloads" / "index.html",
        out / "quality" / "index.html",
    ]


def test_index_lists_47_prefectures_in_jis_order_with_links(site: Path):
    page = parse(site / "index.html")
    rows = [a["data-code"] for a in page.find("tr") if "data-code" in a]
    assert rows == [f"{c:02d}" for c in range(1, 48)]
    hrefs = set(page.links)
    for code in range(1, 48):
        slug = pref_slug(code)
        for target in (f"prefectures/{slug}.html", f"prefectures/{slug}.pdf", f"downloads/{slug}-{YEAR}.xlsx"):
            assert target in hrefs, target
            assert (site / target).is_file()
    assert "national.html" in hrefs and "national.pdf" in hrefs
    text = page.body_text
    for name in prefectures().name_ja:
        assert name in text


def test_every_local_link_resolves_and_no_network_asset(site: Path):
    checked = 0
    for path in site_pages(site):
        page = parse(path)
        for link in page.links:
            assert not re.match(r"^(https?:)?//", link, re.I), f"{path.name} loads a network asset: {link}"
            parts = urlsplit(link)
            if parts.scheme in ("mailto", "data"):
                continue
            assert not parts.scheme, link
            if not parts.path:  # same-page anchor
                assert parts.fragment in page.ids, f"{path.name}: missing anchor #{parts.fragment}"
                continue
            target = (path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{path.relative_to(site)} -> {link} does not exist"
            checked += 1
        raw = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", raw, re.I)
        for url in re.findall(r"""url\(["']?([^"')]+)""", raw):  # CSS url(): the embedded font
            assert not re.match(r"^(https?:)?//", url), url
            assert url.startswith("data:") or (path.parent / url).resolve().is_file(), url[:80]
        assert "@import" not in raw and "url(http" not in raw
    assert checked > 47 * 3


def test_every_page_is_japanese_with_the_shared_navigation(site: Path):
    # quality/index.html is written by the validation stage; the site adds the shared navigation.
    for path in site_pages(site) + [site / "quality" / "index.html"]:
        page = parse(path)
        assert page.html_lang == "ja", path
        nav = re.search(r'<nav aria-label="サイト内ナビゲーション">(.*?)</nav>', path.read_text(encoding="utf-8"), re.S)
        assert nav, path
        assert re.findall(r">([^<>]+)</(?:a|span)>", nav.group(1)) == NAV_TEXTS
        assert path.read_text(encoding="utf-8").count("サイト内ナビゲーション") == 1


def test_tile_map_has_47_tiles_at_the_documented_positions(site: Path):
    page = parse(site / "index.html")
    tiles = {a["data-code"]: a for a in page.find("li", class_="tile")}
    assert len(tiles) == 47
    positions = set()
    for r in prefectures().itertuples():
        t = tiles[f"{int(r.pref_code):02d}"]
        x, y = int(t["data-x"]), int(t["data-y"])
        assert (x, y) == (int(r.tile_x), int(r.tile_y)), r.name_ja
        # CSS grid: column = x (west -> east), row = 8 - y (y counted from the bottom)
        assert f"grid-column: {x};" in t["style"] and f"grid-row: {8 - y};" in t["style"]
        assert 1 <= x <= 7 and 1 <= y <= 7
        positions.add((x, y))
    assert len(positions) == 47
    # Reads as Japan: Hokkaido top right, Okinawa bottom left.
    assert (int(tiles["01"]["data-x"]), int(tiles["01"]["data-y"])) == (7, 7)
    assert (int(tiles["47"]["data-x"]), int(tiles["47"]["data-y"])) == (1, 1)
    assert "tabularmaps" in page.body_text and "地理的な地図ではなく" in page.body_text


def test_tiles_are_links_with_symbol_text_and_label_matching_the_embedded_data(site: Path):
    page = parse(site / "index.html")
    data = json.loads(page.scripts["map-data"])
    default = data["default"]
    assert set(data["areas"]) == {f"{c:02d}" for c in range(1, 48)}
    indicator_options = [
        o
        for o in page.find("option")  # not the prefecture picker's (pages, or its prompt)
        if o.get("value", "") and not o.get("value", "").endswith(".html")
    ]
    assert len(data["indicators"]) >= 2 and len(indicator_options) == len(data["indicators"])
    html = (site / "index.html").read_text(encoding="utf-8")
    seen = set()
    for code, area in data["areas"].items():
        cmp_ = area["cells"][default]["cmp"]
        seen.add(cmp_)
        li = re.search(rf'<li class="tile ([\w-]+)" data-code="{code}".*?</li>', html, re.S)
        assert li and li.group(1) == area["cells"][default]["cls"], code
        if li.group(1).startswith("cmp-"):  # (est-*: a pooled or model-based estimate, not compared)
            assert li.group(1) == f"cmp-{cmp_}", code
        slug = pref_slug(int(code))
        assert f'href="prefectures/{slug}.html"' in li.group(0)
        # the name opens with the tile's visible words (short name, value), then the rest in brackets
        cell = area["cells"][default]
        assert f'aria-label="{short_name(area["name"])} {cell["text"]} （{area["name"]}：' in li.group(0)
        assert schema.COMPARISON_LABELS.get(cmp_, "非表示") in li.group(0)  # text, not colour alone
        ind = next(i for i in data["indicators"] if i["id"] == default)
        assert ind["classes"][li.group(1)]["sym"] in li.group(0)
    assert {"worse", "similar"} <= seen
    assert data["areas"]["31"]["cells"][default]["cmp"] == "suppressed"  # Tottori's suppressed value
    assert data["areas"]["31"]["cells"][default]["text"] == conventions.SUPPRESSED_MARK


def test_synthetic_banner_follows_the_warehouse_flag(site: Path, tmp_path: Path):
    for path in site_pages(site):
        assert "合成データ（SYNTHETIC）" in path.read_text(encoding="utf-8"), path
    wh = build_site_warehouse(tmp_path / "real.duckdb", year=YEAR, synthetic=False)
    out = tmp_path / "_site"
    write_placeholder_outputs(out, YEAR)
    build_site(YEAR, wh, out)
    for path in site_pages(out):
        assert 'class="synthetic-banner"' not in path.read_text(encoding="utf-8"), path
    build_site(YEAR, wh, out, synthetic=True)
    assert 'class="synthetic-banner"' in (out / "index.html").read_text(encoding="utf-8")
    # rebuilding does not stack the navigation injected into the quality page
    assert (out / "quality" / "index.html").read_text(encoding="utf-8").count("サイト内ナビゲーション") == 1


def test_methodology_lists_every_catalogue_indicator_and_conventions(site: Path):
    page = parse(site / "methodology.html")
    rows = [a["data-indicator"] for a in page.find("tr") if "data-indicator" in a]
    cat = catalogue()
    assert rows == [c.id for c in cat]
    text = page.body_text
    for c in cat:
        assert c.name_ja in text
    for phrase in (
        "Wilson",
        "(Σw)² / Σw²",
        "30人未満",
        "参考値",
        "Newcombe",
        "Fisher",
        "設計効果",
        "多重比較",
        "合成データ",
        "Community Life Survey",
        "3～12点",
        "令和2年国勢調査",
        "人々のつながりに関する基礎調査（令和6年）",
        "Holm",
        "Fay",
    ):
        assert phrase in text, phrase
    # For citizens: official releases, no internal file paths or setting names (#22).
    for internal in ("data/reference", "pipelines/", "TSUNAGARI_", ".yml", ".csv"):
        assert internal not in text, internal


def test_per_prefecture_xlsx_keeps_japanese_and_neutralises_formulas(site: Path):
    path = site / "downloads" / f"{pref_slug(13)}-{YEAR}.xlsx"
    wb = load_workbook(path)
    assert wb.sheetnames == ["東京都", "全国", "注記", "列の説明 (data dictionary)"]
    ws = wb["東京都"]
    # the all-area download's layout: Japanese headers, then the column codes; the synthetic flag first
    header = [c.value for c in ws[2]]
    assert header[:7] == [
        "synthetic",
        "year",
        "area_code",
        "area_name",
        "indicator_name_ja",
        "indicator_id",
        "indicator_name_en",
    ]
    assert ws["A1"].value == "合成データ" and ws["D1"].value == "地域名"
    assert ws.freeze_panes == "A3" and ws.auto_filter.ref == f"A2:{ws.cell(2, ws.max_column).column_letter}{ws.max_row}"
    rows = [dict(zip(header, (c.value for c in r))) for r in ws.iter_rows(min_row=3)]
    assert rows and all(r["synthetic"] is True for r in rows)
    assert rows and {r["area_name"] for r in rows} == {"東京都"}
    assert {r["area_code"] for r in rows} == {"13"}
    assert any(r["indicator_name_ja"] and "孤独" in r["indicator_name_ja"] for r in rows)
    assert {r["comparison_ja"] for r in rows} <= set(schema.COMPARISON_LABELS.values())
    notes = [r["note"] for r in rows]
    assert "'" + FORMULA_NOTE in notes and FORMULA_NOTE not in notes
    for sheet in wb.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
    tottori = load_workbook(site / "downloads" / f"{pref_slug(31)}-{YEAR}.xlsx")["鳥取県"]
    theader = [c.value for c in tottori[2]]
    trows = [dict(zip(theader, (c.value for c in r))) for r in tottori.iter_rows(min_row=3)]
    suppressed = [r for r in trows if r["suppressed"]]
    assert suppressed and all(r["value"] is None for r in suppressed)  # never published
    assert any(r["value"] is not None for r in trows)
    nat = [c.value for c in wb["全国"]["C"]][2:]
    assert nat and set(nat) == {"00"}
    assert "合成" in wb["注記"]["A2"].value and "合成" in wb["注記"]["B2"].value  # stated first
    assert len(list((site / "downloads").glob(f"*-{YEAR}.xlsx"))) == 47 + 1  # + all-area file


def test_neutralise():
    assert [neutralise(v) for v in ("=1+1", "+81", "-3", "@SUM", "東京都", 5, None)] == [
        "'=1+1",
        "'+81",
        "'-3",
        "'@SUM",
        "東京都",
        5,
        None,
    ]


def test_text_from_inputs_is_escaped(tmp_path: Path, monkeypatch):
    evil = "<script>alert(1)</script>"
    text = config.INDICATOR_CATALOGUE.read_text(encoding="utf-8")
    first = text.index("name_ja:")
    text = text[:first] + f'name_ja: "{evil}"' + text[text.index("\n", first) :]
    (tmp_path / "catalogue.yml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("TSUNAGARI_CATALOGUE", str(tmp_path / "catalogue.yml"))
    wh = build_site_warehouse(tmp_path / "wh.duckdb", year=YEAR)
    out = tmp_path / "_site"
    build_site(YEAR, wh, out)
    for name in ("index.html", "methodology.html"):
        raw = (out / name).read_text(encoding="utf-8")
        assert evil not in raw, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (out / "methodology.html").read_text(encoding="utf-8")
    assert "\\u003cscript\\u003e" in (out / "index.html").read_text(encoding="utf-8")


def test_missing_reports_are_not_linked(tmp_path: Path):
    wh = build_site_warehouse(tmp_path / "wh.duckdb", year=YEAR)
    out = tmp_path / "_site"
    write_placeholder_outputs(out, YEAR, skip=(0, 31))
    (out / "quality" / "index.html").unlink()
    written = build_site(YEAR, wh, out)
    assert out / "quality" / "index.html" in written  # placeholder keeps the navigation valid
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "prefectures/31-tottori.html" not in html and "national.html" not in html.split("<main")[1]
    assert "未作成" in html
    test_every_local_link_resolves_and_no_network_asset(out)


def test_unknown_year_is_a_data_error(tmp_path: Path):
    wh = build_site_warehouse(tmp_path / "wh.duckdb", year=YEAR)
    with pytest.raises(DataError, match="no indicators for year 2019"):
        build_site(2019, wh, tmp_path / "_site")


@pytest.mark.skipif(not __import__("shutil").which("chromium"), reason="chromium not installed")
def test_indicator_switch_runs_in_a_headless_browser(site: Path):
    """The inline script recolours the tiles for another indicator (#ind=... selects it on load)."""
    import subprocess

    page = parse(site / "index.html")
    data = json.loads(page.scripts["map-data"])
    other = next(
        i["id"]
        for i in data["indicators"][1:]
        if any(a["cells"][i["id"]]["cls"] != a["cells"][data["default"]]["cls"] for a in data["areas"].values())
    )
    proc = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--dump-dom",
            f"{(site / 'index.html').as_uri()}#ind={other}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    for code, area in data["areas"].items():
        c = area["cells"][other]
        li = re.search(rf'<li class="tile ([\w-]+)" data-code="{code}".*?</li>', dom, re.S)
        assert li and li.group(1) == c["cls"], code
        assert f'<span class="tile-val" aria-hidden="true">{c["text"]}</span>' in li.group(0)
    name = next(i["name"] for i in data["indicators"] if i["id"] == other)
    assert f'<strong id="map-ind-name">{name}</strong>' in dom


# --- XLSX writer: openpyxl's sheet XML, deterministic bytes ------------------------------------------

EDGE_ROWS = [
    ["text", "", " lead", "trail ", "a & b <c>", "line\r\nbreak\rcr", "'=SUM(A1)", "#N/A", "東京都", "x" * 40000],
    [1, 0, -3, 2024, 2.5, 1 / 3, 1e-12, 123456789.123, True, False],
    [None, "after a gap", None, 7, None, None, None, None, None, None],
    # equal values of different types (the writer formats each distinct value once: 1, 1.0 and
    # True must still give a number, a number and a boolean cell)
    [1, 1.0, True, "1", 0, False, 0.0, "x", "x", True],
]


def _openpyxl_sheet(rows, widths, freeze: bool, bold: bool) -> bytes:
    """The first worksheet's XML as openpyxl's write-only mode writes it (the former writer)."""
    import io
    import zipfile

    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("s")
    if freeze:
        ws.freeze_panes = "A2"
    for i, w in enumerate(widths):
        ws.column_dimensions[get_column_letter(i + 1)].width = w
    head = []
    for h in rows[0]:
        c = WriteOnlyCell(ws, value=h)
        if bold:
            c.font = Font(bold=True)
        head.append(c)
    ws.append(head)
    for r in rows[1:]:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return zipfile.ZipFile(buf).read("xl/worksheets/sheet1.xml")


@pytest.mark.parametrize("freeze, bold", [(True, True), (False, False)])
def test_sheet_xml_is_what_openpyxl_writes(freeze, bold):
    from pipelines.io.xlsx import sheet_xml

    widths = [12, 40, 10.5]
    assert sheet_xml(EDGE_ROWS, widths, freeze_header=freeze, bold_header=bold) == _openpyxl_sheet(
        EDGE_ROWS, widths, freeze, bold
    )


def test_all_area_workbook_sheets_are_what_pandas_writes(tmp_path):
    import zipfile

    from pipelines.io.xlsx import neutralise_frame, write_xlsx

    df = pd.DataFrame(
        {
            "year": [2024, 2024, 2024],
            "area_code": ["00", "31", "=1+1"],
            "value": [4.5, float("nan"), float("inf")],
            "n": pd.array([10, None, 3], dtype="Int64"),
            "flag": [True, False, True],
            "note": [None, " padded ", "a\r\nb & <c>"],
            "neg": [-1.5, float("-inf"), 0.0],
        }
    )
    ours = write_xlsx({"指標 (indicators)": df, "注記": df.iloc[:0]}, tmp_path / "ours.xlsx")
    with pd.ExcelWriter(tmp_path / "pandas.xlsx", engine="openpyxl") as xw:  # the former writer
        for name, frame in {"指標 (indicators)": df, "注記": df.iloc[:0]}.items():
            safe = neutralise_frame(frame)
            safe.to_excel(xw, sheet_name=name, index=False)
            ws = xw.sheets[name]
            ws.freeze_panes = "A2"
            for i, col in enumerate(safe.columns, start=1):
                ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = max(10, min(60, len(str(col)) + 4))
    a, b = zipfile.ZipFile(ours), zipfile.ZipFile(tmp_path / "pandas.xlsx")
    assert a.namelist() == b.namelist()
    for name in a.namelist():
        # docProps: openpyxl stamps the time there, we do not. Styles: pandas < 3 makes its header
        # bold with borders (its style index is dropped below); pandas 3 and we write none.
        if not name.startswith("docProps/") and name != "xl/styles.xml":
            unstyled = [re.sub(rb' s="[0-9]+"', b"", z.read(name)) for z in (a, b)]
            assert unstyled[0] == unstyled[1], name
    assert b"<dcterms:created" not in a.read("docProps/core.xml")


def test_identical_inputs_give_identical_bytes(tmp_path, monkeypatch):
    """With SOURCE_DATE_EPOCH (the time stamped on pages and notes sheets) fixed, two builds of the
    same warehouse write the same bytes: workbooks have no timestamp of their own."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    wh = build_site_warehouse(tmp_path / "wh.duckdb", year=YEAR)
    trees = []
    for name in ("a", "b"):
        out = tmp_path / name
        write_placeholder_outputs(out, YEAR)
        build_site(YEAR, wh, out)
        trees.append({p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert trees[0] == trees[1]
    assert len([k for k in trees[0] if k.endswith(f"-{YEAR}.xlsx")]) >= 47
    wb = load_workbook(tmp_path / "a" / "downloads" / f"{pref_slug(13)}-{YEAR}.xlsx")
    assert [c.value for c in wb["注記"]["B"]][-1] == "2023-11-14 22:13 UTC"
    assert "作成：" in (tmp_path / "a" / "index.html").read_text(encoding="utf-8")


def test_figure_caption_is_the_last_child_and_symbols_follow_the_conventions(site: Path):
    """W3C HTML: a figcaption is the first or last child of its figure (the legend list used to
    follow it); the legend shows each comparison's symbol and word from pipelines.domain.conventions."""
    html = (site / "index.html").read_text(encoding="utf-8")
    for figure in re.findall(r"<figure\b.*?</figure>", html, re.S):
        if "<figcaption" in figure:
            inner = figure[figure.index(">") + 1 : -len("</figure>")].strip()
            assert inner.startswith("<figcaption") or inner.endswith("</figcaption>"), figure[-400:]
    legend = re.search(r'<ul class="legend".*?</ul>', html, re.S).group(0)
    # only the entries some tile shows (issue #23): here the default indicator's comparisons
    shown = {k for k in conventions.COMPARISON_ORDER if re.search(rf'<li class="tile cmp-{k}"', html)}
    assert len(shown) >= 3
    for key in conventions.COMPARISON_ORDER:
        style = conventions.COMPARISON[key]
        entry = f'<span class="swatch cmp-{key}" aria-hidden="true">{style.symbol}</span>{style.label}'
        assert (entry in legend) == (key in shown), key
    assert "◎" in legend and "＊" not in html
