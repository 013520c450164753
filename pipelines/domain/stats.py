"""Pure statistics of Tsunagari (DESIGN.md "Statistical conventions").

No I/O and no warehouse: these functions take numbers and return numbers or labels, so that they can
be unit-tested against hand-worked values and against statsmodels.

Conventions shared by every function here:

* Proportions are in 0..1; callers convert to percent for display.
* Every function accepts scalars and numpy arrays / pandas Series (or lists), works elementwise with
  numpy broadcasting, and propagates missing values: a NaN / None / ``pd.NA`` input gives NaN (for a
  number) or ``'not_compared'`` / ``'suppressed'`` / ``'na'`` (for a label, as documented below).
* Scalar in -> Python ``float`` / ``str`` out. Any array-like in -> ``numpy.ndarray`` out (float64
  for numbers, object dtype holding ``str`` for labels), with the broadcast shape of the inputs.
  A pandas index is not kept: assign the result back to a column of the same frame.

Method summary (what every report's methods section states):

* Weighted share p = Σ w·y / Σ w, with y the 0/1 indicator of the answer of interest and the
  denominator all respondents (無回答 included) unless the indicator is defined on a sub-population.
* Kish effective sample size n_eff = (Σw)² / Σw² (equals n when all weights are equal).
* 95 % Wilson score interval for p on n_eff, clipped to [0, 1].
* Design effect: every effective size used for an interval or a test is n_eff / deff, with deff
  the survey's design effect: configured (``config.design_effects``), else estimated by Taylor
  linearisation from the stratum/PSU columns (``survey_design``), else ``config.DEFAULT_DEFF``.
* Differences of two independent proportions (``difference_test``): Newcombe's hybrid score
  interval (Newcombe 1998, method 10, from the two Wilson intervals) on the effective sizes; when any
  expected count of the 2x2 table is below 5, Fisher's exact test (two-sided) on the effective
  counts rounded to whole numbers decides instead. ``comparison_label`` / ``change_label`` turn the
  result into the published labels (one function each).
* Area vs national (``indicators`` chooses the reference): an area from its own survey is
  independent of the national sample, so it is compared with the national estimate with both
  uncertainties (method ``newcombe`` / ``fisher``); an area estimated from the national survey's
  respondents is part of the national sample, so it is compared with the rest of the nation
  (national minus the area, ``rest_of_total``), which is independent of it and differs from the
  area in the same direction as the national figure does (method ``newcombe_rest`` /
  ``fisher_rest``).
* Change vs previous round: the same test on the two rounds (independent samples); not tested
  across a change of source (method ``source_break``: the two values are shown, not compared).
* Homogeneity across areas (``homogeneity_test``): Pearson's χ² test on effective counts.
* ``compare_with_national`` / ``two_proportion_test`` / ``change_vs_previous``: the earlier
  interval-overlap rule and pooled z-test (比率の差の検定), kept for callers and comparisons; the
  indicators table uses ``difference_test``.
* Bases: unweighted base < 30 suppressed, 30–99 shown as 参考値, >= 100 ok.
* Secondary suppression (二次秘匿, ``secondary_suppression``): within every group of cells that add
  up to a published total (sex 1/2, age bands, UK age bands, living alone 1/0, and prefectures
  within the national figure), each suppressed cell must be hidden together with at least 30 other
  respondents whose values are not published (other suppressed cells of the group, plus the
  unpublished remainder such as sex 3/9 or age unknown); otherwise the smallest published cell of
  the group is suppressed too, and this repeats until every group holds.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from pipelines.domain import config
from pipelines.domain.schema import POLARITIES

__all__ = [
    "POLARITIES",
    "COMPARISONS",
    "CHANGES",
    "BASE_STATUSES",
    "UCLA_BAND_CODES",
    "z_critical",
    "effective_n",
    "weighted_share",
    "weighted_estimate",
    "wilson_interval",
    "compare_with_national",
    "two_proportion_test",
    "change_vs_previous",
    "base_status",
    "design_n",
    "newcombe_interval",
    "fisher_exact_p",
    "expected_counts_min",
    "difference_test",
    "rest_of_total",
    "comparison_label",
    "change_label",
    "homogeneity_test",
    "multiplicity",
    "METHOD_DESCRIPTIONS",
    "secondary_suppression",
    "groups_from_labels",
    "ucla_score",
    "ucla_band",
    "rate_per_10000",
]

COMPARISONS = ("better", "worse", "lower", "higher", "similar", "not_compared")
CHANGES = ("increase", "decrease", "no_change", "not_compared")
BASE_STATUSES = ("suppressed", "reference", "ok")
# Bands of the Japanese UCLA 3-item score (4-point items, 3..12), highest first; 'na' = 無回答.
UCLA_BAND_CODES = ("10-12", "7-9", "4-6", "3", "na")

_UCLA_VALID = (1.0, 2.0, 3.0, 4.0)
_UCLA_NO_ANSWER = 9.0

_erfc = np.vectorize(math.erfc, otypes=[float])


# --------------------------------------------------------------------------------------------
# Input / output helpers
# --------------------------------------------------------------------------------------------


def _is_scalar(x: Any) -> bool:
    if isinstance(x, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray, np.ndarray)):
        return False
    return np.ndim(x) == 0


def _as_float(x: Any) -> np.ndarray:
    """``x`` as a float64 array (0-d for a scalar); None / pd.NA / NaT become NaN."""
    if x is None or x is pd.NA:
        return np.array(np.nan)
    if isinstance(x, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        return np.asarray(pd.to_numeric(pd.Series(x)).to_numpy(dtype=float, na_value=np.nan))
    try:
        return np.asarray(x, dtype=float)
    except TypeError:
        # An object array holding pd.NA or similar: go through pandas' nullable floats.
        obj = np.asarray(x, dtype=object)
        flat = pd.to_numeric(pd.Series(obj.ravel())).to_numpy(dtype=float, na_value=np.nan)
        return flat.reshape(obj.shape)


def _prepare(*args: Any) -> tuple[bool, list[np.ndarray]]:
    """(all inputs scalar?, the inputs as broadcast float arrays)."""
    scalar = all(_is_scalar(a) for a in args)
    arrays = np.broadcast_arrays(*[_as_float(a) for a in args])
    return scalar, [np.asarray(a, dtype=float) for a in arrays]


def _out_float(values: np.ndarray, scalar: bool) -> float | np.ndarray:
    values = np.asarray(values, dtype=float)
    return float(values) if scalar else values


def _out_label(values: np.ndarray, scalar: bool) -> str | np.ndarray:
    return str(values.item()) if scalar else values


def _check_confidence(confidence: float | None) -> float:
    """`confidence` (None: config.CONFIDENCE_LEVEL, read at call time), checked to be in (0, 1)."""
    if confidence is None:
        confidence = config.CONFIDENCE_LEVEL
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        c = float("nan")
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1 (got {confidence!r})")
    return c


def z_critical(confidence: float | None = None) -> float:
    """Two-sided normal critical value: 1.959963984540054 for 0.95."""
    c = _check_confidence(confidence)
    return NormalDist().inv_cdf(1.0 - (1.0 - c) / 2.0)


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------


def effective_n(sum_w: Any, sum_w2: Any) -> float | np.ndarray:
    """Kish effective sample size n_eff = (Σw)² / Σw².

    ``sum_w2 == 0`` (no respondents) or a missing input gives NaN. With all weights equal to 1 the
    result is the plain count n.
    """
    scalar, (sw, sw2) = _prepare(sum_w, sum_w2)
    if np.any(sw2 < 0):
        raise ValueError("sum_w2 must be >= 0 (a sum of squared weights)")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sw2 > 0, sw * sw / np.where(sw2 > 0, sw2, 1.0), np.nan)
    return _out_float(out, scalar)


def _flags_and_weights(flags: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _as_float(flags).ravel()
    if weights is None:
        w = np.ones_like(y)
    else:
        w = _as_float(weights).ravel()
        if w.shape != y.shape:
            raise ValueError(f"weights must have the same length as flags ({w.size} weights, {y.size} flags)")
    bad_y = ~np.isnan(y) & ~np.isin(y, (0.0, 1.0))
    if bad_y.any():
        raise ValueError(f"flags must be 0 or 1 (got e.g. {y[bad_y][:5].tolist()})")
    if np.any(w[~np.isnan(w)] < 0):
        raise ValueError("weights must be >= 0")
    return y, w


def weighted_share(flags: Any, weights: Any = None) -> float:
    """Share of 1s among raw 0/1 ``flags``, weighted by ``weights`` (default: all 1).

    p = Σ w·y / Σ w. Any missing flag or weight gives NaN (the denominator is all respondents, so a
    missing flag is a data error upstream, not something to drop silently). No respondents, or a
    total weight of 0, gives NaN.
    """
    y, w = _flags_and_weights(flags, weights)
    if y.size == 0 or np.isnan(y).any() or np.isnan(w).any():
        return float("nan")
    total = float(w.sum())
    if total <= 0:
        return float("nan")
    return float(np.dot(w, y) / total)


def weighted_estimate(flags: Any, weights: Any = None, confidence: float | None = None) -> dict[str, float | int]:
    """Everything a row of the indicators table needs from raw 0/1 flags.

    Returns ``value`` (share, 0..1), ``lower`` / ``upper`` (Wilson on n_eff), ``n_unweighted``,
    ``n_effective``.
    """
    y, w = _flags_and_weights(flags, weights)
    p = weighted_share(y, w)
    n_eff = effective_n(float(w.sum()), float(np.dot(w, w))) if y.size else float("nan")
    lower, upper = wilson_interval(p, n_eff if not math.isnan(n_eff) else 0.0, confidence)
    return {"value": p, "lower": lower, "upper": upper, "n_unweighted": int(y.size), "n_effective": n_eff}


def wilson_interval(
    p: Any, n: Any, confidence: float | None = None
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (lower, upper) for a proportion ``p`` on (effective) sample size ``n``.

    centre = (p + z²/2n) / (1 + z²/n),
    half   = z / (1 + z²/n) · √(p(1−p)/n + z²/4n²),
    clipped to [0, 1]. ``n`` may be fractional (Kish n_eff). ``n <= 0`` or a missing input gives
    (nan, nan). ``p`` outside [0, 1] is a ValueError.
    """
    z = z_critical(confidence)
    scalar, (pp, nn) = _prepare(p, n)
    bad = ~np.isnan(pp) & ((pp < 0) | (pp > 1))
    if bad.any():
        raise ValueError(f"p must be a proportion in [0, 1] (got e.g. {pp[bad].ravel()[:5].tolist()})")
    ok = ~np.isnan(pp) & ~np.isnan(nn) & (nn > 0)
    n_safe = np.where(ok, nn, 1.0)
    p_safe = np.where(ok, pp, 0.5)
    z2 = z * z
    denom = 1.0 + z2 / n_safe
    centre = (p_safe + z2 / (2.0 * n_safe)) / denom
    half = z * np.sqrt(p_safe * (1.0 - p_safe) / n_safe + z2 / (4.0 * n_safe * n_safe)) / denom
    # At p = 0 (p = 1) the lower (upper) bound is exactly 0 (1); avoid a rounding residue of 1e-17.
    lower = np.where(p_safe == 0.0, 0.0, np.clip(centre - half, 0.0, 1.0))
    upper = np.where(p_safe == 1.0, 1.0, np.clip(centre + half, 0.0, 1.0))
    lower = np.where(ok, lower, np.nan)
    upper = np.where(ok, upper, np.nan)
    return _out_float(lower, scalar), _out_float(upper, scalar)


