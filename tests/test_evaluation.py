"""The evaluation layer (pipelines.domain.evaluation): Holm's adjustment, p-values consistent with the tests
that label, the national progress table from a baseline, and the words 改善/悪化/変化なし."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.domain import config, stats
from pipelines.domain.catalogue import catalogue_by_id, parse_catalogue
from pipelines.domain.conventions import change_words
from pipelines.domain.errors import DataError
from pipelines.domain.evaluation import difference_p_value, holm, key_points, progress_table


def test_holm_equals_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 9))
        assert np.allclose(holm(p), multipletests(p, method="holm")[1], atol=1e-12)
    got = holm([0.01, np.nan, 0.04, 0.03])
    assert np.isnan(got[1])
    assert np.allclose(got[[0, 2, 3]], multipletests([0.01, 0.04, 0.03], method="holm")[1])


@pytest.mark.parametrize(
    "p1,n1,p2,n2",
    [
        (0.043, 10876, 0.045, 11867),
        (0.393, 10876, 0.364, 11867),
        (0.12, 300, 0.08, 400),
        (0.5, 50, 0.3, 60),
        (0.02, 40, 0.10, 60),
    ],
)
def test_p_value_agrees_with_the_labelling_test(p1, n1, p2, n2):
    """p < 5% exactly when difference_test calls the difference significant (same method)."""
    p, method = difference_p_value(p1, n1, p2, n2)
    res = stats.difference_test(p1, n1, p2, n2)
    assert method == res["method"]
    assert (p < 0.05) == res["significant"]
    if method == "newcombe":
        # At confidence 1 - p the Newcombe interval touches 0.
        lo, hi = stats.newcombe_interval(p1, n1, p2, n2, 1 - p)
        assert min(abs(lo), abs(hi)) < 1e-6
    else:
        from scipy.stats import fisher_exact

        x1, x2 = round(p1 * n1), round(p2 * n2)
        assert p == pytest.approx(fisher_exact([[x1, n1 - x1], [x2, n2 - x2]])[1], rel=1e-9)


def test_change_words():
    assert change_words("decrease", "low_is_good") == "改善"
    assert change_words("increase", "low_is_good") == "悪化"
    assert change_words("increase", "high_is_good") == "改善"
    assert change_words("decrease", "high_is_good") == "悪化"
    assert change_words("increase", "no_judgement") == "増加"
    assert change_words("no_change", "low_is_good") == "変化なし"
    assert change_words("not_compared", "low_is_good") == "比較なし"


def _national(rows):
    return pd.DataFrame(
        [
            {
                "year": y,
                "area_code": "00",
                "indicator_id": i,
                "breakdown": "total",
                "value": v,
                "n_effective": n,
                "suppressed": False,
                "comparison": "not_compared",
                "change_vs_previous": "not_compared",
                "source_changed": False,
                "lower_ci95": np.nan,
                "upper_ci95": np.nan,
                "national_value": v,
                "n_unweighted": n,
            }
            for y, i, v, n in rows
        ]
    )


def test_progress_from_a_published_baseline_by_hand():
    """lonely_often_always: baseline 2021 published 4.5% of 11,867 (n / deff), latest 2024 4.3% of
    10,876: the difference, its Newcombe interval and the words, computed here by hand."""
    cat = catalogue_by_id()
    published = pd.DataFrame(
        {
            "year": [2021],
            "question": ["q_loneliness"],
            "category": ["5"],
            "breakdown": ["total"],
            "value_pct": [4.5],
            "n": [11867],
        }
    )
    ind = _national([(2024, "lonely_often_always", 4.3, 10876.0), (2022, "lonely_often_always", 4.9, 11218.0)])
    t = progress_table(ind, {"lonely_often_always": cat["lonely_often_always"]}, 2024, published, national_deff=1.5)
    r = t.iloc[0]
    assert r.baseline_year == 2021 and r.baseline_from == "published"
    assert r.baseline_n_effective == pytest.approx(11867 / 1.5)
    lo, hi = stats.newcombe_interval(0.043, 10876, 0.045, 11867 / 1.5)
    assert r.diff_lower == pytest.approx(lo * 100) and r.diff_upper == pytest.approx(hi * 100)
    assert r.difference == pytest.approx(-0.2)
    assert r.words == "変化なし" and r.words_holm == "変化なし"


def test_progress_words_and_holm_within_pillar():
    cat = catalogue_by_id()
    ids = ["no_contact_inperson", "no_participation", "ucla_7_12"]  # all 基本方針(3), low is good
    ind = _national(
        [
            (2022, "no_contact_inperson", 10.6, 11000.0),
            (2024, "no_contact_inperson", 9.3, 11000.0),
            (2022, "no_participation", 54.0, 11000.0),
            (2024, "no_participation", 54.9, 11000.0),
            (2022, "ucla_7_12", 45.0, 11000.0),
            (2024, "ucla_7_12", 48.0, 11000.0),
        ]
    )
    t = progress_table(ind, {i: cat[i] for i in ids}, 2024).set_index("indicator_id")
    assert t.loc["no_contact_inperson", "words"] == "改善"
    assert t.loc["ucla_7_12", "words"] == "悪化"
    assert t.loc["no_participation", "words"] == "変化なし"
    from statsmodels.stats.multitest import multipletests

    assert np.allclose(t.p_holm, multipletests(t.p_value, method="holm")[1])


def test_catalogue_baseline_and_target_fields():
    text = """indicators:
  - {id: a, name_ja: A, name_en: A, pillar: 1, source: survey, numerator: "q_loneliness = 5",
     denominator: all, polarity: low_is_good, uk_comparable: false, unit: percent,
     baseline: 2021, baseline_published: "q_loneliness=5", target: 3.5, target_year: 2030}
