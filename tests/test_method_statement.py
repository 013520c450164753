"""The rule printed is the rule applied (issue #22, "one method statement").

A real build of the sample data (national, Tokyo, Tottori, Osaka with its own survey, Tokushima).
From the published pages the test reads the comparison and change statements shown beside the
tables, takes the rule's parameters from those words (confidence level, the interval method, the
small-count test and its threshold, the reference of each kind of area), and recomputes every
published label from the warehouse rows with an independent implementation (statsmodels'
Newcombe interval, scipy's Fisher test). It fails when a label contradicts the statement shown,
when a statement differs between pages, and -- checked below -- when either is altered.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tests.shared_builds import SHARED_PREFS, folder_config, shared_build

pytestmark = pytest.mark.slow

PAGES = {
    "national": "national.html",
    "13": "prefectures/13-tokyo.html",
    "31": "prefectures/31-tottori.html",
    "27": "prefectures/27-osaka.html",
    "36": "prefectures/36-tokushima.html",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The session's shared build (conftest ``shared_build``: national, Tokyo, Osaka, Tottori and
    Tokushima), read only."""
    return folder_config(shared_build(tmp_path_factory), SHARED_PREFS)


def _text(path: Path) -> str:
    s = path.read_text(encoding="utf-8")
    s = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", s, flags=re.S)
    s = html.unescape(re.sub(r"<[^>]+>", "", s))
    return re.sub(r"\s+", " ", s)


# --- the statement, read as a reader reads it ----------------------------------------------------


@dataclass
class ParsedRule:
    kind: str  # 'difference' (interval of the difference) or 'overlap' (CI vs national)
    confidence: float
    small_test: str | None  # 'fisher' or None
    expected_min: float | None
    subsample_reference: str  # 'rest' or 'national'
    own_reference: str


def parse_comparison(text: str) -> ParsedRule:
    """The rule's parameters from the words of a comparison statement (Japanese)."""
    if re.search(r"信頼区間が全国値を含まない", text) and "Newcombe" not in text:
        m = re.search(r"(\d+(?:\.\d+)?)%信頼区間が全国値を含まない", text)
        return ParsedRule("overlap", float(m.group(1)) / 100, None, None, "national", "national")
    m = re.search(r"差について (\d+(?:\.\d+)?)% 区間（Newcombe", text)
    assert m, f"no interval of the difference stated: {text[:120]}"
    assert "公表値（小数第1位に丸めた割合と有効標本サイズ）" in text, "the precision the tests use is not stated"
    small = re.search(r"期待度数のいずれかが (\d+(?:\.\d+)?) 未満のときは Fisher の正確検定", text)
    sub = "rest" if re.search(r"全国調査の県内回答者による値では「当該県を除く全国」", text) else "national"
    own = "national" if re.search(r"県の独自調査による値では全国値", text) else "rest"
    return ParsedRule(
        "difference",
        float(m.group(1)) / 100,
        "fisher" if small else None,
        float(small.group(1)) if small else None,
        sub,
        own,
    )


def parse_change(text: str) -> ParsedRule:
    m = re.search(r"（(\d+(?:\.\d+)?)% の Newcombe 区間、期待度数が小さいときはFisher の正確検定", text)
    assert m, f"no change rule stated: {text[:120]}"
    return ParsedRule("difference", float(m.group(1)) / 100, "fisher", None, "previous", "previous")


# --- an independent implementation of a parsed rule ----------------------------------------------


def decide(
    rule: ParsedRule, p1: float, n1: float, p2: float, n2: float, lower1=None, upper1=None, expected_min: float = 5.0
) -> int:
    """+1 / -1 when the rule finds p1 above / below p2, 0 when not."""
    from scipy.stats import fisher_exact
    from statsmodels.stats.proportion import confint_proportions_2indep

    if rule.kind == "overlap":
        return 1 if lower1 > p2 else -1 if upper1 < p2 else 0
    alpha = 1 - rule.confidence
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    small = min(min(n1, n2) * pooled, min(n1, n2) * (1 - pooled)) < (rule.expected_min or expected_min)
    if small and rule.small_test == "fisher":
        x1, m1, x2, m2 = (round(v) for v in (p1 * n1, n1, p2 * n2, n2))
        if m1 > 0 and m2 > 0:
            _, pv = fisher_exact([[x1, m1 - x1], [x2, m2 - x2]])
            return int(np.sign(p1 - p2)) if pv < alpha else 0
    lo, hi = confint_proportions_2indep(p1 * n1, n1, p2 * n2, n2, method="newcomb", compare="diff", alpha=alpha)
    return 1 if lo > 0 else -1 if hi < 0 else 0


def expected_label(direction: int, polarity: str) -> str:
    if direction == 0:
        return "similar"
    if polarity == "no_judgement":
        return "higher" if direction > 0 else "lower"
    good = (direction < 0) == (polarity == "low_is_good")
    return "better" if good else "worse"


