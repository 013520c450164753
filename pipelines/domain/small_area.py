"""Estimates for every prefecture (issue #24): model-based (Fay–Herriot), pooled rounds, and the
rule for which estimate leads.

A stage-level module: it works on the survey cells of rounds already computed
(``indicators.RoundData.cells``: per area x indicator x breakdown the sums Σw, Σw², Σwy, the
unweighted base n and count ny, the published share p -- NaN when suppressed -- n_design = Kish
n_eff / deff, suppressed, source_kind) and on the shipped covariates; it opens no warehouse.
Values are proportions (0..1) here; the indicators table publishes percent.

Model-based estimates (``model_estimates``)
-------------------------------------------
Area-level Fay–Herriot EBLUP by REML (``sae.fay_herriot``: Prasad–Rao / Datta–Lahiri MSE as R
``sae::mseFH``) on the arcsine square-root scale: y* = asin(sqrt(p)) with sampling variance
D = 1 / (4 n_design), n_design the same effective size (Kish n_eff divided by the survey's design
effect) that the direct Wilson intervals use. The estimate is back-transformed with the bias
correction E[sin² θ], θ ~ N(EBLUP*, g1) (``sae.arcsin_back``; the synthetic part alone for an
area without a published direct value: variance A); the 95% interval is EBLUP* ± 1.96 sqrt(MSE*)
back-transformed by sin² (so it stays within 0..100%); the MSE on the percent scale by the delta
method, rmse = sqrt(MSE), cv = rmse / estimate.

* Totals: one model per indicator over the 47 prefectures with covariate the standardised log
  population 2020 (``covariates``; data/reference/prefecture_covariates.csv, 2020 census), i.e.
  x'β = β0 + β1 z. Benchmarked (ratio) so that the population-weighted mean of the 47 estimates
  equals the national direct estimate (weights: 2020 census population shares).
* Breakdowns (sex, age bands, UK age bands, living alone): one model per indicator and partition
  (the sex cells, the age cells, ...) over the published cells of that partition in every
  prefecture, with covariate c = θ̂_total(area) + (asin sqrt(p_nat,b) - asin sqrt(p_nat,total)):
  the area's model-based total (EBLUP*, transformed scale) shifted by the national difference
  between the breakdown and the total (x'β = β0 + β1 c: the classic synthetic assumption, the area
  differs from the nation in each group as in its total, with its intercept and slope estimated).
  A partition with fewer than ``MIN_FIT_CELLS`` published cells takes the fit over every published
  breakdown cell of the indicator. Each breakdown is benchmarked (ratio) to its national direct
  estimate with the prefectures' total population shares as weights (population by prefecture x
  sex x age is not shipped: an approximation, stated). The covariate is itself an estimate: a
  cell's MSE* adds (1 - γ)² β1² MSE*_total(area), the total's error carried through the slope
  (without it the intervals of the synthetic cells covered the generator's truth in about half
  the cells; with it 94-99%). The cells of one area share respondents and the area's total enters
  the covariate; the model treats the cells as independent (a stated approximation).
* When REML puts the area variance A at 0 (the spread of the published direct values is all
  sampling error), the model-based estimate is the regression prediction and its MSE only that of
  the coefficients: on the synthetic sample such intervals cover the truth in about 85% of the
  totals of the indicators concerned (the others 96-100%). The quality page lists A of every fit.
* No leak: a model is fitted only on cells whose direct value is published. A cell whose direct
  value is suppressed gets the synthetic prediction x'β (MSE A + x'Cov(β)x: ``estimate_method``
  'synthetic'), which uses no data of that cell beyond what is published (β, A and the benchmark
  come from published cells; its covariate from the area's published total or, when that is
  suppressed too, its synthetic total, and the published national figures). So no model value can
  reveal a suppressed direct value. Model values are estimates, not counts: they carry no base.

Pooled estimates (``pooled_estimates``)
---------------------------------------
For a prefecture's breakdown cell (never a total) whose single-round direct value is suppressed,
the estimate pooled over the latest ``POOL_ROUNDS`` national rounds (e.g. 2022–2024 平均): the
rounds' Σw, Σw², Σwy and n added (the respondents of the three rounds together), for a prefecture
estimated from the national survey's respondents in each of those rounds (same source kind; an own
survey is not pooled with the national one). Its effective size is Kish's on the pooled weights
divided by the largest design effect of the three rounds; its interval Wilson's on that size.

Why this keeps a suppressed single-round cell unrecoverable: (1) a pooled value is published only
when *none* of the pooled rounds publishes that cell directly -- with one round's cell published
(its base and share), pooled minus published would leave the rest of the rounds; with all three
suppressed, the pooled figure is one relation among three unknowns, each of which its own round's
audit keeps within a protection interval (their uncertainties add up). (2) The pooled cells go
through the same disclosure audit as every published count (``audit.protect``) as a table of
their own: per area the pooled cells and the pooled total (known: the sum of the rounds' published
totals), the pooled cells that are not published (their base under ``config.MIN_BASE``, an
effective size under it -- the single round's primary rule -- or a round publishing the cell) as
the cells to protect, so that no one of them is derivable from the
published pooled cells by the partitions (sex, age bands, UK age bands, living alone) or through
the national figure; the audit's secondary suppression removes further pooled cells until none is.
(3) The pooled base is not published (neither as a number nor in a note); the audit of (2) takes
it as known all the same, since a pooled value's interval and CV imply its effective size nearly.

Which estimate leads (``leading``)
----------------------------------
Per cell, the first that applies: the direct estimate when it is published and its coefficient of
variation CV = sqrt(p(1 - p) / n_design) / p is at most ``config.LEAD_CV_MAX`` (20%); the pooled
estimate when published with a CV at most the same threshold; the model-based estimate; the
pooled estimate (CV above the threshold) or the published direct value (likewise) when no model
could be fitted. National figures are always direct. The same threshold applies to both
design-based estimates: a pooled value as uncertain as the direct value that was passed over is no
better a lead than the model-based value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.domain import config, stats
from pipelines.domain.config import POOL_ROUNDS, REFERENCE_DIR
from pipelines.domain.sae import fay_herriot

log = logging.getLogger("tsunagari.small_area")

__all__ = [
    "POOL_ROUNDS",
    "MIN_FIT_CELLS",
    "MIN_TOTAL_AREAS",
    "COVARIATES_FILE",
    "COVARIATE_NAME",
    "covariates",
    "direct_cv",
    "model_estimates",
    "pooled_estimates",
    "leading",
    "SmallAreaRound",
    "small_area_round",
    "pooled_years_label",
    "ESTIMATE_COLUMNS",
    "FIT_COLUMNS",
    "LEAD_COLUMNS",
]

NATIONAL = "00"
_Z = stats.z_critical(config.CONFIDENCE_LEVEL)
MIN_FIT_CELLS = 10  # published cells a breakdown partition needs for its own fit
MIN_TOTAL_AREAS = 10  # published prefecture totals an indicator needs for its model
COVARIATES_FILE = REFERENCE_DIR / "prefecture_covariates.csv"
COVARIATE_NAME = "log_population_2020_std"
BREAKDOWN_COVARIATE = "total_model_shifted"

# The small_area table (proportions here; the warehouse stores percent, see ``to_table``).
ESTIMATE_COLUMNS = [
    "area_code",
    "indicator_id",
    "breakdown",
    "estimate_method",
    "p",
    "lower",
    "upper",
    "rmse",
    "cv",
    "shrinkage",
    "std_residual",
    "synthetic",
    "fit_scope",
    "pooled_years",
]
FIT_COLUMNS = [
    "indicator_id",
    "fit_scope",
    "term",
    "coefficient",
    "std_error",
    "area_variance",
    "n_in_sample",
    "n_areas",
    "loglike",
    "algorithm",
    "benchmark_factor",
]
LEAD_COLUMNS = ["estimate_method", "lead_p", "lead_lower", "lead_upper", "lead_cv", "lead_years"]


# --- Covariates ------------------------------------------------------------------------------


def covariates() -> pd.DataFrame:
    """The model's area covariates, one row per prefecture (area_code '01'..'47'): population_2020,
    log_population_2020 (data/reference/prefecture_covariates.csv, 2020 census, column ``source``)
    and ``COVARIATE_NAME``, the log population standardised over the 47 prefectures (mean 0,
    standard deviation 1 with ddof 0)."""
    cov = pd.read_csv(COVARIATES_FILE, encoding="utf-8").sort_values("pref_code").reset_index(drop=True)
    x = cov["log_population_2020"].to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "area_code": [f"{int(c):02d}" for c in cov["pref_code"]],
            "population_2020": cov["population_2020"].to_numpy(dtype=float),
            "log_population_2020": x,
            COVARIATE_NAME: (x - x.mean()) / x.std(),
            "source": cov["source"].astype(str),
        }
    )


def direct_cv(p, n_design) -> np.ndarray:
    """Coefficient of variation of a direct share: sqrt(p(1 - p) / n_design) / p (NaN when p or
    n_design is missing, inf when p = 0)."""
    p = np.asarray(p, dtype=float)
    n = np.asarray(n_design, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(p * (1 - p) / n)
        return np.where(np.isnan(p) | ~(n > 0), np.nan, np.where(p > 0, se / p, np.inf))


def _partition(breakdown: str) -> str:
    return breakdown.partition("=")[0]


def _prefecture_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The prefecture cells with ``published``: the cells a model is fitted on -- published direct
    values from the national survey's respondents (source 'subsample'). A prefecture's own survey
    (another design) is left out of the fits: it gets the synthetic prediction where its direct value
    does not lead, and a correction to one prefecture's own survey changes no other prefecture."""
    c = cells[cells["area_code"] != NATIONAL].copy()
    kind = c["source_kind"] if "source_kind" in c else pd.Series("subsample", index=c.index)
    c["published"] = (
        ~c["suppressed"].to_numpy(dtype=bool) & c["p"].notna() & (c["n_design"] > 0) & (kind == "subsample").to_numpy()
    )
    return c