def rate_per_10000(count: Any, population: Any) -> float | np.ndarray:
    """count / population × 10,000; NaN when either is missing or population <= 0."""
    scalar, (c, pop) = _prepare(count, population)
    if np.any(c[~np.isnan(c)] < 0):
        raise ValueError("count must be >= 0")
    ok = ~np.isnan(c) & ~np.isnan(pop) & (pop > 0)
    out = np.where(ok, c / np.where(ok, pop, 1.0) * 10_000.0, np.nan)
    return _out_float(out, scalar)


# --------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------


def _polarity_array(polarity: Any) -> np.ndarray:
    pol = np.asarray(polarity.to_numpy() if isinstance(polarity, pd.Series) else polarity, dtype=object)
    for value in pd.unique(pol.ravel()):
        if value not in POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(repr(p) for p in POLARITIES)} (got {value!r})")
    return pol


def compare_with_national(lower: Any, upper: Any, national: Any, polarity: Any) -> str | np.ndarray:
    """Compare an area's interval with the national value.

    Interval wholly below the national value (upper < national): ``better`` when low_is_good,
    ``worse`` when high_is_good, ``lower`` for no_judgement. Wholly above (lower > national):
    ``worse`` / ``better`` / ``higher``. Straddling or touching: ``similar``. Any missing value:
    ``not_compared``. ``polarity`` may be one string or an array of them; an unknown polarity is a
    ValueError naming ``polarity``.
    """
    pol = _polarity_array(polarity)
    scalar = all(_is_scalar(a) for a in (lower, upper, national)) and pol.ndim == 0
    lo, up, nat = np.broadcast_arrays(*(_as_float(a) for a in (lower, upper, national)))
    missing = np.isnan(lo) | np.isnan(up) | np.isnan(nat)
    direction = np.where(missing, np.nan, np.where(up < nat, -1.0, np.where(lo > nat, 1.0, 0.0)))
    out = comparison_label(direction, direction != 0, pol)
    return _out_label(np.asarray(out, dtype=object), scalar)