def contradictions(rows: pd.DataFrame, rule: ParsedRule, polarity: dict[str, str]) -> list[str]:
    """Every labelled comparison row whose label differs from what ``rule`` gives."""
    bad = []
    for r in rows.itertuples():
        if rule.kind == "overlap":
            d = decide(rule, r.value, None, r.national_value, None, r.lower_ci95, r.upper_ci95)
        else:  # the statement says the tests use the published figures (0.1)
            d = decide(
                rule,
                round(r.value, 1) / 100,
                round(r.n_effective, 1),
                round(r.reference_value, 1) / 100,
                round(r.reference_n_effective, 1),
            )
        want = expected_label(d, polarity[r.indicator_id])
        if want != r.comparison:
            bad.append(f"{r.year} {r.area_code} {r.indicator_id} {r.breakdown}: {r.comparison} vs {want}")
    return bad


def change_contradictions(rows: pd.DataFrame, rule: ParsedRule) -> list[str]:
    bad = []
    for r in rows.itertuples():
        d = decide(
            rule,
            round(r.value, 1) / 100,
            round(r.n_effective, 1),
            round(r.previous_value, 1) / 100,
            round(r.previous_n_effective, 1),
        )
        want = {1: "increase", -1: "decrease", 0: "no_change"}[d]
        if want != r.change_vs_previous:
            bad.append(f"{r.year} {r.area_code} {r.indicator_id} {r.breakdown}: {r.change_vs_previous} vs {want}")
    return bad


def _judged(cfg) -> pd.DataFrame:
    con = duckdb.connect(str(cfg.warehouse), read_only=True)
    try:
        return con.execute("SELECT * FROM indicators WHERE comparison <> 'not_compared' AND NOT suppressed").df()
    finally:
        con.close()


def _changed(cfg) -> pd.DataFrame:
    con = duckdb.connect(str(cfg.warehouse), read_only=True)
    try:
        return con.execute(
            "SELECT * FROM indicators WHERE change_vs_previous IN ('increase', 'decrease', 'no_change') "
            "AND NOT suppressed"
        ).df()
    finally:
        con.close()


def _polarity() -> dict[str, str]:
    from pipelines.domain.catalogue import catalogue_by_id

    return {k: v.polarity for k, v in catalogue_by_id().items()}


def _statement_on(page_text: str, head: str, stop: str) -> str:
    i = page_text.index(head)
    j = page_text.find(stop, i + len(head))
    return page_text[i : j if j > 0 else i + 1200]


# --- tests ---------------------------------------------------------------------------------------


def test_statement_is_made_from_the_settings(monkeypatch):
    from pipelines.domain import method_statement

    assert parse_comparison(method_statement.text("comparison")).confidence == 0.95
    monkeypatch.setenv("TSUNAGARI_CONFIDENCE_LEVEL", "0.9")  # (pipelines/domain/config.py)
    monkeypatch.setenv("TSUNAGARI_MIN_BASE", "50")
    assert parse_comparison(method_statement.text("comparison")).confidence == 0.9
    assert "50 未満" in method_statement.text("suppression") or "50人未満" in method_statement.text("suppression")
    assert parse_change(method_statement.text("change")).confidence == 0.9


def test_every_page_shows_the_same_statement(site):
    from pipelines.domain import method_statement

    want = method_statement.text("comparison")
    for code, page in PAGES.items():
        text = _text(site.out_dir / page)
        if code != "national":
            assert want in text, f"{page}: the comparison statement is not shown"
        assert "95%信頼区間が全国値を含まない" not in text, page
    methodology = _text(site.out_dir / "methodology.html")
    for r in method_statement.rules():
        assert r.text_ja in methodology, f"methodology: rule {r.key} missing"
    index = _text(site.out_dir / "index.html")
    assert method_statement.comparison_short() in index


def test_no_published_text_holds_template_syntax(site):
    """What a template meant to fill in is filled in: no page, attribute (aria-label, title),
    script or CSV of the site holds Jinja's {{ }} or {% %} (a placeholder inside a string of a
    template expression is not replaced, and axe does not notice it in a label)."""
    leaks = {}
    for p in sorted(site.out_dir.rglob("*")):
        if p.suffix in (".html", ".csv", ".json"):
            t = p.read_text(encoding="utf-8-sig")
            m = re.search(r"\{\{.{0,40}|\{%.{0,40}", t)
            if m:
                leaks[p.relative_to(site.out_dir).as_posix()] = m.group(0)
    assert not leaks, leaks


def test_every_label_agrees_with_the_statement_shown(site):
    rows = _judged(site)
    assert len(rows) > 100
    pol = _polarity()
    # The statement as shown on each prefecture page, parsed; every label of the warehouse checked
    # against it (the pages print labels from these rows).
    for code in ("13", "27", "31", "36"):
        text = _text(site.out_dir / PAGES[code])
        shown = _statement_on(text, "全国との比較：", "多重比較")
        rule = parse_comparison(shown)
        assert rule.kind == "difference" and rule.subsample_reference == "rest" and rule.own_reference == "national"
        bad = contradictions(rows, rule, pol)
        assert not bad, f"{len(bad)} labels contradict the statement on {PAGES[code]}: {bad[:5]}"
    changed = _changed(site)
    assert len(changed) > 100
    text = _text(site.out_dir / PAGES["13"])
    rule = parse_change(_statement_on(text, "前回からの変化：", "施策データ"))
    bad = change_contradictions(changed, rule)
    assert not bad, f"{len(bad)} change labels contradict the statement: {bad[:5]}"