"""
    ind = parse_catalogue(text, "x.yml")[0]
    assert (ind.baseline, ind.baseline_published, ind.target, ind.target_year) == (2021, "q_loneliness=5", 3.5, 2030)
    with pytest.raises(DataError, match="target"):
        parse_catalogue(text.replace("target: 3.5", "target: lots"), "x.yml")
    with pytest.raises(DataError, match="baseline"):
        parse_catalogue(text.replace("baseline: 2021", "baseline: 21"), "x.yml")
    with pytest.raises(DataError, match="baseline_published"):
        parse_catalogue(
            text.replace('baseline_published: "q_loneliness=5"', 'baseline_published: "DROP TABLE"'), "x.yml"
        )
    # The shipped catalogue sets no target (the plan has none) and a published 2021 baseline for
    # the direct question.
    cat = catalogue_by_id()
    assert all(c.target is None for c in cat.values())
    assert cat["lonely_often_always"].baseline == 2021


def test_key_points_small_sample_and_counts():
    cat = catalogue_by_id()
    rows = []
    for y in (2023, 2024):
        for i, c in cat.items():
            if c.source != "survey":
                continue
            rows.append(
                {
                    "year": y,
                    "area_code": "31",
                    "indicator_id": i,
                    "breakdown": "total",
                    "value": 5.0,
                    "lower_ci95": 1.0,
                    "upper_ci95": 15.0,
                    "n_unweighted": 46,
                    "n_effective": 46.0,
                    "national_value": 4.3,
                    "suppressed": False,
                    "comparison": "worse" if i == "no_reliable_person" else "similar",
                    "change_vs_previous": "no_change",
                    "source_changed": False,
                }
            )
    ind = pd.DataFrame(rows)
    pts = key_points(ind, cat, 2024, "31", "鳥取県")
    kinds = [p.kind for p in pts]
    assert kinds[0] == "headline" and "small_sample" in kinds
    comp = next(p for p in pts if p.kind == "comparison")
    assert "悪い指標は 1" in comp.text and "困った時に頼れる人" in comp.text
    assert f"約 {0.05 * 9:.1f} 件" in comp.text
    assert math.isclose(config.CONFIDENCE_LEVEL, 0.95)