def two_proportion_test(p1: Any, n1: Any, p0: Any, n0: Any) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z-test of p1 (this round, n1) against p0 (previous round, n0).

    pooled = (p1·n1 + p0·n0) / (n1 + n0); z = (p1 − p0) / √(pooled(1−pooled)(1/n1 + 1/n0));
    two-sided p-value = erfc(|z|/√2). Same as statsmodels ``proportions_ztest([c1, c0], [n1, n0])``.
    With effective sizes (n_eff) p·n need not be a whole count. A missing input or ``n <= 0`` gives
    (nan, nan). When pooled is 0 or 1 both proportions are equal, so z = 0 and p = 1 (statsmodels
    returns nan there).
    """
    scalar, (a, na, b, nb) = _prepare(p1, n1, p0, n0)
    for name, v in (("p1", a), ("p0", b)):
        bad = ~np.isnan(v) & ((v < 0) | (v > 1))
        if bad.any():
            raise ValueError(f"{name} must be a proportion in [0, 1] (got e.g. {v[bad][:5].tolist()})")
    ok = ~(np.isnan(a) | np.isnan(na) | np.isnan(b) | np.isnan(nb)) & (na > 0) & (nb > 0)
    na_s, nb_s = np.where(ok, na, 1.0), np.where(ok, nb, 1.0)
    a_s, b_s = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    pooled = (a_s * na_s + b_s * nb_s) / (na_s + nb_s)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / na_s + 1.0 / nb_s))
    degenerate = se <= 0
    z = np.where(degenerate, 0.0, (a_s - b_s) / np.where(degenerate, 1.0, se))
    pval = _erfc(np.abs(z) / math.sqrt(2.0))
    z = np.where(ok, z, np.nan)
    pval = np.where(ok, pval, np.nan)
    return _out_float(z, scalar), _out_float(pval, scalar)


def change_vs_previous(p1: Any, n1: Any, p0: Any, n0: Any, confidence: float | None = None) -> str | np.ndarray:
    """``increase`` / ``decrease`` when the two-proportion test is significant (p-value < 1 −
    confidence), else ``no_change``; ``not_compared`` when any input is missing or an n <= 0."""
    c = _check_confidence(confidence)
    scalar = all(_is_scalar(x) for x in (p1, n1, p0, n0))
    z, pval = two_proportion_test(p1, n1, p0, n0)
    z, pval = np.asarray(z, dtype=float), np.asarray(pval, dtype=float)
    missing = np.isnan(pval)
    significant = ~missing & (pval < 1.0 - c)
    out = np.full(z.shape, "no_change", dtype=object)
    out[significant & (z > 0)] = "increase"
    out[significant & (z < 0)] = "decrease"
    out[missing] = "not_compared"
    return _out_label(out, scalar)


def base_status(n_unweighted: Any, min_base: int | None = None, reference_base: int | None = None) -> str | np.ndarray:
    """``suppressed`` (n < min_base, or missing), ``reference`` (参考値: min_base <= n <
    reference_base), ``ok`` (n >= reference_base). Defaults: config.MIN_BASE, config.REFERENCE_BASE."""
    min_base = config.MIN_BASE if min_base is None else min_base
    reference_base = config.REFERENCE_BASE if reference_base is None else reference_base
    if min_base > reference_base:
        raise ValueError(f"min_base ({min_base}) must not exceed reference_base ({reference_base})")
    scalar = _is_scalar(n_unweighted)
    n = _as_float(n_unweighted)
    out = np.full(n.shape, "suppressed", dtype=object)
    valid = ~np.isnan(n)
    out[valid & (n >= min_base)] = "reference"
    out[valid & (n >= reference_base)] = "ok"
    return _out_label(out, scalar)


# --------------------------------------------------------------------------------------------
# Tests valid for the case: independent proportions, small counts, design effect
# --------------------------------------------------------------------------------------------

# Short method names stored in the indicators table (comparison_method / change_method).
METHOD_DESCRIPTIONS = {
    "newcombe": "Newcombe hybrid score interval for the difference of two independent proportions "
    "(method 10) on effective sizes / 独立な2標本の比率の差のNewcombe区間（有効標本サイズ）",
    "fisher": "Fisher's exact test on rounded effective counts (an expected count < 5) / "
    "期待度数が5未満のためFisherの正確検定（有効標本数を丸めた度数）",
    "newcombe_rest": "area vs the rest of the nation (independent), Newcombe interval / "
    "当該県を除く全国との比較（独立標本）、Newcombe区間",
    "fisher_rest": "area vs the rest of the nation (independent), Fisher's exact test / "
    "当該県を除く全国との比較（独立標本）、Fisherの正確検定",
    "none": "not tested (a value missing or suppressed, national row, or programme data) / 検定なし",
    "source_break": "not tested: the previous round's estimate came from another source (e.g. the national "
    "survey's respondents, now the prefecture's own survey); both values are shown / "
    "前回と出典が異なるため前回との比較（検定）はしない（両方の値を示す）",
}
EXPECTED_MIN = 5.0


def design_n(n_eff: Any, deff: Any = 1.0) -> float | np.ndarray:
    """Effective size after the design effect: n_eff / deff. ``deff`` must be > 0 (a survey's
    design effect, 1.0 = simple random sampling apart from weighting)."""
    scalar, (n, d) = _prepare(n_eff, deff)
    if np.any(~np.isnan(d) & (d <= 0)) or np.isnan(d).any():
        raise ValueError(f"deff must be a number > 0 (got e.g. {d[np.isnan(d) | (d <= 0)][:5].tolist()})")
    return _out_float(n / d, scalar)


def _check_props(**named: np.ndarray) -> None:
    for name, v in named.items():
        bad = ~np.isnan(v) & ((v < 0) | (v > 1))
        if bad.any():
            raise ValueError(f"{name} must be a proportion in [0, 1] (got e.g. {v[bad][:5].tolist()})")


def newcombe_interval(
    p1: Any, n1: Any, p2: Any, n2: Any, confidence: float | None = None
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval (method 10) for p1 − p2 of two independent proportions on
    (effective) sizes n1, n2: with (l_i, u_i) the Wilson interval of p_i,
    lower = d − √((p1 − l1)² + (u2 − p2)²), upper = d + √((u1 − p1)² + (p2 − l2)²), d = p1 − p2.
    Equals statsmodels ``confint_proportions_2indep(..., method='newcomb')``. Missing input or
    n <= 0 gives (nan, nan)."""
    scalar, (a, na, b, nb) = _prepare(p1, n1, p2, n2)
    _check_props(p1=a, p2=b)
    l1, u1 = wilson_interval(a, na, confidence)
    l2, u2 = wilson_interval(b, nb, confidence)
    d = a - b
    lower = d - np.sqrt((a - l1) ** 2 + (u2 - b) ** 2)
    upper = d + np.sqrt((u1 - a) ** 2 + (b - l2) ** 2)
    return _out_float(lower, scalar), _out_float(upper, scalar)