def _benchmark(est, lower, upper, target, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ratio benchmarking as ``sae.fay_herriot``'s (``benchmark_method='ratio'``): every estimate and
    interval end multiplied by target / sum w·est (w normalised); the difference form when the
    ratio would leave [0, 1]; unchanged when there is no target."""
    if not np.isfinite(target):
        return est, lower, upper, float("nan")
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    cur = float(w @ est)
    if cur > 0:
        f = target / cur
        b, lo, hi = est * f, lower * f, upper * f
        if (b >= 0).all() and (b <= 1).all():
            return b, np.clip(lo, 0, 1), np.clip(hi, 0, 1), f
    d = target - cur
    return np.clip(est + d, 0, 1), np.clip(lower + d, 0, 1), np.clip(upper + d, 0, 1), d


def _fit_rows(ind_id: str, scope: str, res, m_areas: int) -> list[dict]:
    return [
        {
            "indicator_id": ind_id,
            "fit_scope": scope,
            "term": str(t),
            "coefficient": float(res.beta[t]),
            "std_error": float(res.beta_se[t]),
            "area_variance": float(res.A),
            "n_in_sample": int(res.in_sample.sum()),
            "n_areas": int(m_areas),
            "loglike": float(res.loglike),
            "algorithm": res.algorithm,
            "benchmark_factor": float(res.benchmark_factor) if res.benchmark_factor is not None else np.nan,
        }
        for t in res.beta.index
    ]


def model_estimates(cells: pd.DataFrame, cov: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(estimates, fits) of one round's survey cells (module docstring). ``estimates``: one row
    per prefecture x indicator x breakdown that a model covers (``ESTIMATE_COLUMNS``;
    estimate_method 'model' for a cell with a published direct value in the fit, 'synthetic'
    otherwise; ``synthetic`` is the back-transformed x'β without benchmarking). ``fits``: one row
    per fit x coefficient (``FIT_COLUMNS``; fit_scope 'total', a partition 'sex' / 'age' /
    'uk_age' / 'household_single', or 'breakdowns' for the fit over every breakdown cell)."""
    cov = covariates() if cov is None else cov
    cov = cov.set_index("area_code")
    areas = list(cov.index)
    pop = cov["population_2020"]
    z = cov[COVARIATE_NAME]
    c = _prefecture_cells(cells)
    nat = cells[cells["area_code"] == NATIONAL]
    nat_p = dict(
        zip(zip(nat["indicator_id"], nat["breakdown"]), nat["p"].where(~nat["suppressed"].astype(bool)).astype(float))
    )
    out: list[pd.DataFrame] = []
    fits: list[dict] = []
    for ind_id, ic in c.groupby("indicator_id", sort=False):
        tot = ic[ic["breakdown"] == "total"].set_index("area_code").reindex(areas)
        pub = tot["published"].fillna(False).to_numpy(dtype=bool)
        if pub.sum() < MIN_TOTAL_AREAS:
            log.info("small area: %s has %d published totals, no model", ind_id, int(pub.sum()))
            continue
        direct = np.where(pub, tot["p"].to_numpy(dtype=float), np.nan)
        n = np.where(pub, tot["n_design"].to_numpy(dtype=float), np.nan)
        target = float(nat_p.get((ind_id, "total"), np.nan))
        X = pd.DataFrame({COVARIATE_NAME: z.to_numpy()}, index=areas)
        bench = dict(benchmark=target, benchmark_weights=pop.to_numpy()) if np.isfinite(target) else {}
        try:
            try:
                res = fay_herriot(direct, None, X, areas=areas, transform="arcsin", n=n, **bench)
            except ValueError:
                if not bench:
                    raise
                res = fay_herriot(
                    direct, None, X, areas=areas, transform="arcsin", n=n, benchmark_method="difference", **bench
                )
        except ValueError as exc:  # e.g. every published total alike: no model, said in the log
            log.warning("small area: %s totals not fitted (%s)", ind_id, exc)
            continue
        fits += _fit_rows(ind_id, "total", res, len(areas))
        f = res.frame()
        syn = np.sin(np.clip(res.synthetic, 0, np.pi / 2)) ** 2
        out.append(
            pd.DataFrame(
                {
                    "area_code": areas,
                    "indicator_id": ind_id,
                    "breakdown": "total",
                    "estimate_method": f["estimate_method"].to_numpy(),
                    "p": res.estimate,
                    "lower": res.lower,
                    "upper": res.upper,
                    "rmse": res.rmse,
                    "cv": res.cv,
                    "shrinkage": res.gamma,
                    "std_residual": res.std_residual,
                    "synthetic": syn,
                    "fit_scope": "total",
                    "pooled_years": None,
                }
            )
        )
        theta_total = pd.DataFrame({"theta": res.eblup_model, "mse": res.mse_model}, index=areas)
        out += _breakdown_models(ind_id, ic, theta_total, nat_p, pop, fits)
    est = pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=ESTIMATE_COLUMNS)
    return est[ESTIMATE_COLUMNS], pd.DataFrame(fits, columns=FIT_COLUMNS)


