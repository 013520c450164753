"""Fay–Herriot small-area estimation (pipelines/domain/sae.py, issue #24).

Reference example: R ``sae``'s ``milk`` data set, ``mseFH(yi ~ as.factor(MajorArea), SD^2)`` (REML).

Where the numbers come from (nothing below is computed by us):

* The data (43 areas: SmallArea, ni, yi, SD, CV, MajorArea) are R sae's ``data(milk)``
  (cran/sae data/milk.rda, documented in cran/sae man/milk.Rd), as transcribed to CSV in
  samplics-org/samplics tests/sae/milk.csv (commit 5404f2634ae986c4dd3e3f347558264a039d0528).
* Coefficients, their standard errors, the 43 EBLUPs and the 43 MSEs of the REML fit with sae's
  defaults (PRECISION 1e-4, MAXITER 100): samplics-org/samplics tests/sae/test_eblup_area_model.py
  (commit 15615bae950d9f13e3d1423d371e987ba9670b3e, ``test_fay_herriot_REML_*``; EBLUPs to 7
  decimals, MSEs to 9). That file does not say which program produced them; they are the R output
  format and our sae-faithful implementation (cran/sae R/eblupFH.R, R/mseFH.R) reproduces every one
  of them to the printed precision.
* Independent R output of the same model (package saens, ``eblupfh(yi ~ as.factor(MajorArea),
  data = milk, vardir = "var")``, REML): cran/saens README.md gives the coefficients (7 digits),
  their standard errors (6 decimals) and sae's goodness-of-fit values loglike 12.67748,
  AIC -15.35496, BIC -6.548956.
* Not found in any stored material: the REML area variance ``refvar`` itself. It is tested here
  only through the published EBLUPs and MSEs, which depend on it (gamma = A / (A + D)).
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from pipelines.domain.sae import FayHerriotResult, arcsin_back, arcsin_transform, fay_herriot

# --------------------------------------------------------------------------------------------
# The milk example
# --------------------------------------------------------------------------------------------

MILK_CSV = """SmallArea,ni,yi,SD,CV,MajorArea
1,191,1.099,0.163,0.148,1
2,633,1.075,0.08,0.074,1
3,597,1.105,0.083,0.075,1
4,221,0.628,0.109,0.174,1
5,195,0.753,0.119,0.158,1
6,191,0.981,0.141,0.144,1
7,183,1.257,0.202,0.161,1
8,188,1.095,0.127,0.116,2
9,204,1.405,0.168,0.12,2
10,188,1.356,0.178,0.131,2
11,149,0.615,0.1,0.163,2
12,290,1.46,0.201,0.138,2
13,250,1.338,0.148,0.111,2
14,194,0.854,0.143,0.167,2
15,184,1.176,0.149,0.127,3
16,193,1.111,0.145,0.131,3
17,218,1.257,0.135,0.107,3
18,266,1.43,0.172,0.12,3
19,214,1.278,0.137,0.107,3
20,213,1.292,0.163,0.126,3
21,196,1.002,0.125,0.125,3
22,95,1.183,0.247,0.209,3
23,195,1.044,0.14,0.134,3
24,187,1.267,0.171,0.135,3
25,479,1.193,0.106,0.089,3
26,230,0.791,0.121,0.153,4
27,186,0.795,0.121,0.152,4
28,199,0.759,0.259,0.341,4
29,238,0.796,0.106,0.133,4
30,207,0.565,0.089,0.158,4
31,165,0.886,0.225,0.254,4
32,153,0.952,0.205,0.215,4
33,210,0.807,0.119,0.147,4
34,383,0.582,0.067,0.115,4
35,255,0.684,0.106,0.155,4
36,226,0.787,0.126,0.16,4
37,224,0.44,0.092,0.209,4
38,212,0.759,0.132,0.174,4
39,211,0.77,0.1,0.13,4
40,179,0.8,0.113,0.141,4
41,312,0.756,0.083,0.11,4
42,241,0.865,0.121,0.14,4
43,205,0.64,0.129,0.202,4
"""

# samplics-org/samplics tests/sae/test_eblup_area_model.py (REML)
MILK_BETA = [0.9681890, 0.1327801, 0.2269462, -0.2413011]
MILK_BETA_SE = [0.06936208, 0.10300072, 0.09232981, 0.08161707]
MILK_EBLUP = [
    1.0219703,
    1.0476018,
    1.0679513,
    0.7608170,
    0.8461574,
    0.9743727,
    1.0584523,
    1.0977762,
    1.2215449,
    1.1951455,
    0.7852155,
    1.2139456,
    1.2096593,
    0.9834967,
    1.1864247,
    1.1556982,
    1.2263411,
    1.2856486,
    1.2363247,
    1.2349600,
    1.0903019,
    1.1923057,
    1.1216470,
    1.2230296,
    1.1938054,
    0.7627195,
    0.7649550,
    0.7338443,
    0.7699294,
    0.6134418,
    0.7695558,
    0.7958250,
    0.7723187,
    0.6102302,
    0.7001782,
    0.7592787,
    0.5298867,
    0.7434466,
    0.7548996,
    0.7701918,
    0.7481164,
    0.8040773,
    0.6810870,
]
MILK_MSE = [
    0.013460220,
    0.005372876,
    0.005701990,
    0.008541740,
    0.009579594,
    0.011670632,
    0.015926137,
    0.010586518,
    0.014184043,
    0.014901472,
    0.007694262,
    0.016336469,
    0.012562726,
    0.012117378,
    0.012031229,
    0.011709147,
    0.010859780,
    0.013690860,
    0.011034674,
    0.013079686,
    0.009948636,
    0.017243977,
    0.011292325,
    0.013625297,
    0.008065787,
    0.009205133,
    0.009205133,
    0.016476912,
    0.007800626,
    0.006098668,
    0.015441564,
    0.014657866,
    0.009024699,
    0.003870786,
    0.007800626,
    0.009646139,
    0.006404335,
    0.010155645,
    0.007209937,
    0.008470277,
    0.005484860,
    0.009205133,
    0.009903626,
]
# cran/saens README.md (R output)
SAENS_BETA_SE = [0.069362, 0.103001, 0.092330, 0.081617]
SAENS_GOODNESS = {"loglike": 12.67748, "aic": -15.35496, "bic": -6.548956}


@pytest.fixture(scope="module")
def milk() -> pd.DataFrame:
    df = pd.read_csv(io.StringIO(MILK_CSV)).set_index("SmallArea")
    df["var"] = df["SD"] ** 2
    return df


def _milk_X(milk: pd.DataFrame) -> pd.DataFrame:
    # as.factor(MajorArea) with R's treatment contrasts: the first level is the baseline
    return pd.get_dummies(milk["MajorArea"], prefix="MajorArea", drop_first=True)


@pytest.fixture(scope="module")
def milk_fit(milk) -> FayHerriotResult:
    return fay_herriot(milk["yi"], milk["var"], _milk_X(milk))


class TestMilkReference:
    def test_coefficients(self, milk_fit):
        assert list(milk_fit.beta.index) == ["(Intercept)", "MajorArea_2", "MajorArea_3", "MajorArea_4"]
        np.testing.assert_allclose(milk_fit.beta.to_numpy(), MILK_BETA, rtol=0, atol=1e-6)
        np.testing.assert_allclose(milk_fit.beta_se.to_numpy(), MILK_BETA_SE, rtol=0, atol=1e-7)
        np.testing.assert_allclose(milk_fit.beta_se.to_numpy(), SAENS_BETA_SE, rtol=0, atol=1e-6)

    def test_eblup_every_area(self, milk_fit):
        np.testing.assert_allclose(milk_fit.eblup, MILK_EBLUP, rtol=0, atol=1e-6)

    def test_mse_every_area(self, milk_fit):
        np.testing.assert_allclose(milk_fit.mse, MILK_MSE, rtol=0, atol=1e-8)

    def test_goodness_of_fit(self, milk_fit):
        assert milk_fit.loglike == pytest.approx(SAENS_GOODNESS["loglike"], abs=1e-5)
        assert milk_fit.aic == pytest.approx(SAENS_GOODNESS["aic"], abs=1e-5)
        assert milk_fit.bic == pytest.approx(SAENS_GOODNESS["bic"], abs=1e-5)

    def test_fit_path_is_sae_fisher_scoring(self, milk_fit):
        assert milk_fit.converged and milk_fit.algorithm == "fisher-scoring"
        assert 1 <= milk_fit.iterations < 100
        assert milk_fit.A > 0

    def test_data_frame_interface_gives_the_same_fit(self, milk, milk_fit):
        df = milk.join(_milk_X(milk))
        r = fay_herriot("yi", "var", ["MajorArea_2", "MajorArea_3", "MajorArea_4"], data=df)
        np.testing.assert_array_equal(r.eblup, milk_fit.eblup)
        assert list(r.areas) == list(milk.index)
        # plain numpy arrays, no labels
        r2 = fay_herriot(milk["yi"].to_numpy(), milk["var"].to_numpy(), _milk_X(milk).to_numpy(float))
        np.testing.assert_allclose(r2.mse, milk_fit.mse, rtol=1e-12)
        assert list(r2.beta.index) == ["(Intercept)", "x1", "x2", "x3"]

    def test_intercept_false_with_own_constant_is_the_same_model(self, milk, milk_fit):
        X = _milk_X(milk).astype(float)
        X.insert(0, "const", 1.0)
        r = fay_herriot(milk["yi"], milk["var"], X, intercept=False)
        np.testing.assert_allclose(r.eblup, milk_fit.eblup, rtol=1e-12)


class TestResult:
    def test_gamma_in_unit_interval_and_equal_to_shrinkage(self, milk, milk_fit):
        g = milk_fit.gamma
        assert ((g >= 0) & (g <= 1)).all()
        np.testing.assert_allclose(g, milk_fit.A / (milk_fit.A + milk["var"].to_numpy()), rtol=1e-12)
        # EBLUP = gamma * direct + (1 - gamma) * synthetic
        np.testing.assert_allclose(milk_fit.eblup, g * milk["yi"] + (1 - g) * milk_fit.synthetic, rtol=1e-12)

    def test_mse_parts_intervals_and_cv(self, milk_fit):
        r = milk_fit
        np.testing.assert_allclose(r.mse, r.g1 + r.g2 + 2 * r.g3, rtol=1e-12)
        assert (r.g1 > 0).all() and (r.g2 > 0).all() and (r.g3 > 0).all()
        z = stats.norm.ppf(0.975)
        np.testing.assert_allclose(r.lower, r.eblup - z * r.rmse, rtol=1e-12)
        np.testing.assert_allclose(r.upper, r.eblup + z * r.rmse, rtol=1e-12)
        np.testing.assert_allclose(r.cv, r.rmse / r.eblup, rtol=1e-12)
        # the model estimate is more precise than the direct one in every area (milk: large shrinkage)
        assert (r.mse < r.direct_var).all()

    def test_frame(self, milk, milk_fit):
        f = milk_fit.frame()
        assert len(f) == 43 and list(f.index) == list(milk.index)
        for col in (
            "direct",
            "direct_var",
            "estimate",
            "eblup",
            "mse",
            "rmse",
            "cv",
            "lower",
            "upper",
            "gamma",
            "synthetic",
            "std_residual",
            "estimate_method",
        ):
            assert col in f.columns
        assert (f["estimate_method"] == "model").all()
        np.testing.assert_allclose(
            f["std_residual"], (milk["yi"] - milk_fit.synthetic) / np.sqrt(milk_fit.A + milk["var"]), rtol=1e-12
        )

    def test_confidence_level(self, milk, milk_fit):
        r90 = fay_herriot(milk["yi"], milk["var"], _milk_X(milk), confidence=0.90)
        np.testing.assert_allclose(r90.upper - r90.eblup, stats.norm.ppf(0.95) * milk_fit.rmse, rtol=1e-12)

    def test_boundary_area_variance_zero(self):
        # direct estimates lying exactly on a line: no area effect; REML puts A at 0
        x = np.linspace(0, 1, 20)
        y = 0.3 + 0.2 * x
        D = np.full(20, 0.01)
        r = fay_herriot(y, D, x)
        assert r.A == 0.0
        assert (r.gamma == 0).all()
        np.testing.assert_allclose(r.eblup, r.synthetic)

    def test_fallback_when_fisher_scoring_stops_early(self, milk, milk_fit):
        # sae would report non-convergence after one step; the score root is the same REML estimate
        r = fay_herriot(milk["yi"], milk["var"], _milk_X(milk), max_iter=1)
        assert r.converged and r.algorithm == "score-root"
        assert r.A == pytest.approx(milk_fit.A, rel=1e-4)
        np.testing.assert_allclose(r.eblup, MILK_EBLUP, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Areas without a direct estimate
# --------------------------------------------------------------------------------------------


class TestOutOfSample:
    def test_missing_direct_gets_synthetic_prediction(self, milk):
        X = _milk_X(milk)
        y = milk["yi"].copy()
        y.iloc[[3, 20, 40]] = np.nan
        var = milk["var"].copy()
        var.iloc[20] = np.nan  # no variance either: allowed where there is no direct estimate
        r = fay_herriot(y, var, X)
        keep = y.notna().to_numpy()
        sub = fay_herriot(y[keep], milk["var"][keep], X[keep])
        assert r.A == sub.A
        np.testing.assert_allclose(r.beta, sub.beta, rtol=1e-12)
        np.testing.assert_allclose(r.eblup[keep], sub.eblup, rtol=1e-12)
        out = ~keep
        assert not r.in_sample[out].any() and (r.gamma[out] == 0).all()
        Xm = np.column_stack([np.ones(43), X.to_numpy(float)])[out]
        np.testing.assert_allclose(r.eblup[out], Xm @ r.beta.to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(r.mse[out], r.A + np.einsum("ij,jk,ik->i", Xm, r.cov_beta, Xm), rtol=1e-12)
        assert (r.frame().loc[~keep, "estimate_method"] == "synthetic").all()
        # predict() on the same covariates gives the same numbers
        p = r.predict(X[out])
        np.testing.assert_allclose(p["estimate"], r.eblup[out], rtol=1e-12)
        np.testing.assert_allclose(p["mse"], r.mse[out], rtol=1e-12)
        assert list(p.index) == list(milk.index[out])

    def test_predict_new_areas(self, milk_fit):
        new = pd.DataFrame({"MajorArea_2": [0, 1], "MajorArea_3": [0, 0], "MajorArea_4": [1, 0]}, index=["a", "b"])
        p = milk_fit.predict(new)
        b = milk_fit.beta
        assert p.loc["a", "estimate"] == pytest.approx(b["(Intercept)"] + b["MajorArea_4"])
        assert p.loc["b", "estimate"] == pytest.approx(b["(Intercept)"] + b["MajorArea_2"])
        assert (p["mse"] > milk_fit.A).all()
        with pytest.raises(ValueError, match="X lacks"):
            milk_fit.predict(new.drop(columns="MajorArea_3"))


# --------------------------------------------------------------------------------------------
# Proportions: arcsine square-root transformation
# --------------------------------------------------------------------------------------------


def _proportions(seed: int = 7, m: int = 47):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=m)
    n = rng.integers(40, 1200, size=m).astype(float)
    theta = np.clip(0.05 + 0.01 * x + rng.normal(scale=0.01, size=m), 0.005, 0.3)
    p = rng.binomial(n.astype(int), theta) / n
    return p, n, x


class TestArcsin:
    def test_round_trip(self):
        p = np.array([0.0, 0.001, 0.05, 0.2, 0.5, 0.93, 1.0])
        t, v = arcsin_transform(p, 100)
        np.testing.assert_allclose(arcsin_back(t, 0.0, "naive"), p, atol=1e-15)
        np.testing.assert_allclose(arcsin_back(t, 0.0, "bc"), p, atol=1e-15)
        assert v == pytest.approx(1 / 400)

    def test_bias_corrected_is_the_normal_expectation(self):
        for mu, var in [(0.2, 0.004), (0.7, 0.02), (1.2, 0.05)]:
            expected, _ = integrate.quad(
                lambda t, mu=mu, var=var: np.sin(t) ** 2 * stats.norm.pdf(t, mu, math.sqrt(var)), -np.inf, np.inf
            )
            assert arcsin_back(mu, var, "bc") == pytest.approx(expected, abs=1e-10)

    def test_fit_on_proportions(self):
        p, n, x = _proportions()
        r = fay_herriot(p, None, x, transform="arcsin", n=n)
        t, D = arcsin_transform(p, n)
        plain = fay_herriot(t, D, x)  # the same model on the transformed scale
        np.testing.assert_allclose(r.eblup_model, plain.eblup, rtol=1e-12)
        np.testing.assert_allclose(r.mse_model, plain.mse, rtol=1e-12)
        assert ((r.eblup >= 0) & (r.eblup <= 1)).all()
        assert ((r.lower >= 0) & (r.upper <= 1) & (r.lower <= r.eblup) & (r.eblup <= r.upper)).all()
        np.testing.assert_allclose(r.eblup, arcsin_back(plain.eblup, plain.g1, "bc"), rtol=1e-12)
        np.testing.assert_allclose(r.mse, np.sin(2 * plain.eblup) ** 2 * plain.mse, rtol=1e-12)
        np.testing.assert_allclose(r.lower, np.sin(np.clip(plain.lower, 0, math.pi / 2)) ** 2, rtol=1e-12)
        np.testing.assert_allclose(r.direct_var, p * (1 - p) / n, rtol=1e-12)
        naive = fay_herriot(p, None, x, transform="arcsin", n=n, backtransform="naive")
        np.testing.assert_allclose(naive.eblup, np.sin(plain.eblup) ** 2, rtol=1e-12)
        assert naive.backtransform == "naive" and r.backtransform == "bc"

    def test_out_of_sample_proportion(self):
        p, n, x = _proportions()
        p = p.copy()
        p[5] = np.nan
        r = fay_herriot(p, None, x, transform="arcsin", n=n)
        assert not r.in_sample[5]
        assert r.eblup[5] == pytest.approx(arcsin_back(r.synthetic[5], r.A, "bc"))
        assert 0 <= r.lower[5] <= r.eblup[5] <= r.upper[5] <= 1


# --------------------------------------------------------------------------------------------
# Benchmarking
# --------------------------------------------------------------------------------------------


class TestBenchmark:
    @pytest.mark.parametrize("method", ["ratio", "difference"])
    def test_weighted_sum_equals_target(self, milk, method):
        pop = np.random.default_rng(3).integers(50_000, 2_000_000, size=43).astype(float)
        target = 0.9
        r = fay_herriot(
            milk["yi"], milk["var"], _milk_X(milk), benchmark=target, benchmark_weights=pop, benchmark_method=method
        )
        w = pop / pop.sum()
        assert float(w @ r.estimate) == pytest.approx(target, rel=1e-14, abs=1e-14)
        assert r.benchmark_method == method and r.benchmark == target
        if method == "ratio":
            np.testing.assert_allclose(r.benchmarked, r.eblup * target / (w @ r.eblup), rtol=1e-13)
        else:
            np.testing.assert_allclose(r.benchmarked - r.eblup, target - w @ r.eblup, rtol=1e-12)
        assert ((r.lower <= r.estimate) & (r.estimate <= r.upper)).all()
        f = r.frame()
        assert "benchmarked" in f.columns and (f["estimate"] == f["benchmarked"]).all()

    def test_benchmark_proportions_with_missing_area(self):
        p, n, x = _proportions()
        p = p.copy()
        p[[0, 9]] = np.nan
        pop = np.linspace(1, 3, len(p))
        r = fay_herriot(p, None, x, transform="arcsin", n=n, benchmark=0.048, benchmark_weights=pop)
        assert float((pop / pop.sum()) @ r.estimate) == pytest.approx(0.048, rel=1e-14)


# --------------------------------------------------------------------------------------------
# Simulation: the model's MSE estimate is honest and the EBLUP beats the direct estimate
# --------------------------------------------------------------------------------------------


def test_simulation_mse_is_calibrated_and_eblup_beats_direct():
    rng = np.random.default_rng(20240601)
    m, reps, A = 47, 200, 0.004
    x = rng.normal(size=m)
    beta = np.array([0.2, 0.05])
    D = rng.uniform(0.001, 0.012, size=m)
    sq_eblup = np.zeros(m)
    sq_direct = np.zeros(m)
    est_mse = np.zeros(m)
    for _ in range(reps):
        theta = beta[0] + beta[1] * x + rng.normal(scale=math.sqrt(A), size=m)
        direct = theta + rng.normal(scale=np.sqrt(D))
        r = fay_herriot(direct, D, x)
        assert r.converged
        sq_eblup += (r.eblup - theta) ** 2
        sq_direct += (direct - theta) ** 2
        est_mse += r.mse
    emp_eblup, emp_direct, mean_est = sq_eblup / reps, sq_direct / reps, est_mse / reps
    assert emp_eblup.mean() < 0.6 * emp_direct.mean()
    assert (emp_eblup < emp_direct).mean() > 0.9  # almost every area gains
    # the mean estimated MSE is within 20 % of the empirical MSE (averaged over areas)
    assert abs(mean_est.mean() / emp_eblup.mean() - 1) < 0.2


# --------------------------------------------------------------------------------------------
# Bad input: clear errors naming the argument
# --------------------------------------------------------------------------------------------


class TestErrors:
    @pytest.fixture
    def ok(self, milk):
        return milk["yi"].to_numpy(), milk["var"].to_numpy(), _milk_X(milk).to_numpy(float)

    def test_missing_variance_where_direct_given(self, ok):
        y, v, X = ok
        v = v.copy()
        v[2] = np.nan
        with pytest.raises(ValueError, match="sampling_var must be positive.*areas \\[2\\]"):
            fay_herriot(y, v, X)

    @pytest.mark.parametrize("bad", [0.0, -0.01])
    def test_non_positive_variance(self, ok, bad):
        y, v, X = ok
        v = v.copy()
        v[0] = bad
        with pytest.raises(ValueError, match="sampling_var"):
            fay_herriot(y, v, X)

    def test_rank_deficient_X(self, ok):
        y, v, X = ok
        with pytest.raises(ValueError, match="X is rank-deficient"):
            fay_herriot(y, v, np.column_stack([X, X[:, 0]]))
        with pytest.raises(ValueError, match="X is rank-deficient"):
            fay_herriot(y, v, np.column_stack([X, np.ones(len(y))]))  # constant + intercept

    def test_too_few_areas(self, ok):
        y, v, X = ok
        with pytest.raises(ValueError, match="direct: 4 areas .* too few for 4"):
            fay_herriot(y[:4], v[:4], X[:4])
        y2 = y.copy()
        y2[3:] = np.nan
        with pytest.raises(ValueError, match="too few"):
            fay_herriot(y2, v, X)

    def test_lengths_and_missing_covariates(self, ok):
        y, v, X = ok
        with pytest.raises(ValueError, match="sampling_var has 42 values but direct has 43"):
            fay_herriot(y, v[:-1], X)
        with pytest.raises(ValueError, match="X has 42 rows"):
            fay_herriot(y, v, X[:-1])
        X2 = X.copy()
        X2[5, 1] = np.nan
        with pytest.raises(ValueError, match="X has missing"):
            fay_herriot(y, v, X2)
        with pytest.raises(ValueError, match="X has non-numeric columns"):
            fay_herriot(y, v, pd.DataFrame({"region": ["a"] * 43}))

    def test_options(self, ok):
        y, v, X = ok
        with pytest.raises(ValueError, match="method must be one of"):
            fay_herriot(y, v, X, method="ML")
        with pytest.raises(ValueError, match="transform must be one of"):
            fay_herriot(y, v, X, transform="logit")
        with pytest.raises(ValueError, match="confidence"):
            fay_herriot(y, v, X, confidence=95)
        with pytest.raises(ValueError, match="sampling_var is required"):
            fay_herriot(y, None, X)

    def test_arcsin_inputs(self):
        p, n, x = _proportions()
        with pytest.raises(ValueError, match="n \\(effective sample sizes\\) is required"):
            fay_herriot(p, None, x, transform="arcsin")
        p2 = p.copy()
        p2[1] = 1.2
        with pytest.raises(ValueError, match="direct must be proportions"):
            fay_herriot(p2, None, x, transform="arcsin", n=n)
        n2 = n.copy()
        n2[0] = 0
        with pytest.raises(ValueError, match="n must be positive"):
            fay_herriot(p, None, x, transform="arcsin", n=n2)

    def test_benchmark_inputs(self, ok):
        y, v, X = ok
        with pytest.raises(ValueError, match="benchmark and benchmark_weights"):
            fay_herriot(y, v, X, benchmark=1.0)
        with pytest.raises(ValueError, match="benchmark_weights must be"):
            fay_herriot(y, v, X, benchmark=1.0, benchmark_weights=-np.ones(43))
        with pytest.raises(ValueError, match="benchmark_weights has 3 values"):
            fay_herriot(y, v, X, benchmark=1.0, benchmark_weights=[1, 2, 3])
        with pytest.raises(ValueError, match="benchmark_method must be one of"):
            fay_herriot(y, v, X, benchmark=1.0, benchmark_weights=np.ones(43), benchmark_method="raking")


def test_fast_enough_for_the_build():
    """47 areas x 30 fits (10 indicators x 3 rounds) in well under a second (bench/bench_sae.py)."""
    p, n, x = _proportions()
    start = time.perf_counter()
    for _ in range(30):
        fay_herriot(p, None, x, transform="arcsin", n=n, benchmark=0.05, benchmark_weights=n)
    assert time.perf_counter() - start < 3.0  # generous: the machine is shared