def _log_factorials(n: int) -> np.ndarray:
    """log(k!) for k = 0..n (cumulative sum of logs: exact enough for the tables tested here)."""
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))))


def _fisher_one(x1: int, n1: int, x2: int, n2: int, lf: np.ndarray) -> float:
    t = x1 + x2
    lo, hi = max(0, t - n2), min(t, n1)
    k = np.arange(lo, hi + 1)
    # log P(k) of the hypergeometric distribution with both margins fixed.
    lp = lf[n1] - lf[k] - lf[n1 - k] + lf[n2] - lf[t - k] - lf[n2 - t + k] - (lf[n1 + n2] - lf[t] - lf[n1 + n2 - t])
    obs = lp[x1 - lo]
    # Two-sided: every table at most as probable as the observed one (relative tolerance as scipy).
    keep = lp <= obs + math.log1p(1e-7)
    return float(min(1.0, np.exp(lp[keep]).sum()))


def fisher_exact_p(x1: Any, n1: Any, x2: Any, n2: Any) -> float | np.ndarray:
    """Two-sided p-value of Fisher's exact test for the 2x2 table [[x1, n1 − x1], [x2, n2 − x2]]
    (same as ``scipy.stats.fisher_exact``). Counts are rounded to whole numbers (effective counts
    may be fractional); a missing input, n <= 0 after rounding, or x outside 0..n gives NaN."""
    scalar, arrs = _prepare(x1, n1, x2, n2)
    a, na, b, nb = (np.round(v) for v in arrs)
    ok = ~(np.isnan(a) | np.isnan(na) | np.isnan(b) | np.isnan(nb))
    ok &= (na > 0) & (nb > 0) & (a >= 0) & (b >= 0) & (a <= na) & (b <= nb)
    out = np.full(a.shape, np.nan)
    if not ok.any():
        return _out_float(out, scalar)
    lf = _log_factorials(int((na + nb)[ok].max()))
    memo: dict[tuple[int, int, int, int], float] = {}
    for idx in zip(*np.nonzero(ok)) if a.ndim else [()]:
        key = (int(a[idx]), int(na[idx]), int(b[idx]), int(nb[idx]))
        if key not in memo:
            memo[key] = _fisher_one(*key, lf)
        out[idx] = memo[key]
    return _out_float(out, scalar)