def _breakdown_models(
    ind_id: str, ic: pd.DataFrame, theta_total: pd.DataFrame, nat_p: dict, pop: pd.Series, fits: list[dict]
) -> list[pd.DataFrame]:
    """The breakdown models of one indicator (module docstring). ``theta_total``: per area the
    total model's EBLUP* and MSE* (transformed scale)."""
    b = ic[ic["breakdown"] != "total"].copy()
    t_nat = nat_p.get((ind_id, "total"), np.nan)
    b["p_nat"] = [nat_p.get((ind_id, bd), np.nan) for bd in b["breakdown"]]
    b = b[np.isfinite(b["p_nat"].to_numpy(dtype=float)) & np.isfinite(t_nat)]
    if not len(b):
        return []
    b["cov"] = (
        theta_total["theta"].reindex(b["area_code"]).to_numpy()
        + np.arcsin(np.sqrt(b["p_nat"].to_numpy(dtype=float)))
        - np.arcsin(np.sqrt(t_nat))
    )
    b["part"] = b["breakdown"].map(_partition)
    b = b.reset_index(drop=True)
    counts = b[b["published"]].groupby("part").size()
    own = [p for p in dict.fromkeys(b["part"]) if counts.get(p, 0) >= MIN_FIT_CELLS]
    rest = [p for p in dict.fromkeys(b["part"]) if p not in own]
    plans = [(p, b["part"] == p, b["part"] == p) for p in own]
    if rest and counts.sum() >= MIN_FIT_CELLS:
        plans.append(("breakdowns", pd.Series(True, index=b.index), b["part"].isin(rest)))
    out = []
    for scope, fit_rows, use_rows in plans:
        d = b[fit_rows.to_numpy()]
        pub = d["published"].to_numpy(dtype=bool)
        direct = np.where(pub, d["p"].to_numpy(dtype=float), np.nan)
        n = np.where(pub, d["n_design"].to_numpy(dtype=float), np.nan)
        labels = (d["area_code"] + "|" + d["breakdown"]).to_numpy()
        X = pd.DataFrame({BREAKDOWN_COVARIATE: d["cov"].to_numpy(dtype=float)}, index=labels)
        try:
            res = fay_herriot(direct, None, X, areas=labels, transform="arcsin", n=n)
        except ValueError as exc:
            log.info("small area: %s %s not fitted (%s)", ind_id, scope, exc)
            continue
        fits += _fit_rows(ind_id, scope, res, d["area_code"].nunique())
        keep = use_rows.to_numpy()[fit_rows.to_numpy()]
        dd = d[keep]
        gamma = res.gamma[keep]
        t = res.eblup_model[keep]
        # The covariate is itself an estimate: its error (the total's MSE*), carried through the
        # slope, is added to the cell's MSE* where the cell leans on it (1 - gamma).
        slope = float(res.beta[BREAKDOWN_COVARIATE])
        mse_t = res.mse_model[keep] + (1 - gamma) ** 2 * slope**2 * theta_total["mse"].reindex(
            dd["area_code"]
        ).to_numpy(dtype=float)
        half = _Z * np.sqrt(mse_t)
        rmse = np.abs(np.sin(2 * t)) * np.sqrt(mse_t)
        syn = np.sin(np.clip(res.synthetic[keep], 0, np.pi / 2)) ** 2
        part = pd.DataFrame(
            {
                "area_code": dd["area_code"].to_numpy(),
                "indicator_id": ind_id,
                "breakdown": dd["breakdown"].to_numpy(),
                "estimate_method": np.where(res.in_sample[keep], "model", "synthetic"),
                "p": res.eblup[keep],
                "lower": np.sin(np.clip(t - half, 0, np.pi / 2)) ** 2,
                "upper": np.sin(np.clip(t + half, 0, np.pi / 2)) ** 2,
                "rmse": rmse,
                "cv": np.nan,
                "shrinkage": gamma,
                "std_residual": res.std_residual[keep],
                "synthetic": syn,
                "fit_scope": scope,
                "pooled_years": None,
                "p_nat": dd["p_nat"].to_numpy(),
            }
        )
        # each breakdown benchmarked to its national direct estimate (population shares as weights)
        est, lo, hi = (part[c].to_numpy(dtype=float).copy() for c in ("p", "lower", "upper"))
        w_all = pop.reindex(part["area_code"]).to_numpy(dtype=float)
        for _, rows in part.groupby("breakdown", sort=False).indices.items():
            est[rows], lo[rows], hi[rows], _f = _benchmark(
                est[rows], lo[rows], hi[rows], float(part["p_nat"].iat[rows[0]]), w_all[rows]
            )
        part["p"], part["lower"], part["upper"] = est, lo, hi
        with np.errstate(divide="ignore", invalid="ignore"):
            part["cv"] = np.where(part["p"] > 0, part["rmse"] / part["p"], np.nan)
        out.append(part.drop(columns=["p_nat"]))
    return out


