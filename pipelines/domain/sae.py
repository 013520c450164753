"""Area-level small-area estimation: the Fay–Herriot model (issue #24).

Pure computation (layer 0): numbers in, numbers out; no files, no warehouse. The public entry point is
:func:`fay_herriot`; it works on plain numpy arrays, pandas Series or the columns of a DataFrame a
researcher already has, and returns a :class:`FayHerriotResult` whose ``.frame()`` is one row per area.

Model (Fay & Herriot 1979; Rao & Molina 2015, ch. 6). For area i = 1..m

    direct_i = theta_i + e_i,   e_i ~ N(0, D_i)      (D_i: the known sampling variance)
    theta_i  = x_i' beta + u_i, u_i ~ N(0, A)        (A: the area (model) variance)

What is computed, following R ``sae::eblupFH`` / ``sae::mseFH`` (Molina & Marhuenda 2015) exactly:

* ``A`` by REML with Fisher scoring: start value the median of the D_i, stop when the relative change
  |A_{k+1} - A_k| / A_k <= ``tol`` (sae's PRECISION, 1e-4) or after ``max_iter`` (sae's MAXITER, 100)
  iterations. Where these iterates stay positive and converge (the usual case, e.g. the ``milk``
  example) the result is sae's exactly (``algorithm="fisher-scoring"``). Fisher scoring can leave
  the parameter space or oscillate (with very unequal D_i and a small A; sae then truncates a
  negative end point at 0 or reports non-convergence): in that case A is the root of the REML score
  on [0, inf) found by Brent's method, or A = 0 when the score at 0 is not positive
  (``algorithm="score-root"`` / ``"score-root (boundary A = 0)"``). Both target the same REML
  estimate; they differ by at most the Fisher-scoring tolerance.
* ``beta`` by GLS with V = diag(A + D_i); its standard errors from diag((X' V^-1 X)^-1).
* EBLUP_i = x_i' beta + gamma_i (direct_i - x_i' beta) with the shrinkage factor gamma_i = A / (A + D_i).
* MSE by Prasad–Rao with the Datta–Lahiri form that ``sae::mseFH`` uses for REML (no bias term):
  MSE_i = g1_i + g2_i + 2 g3_i, with g1_i = gamma_i D_i,
  g2_i = (1 - gamma_i)^2 x_i' (X' V^-1 X)^-1 x_i, g3_i = (1 - gamma_i)^2 Var(A) / (A + D_i) and
  Var(A) = 2 / sum_j (A + D_j)^-2 (the asymptotic variance sae uses).
* Areas without a direct estimate (``direct`` NaN) do not enter the fit; they get the synthetic
  prediction x_i' beta with MSE = A + x_i' (X' V^-1 X)^-1 x_i (:meth:`FayHerriotResult.predict`).
* ``loglike`` / ``aic`` / ``bic`` as sae reports them: the Gaussian log-likelihood at (beta, A) and
  AIC = -2 loglike + 2 (p + 1), BIC = -2 loglike + (p + 1) log m.

Proportions (``transform="arcsin"``, as ``emdi::fh(transformation = "arcsin")``): the model is fitted
to y*_i = asin(sqrt(p_i)) with sampling variance 1 / (4 n_i), n_i the (effective) sample size. On the
transformed scale the EBLUP, MSE and the interval EBLUP* ± z sqrt(MSE*) are computed as above; the
interval's endpoints are clipped to [0, pi/2] and back-transformed by sin^2 (so they lie in [0, 1]).
The point estimate is back-transformed by

* ``backtransform="bc"`` (default), the bias-corrected back-transformation (Slud & Maiti 2006 style):
  E[sin^2 theta] for theta ~ N(EBLUP*, s^2), which is (1 - cos(2 EBLUP*) exp(-2 s^2)) / 2 in closed
  form, with s^2 = g1 = gamma D = A D / (A + D) (the conditional variance of theta given the data)
  for areas with a direct estimate and s^2 = A for out-of-sample areas. (emdi integrates the same
  normal density over [0, pi/2] only, and back-transforms out-of-sample areas naively; the two agree
  when the density has no appreciable mass outside [0, pi/2].)
* ``backtransform="naive"``: sin^2 of the EBLUP* clipped to [0, pi/2].

The MSE on the original scale is the delta method: MSE_p = sin^2(2 EBLUP*) MSE* (d/dt sin^2 t =
sin 2t); ``rmse`` and ``cv`` are computed from it.

Benchmarking (``benchmark``, ``benchmark_weights``): the estimates are adjusted so that
sum_i w_i estimate_i equals ``benchmark`` exactly, w the weights normalised to sum to 1 (population
shares; population counts may be passed). ``benchmark_method="ratio"`` (default, emdi's "ratio")
multiplies every estimate by benchmark / sum_i w_i EBLUP_i; ``"difference"`` (emdi's "raking") adds
benchmark - sum_i w_i EBLUP_i to every estimate. The interval endpoints are adjusted in the same way
(multiplied / shifted), so every benchmarked estimate lies in its interval. ``mse``, ``rmse`` and
``cv`` remain those of the unbenchmarked EBLUP: the extra error of the adjustment is not included
(estimators for it: Steorts & Ghosh 2013; benchmarking in general: Datta, Ghosh, Steorts & Maples
2011). ``benchmark_factor`` is the factor (ratio) or the shift (difference) applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipelines.domain import config
from pipelines.domain.stats import z_critical

__all__ = ["FayHerriotResult", "fay_herriot", "arcsin_transform", "arcsin_back"]

# sae::eblupFH defaults
DEFAULT_TOL = 1e-4
DEFAULT_MAX_ITER = 100

_METHODS = ("REML",)
_TRANSFORMS = (None, "arcsin")
_BACKTRANSFORMS = ("bc", "naive")
_BENCHMARK_METHODS = ("ratio", "difference")


# --------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------


def arcsin_transform(p: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    """(asin(sqrt(p)), 1 / (4 n)): the variance-stabilised proportion and its sampling variance."""
    p = np.asarray(p, dtype=float)
    n = np.asarray(n, dtype=float)
    return np.arcsin(np.sqrt(p)), 1.0 / (4.0 * n)


def arcsin_back(t: Any, var: Any = 0.0, method: str = "bc") -> np.ndarray:
    """Back-transform asin(sqrt(p))-scale values ``t``.

    ``method="naive"``: sin^2(t) with t clipped to [0, pi/2]. ``method="bc"``: E[sin^2 T] for
    T ~ N(t, var), i.e. (1 - cos(2t) exp(-2 var)) / 2 (equal to the naive value when var = 0)."""
    t = np.asarray(t, dtype=float)
    var = np.asarray(var, dtype=float)
    if method == "naive":
        return np.sin(np.clip(t, 0.0, math.pi / 2)) ** 2
    if method == "bc":
        return (1.0 - np.cos(2.0 * t) * np.exp(-2.0 * var)) / 2.0
    raise ValueError(f"backtransform must be one of {_BACKTRANSFORMS} (got {method!r})")


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FayHerriotResult:
    """A fitted Fay–Herriot model. Arrays are per area, in input order (length m_all, every area
    passed, those without a direct estimate included); ``in_sample`` says which had one.

    On the original scale: ``estimate`` (the published value: ``benchmarked`` when a benchmark was
    given, else ``eblup``), ``eblup``, ``mse``, ``rmse``, ``cv`` (rmse / estimate), ``lower`` /
    ``upper`` (the ``confidence`` interval from the MSE). On the model scale (the transformed scale
    when ``transform="arcsin"``, else the same numbers): ``eblup_model``, ``mse_model``, ``synthetic``
    (x' beta), ``g1``, ``g2``, ``g3``. ``gamma`` is the shrinkage factor A / (A + D) (0 for areas
    without a direct estimate); ``std_residual`` the standardised residual
    (direct - x' beta) / sqrt(A + D) on the model scale (NaN out of sample). ``sampling_var`` is D
    on the model scale; ``direct_var`` the direct estimate's variance on the original scale (the
    ``sampling_var`` passed, or p(1 - p) / n with ``transform="arcsin"`` when none was passed).
    ``beta``/``beta_se`` are indexed by covariate name ("(Intercept)" first); ``A`` is the area
    variance and ``A_var`` = 2 / sum (A + D)^-2; ``converged``, ``iterations`` (Fisher-scoring steps)
    and ``algorithm`` describe the REML fit (module docstring)."""

    areas: pd.Index
    in_sample: np.ndarray
    direct: np.ndarray
    direct_var: np.ndarray
    sampling_var: np.ndarray
    eblup: np.ndarray
    benchmarked: np.ndarray | None
    mse: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: np.ndarray
    synthetic: np.ndarray
    eblup_model: np.ndarray
    mse_model: np.ndarray
    g1: np.ndarray
    g2: np.ndarray
    g3: np.ndarray
    std_residual: np.ndarray
    beta: pd.Series
    beta_se: pd.Series
    A: float
    A_var: float
    loglike: float
    aic: float
    bic: float
    converged: bool
    iterations: int
    algorithm: str
    method: str
    transform: str | None
    backtransform: str | None
    confidence: float
    benchmark: float | None
    benchmark_method: str | None
    benchmark_factor: float | None
    columns: tuple[str, ...]
    intercept: bool
    _cov_beta: np.ndarray = field(repr=False)

    @property
    def estimate(self) -> np.ndarray:
        return self.benchmarked if self.benchmarked is not None else self.eblup

    @property
    def rmse(self) -> np.ndarray:
        return np.sqrt(self.mse)

    @property
    def cv(self) -> np.ndarray:
        est = self.estimate
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(est != 0, self.rmse / np.abs(est), np.nan)

    @property
    def cov_beta(self) -> np.ndarray:
        """(X' V^-1 X)^-1, the covariance matrix of ``beta``."""
        return self._cov_beta.copy()

    def frame(self) -> pd.DataFrame:
        """One row per area (index: the area labels)."""
        out = pd.DataFrame(
            {
                "direct": self.direct,
                "direct_var": self.direct_var,
                "in_sample": self.in_sample,
                "estimate": self.estimate,
                "eblup": self.eblup,
                "mse": self.mse,
                "rmse": self.rmse,
                "cv": self.cv,
                "lower": self.lower,
                "upper": self.upper,
                "gamma": self.gamma,
                "synthetic": self.synthetic,
                "std_residual": self.std_residual,
                "g1": self.g1,
                "g2": self.g2,
                "g3": self.g3,
                "estimate_method": np.where(self.in_sample, "model", "synthetic"),
            },
            index=self.areas,
        )
        if self.benchmarked is not None:
            out.insert(5, "benchmarked", self.benchmarked)
        return out

    def predict(self, X: Any, areas: Any = None) -> pd.DataFrame:
        """Synthetic predictions for areas with no direct estimate: x' beta, MSE = A + x' Cov(beta) x
        (on the model scale; with ``transform="arcsin"`` the columns ``estimate``/``lower``/``upper``
        are back-transformed as described in the module docstring, ``mse`` by the delta method).
        ``X`` has the fit's covariate columns (a DataFrame is matched by column name)."""
        if X is None and areas is None:
            raise ValueError("predict needs X, or areas for an intercept-only model")
        Xm, _ = _design(X, None, self.intercept, 0 if areas is None else len(areas), expected=self.columns)
        if areas is None:
            areas = X.index if isinstance(X, (pd.DataFrame, pd.Series)) else pd.RangeIndex(len(Xm))
        elif len(areas) != len(Xm):
            raise ValueError(f"areas has {len(areas)} labels for {len(Xm)} rows of X")
        if not np.isfinite(Xm).all():
            raise ValueError("X has missing or infinite values")
        syn = Xm @ self.beta.to_numpy()
        mse_m = self.A + np.einsum("ij,jk,ik->i", Xm, self._cov_beta, Xm)
        est, mse, lo, hi = _to_original(
            syn, mse_m, np.full(len(syn), self.A), self.transform, self.backtransform, z_critical(self.confidence)
        )
        return pd.DataFrame(
            {
                "estimate": est,
                "mse": mse,
                "rmse": np.sqrt(mse),
                "lower": lo,
                "upper": hi,
                "synthetic": syn,
                "mse_model": mse_m,
            },
            index=pd.Index(areas),
        )


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _vector(x: Any, name: str, data: pd.DataFrame | None) -> np.ndarray:
    if isinstance(x, str):
        if data is None:
            raise ValueError(f"{name}={x!r} names a column but no data frame was given (data=)")
        if x not in data.columns:
            raise ValueError(f"{name}={x!r} is not a column of data")
        x = data[x]
    try:
        if isinstance(x, (pd.Series, pd.Index)):
            arr = pd.to_numeric(pd.Series(x)).to_numpy(dtype=float, na_value=np.nan)
        else:
            arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric ({exc})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (got shape {arr.shape})")
    return arr


def _design(
    X: Any, data: pd.DataFrame | None, intercept: bool, n_rows: int, expected: tuple[str, ...] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The design matrix (intercept column first when ``intercept``) and its column names."""
    if isinstance(X, str) or (isinstance(X, (list, tuple)) and X and all(isinstance(c, str) for c in X)):
        cols = [X] if isinstance(X, str) else list(X)
        if data is None:
            raise ValueError(f"X={X!r} names columns but no data frame was given (data=)")
        missing = [c for c in cols if c not in data.columns]
        if missing:
            raise ValueError(f"X names columns that are not in data: {missing}")
        X = data[cols]
    if X is None:
        mat, names = None, []
    elif isinstance(X, pd.DataFrame):
        if expected is not None:
            by_name = {str(c): c for c in X.columns}
            want = [c for c in expected if c != "(Intercept)"]
            missing = [c for c in want if c not in by_name]
            if missing:
                raise ValueError(f"X lacks the fitted covariate columns {missing}")
            X = X[[by_name[c] for c in want]]
        bad = [
            str(c) for c in X.columns if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
        ]
        if bad:
            raise ValueError(
                f"X has non-numeric columns {bad}: code categories as 0/1 columns "
                "(pandas.get_dummies(..., drop_first=True))"
            )
        mat = X.to_numpy(dtype=float, na_value=np.nan)
        names = [str(c) for c in X.columns]
    else:
        if isinstance(X, pd.Series):
            names_one = [str(X.name) if X.name is not None else "x1"]
            X = X.to_numpy(dtype=float, na_value=np.nan)
        else:
            names_one = None
        try:
            mat = np.asarray(X, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"X must be numeric ({exc})") from None
        if mat.ndim == 1:
            mat = mat[:, None]
        if mat.ndim != 2:
            raise ValueError(f"X must be two-dimensional (areas x covariates), got shape {mat.shape}")
        names = names_one or [f"x{j + 1}" for j in range(mat.shape[1])]
    if intercept:
        if mat is None:
            mat, names = np.ones((n_rows, 1)), ["(Intercept)"]
        else:
            mat = np.column_stack([np.ones(mat.shape[0]), mat])
            names = ["(Intercept)", *names]
    elif mat is None:
        raise ValueError("X is required when intercept=False (a model needs at least one column)")
    if expected is not None:
        if mat is None or mat.shape[1] != len(expected):
            got = 0 if mat is None else mat.shape[1]
            raise ValueError(f"X must have the fit's {len(expected)} columns {list(expected)} (got {got})")
    return mat, tuple(names)


def _check_choice(value: Any, name: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices} (got {value!r})")


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def _reml_score(A: float, y: np.ndarray, X: np.ndarray, D: np.ndarray) -> tuple[float, float]:
    """(score, Fisher information) of the restricted log-likelihood in A."""
    vi = 1.0 / (A + D)
    XtVi = (vi[:, None] * X).T
    Q = np.linalg.inv(XtVi @ X)
    P = np.diag(vi) - XtVi.T @ Q @ XtVi
    Py = P @ y
    s = -0.5 * float(np.trace(P)) + 0.5 * float(Py @ Py)
    F = 0.5 * float(np.sum(P * P.T))  # trace(P P); P is symmetric
    return s, F


def _reml(y: np.ndarray, X: np.ndarray, D: np.ndarray, tol: float, max_iter: int) -> tuple[float, int, bool, str]:
    """REML estimate of A: (A, Fisher-scoring iterations, converged, algorithm).

    First sae::eblupFH's Fisher scoring (module docstring). When an iterate leaves the parameter
    space (A < 0) or ``max_iter`` is reached without convergence, where sae would truncate a negative
    end point at 0 or report non-convergence, the REML estimate is found instead as the root of the
    REML score on [0, inf) (Brent's method; A = 0 when the score at 0 is not positive)."""
    A = float(np.median(D))
    k = 0
    diff = tol + 1.0
    left = False
    while diff > tol and k < max_iter:
        k += 1
        s, F = _reml_score(A, y, X, D)
        new = A + s / F
        if new < 0.0:
            left = True
            break
        diff = abs((new - A) / A) if A > 0.0 else (0.0 if new == 0.0 else math.inf)
        A = new
    if not left and diff <= tol:
        return max(A, 0.0), k, True, "fisher-scoring"
    # Fallback: the REML score is positive below its root and negative above it.
    from scipy.optimize import brentq  # noqa: PLC0415 (scipy only needed here)

    def score(a: float) -> float:
        return _reml_score(a, y, X, D)[0]

    if score(0.0) <= 0.0:
        return 0.0, k, True, "score-root (boundary A = 0)"
    hi = max(float(np.median(D)), float(np.var(y)), 1e-12)
    for _ in range(200):
        if score(hi) < 0.0:
            break
        hi *= 2.0
    else:
        return math.nan, k, False, "score-root (no bracket)"
    root = brentq(score, 0.0, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500)
    return float(root), k, True, "score-root"


def _to_original(
    t: np.ndarray, mse_t: np.ndarray, s2: np.ndarray, transform: str | None, backtransform: str | None, z: float
) -> tuple[np.ndarray, ...]:
    """(estimate, mse, lower, upper) on the original scale from model-scale values."""
    half = z * np.sqrt(mse_t)
    if transform is None:
        return t, mse_t, t - half, t + half
    est = arcsin_back(t, s2, backtransform)
    mse = np.sin(2.0 * t) ** 2 * mse_t
    lo = arcsin_back(np.clip(t - half, 0.0, math.pi / 2), 0.0, "naive")
    hi = arcsin_back(np.clip(t + half, 0.0, math.pi / 2), 0.0, "naive")
    return est, mse, lo, hi


def fay_herriot(
    direct: Any,
    sampling_var: Any = None,
    X: Any = None,
    *,
    data: pd.DataFrame | None = None,
    areas: Any = None,
    intercept: bool = True,
    method: str = "REML",
    transform: str | None = None,
    n: Any = None,
    backtransform: str = "bc",
    benchmark: float | None = None,
    benchmark_weights: Any = None,
    benchmark_method: str = "ratio",
    confidence: float | None = None,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
) -> FayHerriotResult:
    """Fit the area-level Fay–Herriot model and return EBLUPs with their MSE for every area.

    Parameters
    ----------
    direct : array-like (m,) or column name
        Direct estimates, one per area; NaN for an area without one (it gets the synthetic
        prediction x' beta, see :meth:`FayHerriotResult.predict`). Proportions in 0..1 when
        ``transform="arcsin"``.
    sampling_var : array-like (m,) or column name
        Sampling variances D_i of the direct estimates (squared standard errors), > 0 where
        ``direct`` is given. With ``transform="arcsin"`` they are optional and only reported
        (``direct_var``): the model uses 1 / (4 n).
    X : array-like (m, k), DataFrame, Series, column name(s) or None
        Area-level covariates, no missing values. An intercept column is added when
        ``intercept=True`` (default): do not include a constant column yourself. Categorical
        covariates must be coded as 0/1 columns. ``None``: intercept-only model.
    data : DataFrame, optional
        When given, ``direct``, ``sampling_var``, ``X`` and ``n`` may be column names of it, and
        its index labels the areas.
    areas : array-like (m,), optional
        Area labels (default: the index of ``data``/``direct`` when a pandas object, else 0..m-1).
    method : "REML"
        Estimation method of A (only REML is implemented; it is sae's default).
    transform : None or "arcsin"
        "arcsin": fit on asin(sqrt(direct)) with sampling variance 1 / (4 n) (see module docstring).
    n : array-like (m,) or column name
        (Effective) sample sizes, > 0, required with ``transform="arcsin"``.
    backtransform : "bc" or "naive"
        Back-transformation of the arcsin-scale EBLUP (default "bc", bias-corrected).
    benchmark : float, optional
        National direct estimate the weighted sum of the area estimates must equal.
    benchmark_weights : array-like (m,)
        Non-negative weights (population shares or counts; normalised to sum 1) of every area passed.
    benchmark_method : "ratio" or "difference"
    confidence : float
        Level of the intervals (default 0.95).
    tol, max_iter :
        Fisher-scoring stopping rule (sae's PRECISION = 1e-4 and MAXITER = 100).

    Returns
    -------
    FayHerriotResult
        ``estimate``, ``eblup``, ``benchmarked``, ``mse``, ``rmse``, ``cv``, ``lower``, ``upper``,
        ``gamma``, ``synthetic``, ``std_residual``, ``g1``/``g2``/``g3``, ``beta``, ``beta_se``,
        ``A``, ``A_var``, ``loglike``/``aic``/``bic``, ``converged``, ``iterations``; ``.frame()``
        gives one row per area and ``.predict(X)`` synthetic estimates for further areas.

    Raises
    ------
    ValueError
        naming the argument: lengths differ, a missing or non-positive sampling variance (or n)
        where a direct estimate is given, proportions outside [0, 1] with ``transform="arcsin"``,
        missing covariates, a rank-deficient X, fewer areas with a direct estimate than the
        number of parameters + 1, bad benchmark inputs.
    """
    _check_choice(method, "method", _METHODS)
    _check_choice(transform, "transform", _TRANSFORMS)
    _check_choice(backtransform, "backtransform", _BACKTRANSFORMS)
    _check_choice(benchmark_method, "benchmark_method", _BENCHMARK_METHODS)
    confidence = config.CONFIDENCE_LEVEL if confidence is None else confidence
    z = z_critical(confidence)  # raises ValueError naming confidence when not in (0, 1)
    confidence = float(confidence)
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number (got {tol!r})")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer (got {max_iter!r})")

    y_all = _vector(direct, "direct", data)
    m_all = len(y_all)
    if m_all == 0:
        raise ValueError("direct is empty")
    if areas is None:
        if data is not None:
            areas = data.index
        elif isinstance(direct, (pd.Series, pd.DataFrame)):
            areas = direct.index
        else:
            areas = pd.RangeIndex(m_all)
    areas = pd.Index(areas)
    if len(areas) != m_all:
        raise ValueError(f"areas has {len(areas)} labels for {m_all} direct estimates")

    def same_length(arr: np.ndarray, name: str) -> np.ndarray:
        if len(arr) != m_all:
            raise ValueError(f"{name} has {len(arr)} values but direct has {m_all}")
        return arr

    Xm, names = _design(X, data, intercept, m_all)
    if Xm.shape[0] != m_all:
        raise ValueError(f"X has {Xm.shape[0]} rows but direct has {m_all}")
    if np.isnan(Xm).any() or np.isinf(Xm).any():
        rows = list(areas[np.flatnonzero(~np.isfinite(Xm).all(axis=1))][:5])
        raise ValueError(f"X has missing or infinite values (areas {rows})")

    dvar = (
        np.full(m_all, np.nan)
        if sampling_var is None
        else same_length(_vector(sampling_var, "sampling_var", data), "sampling_var")
    )
    obs = ~np.isnan(y_all)
    if np.isinf(y_all).any():
        raise ValueError("direct has infinite values")

    if transform == "arcsin":
        if n is None:
            raise ValueError("n (effective sample sizes) is required with transform='arcsin'")
        n_all = same_length(_vector(n, "n", data), "n")
        bad = obs & ~(n_all > 0)
        if bad.any():
            raise ValueError(f"n must be positive where direct is given (areas {list(areas[bad][:5])})")
        badp = obs & ((y_all < 0) | (y_all > 1))
        if badp.any():
            raise ValueError(
                f"direct must be proportions in [0, 1] with transform='arcsin' (areas {list(areas[badp][:5])})"
            )
        y_model, D_all = arcsin_transform(np.where(obs, y_all, 0.5), np.where(obs, n_all, 1.0))
        y_model = np.where(obs, y_model, np.nan)
        D_all = np.where(obs, D_all, np.nan)
    else:
        if sampling_var is None:
            raise ValueError("sampling_var is required (or use transform='arcsin' with n)")
        bad = obs & ~(dvar > 0)  # NaN, zero or negative
        if bad.any():
            raise ValueError(
                f"sampling_var must be positive where direct is given "
                f"(missing or <= 0 for areas {list(areas[bad][:5])})"
            )
        if np.isinf(dvar[obs]).any():
            raise ValueError("sampling_var has infinite values")
        y_model, D_all = y_all, dvar

    y, D, Xo = y_model[obs], D_all[obs], Xm[obs]
    m, p = Xo.shape
    if m < p + 1:
        raise ValueError(
            f"direct: {m} areas with a direct estimate are too few for {p} regression "
            f"coefficients and the area variance (need at least {p + 1})"
        )
    rank = np.linalg.matrix_rank(Xo)
    if rank < p:
        raise ValueError(
            f"X is rank-deficient on the areas with a direct estimate (rank {rank} < {p} "
            f"columns {list(names)}): drop collinear or constant columns "
            f"(intercept={intercept} {'adds' if intercept else 'does not add'} a constant)"
        )

    A, iterations, converged, algorithm = _reml(y, Xo, D, float(tol), int(max_iter))
    if not converged:
        raise ValueError(
            "direct: the REML estimate of the area variance could not be found "
            "(the restricted likelihood has no bracketed maximum); check the inputs"
        )

    vi = 1.0 / (A + D)
    XtVi = (vi[:, None] * Xo).T
    Q = np.linalg.inv(XtVi @ Xo)
    beta = Q @ XtVi @ y
    beta_se = np.sqrt(np.diag(Q))
    resid = y - Xo @ beta
    loglike = float(-0.5 * np.sum(np.log(2 * math.pi * (A + D)) + resid**2 * vi))
    aic = -2 * loglike + 2 * (p + 1)
    bic = -2 * loglike + (p + 1) * math.log(m)
    A_var = 2.0 / float(np.sum(vi**2))

    synthetic = Xm @ beta
    xQx = np.einsum("ij,jk,ik->i", Xm, Q, Xm)
    gamma = np.zeros(m_all)
    g1 = np.zeros(m_all)
    g3 = np.zeros(m_all)
    std_res = np.full(m_all, np.nan)
    gamma[obs] = A * vi
    B = 1.0 - gamma
    g1[obs] = gamma[obs] * D
    g2 = np.where(obs, B**2 * xQx, xQx)
    g3[obs] = B[obs] ** 2 * A_var * vi
    std_res[obs] = resid * np.sqrt(vi)
    eblup_t = synthetic.copy()
    eblup_t[obs] = synthetic[obs] + gamma[obs] * resid
    mse_t = np.where(obs, g1 + g2 + 2 * g3, A + xQx)
    s2 = np.where(obs, g1, A)

    eblup, mse, lower, upper = _to_original(eblup_t, mse_t, s2, transform, backtransform, z)
    lower, upper = np.array(lower, dtype=float), np.array(upper, dtype=float)

    benchmarked = factor = None
    if benchmark is not None or benchmark_weights is not None:
        if benchmark is None or benchmark_weights is None:
            raise ValueError("benchmark and benchmark_weights must be given together")
        try:
            target = float(benchmark)
        except (TypeError, ValueError):
            raise ValueError(f"benchmark must be a number (got {benchmark!r})") from None
        if not math.isfinite(target):
            raise ValueError(f"benchmark must be finite (got {benchmark!r})")
        w = same_length(_vector(benchmark_weights, "benchmark_weights", data), "benchmark_weights")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("benchmark_weights must be finite, non-negative and not all zero")
        w = w / w.sum()
        current = float(w @ eblup)
        if benchmark_method == "ratio":
            if current <= 0:
                raise ValueError(
                    "benchmark_method='ratio' needs a positive weighted sum of the EBLUPs "
                    f"(got {current!r}); use benchmark_method='difference'"
                )
            factor = target / current
            benchmarked = eblup * factor
            lower, upper = lower * factor, upper * factor
        else:
            factor = target - current
            benchmarked = eblup + factor
            lower, upper = lower + factor, upper + factor
        if transform == "arcsin" and ((benchmarked < 0) | (benchmarked > 1)).any():
            raise ValueError(
                "benchmark: the benchmarked proportions leave [0, 1]; check benchmark and benchmark_weights"
            )

    return FayHerriotResult(
        areas=areas,
        in_sample=obs,
        direct=y_all,
        direct_var=D_all
        if transform is None
        else (dvar if sampling_var is not None else np.sin(2 * y_model) ** 2 * D_all),
        sampling_var=D_all,
        eblup=eblup,
        benchmarked=benchmarked,
        mse=mse,
        lower=lower,
        upper=upper,
        gamma=gamma,
        synthetic=synthetic,
        eblup_model=eblup_t,
        mse_model=mse_t,
        g1=g1,
        g2=g2,
        g3=g3,
        std_residual=std_res,
        beta=pd.Series(beta, index=list(names)),
        beta_se=pd.Series(beta_se, index=list(names)),
        A=float(A),
        A_var=A_var,
        loglike=loglike,
        aic=aic,
        bic=bic,
        converged=converged,
        iterations=iterations,
        algorithm=algorithm,
        method=method,
        transform=transform,
        backtransform=backtransform if transform else None,
        confidence=confidence,
        benchmark=None if benchmarked is None else float(benchmark),
        benchmark_method=benchmark_method if benchmarked is not None else None,
        benchmark_factor=factor,
        columns=names,
        intercept=intercept,
        _cov_beta=Q,
    )