def test_the_check_fails_when_a_label_is_altered(site):
    from pipelines.domain import method_statement

    rows = _judged(site)
    rule = parse_comparison(method_statement.text("comparison"))
    flip = rows.copy()
    i = flip.index[flip.comparison == "similar"][0]
    flip.loc[i, "comparison"] = "better"
    assert len(contradictions(flip, rule, _polarity())) == 1


def test_the_check_fails_when_the_statement_is_altered(site):
    """The earlier statement (a prefecture's 95% interval excluding the national value) contradicts
    labels of the sample: the check sees it."""
    old = "全国との比較：95%信頼区間が全国値を含まない場合に「良い」「悪い」、含む場合は「同程度」。"
    rule = parse_comparison(old)
    assert rule.kind == "overlap"
    assert contradictions(_judged(site), rule, _polarity())


def test_downloads_carry_the_reference_of_every_label(site):
    df = pd.read_csv(site.out_dir / "downloads" / "indicators.csv", encoding="utf-8-sig", header=1)
    cols = {c.split("(")[-1].rstrip(")").strip() if "(" in c else c: c for c in df.columns}
    need = ["reference_value", "reference_n_effective", "difference_lower_ci95", "difference_upper_ci95"]
    missing = [c for c in need if c not in cols]
    assert not missing, f"download columns missing: {missing} (have {list(df.columns)[:40]})"
    comp = cols.get("comparison", "comparison")
    labelled = df[df[comp].isin(["better", "worse", "higher", "lower", "similar"])]
    assert len(labelled) > 100
    for c in need:
        assert labelled[cols[c]].notna().all(), f"{c} empty on a labelled row"
    # The difference interval decides: a label other than similar has an interval excluding 0 (or a
    # Fisher p-value below 5%).
    lo, hi = labelled[cols["difference_lower_ci95"]], labelled[cols["difference_upper_ci95"]]
    excl = (lo > 0) | (hi < 0)
    method = labelled[cols.get("comparison_method", "comparison_method")].astype(str)
    newc = method.str.startswith("newcombe")
    judged = labelled[comp] != "similar"
    # Rounded to 0.1: a bound printed as 0.0 may sit either side of 0.
    edge = (lo.abs() < 0.05) | (hi.abs() < 0.05)
    assert ((judged == excl) | ~newc | edge).all()


def test_key_points_tie_to_rows(site):
    from pipelines.domain.catalogue import catalogue_by_id
    from pipelines.domain.evaluation import key_points, progress_table
    from pipelines.indicators.published_check import published_national

    con = duckdb.connect(str(site.warehouse), read_only=True)
    ind = con.execute("SELECT * FROM indicators").df()
    con.close()
    cat = catalogue_by_id()
    year = int(ind.year.max())
    prog = progress_table(ind, cat, year, published_national())
    key = ind.set_index(["year", "area_code", "indicator_id", "breakdown"]).sort_index()
    for code, name in (("00", "全国"), ("13", "東京都"), ("31", "鳥取県"), ("27", "大阪府")):
        points = key_points(ind, cat, year, code, name, prog if code == "00" else None)
        assert 3 <= len(points) <= 5, (code, [p.text for p in points])
        page = _text(site.out_dir / PAGES["national" if code == "00" else code])
        for p in points:
            assert p.text in page, f"{code}: 要点 not on the page: {p.text}"
            for k in p.rows:
                assert k in key.index, (code, p.kind, k)
            if p.kind == "headline" and "value" in p.facts:
                r = key.loc[p.rows[0]]
                assert f"{r['value']:.1f}%" in p.text and f"{r['lower_ci95']:.1f}～{r['upper_ci95']:.1f}%" in p.text
                if code != "00":
                    from pipelines.domain.schema import COMPARISON_LABELS

                    assert f"「{COMPARISON_LABELS[r['comparison']]}」" in p.text
            if p.kind == "comparison":
                rows = key.loc[p.rows]
                assert f"良い指標は {int((rows.comparison == 'better').sum())}" in p.text
                assert f"悪い指標は {int((rows.comparison == 'worse').sum())}" in p.text
            if p.kind == "change":
                rows = key.loc[p.rows]
                assert len(rows) == len(p.rows)
                assert f"有意な変化がない指標は {int((rows.change_vs_previous == 'no_change').sum())}" in p.text
            if p.kind == "progress":
                c = p.facts["counts"]
                tested = prog[prog.method.isin(["newcombe", "fisher"])]
                assert c["改善"] == int((tested.words_holm == "改善").sum())
                assert f"改善 {c['改善']}、悪化 {c['悪化']}" in p.text
            if p.kind == "small_sample":
                assert code == "31"
    # Tottori (the smallest sample) says so at the top.
    assert any(p.kind == "small_sample" for p in key_points(ind, cat, year, "31", "鳥取県"))
    assert math.isfinite(prog.p_value.dropna().iloc[0])