# --- Pooled rounds ---------------------------------------------------------------------------


def pooled_years_label(years) -> str:
    """'2022-2024' for the rounds pooled (shown as 2022–2024年平均)."""
    ys = sorted(int(y) for y in years)
    return f"{ys[0]}-{ys[-1]}"


def pooled_estimates(rounds: dict[int, pd.DataFrame], year: int) -> pd.DataFrame:
    """Pooled estimates of round ``year`` (module docstring) from ``rounds`` = {year: the survey
    cells of that round} (``RoundData.cells``, every round available). Uses the latest
    ``POOL_ROUNDS`` rounds up to ``year``; with fewer, returns no rows. One row per published pooled
    cell (``ESTIMATE_COLUMNS`` with estimate_method 'pooled', rmse the standard error, and the
    columns ``n_pooled`` / ``ny_pooled`` for the audit and tests: never published)."""
    from pipelines.domain.audit import protect

    years = sorted(y for y in rounds if y <= year)[-POOL_ROUNDS:]
    empty = pd.DataFrame(columns=ESTIMATE_COLUMNS + ["n_pooled", "ny_pooled"])
    if len(years) < POOL_ROUNDS or years[-1] != year:
        return empty
    key = ["indicator_id", "area_code", "breakdown"]
    parts = []
    for y in years:
        c = rounds[y][key + ["n", "ny", "sw", "sw2", "swy", "deff", "suppressed", "source_kind", "denominator"]]
        parts.append(c.assign(year=y))
    allr = pd.concat(parts, ignore_index=True)
    g = allr.groupby(key, sort=False)
    pooled = g.agg(
        n=("n", "sum"),
        ny=("ny", "sum"),
        sw=("sw", "sum"),
        sw2=("sw2", "sum"),
        swy=("swy", "sum"),
        deff=("deff", "max"),
        rounds=("year", "nunique"),
        any_published=("suppressed", lambda s: bool((~s.astype(bool)).any())),
        kinds=("source_kind", lambda s: "|".join(sorted(set(s)))),
        denominator=("denominator", "first"),
    ).reset_index()
    nat = (pooled["area_code"] == NATIONAL).to_numpy()
    same = (pooled["kinds"] == "subsample").to_numpy() & (pooled["rounds"] == len(years)).to_numpy()
    pooled = pooled[nat | same].reset_index(drop=True)
    nat = (pooled["area_code"] == NATIONAL).to_numpy()
    is_total = (pooled["breakdown"] == "total").to_numpy()
    n = pooled["n"].to_numpy(dtype=float)
    n_eff = stats.effective_n(pooled["sw"].to_numpy(dtype=float), pooled["sw2"].to_numpy(dtype=float))
    # the primary rule of a single round (indicators.suppression_frame): base or n_eff < MIN_BASE
    small = (stats.base_status(n) == "suppressed") | ~(n_eff >= config.MIN_BASE)
    # Cells to protect: every pooled cell not published. Known to an intruder: the national cells
    # and a prefecture's pooled total when every round published it (the sum of the rounds' totals).
    candidate = ~nat & ~is_total & ~pooled["any_published"].to_numpy(dtype=bool)
    total_known = nat | (
        is_total & pooled["any_published"].to_numpy(dtype=bool) & ~_any_round_suppressed(allr, pooled, key)
    )
    primary = ~(candidate & ~small) & ~total_known
    frame = pd.DataFrame(
        {
            "group": pooled["denominator"].to_numpy(),
            "measure": pooled["indicator_id"].to_numpy(),
            "area_code": pooled["area_code"].to_numpy(),
            "breakdown": pooled["breakdown"].to_numpy(),
            "n": n,
            "y": pooled["ny"].to_numpy(dtype=float),
            "primary": primary,
        }
    )
    subsample = set(pooled.loc[~nat, "area_code"])
    secondary = protect(frame, subsample)
    publish = candidate & ~small & ~secondary
    p_rows = pooled[publish].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p_rows["swy"].to_numpy(dtype=float) / p_rows["sw"].to_numpy(dtype=float)
    n_design = stats.design_n(n_eff[publish], p_rows["deff"].to_numpy(dtype=float))
    lower, upper = stats.wilson_interval(p, n_design)
    se = np.sqrt(p * (1 - p) / n_design)
    return pd.DataFrame(
        {
            "area_code": p_rows["area_code"].to_numpy(),
            "indicator_id": p_rows["indicator_id"].to_numpy(),
            "breakdown": p_rows["breakdown"].to_numpy(),
            "estimate_method": "pooled",
            "p": p,
            "lower": lower,
            "upper": upper,
            "rmse": se,
            "cv": direct_cv(p, n_design),
            "shrinkage": np.nan,
            "std_residual": np.nan,
            "synthetic": np.nan,
            "fit_scope": None,
            "pooled_years": pooled_years_label(years),
            "n_pooled": p_rows["n"].to_numpy(),
            "ny_pooled": p_rows["ny"].to_numpy(),
        }
    ).reset_index(drop=True)


