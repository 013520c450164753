"""Design-based variance of weighted shares: Taylor linearisation under a stratified multi-stage
design (pure: numpy and pandas only; no I/O, no warehouse).

What is estimated. A weighted share (a ratio of two weighted totals) p = Σ w·d·y / Σ w·d, with y the
0/1 (or any numeric) value of interest and d the 0/1 indicator of the domain (sub-population: an
area, a breakdown, an indicator's own denominator such as "those with worries"; d = 1 for everyone
when the share is over the whole sample).

Method (the standard "ultimate cluster" approximation; Wolter 2007, *Introduction to Variance
Estimation*, ch. 6; what R ``survey::svydesign(ids = ~psu, strata = ~stratum, weights = ~w)`` with
``svymean`` / ``svyby`` computes without finite population corrections):

* Linearised values z_k = w_k·d_k·(y_k − p) / Σ w·d. Outside the domain z_k = 0, and those
  respondents *stay in the design*: every PSU of every stratum counts, also when it has no member of
  the domain (a domain is not a stratum; dropping its empty PSUs would understate the variance).
* PSU totals z_hi = Σ_{k in PSU i of stratum h} z_k; PSUs are taken as drawn with replacement within
  their stratum (the later stages need not be described: their variance is carried by the PSU
  totals). PSU identifiers are read within their stratum (the same code in two strata is two
  PSUs, as ``svydesign(..., nest = TRUE)``).
* V(p) = Σ_h n_h / (n_h − 1) · Σ_i (z_hi − z̄_h)² over the strata with n_h >= 2 PSUs.
* A stratum with a single PSU has no within-stratum variance estimate. Rule used here
  (``LONELY_PSU = "adjust"``, R's ``options(survey.lonely.psu = "adjust")``): the PSU total is
  centred at the average PSU total of the whole sample instead of its stratum mean. For a share
  that average is 0 (the linearised values sum to 0), so the stratum adds z_h1² -- conservative: it
  adds variance where "certainty" / "remove" would add none. ``lonely_psu="remove"`` gives the
  latter (the stratum contributes 0; R's "remove" and, for a one-stage design, "certainty").
* No PSU column but a stratum column: each respondent is its own PSU (stratified element sample).
  A PSU column without strata: one stratum.

Design effect. ``deff = V(p) / (p(1 − p) / n_eff)`` with n_eff = (Σ w·d)² / Σ w²·d² Kish's effective
size of the domain: the variance relative to a simple random sample of n_eff respondents. Kish's
n_eff already carries the loss from unequal weights, so this deff measures only what clustering and
stratification add beyond the weighting (it is below 1 when stratification gains more than
clustering loses). Hence n_eff / deff = p(1 − p) / V(p): dividing Kish's n_eff by this deff gives
exactly the effective size implied by the design-based variance, which is what the Wilson intervals
and the Newcombe / Fisher tests of ``pipelines.domain.stats`` take. (For a simple random sample with equal
weights the formula gives n / (n − 1), not exactly 1: the with-replacement variance estimator.)

Vectorised: the microdata are summed once per PSU (``psu_totals``: one row per stratum x PSU, one
column per estimate, i.e. per indicator x domain), and ``ratio_variance`` works on those sums with
one grouped sum per stratum, for all columns at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.domain.stats import effective_n

__all__ = [
    "LONELY_PSU",
    "LONELY_PSU_RULES",
    "DesignVariance",
    "psu_totals",
    "ratio_variance",
    "design_effect",
    "taylor_share",
]

LONELY_PSU = "adjust"
LONELY_PSU_RULES = ("adjust", "remove")


@dataclass(frozen=True)
class DesignVariance:
    """Result of ``ratio_variance`` for k estimates (arrays of shape (k,)): the share ``p``, its
    design-based ``variance``, Σ w·d (``sum_w``); and the design: ``n_strata``, ``n_psu`` (PSUs of
    the whole design, every estimate uses all of them) and ``n_lonely`` (strata with one PSU)."""

    p: np.ndarray
    variance: np.ndarray
    sum_w: np.ndarray
    n_strata: int
    n_psu: int
    n_lonely: int

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(self.variance)


def _codes(*labels: Any) -> np.ndarray:
    """0-based integer codes of the distinct combinations of the label arrays (missing labels are a
    ValueError: a respondent outside the design cannot be placed)."""
    frame = pd.DataFrame({f"k{i}": pd.Series(np.asarray(lab, dtype=object).ravel()) for i, lab in enumerate(labels)})
    if frame.isna().any().any():
        raise ValueError("stratum and psu must not be missing (every respondent belongs to one PSU)")
    if frame.shape[1] == 1:
        return pd.factorize(frame["k0"], sort=True)[0].astype(np.int64)
    return frame.groupby(list(frame.columns), sort=True).ngroup().to_numpy(dtype=np.int64)


def _as_matrix(x: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"{name} must have one row per respondent ({n}), got shape {a.shape}")
    return a


def psu_totals(
    weight: Any, y: Any, stratum: Any = None, psu: Any = None, domain: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum microdata to one row per stratum x PSU: returns (stratum code of each PSU row (m,),
    Σ w·d (m, k), Σ w·d·y (m, k), Σ w²·d (k,) over the whole sample, for Kish's n_eff).

    ``weight`` (n,); ``y`` (n,) or (n, k) values (0/1 for a share); ``domain`` None (everyone),
    (n,) or (n, k) 0/1 domain indicators, broadcast against ``y`` (one y and k domains, or k values
    and one domain). ``stratum`` / ``psu``: labels per respondent (None: one stratum / each
    respondent its own PSU)."""
    w = np.asarray(weight, dtype=float).ravel()
    n = w.size
    if np.isnan(w).any() or (w < 0).any():
        raise ValueError("weights must be >= 0 and not missing")
    yy = _as_matrix(y, n, "y")
    dd = np.ones((n, 1)) if domain is None else _as_matrix(domain, n, "domain")
    yy, dd = np.broadcast_arrays(yy, dd)
    if np.isnan(yy[dd > 0]).any():
        raise ValueError("y must not be missing inside the domain")
    strat = np.zeros(n, dtype=np.int64) if stratum is None else _codes(stratum)
    unit = np.arange(n, dtype=np.int64) if psu is None else _codes(strat, psu)
    if psu is None and stratum is not None:
        unit = _codes(strat, unit)
    order = np.argsort(unit, kind="stable")
    su = unit[order]
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]]) if n else np.array([], dtype=np.int64)
    wd = w[:, None] * dd
    sw = np.add.reduceat(wd[order], starts, axis=0) if n else np.zeros((0, dd.shape[1]))
    swy = np.add.reduceat((wd * np.where(dd > 0, yy, 0.0))[order], starts, axis=0) if n else np.zeros((0, dd.shape[1]))
    return strat[order][starts], sw, swy, (w[:, None] ** 2 * dd).sum(axis=0)


