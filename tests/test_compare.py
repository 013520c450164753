"""The compare page and the tile map's fills (issue #23), in a real browser on a real build.

A real build (sample data; the national, Tokyo and Tottori reports) is opened in headless Chromium
(the Debian package, driven by Playwright, as in tests/test_accessibility.py):

* compare.html: Tokyo and Tottori are picked with the keyboard; the table shows exactly the
  published values of those areas and of the nation (read from the all-area CSV download), the
  address remembers the choice and a query string preselects; Tokyo's report links to the page
  with Tokyo chosen; without JavaScript the page says so and lists the reports.
* index.html: for every indicator the map's picker offers, every tile with a published value has a
  fill that is not the empty (white) one, and the legend lists exactly the classes the tiles show,
  a value level's entry covering the values of its tiles.

The site fixture's warehouse (tests/fixtures_site.py, suppressed cells with no model estimate)
shows a suppressed cell on the compare page as suppressed, with its reason and no base.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pipelines.domain import conventions
from pipelines.outputs import site

YEAR = 2024


def test_map_fills_have_aa_contrast_and_differ_from_the_empty_tile():
    for cls, (fill, text) in site.MAP_FILLS.items():
        assert conventions.contrast_ratio(fill, text) >= 4.5, cls
        assert fill.upper() != conventions.COMPARISON["not_compared"].fill.upper(), cls
    levels = [site.MAP_FILLS[f"val-{k}"][0] for k in range(1, site.MAP_LEVELS + 1)]
    lum = [conventions.relative_luminance(c) for c in levels]
    assert lum == sorted(lum, reverse=True)  # light (low) to dark (high)


def _published(site_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(
        site_dir / "downloads" / f"indicators-{YEAR}.csv", header=1, dtype={"area_code": str}, encoding="utf-8-sig"
    )
    return df[df["breakdown"] == "total"]


def _expected(row: pd.Series) -> dict[str, str]:
    """What the compare page must show for a published row (the all-area CSV download)."""
    unit, national = row["unit"], row["area_code"] == "00"
    lead = row["estimate_method"] in ("model", "pooled") and pd.notna(row["lead_value"])
    if bool(row["suppressed"]) and not lead:
        return {"v": conventions.SUPPRESSED_MARK, "ci": "", "base": ""}
    v, lo, hi = (
        (row["lead_value"], row["lead_lower_ci95"], row["lead_upper_ci95"])
        if lead
        else (row["value"], row["lower_ci95"], row["upper_ci95"])
    )
    if unit == "flag" and not national:
        text = "あり" if v >= 0.5 else "なし"
    elif unit == "per_10k":
        text = f"{v:.{conventions.RATE_DECIMALS}f}"
    else:
        text = f"{v:.1f}%"
    if lead:
        text += conventions.ESTIMATE_MARKS[row["estimate_method"]]
    ci = f"（{lo:.1f}～{hi:.1f}）" if pd.notna(lo) and pd.notna(hi) else ""
    base = f"回答者 {row['n_unweighted']:,.0f}人" if pd.notna(row["n_unweighted"]) and not lead else ""
    return {"v": text, "ci": ci, "base": base}


CELLS_JS = """() => {
  const out = {};
  for (const tr of document.querySelectorAll('#compare-table tbody tr')) {
    const row = {};
    for (const td of tr.querySelectorAll('td')) {
      const q = s => (td.querySelector(s) || {}).textContent || '';
      row[td.dataset.code] = {v: q('.v'), ci: q('.ci'), base: q('.base'), badge: q('.badge'),
                              sup: q('.sup-reason'), text: td.textContent};
    }
    out[tr.dataset.indicator] = row;
  }
  return out;
}"""


@pytest.mark.browser
def test_keyboard_choice_shows_the_published_values(built_site: Path, browser):
    page = browser.new_page(viewport={"width": 390, "height": 900})
    page.goto((built_site / "compare.html").as_uri())
    page.focus("#compare-a")
    page.keyboard.type("13")  # typeahead on the option text "13 東京都"
    page.keyboard.press("Tab")
    page.keyboard.type("31")
    assert page.eval_on_selector("#compare-a", "e => e.value") == "13"
    assert page.eval_on_selector("#compare-b", "e => e.value") == "31"
    page.keyboard.press("Tab")  # blur: the change has been applied
    assert page.url.endswith("compare.html?a=13&b=31")
    heads = page.eval_on_selector_all("#compare-table thead th", "els => els.map(e => e.textContent)")
    assert heads == ["指標", "東京都", "鳥取県", "全国"]
    cells = page.evaluate(CELLS_JS)
    pub = _published(built_site)
    offered = json.loads(page.eval_on_selector("#compare-data", "e => e.textContent"))["indicators"]
    assert [i["id"] for i in offered] == list(cells)
    checked = 0
    for _, row in pub[pub["area_code"].isin(["13", "31", "00"])].iterrows():
        if row["indicator_id"] not in cells:
            continue
        got, want = cells[row["indicator_id"]][row["area_code"]], _expected(row)
        assert (got["v"], got["ci"], got["base"]) == (want["v"], want["ci"], want["base"]), (
            row["area_code"],
            row["indicator_id"],
        )
        lead = row["estimate_method"] in ("model", "pooled")
        if row["area_code"] != "00" and not lead and not row["suppressed"]:
            style = conventions.comparison(row["comparison"])
            assert got["badge"] == style.symbol + style.label, (row["area_code"], row["indicator_id"])
        checked += 1
    assert checked == 3 * len(cells)
    # no horizontal page scroll on a phone: the table scrolls inside its labelled region
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.close()


@pytest.mark.browser
def test_query_preselects_and_reports_link_with_their_area(built_site: Path, browser):
    page = browser.new_page()
    page.goto((built_site / "compare.html").as_uri() + "?a=31&b=13&c=36")
    assert [page.eval_on_selector(f"#compare-{k}", "e => e.value") for k in "abc"] == ["31", "13", "36"]
    codes = page.eval_on_selector_all("#compare-table thead th[data-code]", "els => els.map(e => e.dataset.code)")
    assert codes == ["31", "13", "36", "00"]
    assert "鳥取県・東京都・徳島県" in page.text_content("#compare-status")
    # Tokyo's report: 他の都道府県と比較 opens the page with Tokyo chosen
    page.goto((built_site / "prefectures" / "13-tokyo.html").as_uri())
    page.click("text=他の都道府県と比較")
    page.wait_for_load_state()
    assert page.url.endswith("compare.html?a=13")
    assert page.eval_on_selector("#compare-a", "e => e.value") == "13"
    page.close()
    html = (built_site / "national.html").read_text(encoding="utf-8")
    assert 'href="compare.html"' in html


@pytest.mark.browser
def test_without_javascript_the_page_lists_the_reports(built_site: Path, browser):
    ctx = browser.new_context(java_script_enabled=False)
    page = ctx.new_page()
    page.goto((built_site / "compare.html").as_uri())
    assert not page.is_visible("#compare-table")
    text = page.inner_text("main")
    assert "JavaScript が無効" in text and "東京都の報告書" in text and "鳥取県の報告書" in text
    hrefs = page.eval_on_selector_all("main a", "els => els.map(e => e.getAttribute('href'))")
    assert "prefectures/13-tokyo.html" in hrefs and "national.html" in hrefs
    ctx.close()


TILES_JS = """() => [...document.querySelectorAll('.tilemap .tile')].map(li => {
  const s = getComputedStyle(li);
  return {code: li.dataset.code, cls: li.className.replace('tile ', ''), bg: s.backgroundColor,
          img: s.backgroundImage, val: li.querySelector('.tile-val').textContent};
})"""
LEGEND_JS = """() => [...document.querySelectorAll('#map-legend li')].map(li => ({
  cls: li.querySelector('.swatch').className.replace('swatch ', ''), text: li.textContent}))"""


@pytest.mark.browser
def test_every_offered_indicator_shades_every_tile_with_a_value(built_site: Path, browser):
    page = browser.new_page()
    page.goto((built_site / "index.html").as_uri())
    data = json.loads(page.eval_on_selector("#map-data", "e => e.textContent"))
    options = page.eval_on_selector_all("#indicator-select option", "els => els.map(e => e.value)")
    assert options == [i["id"] for i in data["indicators"]]
    schemes = set()
    for ind in options:
        page.select_option("#indicator-select", ind)
        tiles = page.evaluate(TILES_JS)
        legend = page.evaluate(LEGEND_JS)
        assert len(tiles) == 47
        for t in tiles:
            published = t["val"] not in (conventions.MISSING_MARK, conventions.SUPPRESSED_MARK)
            if published:
                empty = t["bg"] in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)") and t["img"] == "none"
                assert not empty, (ind, t)
        assert {e["cls"] for e in legend} == {t["cls"] for t in tiles}, ind  # only entries with marks
        scheme = next(i for i in data["indicators"] if i["id"] == ind)["scheme"]
        schemes.add(scheme)
        for e in legend:
            if re.fullmatch(r"val-\d", e["cls"]):  # a value level covers the values of its tiles
                nums = [float(x.replace(",", "")) for x in re.findall(r"[\d,.]+(?=%|～|$)", e["text"][1:])]
                lo, hi = nums[0], nums[-1]
                for t in tiles:
                    if t["cls"] == e["cls"]:
                        assert lo <= float(re.sub(r"[^\d.]", "", t["val"])) <= hi, (ind, t, e)
    assert schemes == {"comparison", "value"}
    page.close()


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory) -> Path:
    from fixtures_site import build_site_warehouse, write_placeholder_outputs

    root = tmp_path_factory.mktemp("compare-fixture")
    wh = build_site_warehouse(root / "wh.duckdb", year=YEAR, synthetic=True)
    out = root / "_site"
    write_placeholder_outputs(out, YEAR)
    site.build_site(YEAR, wh, out)
    return out


@pytest.mark.browser
def test_suppressed_cells_stay_suppressed_and_say_why(fixture_site: Path, browser):
    html = (fixture_site / "compare.html").read_text(encoding="utf-8")
    data = json.loads(
        re.search(r'<script type="application/json" id="compare-data">(.*?)</script>', html, re.S).group(1)
    )
    hidden = [(code, ind) for code, a in data["areas"].items() for ind, c in a["cells"].items() if c["sup"]]
    assert any(code == "31" for code, _ in hidden)  # Tottori's suppressed rows (fixtures_site)
    for code, ind in hidden:  # the mark and the reason only: no value, interval or base
        c = data["areas"][code]["cells"][ind]
        assert (c["t"], c["ci"], c["n"]) == (conventions.SUPPRESSED_MARK, "", ""), (code, ind)
    page = browser.new_page()
    page.goto(fixture_site.joinpath("compare.html").as_uri() + "?a=31&b=13")
    cells = page.evaluate(CELLS_JS)
    for code, ind in hidden:
        if code == "31":
            got = cells[ind]["31"]
            assert got["v"] == conventions.SUPPRESSED_MARK and got["sup"].endswith("非表示"), ind
            assert "回答者" not in got["text"] and "（" not in got["ci"]
    page.close()