def _any_round_suppressed(allr: pd.DataFrame, pooled: pd.DataFrame, key: list[str]) -> np.ndarray:
    sup = allr.groupby(key, sort=False)["suppressed"].any()
    return sup.reindex(pd.MultiIndex.from_frame(pooled[key])).fillna(True).to_numpy(dtype=bool)


# --- Which estimate leads ------------------------------------------------------------------


def leading(cells: pd.DataFrame, estimates: pd.DataFrame) -> pd.DataFrame:
    """``LEAD_COLUMNS`` aligned with the rows of ``cells`` (one round's survey cells): the estimate
    that leads by the rule of the module docstring (estimate_method 'direct' / 'pooled' / 'model';
    None when there is no value at all), its value, interval, CV and, for a pooled value, the years
    pooled ('2022-2024')."""
    key = ["area_code", "indicator_id", "breakdown"]
    idx = pd.MultiIndex.from_frame(cells[key])
    published = ~cells["suppressed"].to_numpy(dtype=bool) & cells["p"].notna().to_numpy()
    cv_d = direct_cv(cells["p"], cells["n_design"])
    nat = (cells["area_code"] == NATIONAL).to_numpy()

    def pick(method_mask) -> pd.DataFrame:
        e = estimates[method_mask].drop_duplicates(key).set_index(key)
        return e.reindex(idx)

    pooled = pick(estimates["estimate_method"] == "pooled")
    model = pick(estimates["estimate_method"].isin(["model", "synthetic"]))
    has_pooled = pooled["p"].notna().to_numpy()
    has_model = model["p"].notna().to_numpy()
    cv_max = config.LEAD_CV_MAX
    direct_ok = published & (nat | (cv_d <= cv_max))
    pooled_ok = has_pooled & ~nat & (pooled["cv"].to_numpy(dtype=float) <= cv_max)
    method = np.select(
        [direct_ok, pooled_ok, has_model & ~nat, has_pooled & ~nat, published],
        ["direct", "pooled", "model", "pooled", "direct"],
        default="",
    ).astype(object)
    method[method == ""] = None
    out = pd.DataFrame({"estimate_method": method}, index=cells.index)
    for col, d_src, e_col in (
        ("lead_p", cells["p"], "p"),
        ("lead_lower", cells["lower"], "lower"),
        ("lead_upper", cells["upper"], "upper"),
        ("lead_cv", pd.Series(cv_d), "cv"),
    ):
        d = np.asarray(d_src, dtype=float)
        out[col] = np.select(
            [method == "direct", method == "pooled", method == "model"],
            [d, pooled[e_col].to_numpy(dtype=float), model[e_col].to_numpy(dtype=float)],
            np.nan,
        )
    out["lead_years"] = np.where(method == "pooled", pooled["pooled_years"].to_numpy(dtype=object), None)
    return out