def ratio_variance(stratum: Any, sw: Any, swy: Any, lonely_psu: str = LONELY_PSU) -> DesignVariance:
    """Taylor-linearisation variance of p = Σ swy / Σ sw for every column, from PSU totals.

    ``stratum``: the stratum label of each PSU row (m,); ``sw`` / ``swy``: (m,) or (m, k) PSU totals
    of w·d and w·d·y (``psu_totals``), one row for every PSU of the design, zeros where the domain
    has no member. A column with Σ sw = 0 (empty domain) gives p and variance NaN."""
    if lonely_psu not in LONELY_PSU_RULES:
        raise ValueError(f"lonely_psu must be one of {', '.join(LONELY_PSU_RULES)} (got {lonely_psu!r})")
    strata = _codes(stratum)
    m = strata.size
    a = _as_matrix(sw, m, "sw")
    b = _as_matrix(swy, m, "swy")
    if a.shape != b.shape:
        raise ValueError(f"sw and swy must have the same shape ({a.shape} vs {b.shape})")
    total = a.sum(axis=0)
    ok = total > 0
    den = np.where(ok, total, 1.0)
    p = np.where(ok, b.sum(axis=0) / den, np.nan)
    z = (b - np.where(ok, p, 0.0) * a) / den  # PSU totals of the linearised values
    n_h = np.bincount(strata, minlength=int(strata.max(initial=-1)) + 1).astype(float)
    sums = np.zeros((n_h.size, z.shape[1]))
    np.add.at(sums, strata, z)
    mean_h = sums / np.where(n_h > 0, n_h, 1.0)[:, None]
    lonely = n_h[strata] == 1
    if lonely_psu == "adjust":
        centre = np.where(lonely[:, None], 0.0, mean_h[strata])  # the lonely PSU about the grand mean 0
    else:
        centre = mean_h[strata]  # lonely PSU about itself: contributes 0
    scale = np.where(n_h > 1, n_h / np.where(n_h > 1, n_h - 1.0, 1.0), 1.0)[strata]
    var = (scale[:, None] * (z - centre) ** 2).sum(axis=0)
    var = np.where(ok, var, np.nan)
    return DesignVariance(
        p=p, variance=var, sum_w=total, n_strata=int((n_h > 0).sum()), n_psu=int(m), n_lonely=int((n_h == 1).sum())
    )