def expected_counts_min(p1: Any, n1: Any, p2: Any, n2: Any) -> float | np.ndarray:
    """The smallest expected count of the 2x2 table (successes/failures x two samples) under
    homogeneity, pooled = (p1·n1 + p2·n2) / (n1 + n2): min(n_i·pooled, n_i·(1 − pooled))."""
    scalar, (a, na, b, nb) = _prepare(p1, n1, p2, n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (a * na + b * nb) / (na + nb)
        m = np.minimum(np.minimum(na, nb) * pooled, np.minimum(na, nb) * (1.0 - pooled))
    return _out_float(m, scalar)


def difference_test(
    p1: Any,
    n1: Any,
    p2: Any,
    n2: Any,
    confidence: float | None = None,
    method_suffix: str = "",
) -> dict[str, Any]:
    """Test p1 − p2 for two independent proportions on effective sizes (already divided by the
    design effect). Returns a dict of arrays (scalars for scalar input): ``diff``, ``lower``,
    ``upper`` (Newcombe interval), ``p_value`` (Fisher, NaN when the interval decided),
    ``significant`` (bool), ``direction`` (+1 / −1 / 0, NaN when not tested) and ``method``
    (``newcombe`` or ``fisher`` + ``method_suffix``; ``none`` when an input is missing or n <= 0).

    Rule: if every expected count is >= 5, significant when the Newcombe interval excludes 0; else
    significant when Fisher's exact p < 1 − confidence on the rounded effective counts."""
    c = _check_confidence(confidence)
    scalar, (a, na, b, nb) = _prepare(p1, n1, p2, n2)
    _check_props(p1=a, p2=b)
    ok = ~(np.isnan(a) | np.isnan(na) | np.isnan(b) | np.isnan(nb)) & (na > 0) & (nb > 0)
    lower, upper = newcombe_interval(a, np.where(ok, na, np.nan), b, np.where(ok, nb, np.nan), c)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    small = ok & (np.asarray(expected_counts_min(a, na, b, nb)) < EXPECTED_MIN)
    pval = np.full(a.shape, np.nan)
    if small.any():
        pval[small] = fisher_exact_p(a[small] * na[small], na[small], b[small] * nb[small], nb[small])
    small &= ~np.isnan(pval)  # rounding made a sample empty: fall back to the interval
    sig = np.where(small, pval < 1.0 - c, ok & ((lower > 0) | (upper < 0)))
    diff = np.where(ok, a - b, np.nan)
    direction = np.where(ok, np.sign(diff), np.nan)
    method = np.where(~ok, "none", np.where(small, "fisher" + method_suffix, "newcombe" + method_suffix)).astype(object)
    out = {
        "diff": diff,
        "lower": lower,
        "upper": upper,
        "p_value": pval,
        "significant": sig.astype(bool),
        "direction": direction,
        "method": method,
    }
    if scalar:
        return {
            k: (str(v.item()) if k == "method" else bool(v) if k == "significant" else float(v)) for k, v in out.items()
        }
    return out


def rest_of_total(
    sw_total: Any, sw2_total: Any, swy_total: Any, sw_part: Any, sw2_part: Any, swy_part: Any
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """(share, Kish n_eff) of the rest of a sample once a part is removed, from the weighted sums
    Σw, Σw², Σw·y of the whole and of the part: p = (Σw·y − Σw·y_part) / (Σw − Σw_part),
    n_eff = (Σw − Σw_part)² / (Σw² − Σw²_part). An empty rest (or missing input) gives NaN. Used to
    compare an area estimated from the national survey with the rest of the nation, a sample
    independent of it."""
    scalar, (sw, sw2, swy, pw, pw2, pwy) = _prepare(sw_total, sw2_total, swy_total, sw_part, sw2_part, swy_part)
    rw, rw2, rwy = sw - pw, sw2 - pw2, swy - pwy
    # Sums of the same floats in another order: a rest of a few 1e-12 is an empty rest.
    tol = 1e-9 * np.maximum(np.abs(sw), 1.0)
    ok = (rw > tol) & (rw2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(ok, np.clip(rwy / np.where(ok, rw, 1.0), 0.0, 1.0), np.nan)
        n = np.where(ok, rw * rw / np.where(ok, rw2, 1.0), np.nan)
    return _out_float(p, scalar), _out_float(n, scalar)


def comparison_label(direction: Any, significant: Any, polarity: Any) -> str | np.ndarray:
    """The published comparison with a reference (national): ``direction`` = sign of area −
    reference (+1, −1, 0; NaN = not tested), ``significant`` (bool). Not significant: ``similar``.
    Significant and below: ``better`` (low_is_good) / ``worse`` (high_is_good) / ``lower``
    (no_judgement); above: ``worse`` / ``better`` / ``higher``. Not tested: ``not_compared``."""
    pol = _polarity_array(polarity)
    scalar = _is_scalar(direction) and _is_scalar(significant) and pol.ndim == 0
    d = _as_float(direction)
    sig = np.asarray(significant, dtype=bool)
    d, sig, pol = np.broadcast_arrays(d, sig, pol)
    missing = np.isnan(d)
    below = ~missing & sig & (d < 0)
    above = ~missing & sig & (d > 0)
    below_label = np.select([pol == "low_is_good", pol == "high_is_good"], ["better", "worse"], "lower").astype(object)
    above_label = np.select([pol == "low_is_good", pol == "high_is_good"], ["worse", "better"], "higher").astype(object)
    out = np.full(d.shape, "similar", dtype=object)
    out[below] = below_label[below]
    out[above] = above_label[above]
    out[missing] = "not_compared"
    return _out_label(out, scalar)


def change_label(direction: Any, significant: Any) -> str | np.ndarray:
    """The published change vs the previous round: ``increase`` / ``decrease`` when significant,
    else ``no_change``; ``not_compared`` when ``direction`` is NaN (not tested)."""
    scalar = _is_scalar(direction) and _is_scalar(significant)
    d = _as_float(direction)
    d, sig = np.broadcast_arrays(d, np.asarray(significant, dtype=bool))
    out = np.full(d.shape, "no_change", dtype=object)
    out[~np.isnan(d) & sig & (d > 0)] = "increase"
    out[~np.isnan(d) & sig & (d < 0)] = "decrease"
    out[np.isnan(d)] = "not_compared"
    return _out_label(out, scalar)


def homogeneity_test(p: Any, n: Any) -> dict[str, float]:
    """Pearson's χ² test that k areas share one proportion, on effective counts: the 2 x k table
    (p_i·n_i, (1 − p_i)·n_i) with n_i the effective sizes after the design effect. Areas with a
    missing p or n <= 0 are left out. Returns ``statistic``, ``df`` (k − 1), ``p_value`` and ``k``;
    NaN statistic when fewer than 2 areas remain or the pooled share is 0 or 1. Equals
    ``scipy.stats.chi2_contingency(table, correction=False)`` for whole counts."""
    pp, nn = (np.ravel(a) for a in _prepare(p, n)[1])
    _check_props(p=pp)
    keep = ~np.isnan(pp) & ~np.isnan(nn) & (nn > 0)
    pp, nn = pp[keep], nn[keep]
    k = int(pp.size)
    nan = {"statistic": float("nan"), "df": float(max(k - 1, 0)), "p_value": float("nan"), "k": k}
    if k < 2:
        return nan
    pooled = float(np.dot(pp, nn) / nn.sum())
    if pooled <= 0.0 or pooled >= 1.0:
        return nan
    stat = float(np.sum(nn * (pp - pooled) ** 2) / (pooled * (1.0 - pooled)))
    from scipy.stats import chi2  # imported on use: the indicators stage does not need scipy

    return {"statistic": stat, "df": float(k - 1), "p_value": float(chi2.sf(stat, k - 1)), "k": k}


def multiplicity(n_tests: int, n_flagged: int, confidence: float | None = None) -> dict[str, float]:
    """For the multiple-comparison caveat: of ``n_tests`` tests at level α = 1 − confidence,
    ``n_flagged`` were significant; ``expected_false`` = α·n_tests flags are expected even when
    nothing differs, ``share_flagged`` = n_flagged / n_tests, and ``p_all_null`` the binomial
    probability of at least n_flagged flags if every null hypothesis held (tests taken as
    independent; a rough guide)."""
    c = _check_confidence(confidence)
    for name, v in (("n_tests", n_tests), ("n_flagged", n_flagged)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a whole number >= 0 (got {v!r})")
    if n_flagged > n_tests:
        raise ValueError(f"n_flagged ({n_flagged}) must not exceed n_tests ({n_tests})")
    alpha = round(1.0 - c, 12)  # 0.05, not 0.050000000000000044
    if n_tests == 0:
        return {
            "alpha": alpha,
            "n_tests": 0,
            "n_flagged": 0,
            "expected_false": 0.0,
            "share_flagged": float("nan"),
            "p_all_null": float("nan"),
        }
    # Upper tail of Binomial(n_tests, alpha) at n_flagged, in logs (no scipy needed).
    ks = np.arange(int(n_flagged), int(n_tests) + 1, dtype=float)
    lg = np.vectorize(math.lgamma, otypes=[float])
    logpmf = (
        lg(n_tests + 1.0)
        - lg(ks + 1.0)
        - lg(n_tests - ks + 1.0)
        + ks * math.log(alpha)
        + (n_tests - ks) * math.log1p(-alpha)
    )
    return {
        "alpha": alpha,
        "n_tests": int(n_tests),
        "n_flagged": int(n_flagged),
        "expected_false": alpha * n_tests,
        "share_flagged": n_flagged / n_tests,
        "p_all_null": float(min(1.0, np.exp(logpmf).sum())),
    }


# --------------------------------------------------------------------------------------------
# Secondary suppression (二次秘匿)
# --------------------------------------------------------------------------------------------


def groups_from_labels(labels: Any) -> list[np.ndarray]:
    """Index arrays of the cells sharing a label, in order of first appearance; a missing label
    (None / NaN) puts the cell in no group."""
    lab = pd.Series(np.asarray(labels, dtype=object).ravel())
    keep = lab.notna().to_numpy()
    codes, _ = pd.factorize(lab[keep], sort=False)
    pos = np.flatnonzero(keep)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [pos[o] for o in np.split(order, bounds)] if len(order) else []


def secondary_suppression(
    n: Any, primary: Any, groups: Any, remainder: Any = None, min_base: int | None = None
) -> np.ndarray:
    """Cells to suppress in addition to ``primary`` so that no suppressed cell can be recovered,
    exactly or nearly, by subtracting the published cells of its group from the published total.

    ``n``: unweighted base of each cell; ``primary``: cells already suppressed (n < min_base);
    ``groups``: a sequence of groups, each a sequence of cell indices whose cells, together with an
    unpublished remainder, add up to a published total (``groups_from_labels`` makes them from
    one label per cell). A cell may belong to several groups (e.g. prefecture x sex is in the
    prefecture's sex group and in the national sex=2 group). ``remainder``: per group, the base of
    the part of the total that is not published as a cell (sex 3/9, age unknown, ...; default 0).

    Rule. In a group, the hidden mass is the sum of the bases of its suppressed cells plus the
    remainder. A suppressed cell c with n_c > 0 is exposed when the hidden mass other than c is
    below ``min_base`` (with one suppressed cell and a remainder of 2, subtraction gives c to within
    2 respondents' answers). Equivalently: a group is exposed when hidden − (largest suppressed
    n) < min_base. In every pass, each exposed group also suppresses its smallest unsuppressed cell
    with n > 0 (ties: the first listed); passes repeat until no group is exposed or an exposed group
    has nothing left to suppress (all its cells hidden: the best that can be done without hiding the
    total). Empty cells (n = 0) hide nothing and need no protection. Consequences: one suppressed
    cell is never left alone unless the remainder is >= min_base; the suppressed cells together
    always rest on >= min_base respondents.

    Returns a bool array: True for the cells suppressed secondarily (never a primary cell).
    Default min_base: config.MIN_BASE.
    """
    min_base = config.MIN_BASE if min_base is None else min_base
    nn = _as_float(n).ravel()
    prim = np.asarray(primary, dtype=bool).ravel()
    if prim.shape != nn.shape:
        raise ValueError(f"primary must have the same length as n ({prim.size} flags, {nn.size} counts)")
    if np.isnan(nn).any():
        raise ValueError("n must not be missing (a cell with no respondents has n = 0)")
    if np.any(nn < 0):
        raise ValueError("n must be >= 0")
    groups = [np.asarray(g, dtype=np.int64).ravel() for g in groups]
    if remainder is None:
        rem = np.zeros(len(groups))
    else:
        rem = _as_float(remainder).ravel()
        if rem.size != len(groups):
            raise ValueError(f"remainder must have one value per group ({rem.size} values, {len(groups)} groups)")
        if np.isnan(rem).any() or np.any(rem < 0):
            raise ValueError("remainder must be >= 0 (the base of the unpublished part of a group)")
    supp = prim.copy()
    if not groups or not nn.size:
        return supp & ~prim
    cells = np.concatenate(groups)
    if cells.size and (cells.min() < 0 or cells.max() >= nn.size):
        raise ValueError(f"group cell index out of range 0..{nn.size - 1}")
    gid = np.repeat(np.arange(len(groups)), [g.size for g in groups])
    cn = nn[cells]
    # Candidates in (group, n, listed position) order: the first candidate of a group is its pick.
    order = np.lexsort((np.arange(cells.size), cn, gid))
    while True:
        s = supp[cells]
        hidden = rem.copy()
        np.add.at(hidden, gid, np.where(s, cn, 0.0))
        largest = np.zeros(len(groups))
        np.maximum.at(largest, gid, np.where(s, cn, 0.0))
        exposed = (largest > 0) & (hidden - largest < min_base)
        cand = exposed[gid] & ~s & (cn > 0)
        if not cand.any():
            return supp & ~prim
        oc = order[cand[order]]
        first = np.ones(oc.size, dtype=bool)
        first[1:] = gid[oc][1:] != gid[oc][:-1]
        supp[cells[oc[first]]] = True


# --------------------------------------------------------------------------------------------
# UCLA loneliness scale (Japanese 3 items, 4-point: 1 決してない .. 4 常にある, 9 無回答)
# --------------------------------------------------------------------------------------------


def ucla_score(q1: Any, q2: Any, q3: Any) -> float | np.ndarray:
    """Sum of the three UCLA item codes (each 1..4), 3..12; NaN when any item is 9 (無回答) or
    missing. Any other code is a ValueError naming the item (q1, q2 or q3)."""
    scalar, items = _prepare(q1, q2, q3)
    answered = np.ones(items[0].shape, dtype=bool)
    for name, v in zip(("q1", "q2", "q3"), items):
        valid = np.isin(v, _UCLA_VALID)
        bad = ~valid & ~np.isnan(v) & (v != _UCLA_NO_ANSWER)
        if bad.any():
            raise ValueError(f"{name}: UCLA item codes must be 1-4 or 9 (無回答) (got e.g. {v[bad][:5].tolist()})")
        answered &= valid
    total = items[0] + items[1] + items[2]
    return _out_float(np.where(answered, total, np.nan), scalar)


def ucla_band(score: Any) -> str | np.ndarray:
    """Band of a UCLA score: ``10-12``, ``7-9``, ``4-6``, ``3``; ``na`` when missing (無回答).
    A score that is not a whole number in 3..12 is a ValueError."""
    scalar = _is_scalar(score)
    s = _as_float(score)
    present = ~np.isnan(s)
    bad = present & ((s < 3) | (s > 12) | (s != np.floor(np.where(present, s, 0.0))))
    if bad.any():
        raise ValueError(f"score must be a whole number 3-12 (got e.g. {s[bad][:5].tolist()})")
    out = np.full(s.shape, "na", dtype=object)
    out[present & (s == 3)] = "3"
    out[present & (s >= 4) & (s <= 6)] = "4-6"
    out[present & (s >= 7) & (s <= 9)] = "7-9"
    out[present & (s >= 10)] = "10-12"
    return _out_label(out, scalar)
