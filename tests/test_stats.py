"""Unit tests of pipelines/domain/stats.py: hand-worked values, statsmodels as an independent
implementation for the unweighted case, and edge cases (p = 0/1, n = 0, NaN, arrays vs scalars)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from pipelines.domain import config, stats
from pipelines.domain.stats import (
    base_status,
    change_vs_previous,
    compare_with_national,
    effective_n,
    rate_per_10000,
    two_proportion_test,
    ucla_band,
    ucla_score,
    weighted_estimate,
    weighted_share,
    wilson_interval,
)

Z95 = 1.959963984540054  # NormalDist().inv_cdf(0.975), also scipy.stats.norm.isf(0.025)


class TestZCritical:
    def test_95(self):
        assert stats.z_critical() == pytest.approx(Z95, abs=1e-12)
        assert stats.z_critical(0.90) == pytest.approx(1.6448536269514722, abs=1e-12)

    @pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), "x"])
    def test_bad_confidence(self, bad):
        with pytest.raises(ValueError, match=r"^confidence must be strictly between 0 and 1"):
            stats.z_critical(bad)

    def test_config_constants_used(self):
        assert config.CONFIDENCE_LEVEL == 0.95
        assert base_status(config.MIN_BASE - 1) == "suppressed"
        assert base_status(config.MIN_BASE) == "reference"
        assert base_status(config.REFERENCE_BASE) == "ok"


class TestEffectiveN:
    def test_hand_worked(self):
        # weights [1, 2, 3, 4]: Σw = 10, Σw² = 1 + 4 + 9 + 16 = 30, n_eff = 10² / 30 = 3.333…
        assert effective_n(10, 30) == pytest.approx(10 / 3, rel=1e-15)
        assert isinstance(effective_n(10, 30), float)

    def test_equal_weights_give_n(self):
        w = np.full(250, 2.5)
        assert effective_n(w.sum(), (w**2).sum()) == pytest.approx(250.0, rel=1e-12)

    def test_zero_and_missing(self):
        assert math.isnan(effective_n(0, 0))
        assert math.isnan(effective_n(np.nan, 4))
        assert math.isnan(effective_n(4, None))

    def test_arrays(self):
        out = effective_n(pd.Series([10.0, 0.0, np.nan]), np.array([30.0, 0.0, 1.0]))
        assert isinstance(out, np.ndarray) and out.shape == (3,)
        assert out[0] == pytest.approx(10 / 3)
        assert np.isnan(out[1]) and np.isnan(out[2])

    def test_negative_sum_w2_rejected(self):
        with pytest.raises(ValueError, match=r"^sum_w2 must be >= 0"):
            effective_n(1, -1)


class TestWeightedShare:
    def test_hand_worked(self):
        # flags [1, 0, 1, 1], weights [1, 2, 3, 4]: Σw·y = 1 + 3 + 4 = 8, Σw = 10 -> 0.8
        assert weighted_share([1, 0, 1, 1], [1, 2, 3, 4]) == pytest.approx(0.8, rel=1e-15)
        # Unweighted: 3 of 4 -> 0.75
        assert weighted_share([1, 0, 1, 1]) == 0.75
        assert isinstance(weighted_share([1, 0]), float)

    def test_bool_and_series(self):
        flags = pd.Series([True, False, False, True, True])
        weights = pd.Series([0.5, 1.5, 1.0, 1.0, 1.0])
        # (0.5 + 1 + 1) / 5 = 0.5
        assert weighted_share(flags, weights) == pytest.approx(0.5)

    def test_edges(self):
        assert weighted_share([0, 0, 0]) == 0.0
        assert weighted_share([1, 1]) == 1.0
        assert math.isnan(weighted_share([]))
        assert math.isnan(weighted_share([1, 0], [0, 0]))
        assert math.isnan(weighted_share([1, np.nan]))
        assert math.isnan(weighted_share([1, 0], [1, np.nan]))

    def test_published_distribution_reproduced(self):
        # 2022 national survey, n = 11,218: 4.9 / 15.8 / 19.6 / 40.6 / 18.4 / 0.6 % (codes 5..1, 無回答).
        n = 11218
        published = [4.9, 15.8, 19.6, 40.6, 18.4, 0.6]
        # The published shares add up to 99.9 % (rounding), so plain rounding of pct × n leaves 12
        # respondents over; these counts each round to the published share and add up to n:
        # 553/11218 = 4.930 %, 1775 -> 15.823, 2201 -> 19.620, 4557 -> 40.622, 2065 -> 18.408, 67 -> 0.597
        counts = [553, 1775, 2201, 4557, 2065, 67]
        answers = np.repeat(np.arange(len(counts)), counts)
        assert answers.size == n
        for code, pct in enumerate(published):
            assert round(100 * weighted_share(answers == code), 1) == pct

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match=r"^weights must have the same length as flags \(2 weights, 3 flags\)$"):
            weighted_share([1, 0, 1], [1, 2])
        with pytest.raises(ValueError, match=r"^flags must be 0 or 1"):
            weighted_share([1, 2])
        with pytest.raises(ValueError, match=r"^weights must be >= 0$"):
            weighted_share([1, 0], [1, -1])


class TestWeightedEstimate:
    def test_hand_worked(self):
        est = weighted_estimate([1, 0, 1, 1], [1, 2, 3, 4])
        assert est["value"] == pytest.approx(0.8)
        assert est["n_unweighted"] == 4
        assert est["n_effective"] == pytest.approx(10 / 3)
        lo, up = wilson_interval(0.8, 10 / 3)
        assert (est["lower"], est["upper"]) == pytest.approx((lo, up))

    def test_unweighted_equals_plain_wilson(self):
        flags = [1] * 37 + [0] * 163
        est = weighted_estimate(flags, [1.7] * 200)
        lo, up = proportion_confint(37, 200, alpha=0.05, method="wilson")
        assert est["n_effective"] == pytest.approx(200)
        assert (est["lower"], est["upper"]) == pytest.approx((lo, up), abs=1e-12)

    def test_empty(self):
        est = weighted_estimate([])
        assert est["n_unweighted"] == 0
        assert all(math.isnan(est[k]) for k in ("value", "lower", "upper", "n_effective"))


class TestWilsonInterval:
    def test_hand_worked_national_2022(self):
        # p = 0.049 (often/always lonely, 2022), n = 11218, z = 1.959964, z² = 3.841459
        # z²/n = 0.000342437; denominator 1 + z²/n = 1.000342437
        # centre = (0.049 + z²/2n = 0.0491712185) / 1.000342437 = 0.0491543862
        # p(1-p)/n = 0.049 * 0.951 / 11218 = 4.15395e-06; z²/4n² = 7.6314e-09; sum 4.16158e-06
        # half = 1.959964 * sqrt(4.16158e-06 = 0.00203999520^2) / 1.000342437 = 0.0039969484
        # -> (0.0491543862 - 0.0039969484, 0.0491543862 + 0.0039969484) = (0.0451574378, 0.0531513347)
        lo, up = wilson_interval(0.049, 11218)
        assert lo == pytest.approx(0.0451574378, abs=1e-9)
        assert up == pytest.approx(0.0531513347, abs=1e-9)
        assert isinstance(lo, float) and isinstance(up, float)

    def test_hand_worked_small(self):
        # p = 0.3, n = 10: 1 + z²/n = 1.384146; centre = (0.3 + 0.192073) / 1.384146 = 0.355507
        # half = 1.959964 * sqrt(0.021 + 0.009604 = 0.030604) / 1.384146 = 0.247715
        lo, up = wilson_interval(0.3, 10)
        assert lo == pytest.approx(0.355507 - 0.247715, abs=2e-6)
        assert up == pytest.approx(0.355507 + 0.247715, abs=2e-6)

    @pytest.mark.parametrize("nobs", [1, 2, 5, 10, 29, 30, 99, 100, 1000, 11218])
    def test_matches_statsmodels_grid(self, nobs):
        counts = np.arange(nobs + 1) if nobs <= 100 else np.array([0, 1, 7, nobs // 3, nobs - 1, nobs])
        exp_lo, exp_up = proportion_confint(counts, nobs, alpha=0.05, method="wilson")
        lo, up = wilson_interval(counts / nobs, np.full(counts.shape, nobs))
        np.testing.assert_allclose(lo, exp_lo, rtol=0, atol=1e-12)
        np.testing.assert_allclose(up, exp_up, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("confidence", [0.8, 0.9, 0.99])
    def test_other_levels_match_statsmodels(self, confidence):
        for count, nobs in [(3, 17), (50, 120), (999, 1000)]:
            expected = proportion_confint(count, nobs, alpha=1 - confidence, method="wilson")
            assert wilson_interval(count / nobs, nobs, confidence) == pytest.approx(expected, abs=1e-12)

    def test_p0_and_p1_exact_bounds(self):
        lo, up = wilson_interval(0.0, 40)
        assert lo == 0.0 and 0 < up < 1
        lo, up = wilson_interval(1.0, 40)
        assert up == 1.0 and 0 < lo < 1
        # p=0, n=40: upper = z²/n / (1 + z²/n) = 0.0960366 / 1.0960366 = 0.0876217
        assert wilson_interval(0.0, 40)[1] == pytest.approx(0.0960365 / 1.0960365, abs=1e-6)

    def test_fractional_effective_n_between_neighbours(self):
        lo_a, up_a = wilson_interval(0.2, 50)
        lo_b, up_b = wilson_interval(0.2, 50.5)
        lo_c, up_c = wilson_interval(0.2, 51)
        assert up_a > up_b > up_c and lo_a < lo_b < lo_c

    def test_n_zero_and_missing(self):
        for p, n in [(0.5, 0), (0.5, -3), (np.nan, 10), (0.5, np.nan), (None, 10), (pd.NA, 10)]:
            lo, up = wilson_interval(p, n)
            assert math.isnan(lo) and math.isnan(up), (p, n)

    def test_arrays_and_series(self):
        p = pd.Series([0.049, np.nan, 0.5, 0.0])
        n = pd.Series([11218, 100, 0, 10], dtype="Int64")
        lo, up = wilson_interval(p, n)
        assert isinstance(lo, np.ndarray) and lo.shape == (4,) and up.shape == (4,)
        assert lo[0] == pytest.approx(wilson_interval(0.049, 11218)[0])
        assert np.isnan(lo[1]) and np.isnan(up[2])
        assert lo[3] == 0.0
        # broadcasting: one n for many p
        lo2, _ = wilson_interval(np.array([0.1, 0.2]), 100)
        assert lo2.shape == (2,)

    def test_p_out_of_range(self):
        with pytest.raises(ValueError, match=r"^p must be a proportion in \[0, 1\] \(got e\.g\. \[1\.2\]\)$"):
            wilson_interval(1.2, 10)

    def test_bad_confidence(self):
        with pytest.raises(ValueError, match=r"^confidence must be strictly between 0 and 1 \(got 95\)$"):
            wilson_interval(0.5, 10, confidence=95)


POLARITY_TABLE = [
    # (lower, upper, national, polarity, expected)
    (0.10, 0.20, 0.25, "low_is_good", "better"),
    (0.10, 0.20, 0.25, "high_is_good", "worse"),
    (0.10, 0.20, 0.25, "no_judgement", "lower"),
    (0.30, 0.40, 0.25, "low_is_good", "worse"),
    (0.30, 0.40, 0.25, "high_is_good", "better"),
    (0.30, 0.40, 0.25, "no_judgement", "higher"),
    (0.20, 0.30, 0.25, "low_is_good", "similar"),
    (0.20, 0.30, 0.25, "high_is_good", "similar"),
    (0.20, 0.30, 0.25, "no_judgement", "similar"),
    # touching the national value counts as similar
    (0.10, 0.25, 0.25, "low_is_good", "similar"),
    (0.10, 0.25, 0.25, "high_is_good", "similar"),
    (0.10, 0.25, 0.25, "no_judgement", "similar"),
    (0.25, 0.40, 0.25, "low_is_good", "similar"),
    (0.25, 0.40, 0.25, "high_is_good", "similar"),
    (0.25, 0.40, 0.25, "no_judgement", "similar"),
]
MISSING = [
    (np.nan, 0.2, 0.25),
    (0.1, np.nan, 0.25),
    (0.1, 0.2, np.nan),
    (None, 0.2, 0.25),
    (0.1, 0.2, pd.NA),
]


class TestCompareWithNational:
    @pytest.mark.parametrize("lower,upper,national,polarity,expected", POLARITY_TABLE)
    def test_table(self, lower, upper, national, polarity, expected):
        result = compare_with_national(lower, upper, national, polarity)
        assert result == expected and type(result) is str

    @pytest.mark.parametrize("polarity", stats.POLARITIES)
    @pytest.mark.parametrize("lower,upper,national", MISSING)
    def test_missing(self, lower, upper, national, polarity):
        assert compare_with_national(lower, upper, national, polarity) == "not_compared"

    def test_vectorised_matches_scalar(self):
        rows = POLARITY_TABLE + [(*m, pol, "not_compared") for m in MISSING[:3] for pol in stats.POLARITIES]
        lo, up, nat, pol, expected = (list(col) for col in zip(*rows))
        out = compare_with_national(np.array(lo, dtype=float), pd.Series(up, dtype=float), nat, np.array(pol))
        assert isinstance(out, np.ndarray) and out.shape == (len(rows),)
        assert out.tolist() == expected

    def test_scalar_polarity_with_arrays(self):
        out = compare_with_national([0.1, 0.3, 0.2], [0.2, 0.4, 0.3], 0.25, "high_is_good")
        assert out.tolist() == ["worse", "better", "similar"]

    def test_with_wilson(self):
        # The 2022 national 4.9 %; an area with 8.0 % on n = 400 lies wholly above: worse for loneliness.
        lo, up = wilson_interval(0.08, 400)
        assert lo > 0.049
        assert compare_with_national(lo, up, 0.049, "low_is_good") == "worse"
        lo, up = wilson_interval(0.06, 100)
        assert compare_with_national(lo, up, 0.049, "low_is_good") == "similar"

    @pytest.mark.parametrize("bad", ["bad", "LOW_IS_GOOD", None, ""])
    def test_unknown_polarity(self, bad):
        expected = f"polarity must be one of 'low_is_good', 'high_is_good', 'no_judgement' (got {bad!r})"
        with pytest.raises(ValueError) as err:
            compare_with_national(0.1, 0.2, 0.3, bad)
        assert str(err.value) == expected

    def test_unknown_polarity_in_array(self):
        with pytest.raises(ValueError, match=r"^polarity must be one of .* \(got 'up'\)$"):
            compare_with_national([0.1, 0.1], [0.2, 0.2], 0.3, ["low_is_good", "up"])


class TestTwoProportionTest:
    def test_hand_worked(self):
        # p1 = 0.2, n1 = 100; p0 = 0.1, n0 = 100: pooled = 30/200 = 0.15
        # var = 0.15 * 0.85 * (1/100 + 1/100) = 0.00255, se = 0.0504975
        # z = 0.1 / 0.0504975 = 1.980295; two-sided p = 2 * (1 - Φ(1.980295)) = 0.047670
        z, p = two_proportion_test(0.2, 100, 0.1, 100)
        assert z == pytest.approx(1.980295, abs=1e-6)
        assert p == pytest.approx(0.047670, abs=1e-6)
        assert isinstance(z, float) and isinstance(p, float)

    GRID = [
        (c1, n1, c0, n0)
        for (n1, n0) in [(30, 30), (100, 250), (1000, 1200), (11218, 11218)]
        for (f1, f0) in [(0.05, 0.05), (0.05, 0.07), (0.3, 0.2), (0.5, 0.45), (0.01, 0.99), (0, 0.1)]
        for c1, c0 in [(round(f1 * n1), round(f0 * n0))]
    ]

    @pytest.mark.parametrize("c1,n1,c0,n0", GRID)
    def test_matches_statsmodels(self, c1, n1, c0, n0):
        exp_z, exp_p = proportions_ztest([c1, c0], [n1, n0])
        z, p = two_proportion_test(c1 / n1, n1, c0 / n0, n0)
        assert z == pytest.approx(exp_z, abs=1e-9)
        assert p == pytest.approx(exp_p, abs=1e-12)

    def test_vectorised_matches_statsmodels(self):
        c1, n1, c0, n0 = (np.array(col, dtype=float) for col in zip(*self.GRID))
        z, p = two_proportion_test(c1 / n1, n1, c0 / n0, n0)
        assert z.shape == p.shape == (len(self.GRID),)
        for i, row in enumerate(self.GRID):
            exp_z, exp_p = proportions_ztest([row[0], row[2]], [row[1], row[3]])
            assert (z[i], p[i]) == pytest.approx((exp_z, exp_p), abs=1e-9)

    def test_antisymmetric(self):
        z1, p1 = two_proportion_test(0.3, 120, 0.2, 200)
        z2, p2 = two_proportion_test(0.2, 200, 0.3, 120)
        assert z1 == pytest.approx(-z2) and p1 == pytest.approx(p2)

    def test_degenerate_all_zero_or_all_one(self):
        # pooled 0 or 1: statsmodels gives nan; identical proportions mean no evidence of a change.
        assert two_proportion_test(0.0, 50, 0.0, 80) == (0.0, 1.0)
        assert two_proportion_test(1.0, 50, 1.0, 80) == (0.0, 1.0)

    def test_missing_and_zero_n(self):
        for args in [(np.nan, 10, 0.1, 10), (0.1, 0, 0.1, 10), (0.1, 10, 0.1, -1), (0.1, 10, None, 10)]:
            z, p = two_proportion_test(*args)
            assert math.isnan(z) and math.isnan(p), args

    def test_out_of_range(self):
        with pytest.raises(ValueError, match=r"^p0 must be a proportion in \[0, 1\]"):
            two_proportion_test(0.1, 10, 49.0, 10)


class TestChangeVsPrevious:
    def test_hand_worked(self):
        # z = 1.980 (p = 0.0477 < 0.05) from TestTwoProportionTest.test_hand_worked
        assert change_vs_previous(0.2, 100, 0.1, 100) == "increase"
        assert change_vs_previous(0.1, 100, 0.2, 100) == "decrease"
        # at 99 % the same difference is not significant
        assert change_vs_previous(0.2, 100, 0.1, 100, confidence=0.99) == "no_change"

    def test_published_rounds(self):
        # often/always lonely 4.5 % (2021, n = 11,867) -> 4.9 % (2022, n = 11,218): not significant
        assert change_vs_previous(0.049, 11218, 0.045, 11867) == "no_change"
        z, p = two_proportion_test(0.049, 11218, 0.045, 11867)
        assert p > 0.05

    def test_reproduces_official_2022_statement(self):
        # Official 2022 vs 2021 (比率の差の検定, 95 %): 時々・たまに・ほとんどない expanded,
        # 決してない shrank; often/always is not named as changed. n = 11,218 (2022), 11,867 (2021).
        p2022 = np.array([4.9, 15.8, 19.6, 40.6, 18.4]) / 100
        p2021 = np.array([4.5, 14.5, 17.4, 38.9, 23.7]) / 100
        out = change_vs_previous(p2022, 11218, p2021, 11867)
        assert out.tolist() == ["no_change", "increase", "increase", "increase", "decrease"]

    def test_threshold_consistent_with_test(self):
        rng = np.random.default_rng(4)
        p1, p0 = rng.uniform(0.05, 0.5, 200), rng.uniform(0.05, 0.5, 200)
        n1, n0 = rng.integers(30, 3000, 200), rng.integers(30, 3000, 200)
        out = change_vs_previous(p1, n1, p0, n0)
        z, p = two_proportion_test(p1, n1, p0, n0)
        expected = np.where(p < 0.05, np.where(z > 0, "increase", "decrease"), "no_change")
        assert out.tolist() == expected.tolist()
        assert {"increase", "decrease", "no_change"} <= set(out.tolist())

    def test_not_compared(self):
        assert change_vs_previous(np.nan, 100, 0.1, 100) == "not_compared"
        assert change_vs_previous(0.2, 100, 0.1, 0) == "not_compared"
        assert change_vs_previous(0.2, 0, 0.1, 100) == "not_compared"
        out = change_vs_previous(pd.Series([0.2, 0.2]), pd.Series([100, np.nan]), 0.1, 100)
        assert out.tolist() == ["increase", "not_compared"]

    def test_equal_is_no_change(self):
        assert change_vs_previous(0.0, 40, 0.0, 40) == "no_change"
        assert change_vs_previous(0.3, 400, 0.3, 900) == "no_change"

    def test_bad_confidence(self):
        with pytest.raises(ValueError, match=r"^confidence must be strictly between 0 and 1"):
            change_vs_previous(0.2, 100, 0.1, 100, confidence=0)


class TestBaseStatus:
    @pytest.mark.parametrize(
        "n,expected",
        [
            (0, "suppressed"),
            (29, "suppressed"),
            (29.9, "suppressed"),
            (30, "reference"),
            (99, "reference"),
            (100, "ok"),
            (11218, "ok"),
            (np.nan, "suppressed"),
            (None, "suppressed"),
        ],
    )
    def test_scalar(self, n, expected):
        assert base_status(n) == expected

    def test_array(self):
        out = base_status(pd.Series([10, 30, 100, None], dtype="Int64"))
        assert isinstance(out, np.ndarray) and out.tolist() == ["suppressed", "reference", "ok", "suppressed"]

    def test_custom_thresholds(self):
        assert base_status([49, 50, 200], min_base=50, reference_base=200).tolist() == ["suppressed", "reference", "ok"]
        assert base_status(60, min_base=50, reference_base=50) == "ok"
        with pytest.raises(ValueError, match=r"^min_base \(100\) must not exceed reference_base \(30\)$"):
            base_status(60, min_base=100, reference_base=30)


class TestUclaScore:
    def test_all_valid_combinations(self):
        combos = np.array(list(itertools.product([1, 2, 3, 4], repeat=3)))
        out = ucla_score(combos[:, 0], combos[:, 1], combos[:, 2])
        assert out.tolist() == combos.sum(axis=1).astype(float).tolist()
        assert out.min() == 3 and out.max() == 12

    def test_no_answer_and_missing(self):
        assert ucla_score(4, 4, 4) == 12.0 and isinstance(ucla_score(4, 4, 4), float)
        assert math.isnan(ucla_score(9, 4, 4))
        assert math.isnan(ucla_score(1, 9, 1))
        assert math.isnan(ucla_score(1, 1, np.nan))
        assert math.isnan(ucla_score(1, None, 1))
        out = ucla_score(pd.Series([1, 9, 2]), pd.Series([1, 1, pd.NA], dtype="Int64"), 1)
        assert out[0] == 3 and np.isnan(out[1]) and np.isnan(out[2])

    @pytest.mark.parametrize("position", [0, 1, 2])
    def test_invalid_code(self, position):
        args = [1, 1, 1]
        args[position] = 5
        with pytest.raises(ValueError) as err:
            ucla_score(*args)
        assert str(err.value) == f"q{position + 1}: UCLA item codes must be 1-4 or 9 (無回答) (got e.g. [5.0])"


class TestUclaBand:
    @pytest.mark.parametrize(
        "score,expected",
        [
            (3, "3"),
            (4, "4-6"),
            (6, "4-6"),
            (7, "7-9"),
            (9, "7-9"),
            (10, "10-12"),
            (12, "10-12"),
            (np.nan, "na"),
            (None, "na"),
        ],
    )
    def test_scalar(self, score, expected):
        result = ucla_band(score)
        assert result == expected and type(result) is str

    def test_bands_cover_codes(self):
        assert set(ucla_band(np.arange(3, 13)).tolist()) | {"na"} == set(stats.UCLA_BAND_CODES)

    def test_with_score(self):
        s = ucla_score([4, 3, 1, 9], [4, 2, 1, 1], [2, 2, 1, 1])
        assert ucla_band(s).tolist() == ["10-12", "7-9", "3", "na"]

    @pytest.mark.parametrize("bad", [2, 13, 7.5, 0])
    def test_invalid(self, bad):
        with pytest.raises(ValueError, match=r"^score must be a whole number 3-12"):
            ucla_band(bad)


class TestRatePer10000:
    def test_hand_worked(self):
        # 1,234 consultations in a population aged 16+ of 2,345,678: 1234 / 2345678 = 0.000526074 -> × 10000 = 5.2607391
        assert rate_per_10000(1234, 2_345_678) == pytest.approx(5.2607391, abs=1e-6)
        assert rate_per_10000(0, 100) == 0.0

    def test_edges(self):
        assert math.isnan(rate_per_10000(5, 0))
        assert math.isnan(rate_per_10000(np.nan, 100))
        assert math.isnan(rate_per_10000(5, None))
        out = rate_per_10000(pd.Series([10, 20, np.nan]), pd.Series([1000, 0, 1000]))
        assert out[0] == 100.0 and np.isnan(out[1]) and np.isnan(out[2])
        with pytest.raises(ValueError, match=r"^count must be >= 0$"):
            rate_per_10000(-1, 100)


# --------------------------------------------------------------------------------------------
# Secondary suppression (二次秘匿): hand-worked cases
# --------------------------------------------------------------------------------------------

from pipelines.domain.stats import groups_from_labels, secondary_suppression  # noqa: E402


class TestSecondarySuppression:
    def test_sex_with_a_small_remainder(self):
        # Total 62 = men 32 + women 28 (primary) + sex 3/9: 2. Hidden: 28 + 2 = 30; other than the
        # women: 2 < 30 -> the smallest published cell (men, 32) is suppressed too. Then hidden 62,
        # largest 32, other 30 >= 30: done.
        got = secondary_suppression([32, 28], [False, True], [[0, 1]], [2])
        assert got.tolist() == [True, False]

    def test_remainder_of_min_base_protects_alone(self):
        assert secondary_suppression([500, 28], [False, True], [[0, 1]], [30]).tolist() == [False, False]
        assert secondary_suppression([500, 28], [False, True], [[0, 1]], [29]).tolist() == [True, False]
        # No remainder given = 0: one suppressed cell is never left alone.
        assert secondary_suppression([500, 28], [False, True], [[0, 1]]).tolist() == [True, False]

    def test_age_bands_iterate(self):
        # 15 (primary), 35, 40, 50. Pass 1: hidden 15, other 0 -> suppress 35. Pass 2: hidden 50,
        # largest 35, other 15 < 30 -> suppress 40. Pass 3: hidden 90, largest 40, other 50: done.
        got = secondary_suppression([15, 35, 40, 50], [True, False, False, False], [[0, 1, 2, 3]])
        assert got.tolist() == [False, True, True, False]

    def test_two_primaries_too_small_together(self):
        # 28 and 5 suppressed: hidden 33, other than 28 only 5 -> suppress the smallest shown (100).
        got = secondary_suppression([28, 5, 100, 200], [True, True, False, False], [[0, 1, 2, 3]])
        assert got.tolist() == [False, False, True, False]
        # 20 and 12 and 25: hidden 57, largest 25, other 32 >= 30: nothing more.
        got = secondary_suppression([20, 12, 25, 300], [True, True, True, False], [[0, 1, 2, 3]])
        assert not got.any()

    def test_ties_take_the_first_listed(self):
        # 10 primary; pass 1 -> the first 40; pass 2: other than 40 only 10 -> the second 40;
        # pass 3: hidden 90, other 50: done. The third 40 stays.
        got = secondary_suppression([10, 40, 40, 40], [True, False, False, False], [[0, 1, 2, 3]])
        assert got.tolist() == [False, True, True, False]

    def test_empty_cells_need_no_protection_and_hide_nothing(self):
        assert not secondary_suppression([0, 50, 60], [True, False, False], [[0, 1, 2]]).any()
        # An empty suppressed cell does not cover a small one: 20 -> 60 (other 0); then other than
        # 60 only 20 -> 70; then hidden 150, largest 70, other 80: done.
        got = secondary_suppression([0, 20, 60, 70, 80], [True, True, False, False, False], [[0, 1, 2, 3, 4]])
        assert got.tolist() == [False, False, True, True, False]

    def test_nothing_left_to_suppress(self):
        assert not secondary_suppression([10, 12], [True, True], [[0, 1]]).any()

    def test_no_primary_no_secondary(self):
        assert not secondary_suppression([40, 50], [False, False], [[0, 1]], [0]).any()

    def test_two_dimensions(self):
        # Prefectures X, Y, Z x sex 1/2 (cells 0..5 = X1 X2 Y1 Y2 Z1 Z2), rows and columns both add
        # up to published totals, no remainders. X2 = 28 primary.
        n = [100, 28, 300, 320, 400, 350]
        groups = [[0, 1], [2, 3], [4, 5], [0, 2, 4], [1, 3, 5]]
        got = secondary_suppression(n, [False, True, False, False, False, False], groups)
        # Pass 1: row X (X2 alone) -> X1 (100); column sex2 (X2 alone) -> Y2 (320 < Z2 350).
        # Pass 2: column sex1 (X1 alone) -> Y1 (300); row Y (Y2 alone) -> Y1; column sex2:
        # hidden 348, largest 320, other 28 < 30 -> Z2. Pass 3: row Z (Z2 alone) -> Z1.
        # Pass 4: column sex1 hidden 800, largest 400, other 400; row X other than X1 is 28 but
        # nothing is left there: done. Every cell but the primary one is suppressed secondarily.
        assert got.tolist() == [True, False, True, True, True, True]

    def test_pass_semantics_documented(self):
        # Every exposed group adds its smallest cell in the same pass: pass 1 -> 50 and 70;
        # pass 2: group 1 other than 50 only 20 -> 60; group 2 other than 70 is 21 but nothing left.
        got = secondary_suppression([20, 50, 60, 21, 70], [True, False, False, True, False], [[0, 1, 2], [3, 4]])
        assert got.tolist() == [False, True, True, False, True]

    def test_groups_from_labels(self):
        g = groups_from_labels(["a", "b", None, "a", np.nan, "b", "c"])
        assert [x.tolist() for x in g] == [[0, 3], [1, 5], [6]]
        got = secondary_suppression([15, 35, 40, 50], [True, False, False, False], groups_from_labels(["g"] * 4))
        assert got.tolist() == [False, True, True, False]

    def test_bad_input(self):
        with pytest.raises(ValueError, match=r"^primary must have the same length as n \(1 flags, 2 counts\)$"):
            secondary_suppression([1, 2], [True], [[0, 1]])
        with pytest.raises(ValueError, match=r"^remainder must have one value per group \(2 values, 1 groups\)$"):
            secondary_suppression([1, 2], [True, False], [[0, 1]], [0, 0])
        with pytest.raises(ValueError, match=r"^n must be >= 0$"):
            secondary_suppression([-1, 2], [True, False], [[0, 1]])
        with pytest.raises(ValueError, match=r"^group cell index out of range 0\.\.1$"):
            secondary_suppression([1, 2], [True, False], [[0, 2]])
        with pytest.raises(ValueError, match=r"^n must not be missing"):
            secondary_suppression([np.nan, 2], [True, False], [[0, 1]])


# --------------------------------------------------------------------------------------------
# Tests valid for the case (issue #13): Newcombe, Fisher, rest of nation, design effect, χ²
# --------------------------------------------------------------------------------------------

from scipy.stats import chi2_contingency, fisher_exact  # noqa: E402
from statsmodels.stats.proportion import confint_proportions_2indep  # noqa: E402


class TestDesignN:
    def test_divides(self):
        assert stats.design_n(1000.0, 2.0) == 500.0
        assert stats.design_n(1000.0) == 1000.0
        assert stats.design_n(np.array([100.0, np.nan]), 1.25).tolist()[0] == 80.0

    @pytest.mark.parametrize("bad", [0, -1, float("nan")])
    def test_bad_deff(self, bad):
        with pytest.raises(ValueError, match=r"^deff must be a number > 0"):
            stats.design_n(100.0, bad)


class TestNewcombeInterval:
    @pytest.mark.parametrize(
        "x1,n1,x2,n2", [(30, 200, 50, 210), (0, 46, 4, 46), (5, 20, 5, 20), (46, 46, 40, 46), (120, 1500, 520, 11000)]
    )
    def test_matches_statsmodels(self, x1, n1, x2, n2):
        lo, up = stats.newcombe_interval(x1 / n1, n1, x2 / n2, n2)
        ref = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
        assert lo == pytest.approx(ref[0], abs=1e-12) and up == pytest.approx(ref[1], abs=1e-12)

    def test_hand_worked(self):
        # p1 = p2 = 0.5, n = 100: Wilson half-width h = 1.96/(1+z²/100)·√(0.0025 + z²/40000)
        z = Z95
        h = z / (1 + z * z / 100) * math.sqrt(0.25 / 100 + z * z / 40000)
        lo, up = stats.newcombe_interval(0.5, 100, 0.5, 100)
        assert up == pytest.approx(math.sqrt(2) * h, rel=1e-12) and lo == pytest.approx(-up, rel=1e-12)

    def test_arrays_and_missing(self):
        lo, up = stats.newcombe_interval([0.1, np.nan], [100, 100], [0.2, 0.2], [100, 0])
        assert np.isnan(lo[1]) and np.isnan(up[1]) and lo[0] < -0.1 < up[0]


class TestFisherExactP:
    @pytest.mark.parametrize(
        "x1,n1,x2,n2",
        [(4, 46, 0, 46), (1, 10, 9, 10), (3, 30, 3, 300), (0, 5, 0, 7), (12, 40, 2, 35), (5, 1200, 0, 50)],
    )
    def test_matches_scipy(self, x1, n1, x2, n2):
        ref = fisher_exact([[x1, n1 - x1], [x2, n2 - x2]]).pvalue
        assert stats.fisher_exact_p(x1, n1, x2, n2) == pytest.approx(ref, rel=1e-9)

    def test_tottori_hand_worked(self):
        # 0/46 -> 4/46: P(k) = C(46,k)C(46,4-k)/C(92,4); tables as unlikely as k=4 are k=0 and k=4.
        p4 = math.comb(46, 4) / math.comb(92, 4)
        assert stats.fisher_exact_p(4, 46, 0, 46) == pytest.approx(2 * p4, rel=1e-12)
        assert 2 * p4 == pytest.approx(0.1168, abs=1e-4)

    def test_rounding_and_invalid(self):
        # effective counts are rounded to whole numbers
        assert stats.fisher_exact_p(3.6, 45.8, 0.2, 46.1) == stats.fisher_exact_p(4, 46, 0, 46)
        out = stats.fisher_exact_p([np.nan, 5, 1], [10, 4, 0.2], [1, 1, 1], [10, 10, 10])
        assert np.isnan(out).all()


class TestDifferenceTest:
    def test_tottori_is_not_significant(self):
        # Issue #13: UCLA 10-12 in Tottori 0/46 -> 4/46 was flagged "↑増加" by the z-test.
        z, p = stats.two_proportion_test(4 / 46, 46, 0 / 46, 46)
        assert p < 0.05  # the old test flagged it
        r = stats.difference_test(4 / 46, 46, 0 / 46, 46)
        assert r["method"] == "fisher" and not r["significant"]
        assert r["p_value"] == pytest.approx(0.1168, abs=1e-4)
        assert stats.change_label(r["direction"], r["significant"]) == "no_change"

    def test_large_counts_use_newcombe(self):
        r = stats.difference_test(0.06, 1000, 0.04, 1000)
        lo, up = confint_proportions_2indep(60, 1000, 40, 1000, method="newcomb")
        assert r["method"] == "newcombe" and np.isnan(r["p_value"])
        assert r["lower"] == pytest.approx(lo, abs=1e-12) and r["upper"] == pytest.approx(up, abs=1e-12)
        assert r["significant"] == (lo > 0) and r["significant"]
        assert r["direction"] == 1.0 and r["diff"] == pytest.approx(0.02)

    def test_expected_count_threshold(self):
        # pooled 5/200 -> expected successes 100·0.025 = 2.5 < 5: exact test
        assert stats.expected_counts_min(0.04, 100, 0.01, 100) == pytest.approx(2.5)
        assert stats.difference_test(0.04, 100, 0.01, 100)["method"] == "fisher"
        assert stats.difference_test(0.10, 100, 0.10, 100)["method"] == "newcombe"

    def test_arrays_missing_and_suffix(self):
        r = stats.difference_test(
            [0.2, np.nan, 0.3], [500, 500, 0], [0.1, 0.1, 0.1], [500, 500, 500], method_suffix="_rest"
        )
        assert r["method"].tolist() == ["newcombe_rest", "none", "none"]
        assert r["significant"].tolist() == [True, False, False]
        assert np.isnan(r["direction"][1]) and np.isnan(r["direction"][2])
        assert stats.change_label(r["direction"], r["significant"]).tolist() == [
            "increase",
            "not_compared",
            "not_compared",
        ]

    def test_design_effect_widens(self):
        # Significant on n = 1000 each, not once a deff of 2.5 divides the sizes.
        assert stats.difference_test(0.06, 1000, 0.04, 1000)["significant"]
        r = stats.difference_test(0.06, stats.design_n(1000, 2.5), 0.04, stats.design_n(1000, 2.5))
        assert not r["significant"]

    def test_own_survey_includes_both_uncertainties(self):
        # Area 4.2% of 1,500 (own survey) vs national 5.0% of 11,000: the national value's own
        # uncertainty enters. With the national value taken as fixed (its n infinite) the
        # interval is narrower.
        both = stats.difference_test(0.042, 1500, 0.050, 11000)
        fixed = stats.difference_test(0.042, 1500, 0.050, 1e12)
        lo, up = confint_proportions_2indep(63, 1500, 550, 11000, method="newcomb")
        assert both["lower"] == pytest.approx(lo, abs=1e-12) and both["upper"] == pytest.approx(up, abs=1e-12)
        assert (both["upper"] - both["lower"]) > (fixed["upper"] - fixed["lower"])
        # A case significant only when the national uncertainty is ignored (n_nat = 1,200):
        wide = stats.difference_test(0.040, 1500, 0.055, 1200)
        narrow = stats.difference_test(0.040, 1500, 0.055, 1e12)
        assert narrow["significant"] and not wide["significant"]


class TestRestOfTotal:
    def test_hand_worked(self):
        # whole: weights 1,1,2,2 with y 1,0,1,0; part = the first two. Rest: weights 2,2, y 1,0.
        p, n = stats.rest_of_total(6.0, 10.0, 3.0, 2.0, 2.0, 1.0)
        assert p == pytest.approx(0.5) and n == pytest.approx(16 / 8)

    def test_direction_matches_national(self):
        # national = mix of area and rest, so sign(area - national) == sign(area - rest)
        sw, sw2, swy = 1000.0, 1000.0, 100.0  # national 10%
        pw, pw2, pwy = 50.0, 50.0, 10.0  # area 20%
        p_rest, n_rest = stats.rest_of_total(sw, sw2, swy, pw, pw2, pwy)
        assert p_rest == pytest.approx(90 / 950) and n_rest == pytest.approx(950.0)
        assert np.sign(0.2 - 0.1) == np.sign(0.2 - p_rest)

    def test_empty_rest(self):
        p, n = stats.rest_of_total(10.0, 10.0, 3.0, 10.0, 10.0, 3.0)
        assert math.isnan(p) and math.isnan(n)


class TestComparisonLabel:
    def test_labels(self):
        assert stats.comparison_label(-1.0, True, "low_is_good") == "better"
        assert stats.comparison_label(-1.0, True, "high_is_good") == "worse"
        assert stats.comparison_label(1.0, True, "no_judgement") == "higher"
        assert stats.comparison_label(1.0, False, "low_is_good") == "similar"
        assert stats.comparison_label(float("nan"), True, "low_is_good") == "not_compared"
        out = stats.comparison_label(
            np.array([1.0, -1.0]), np.array([True, True]), np.array(["low_is_good", "no_judgement"], dtype=object)
        )
        assert out.tolist() == ["worse", "lower"]

    def test_bad_polarity(self):
        with pytest.raises(ValueError, match=r"^polarity must be one of"):
            stats.comparison_label(1.0, True, "up")


class TestChangeLabel:
    def test_labels(self):
        assert stats.change_label(1.0, True) == "increase"
        assert stats.change_label(-1.0, True) == "decrease"
        assert stats.change_label(-1.0, False) == "no_change"
        assert stats.change_label(float("nan"), False) == "not_compared"


class TestHomogeneityTest:
    def test_matches_scipy(self):
        x = np.array([12, 30, 8, 50])
        n = np.array([200, 400, 150, 600])
        ref = chi2_contingency(np.vstack([x, n - x]), correction=False)
        r = stats.homogeneity_test(x / n, n)
        assert r["statistic"] == pytest.approx(ref.statistic, rel=1e-10)
        assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert r["df"] == ref.dof == 3 and r["k"] == 4

    def test_design_effect_and_missing(self):
        x = np.array([12, 30, 8, 50])
        n = np.array([200, 400, 150, 600])
        plain = stats.homogeneity_test(x / n, n)
        halved = stats.homogeneity_test(np.append(x / n, np.nan), stats.design_n(np.append(n, 100), 2.0))
        assert halved["statistic"] == pytest.approx(plain["statistic"] / 2) and halved["k"] == 4
        assert math.isnan(stats.homogeneity_test([0.1], [100])["statistic"])
        assert math.isnan(stats.homogeneity_test([0.0, 0.0], [100, 50])["p_value"])


class TestMultiplicity:
    def test_issue_figures(self):
        # 131 of 2,114 change tests flagged: 105.7 expected at α = 0.05
        m = stats.multiplicity(2114, 131)
        assert (
            m["alpha"] == 0.05
            and m["expected_false"] == pytest.approx(105.7)
            and m["share_flagged"] == pytest.approx(131 / 2114)
        )
        from scipy.stats import binom

        assert m["p_all_null"] == pytest.approx(binom.sf(130, 2114, 0.05), rel=1e-8)

    def test_bad(self):
        with pytest.raises(ValueError, match=r"^n_flagged \(5\) must not exceed n_tests \(4\)"):
            stats.multiplicity(4, 5)
        with pytest.raises(ValueError, match=r"^n_tests must be a whole number >= 0"):
            stats.multiplicity(-1, 0)
        assert stats.multiplicity(0, 0)["expected_false"] == 0.0


class TestDesignEffects:
    def test_parse(self):
        assert config.design_effects("") == {}
        assert config.design_effects("1.5") == {"*": 1.5}
        e = config.design_effects("national=1.8, prefecture=1.2,pref11-2023=1.3")
        assert config.design_effect("national", "national-2024", e) == 1.8
        assert config.design_effect("prefecture", "pref11-2023", e) == 1.3
        assert config.design_effect("prefecture", "pref27-2024", e) == 1.2
        # No entry: the documented default (1.5 since issue #22; was 1.0), and no configured value.
        assert config.design_effect("national", None, {}) == config.DEFAULT_DEFF == 1.5
        assert config.configured_deff("national", "national-2024", {}) is None
        assert config.configured_deff("national", "national-2024", e) == 1.8
        assert config.configured_deff("prefecture", "pref27-2024", {"*": 2.0}) == 2.0

    def test_env(self, monkeypatch):
        monkeypatch.setenv("TSUNAGARI_DEFF", "national=2")
        assert config.design_effects() == {"national": 2.0}

    @pytest.mark.parametrize("bad", ["x", "national=0", "=2", "national=-1", "national=nan"])
    def test_bad(self, bad):
        with pytest.raises(config.SettingsError, match=r"^TSUNAGARI_DEFF: statistics.deff: 設計効果の指定が不正です"):
            config.design_effects(bad)