def design_effect(variance: Any, p: Any, n_eff: Any) -> np.ndarray:
    """deff = variance / (p(1 − p) / n_eff): the design-based variance relative to a simple random
    sample of Kish's n_eff (see the module doc). NaN where p is 0 or 1 (no variance to compare),
    or an input is missing."""
    v, pp, n = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (variance, p, n_eff)))
    srs = pp * (1.0 - pp) / np.where(n > 0, n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(srs > 0, v / np.where(srs > 0, srs, 1.0), np.nan)


def taylor_share(
    y: Any,
    weight: Any = None,
    stratum: Any = None,
    psu: Any = None,
    domain: Any = None,
    by: Any = None,
    lonely_psu: str = LONELY_PSU,
) -> pd.DataFrame:
    """Microdata in, one row per estimate out: ``p``, ``variance``, ``se``, ``n`` (respondents in the
    domain), ``n_eff`` (Kish), ``deff`` (``design_effect``), ``n_design`` = n_eff / deff, and the
    design's ``n_strata``, ``n_psu``, ``n_lonely``. ``domain``: None (everyone) or 0/1 domain
    indicators, (n,) or (n, k) (one column per estimate); ``by``: labels (n,), one estimate per
    distinct label (index of the result), each a domain estimated on the full design (``domain``
    and ``by`` together: the domain within each label). ``y``: one value column or one per
    estimate."""
    yy = np.asarray(y, dtype=float)
    n = yy.shape[0]
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=float).ravel()
    dd = np.ones((n, 1)) if domain is None else _as_matrix(domain, n, "domain")
    index = None
    if by is not None:
        labels = pd.Series(np.asarray(by, dtype=object).ravel())
        if len(labels) != n:
            raise ValueError(f"by must have one label per respondent ({n}), got {len(labels)}")
        index = sorted(pd.unique(labels.dropna()), key=str)
        if dd.shape[1] != 1:
            raise ValueError("by needs a single domain column")
        dd = np.column_stack([(labels == lab).to_numpy(dtype=float) for lab in index]) * dd
    strata, sw, swy, sw2 = psu_totals(w, yy, stratum, psu, dd)
    dv = ratio_variance(strata, sw, swy, lonely_psu)
    counts = np.broadcast_to((dd > 0).sum(axis=0), dv.p.shape)
    n_eff = np.asarray(effective_n(dv.sum_w, np.broadcast_to(sw2, dv.p.shape)), dtype=float)
    deff = design_effect(dv.variance, dv.p, n_eff)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_design = n_eff / deff
    out = pd.DataFrame(
        {
            "p": dv.p,
            "variance": dv.variance,
            "se": dv.se,
            "n": counts,
            "n_eff": n_eff,
            "deff": deff,
            "n_design": n_design,
            "n_strata": dv.n_strata,
            "n_psu": dv.n_psu,
            "n_lonely": dv.n_lonely,
        }
    )
    if index is not None:
        out.index = pd.Index(index, name="by")
    return out