# --- One round -------------------------------------------------------------------------------


@dataclass
class SmallAreaRound:
    """The small-area results of one round: ``estimates`` (model and pooled rows, proportions,
    ``ESTIMATE_COLUMNS``), ``fits`` (coefficients and area variance of every fit) and ``lead``
    (``LEAD_COLUMNS`` aligned with the round's cells)."""

    year: int
    estimates: pd.DataFrame
    fits: pd.DataFrame
    lead: pd.DataFrame
    pooled_years: str | None = None
    notes: list[str] = field(default_factory=list)


def small_area_round(
    cells_by_year: dict[int, pd.DataFrame], year: int, cov: pd.DataFrame | None = None
) -> SmallAreaRound:
    """The model-based and pooled estimates of round ``year`` and the leading estimate of each of
    its cells; ``cells_by_year``: {round: its survey cells (``RoundData.cells``)}, the round itself
    and (for pooling) the earlier rounds."""
    cells = cells_by_year[year]
    model, fits = model_estimates(cells, cov)
    pooled = pooled_estimates(cells_by_year, year)
    years = pooled["pooled_years"].iloc[0] if len(pooled) else None
    estimates = pd.concat([model, pooled[ESTIMATE_COLUMNS]], ignore_index=True) if len(pooled) else model
    return SmallAreaRound(year, estimates.reset_index(drop=True), fits, leading(cells, estimates), years)


# --- The warehouse tables (percent, as the indicators table) -----------------------------------

TABLE_COLUMNS = [
    "year",
    "area_code",
    "indicator_id",
    "breakdown",
    "estimate_method",
    "value",
    "lower_ci95",
    "upper_ci95",
    "rmse",
    "cv",
    "shrinkage",
    "std_residual",
    "synthetic",
    "fit_scope",
    "pooled_years",
]
FITS_TABLE_COLUMNS = ["year", *FIT_COLUMNS]


def to_tables(res: SmallAreaRound) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(small_area rows, small_area_fits rows) of one round as the warehouse stores them: values,
    interval ends, rmse and the synthetic part in percent (points), cv and shrinkage as ratios."""
    e = res.estimates
    table = pd.DataFrame(
        {
            "year": np.full(len(e), int(res.year), dtype="int64"),
            "area_code": e["area_code"].astype(object),
            "indicator_id": e["indicator_id"].astype(object),
            "breakdown": e["breakdown"].astype(object),
            "estimate_method": e["estimate_method"].astype(object),
            **{
                c: pd.to_numeric(e[src], errors="coerce").astype("float64") * 100
                for c, src in (
                    ("value", "p"),
                    ("lower_ci95", "lower"),
                    ("upper_ci95", "upper"),
                    ("rmse", "rmse"),
                    ("synthetic", "synthetic"),
                )
            },
            **{c: pd.to_numeric(e[c], errors="coerce").astype("float64") for c in ("cv", "shrinkage", "std_residual")},
            "fit_scope": e["fit_scope"].astype(object),
            "pooled_years": e["pooled_years"].astype(object),
        }
    )
    fits = res.fits.assign(year=int(res.year))[FITS_TABLE_COLUMNS].copy()
    return table[TABLE_COLUMNS].reset_index(drop=True), fits.reset_index(drop=True)
