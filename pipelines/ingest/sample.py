"""Synthetic sample data (合成データ): national survey rounds, prefecture surveys, programme data.

Everything here is made up. The generator is calibrated to the published national figures
(data/reference/national_results.csv, /shared/domain-facts.md) so that the pipeline has realistic
input, and every folder it writes carries a ``SYNTHETIC`` marker that ingest turns into the
``files.synthetic`` flag.

Model (vectorised numpy, one ``default_rng`` stream per file, so one file does not change when
another file's size changes):

* demographics: prefecture drawn in proportion to the 2020 census population; sex x age band drawn
  from the published 2022 respondent counts (plus ~0.9% sex 3/9); age uniform within its band
  (80+: 80-99, thinning with age); living alone by age band (~17% overall).
* a latent loneliness score ``z`` = sex x age effect + living-alone effect + prefecture effect +
  noise drives the direct question and the three UCLA items (through a correlated score), and
  feeds the isolation items (contact, participation, worries, reliable person, help intention),
  each with its own age/sex pattern and a modest per-prefecture effect.
* prefecture effects (issue #24): a known linear function of the standardised log population 2020
  plus noise (``PREF_COVARIATE_SLOPE``, ``PREF_EFFECT_SD``), so that the small-area model has a
  real relation to find; ``true_shares`` gives each prefecture's true share of every indicator and
  breakdown (the simulation tests of ``pipelines/domain/small_area.py``).
* each item is cut at the empirical quantiles of its latent, so that a national round reproduces
  the published shares of its year (無回答 drawn at random first). Prefecture surveys are cut at
  the national round's cut points, so their differences come from the prefecture effect; Saitama
  2023 reproduces the published Saitama shares of the direct question.
* sample design (``_design``): the respondents of each prefecture are spread over survey points
  (調査地点, about ``POINT_SIZE`` = 25 each), the primary sampling units; strata are region (the 8
  regions of the reference table) x city size class (1 大都市, 2 その他の市, 3 町村, given to the
  points of a region by invented quotas, at least 2 points each). Every point has its own random
  effect on each latent (``PSU_EFFECT_SD``): respondents of one point resemble each other, as in a
  real two-stage sample, so that the design effects estimated by Taylor linearisation come out
  about 1.0-1.7 (most 1.2-1.7; rare answers such as UCLA 10-12 lower). The national files carry the design (columns ``stratum``, ``psu``); the prefecture
  surveys are drawn the same way but, like many prefecture files, are delivered without their
  design columns, so the default design effect applies to them.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.domain import schema
from pipelines.domain.config import REFERENCE_DIR
from pipelines.domain.errors import UsageError

DEFAULT_SEED = 20240611
NATIONAL_ROWS = {2022: 11_218, 2023: 11_141, 2024: 10_876}
PROGRAMME_YEARS = (2022, 2023, 2024)
PROGRAMME_SOURCE = "合成データ（サンプル）/ synthetic sample"

# (pref_code, year, file name, respondents)
PREF_SURVEYS = [
    (11, 2023, "pref11-2023.xlsx", 1_500),
    (11, 2024, "pref11-2024.csv", 1_468),
    (27, 2024, "pref27-2024.parquet", 1_523),
]

# Japanese headers of the CP932 prefecture file, in contract column order.
JA_HEADERS = {
    "survey_id": "調査ID",
    "survey_year": "調査年",
    "respondent_id": "回答者ID",
    "pref_code": "都道府県コード",
    "sex": "性別",
    "age": "年齢",
    "household_single": "単身世帯",
    "weight": "ウェイト",
    "q_loneliness": "孤独感",
    "q_ucla_1": "人とのつきあいがない",
    "q_ucla_2": "取り残されている",
    "q_ucla_3": "孤立している",
    "q_contact_inperson": "直接会って話す頻度",
    "q_participation_none": "社会活動に参加していない",
    "q_has_worries": "不安や悩み",
    "q_support_received": "支援を受けている",
    "q_reliable_person": "頼れる人",
    "q_help_intention": "手助けの意向",
}

# --- Published calibration targets (percent; see data/reference/national_results.csv) ----------

# Respondents 2022 by sex x age band (MHLW white paper 2023); bands in schema.AGE_BANDS order.
RESPONDENTS_2022 = {
    1: [160, 387, 548, 762, 913, 929, 997, 622],
    2: [158, 493, 662, 950, 974, 980, 1097, 483],
}
SEX_OTHER_SHARE = {3: 0.004, 9: 0.005}  # 103 of 11,218 respondents are neither in the table

# q_loneliness shares for codes 1..5 and 無回答. 2024: never/hardly ever are UNCERTAIN in the
# sources, 無回答 unknown: 0.5 taken from those two.
LONELINESS = {
    2022: ([18.4, 40.6, 19.6, 15.8, 4.9], 0.6),
    2023: ([17.9, 41.4, 19.7, 14.8, 4.8], 1.5),
    2024: ([22.2, 38.0, 19.6, 15.4, 4.3], 0.5),
}
SAITAMA_2023_LONELINESS = ([24.4, 42.1, 19.1, 9.6, 4.2], 0.6)

# UCLA score 3..12 shares and the share with any item 無回答. 2022 bands published
# (13.5/37.0/41.6/7.1); 2024 only 10-12 (6.5) confirmed; 2023 interpolated.
_UCLA_SPLIT = {"3": [1.0], "4-6": [0.38, 0.34, 0.28], "7-9": [0.41, 0.34, 0.25], "10-12": [0.58, 0.27, 0.15]}
UCLA_BANDS_TARGET = {
    2022: ({"3": 13.5, "4-6": 37.0, "7-9": 41.6, "10-12": 7.1}, 0.8),
    2023: ({"3": 14.2, "4-6": 37.6, "7-9": 40.6, "10-12": 6.8}, 0.8),
    2024: ({"3": 14.6, "4-6": 38.6, "7-9": 39.5, "10-12": 6.5}, 0.8),
}
# q_contact_inperson codes 1..7 (7 全くない), 無回答
CONTACT = {
    2022: ([10.5, 13.0, 15.0, 12.0, 15.0, 23.5, 10.6], 0.4),
    2023: ([10.8, 13.3, 15.2, 12.2, 15.2, 23.7, 9.2], 0.4),
    2024: ([10.8, 13.3, 15.2, 12.1, 15.2, 23.7, 9.3], 0.4),
}
PARTICIPATION_NONE = {2022: (53.9, 0.8), 2023: (51.8, 0.8), 2024: (50.6, 0.8)}  # code 1 share, 無回答
HAS_WORRIES = {2022: (75.6, 0.6), 2023: (75.2, 0.6), 2024: (74.8, 0.6)}  # 8,484 / 11,218 in 2022
# among respondents with worries: 受けている, 受けていない, 無回答
SUPPORT = {2022: (6.9, 88.2, 4.9), 2023: (7.1, 88.0, 4.9), 2024: (7.4, 87.7, 4.9)}
RELIABLE_NONE = {2022: (7.8, 0.3), 2023: (7.6, 0.3), 2024: (7.5, 0.3)}  # いない, 無回答
# q_help_intention codes 1..4, 無回答
HELP = {
    2022: ([51.5, 35.5, 7.5, 4.5], 1.0),
    2023: ([51.0, 35.8, 7.7, 4.5], 1.0),
    2024: ([50.6, 36.0, 7.8, 4.6], 1.0),
}
SINGLE_BY_BAND = np.array([0.03, 0.22, 0.15, 0.12, 0.14, 0.16, 0.20, 0.28])
SINGLE_NA = 0.005

# Latent loneliness shift by sex (rows: 1 men, 2 women) x age band (columns).
LONELY_EFFECT = {
    1: np.array([-0.05, 0.12, 0.15, 0.06, 0.20, -0.08, -0.30, -0.45]),
    2: np.array([-0.02, 0.20, 0.30, 0.12, 0.04, -0.08, -0.28, -0.36]),
    3: np.full(8, 0.30),
    9: np.zeros(8),
}
# Prefecture effects on the latents (issue #24): a known linear function of the prefecture's
# standardised covariate plus noise, so that a small-area model has something real to find:
#   effect[name][pref] = PREF_COVARIATE_SLOPE[name] * z[pref] + N(0, PREF_EFFECT_SD[name]),
# z = the standardised log population 2020 (``pref_covariate``: (x - mean) / sd over the 47
# prefectures, sd with ddof 0; data/reference/prefecture_covariates.csv). Larger (more urban)
# prefectures are lonelier, meet people less, take part less, get less support, more often have
# nobody to rely on and are less willing to help. The noise is modest: about 40% of the effects'
# variance. The national calibration is kept (every national round is cut at its own quantiles).
PREF_COVARIATE_SLOPE = {
    "lonely": 0.09,
    "contact": 0.09,
    "participation": 0.08,
    "worries": 0.05,
    "support": -0.10,
    "reliable": 0.07,
    "help": -0.07,
}
PREF_EFFECT_SD = {
    "lonely": 0.06,
    "contact": 0.07,
    "participation": 0.07,
    "worries": 0.05,
    "support": 0.09,
    "reliable": 0.06,
    "help": 0.06,
}

# Sample design (stratified two-stage: survey points within prefecture, then residents).
POINT_SIZE = 25  # respondents per survey point (調査地点), about
# Invented quotas of the points of a region by city size class: 1 大都市 (designated cities and
# Tokyo's wards), 2 その他の市, 3 町村. They only shape the strata (no effect on the answers).
CITY_SIZE_SHARES = (0.30, 0.55, 0.15)
# Survey-point random effects on the latents (on top of the prefecture effect): the within-point
# correlation behind the design effects.
PSU_EFFECT_SD = {
    "lonely": 0.19,
    "contact": 0.22,
    "participation": 0.17,
    "worries": 0.15,
    "support": 0.28,
    "reliable": 0.18,
    "help": 0.15,
}


def _pref_population() -> pd.DataFrame:
    df = pd.read_csv(REFERENCE_DIR / "prefectures.csv", encoding="utf-8")
    return df.sort_values("pref_code").reset_index(drop=True)[["pref_code", "population_2020"]]


def pref_covariate() -> np.ndarray:
    """The standardised covariate of the prefecture effects, index = pref_code (0 unused): log
    population 2020 (data/reference/prefecture_covariates.csv, 2020 census) minus its mean over the
    47 prefectures, divided by its standard deviation (ddof 0)."""
    cov = pd.read_csv(REFERENCE_DIR / "prefecture_covariates.csv", encoding="utf-8").sort_values("pref_code")
    x = cov["log_population_2020"].to_numpy(dtype=float)
    out = np.zeros(48)
    out[cov["pref_code"].to_numpy()] = (x - x.mean()) / x.std()
    return out


def _pref_effects(seed: int) -> dict[str, np.ndarray]:
    """Per-prefecture effects (index = pref_code, 0 unused), fixed across rounds: the known linear
    function of the standardised covariate plus noise (``PREF_COVARIATE_SLOPE``,
    ``PREF_EFFECT_SD``)."""
    rng = np.random.default_rng([seed, 0])
    z = pref_covariate()
    out = {}
    for name in sorted(PREF_EFFECT_SD):
        eff = np.zeros(48)
        eff[1:] = PREF_COVARIATE_SLOPE[name] * z[1:] + rng.normal(0.0, PREF_EFFECT_SD[name], 47)
        out[name] = eff
    return out


def _cut_points(latent: np.ndarray, shares: list[float]) -> np.ndarray:
    """Cut points that split `latent` into categories with `shares` (in increasing-latent order)."""
    p = np.cumsum(np.asarray(shares, dtype=float))
    p = p[:-1] / p[-1]
    if latent.size == 0:
        return np.zeros(len(p))
    return np.quantile(latent, p)


def _categorise(latent: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """0-based category of each latent value."""
    return np.searchsorted(cuts, latent, side="right")


def _ucla_table() -> tuple[np.ndarray, np.ndarray]:
    """For each score 3..12, the item triples (1..4 each) summing to it (padded), and their count."""
    combos = np.array([(a, b, c) for a in range(1, 5) for b in range(1, 5) for c in range(1, 5)])
    sums = combos.sum(axis=1)
    table = np.zeros((13, 12, 3), dtype=np.int64)
    counts = np.zeros(13, dtype=np.int64)
    for s in range(3, 13):
        sel = combos[sums == s]
        table[s, : len(sel)] = sel
        counts[s] = len(sel)
    return table, counts


def _demographics(rng: np.random.Generator, n: int, pref_code: int | None) -> dict[str, np.ndarray]:
    """Prefecture, sex, age (band index and years), living alone for n respondents."""
    if pref_code is None:
        pops = _pref_population()
        p = pops.population_2020.to_numpy(dtype=float)
        pref = rng.choice(pops.pref_code.to_numpy(), size=n, p=p / p.sum())
    else:
        pref = np.full(n, pref_code, dtype=np.int64)
    men = np.asarray(RESPONDENTS_2022[1], dtype=float)
    women = np.asarray(RESPONDENTS_2022[2], dtype=float)
    both = men + women
    other = sum(SEX_OTHER_SHARE.values())
    probs = np.concatenate(
        [
            men / both.sum() * (1 - other),
            women / both.sum() * (1 - other),
            both / both.sum() * SEX_OTHER_SHARE[3],
            both / both.sum() * SEX_OTHER_SHARE[9],
        ]
    )
    cell = rng.choice(32, size=n, p=probs / probs.sum())
    sex = np.array([1, 2, 3, 9])[cell // 8]
    band = cell % 8
    lo = np.array([16, 20, 30, 40, 50, 60, 70, 80])
    width = np.array([4, 10, 10, 10, 10, 10, 10, 1])
    age = lo[band] + np.floor(rng.random(n) * width[band]).astype(np.int64)
    old = band == 7
    age[old] = 80 + np.minimum(19, np.floor(rng.exponential(5.0, old.sum()))).astype(np.int64)
    single = (rng.random(n) < SINGLE_BY_BAND[band]).astype(np.int64)
    single_obs = np.where(rng.random(n) < SINGLE_NA, 9, single)
    return {"pref": pref, "sex": sex, "band": band, "age": age, "single": single, "single_obs": single_obs}


def _regions() -> np.ndarray:
    """Region number (1-8, in the order of the prefecture codes: 北海道 1 ... 九州・沖縄 8) per pref_code
    (index = pref_code, 0 unused)."""
    df = pd.read_csv(REFERENCE_DIR / "prefectures.csv", encoding="utf-8").sort_values("pref_code")
    number = {r: k + 1 for k, r in enumerate(pd.unique(df["region"]))}
    out = np.zeros(48, dtype=np.int64)
    out[df["pref_code"].to_numpy()] = df["region"].map(number).to_numpy()
    return out


def _design(rng: np.random.Generator, pref: np.ndarray) -> dict[str, np.ndarray]:
    """The stratified two-stage design of one survey (own random stream, so the demographics and
    answers' draws stay as they were): per respondent the survey point index ``point``, its code
    ``psu`` ('13-012': prefecture, point) and ``stratum`` ('R3S1': region, city size class; not
    '3-1', which a spreadsheet reads as a date; 'R3S0' for a region with under 6 points, only with a
    small --rows); and the points' random effects ``effects`` (name -> per-respondent array)."""
    n = pref.size
    point = np.zeros(n, dtype=np.int64)
    point_pref: list[int] = []
    point_code: list[str] = []
    for p in np.unique(pref):
        idx = np.flatnonzero(pref == p)
        k = max(1, int(round(idx.size / POINT_SIZE)))
        point[idx] = len(point_pref) + rng.permutation(idx.size) % k  # balanced point sizes
        point_pref += [int(p)] * k
        point_code += [f"{int(p):02d}-{j + 1:03d}" for j in range(k)]
    region = _regions()[np.asarray(point_pref, dtype=np.int64)]
    size = np.zeros(len(point_pref), dtype=np.int64)
    for r in np.unique(region):
        idx = np.flatnonzero(region == r)
        k = idx.size
        if k >= 6:  # quotas, at least 2 points per stratum (a stratum with 1 point has no variance)
            metro, town = (max(2, int(round(CITY_SIZE_SHARES[i] * k))) for i in (0, 2))
            classes = np.repeat([1, 2, 3], [metro, k - metro - town, town])
        else:  # a small region (only with --rows): one stratum
            classes = np.zeros(k, dtype=np.int64)
        size[idx[rng.permutation(k)]] = classes
    stratum = np.array([f"R{r}S{c}" for r, c in zip(region, size)], dtype=object)
    effects = {name: rng.normal(0.0, PSU_EFFECT_SD[name], len(point_pref))[point] for name in sorted(PSU_EFFECT_SD)}
    return {
        "point": point,
        "psu": np.asarray(point_code, dtype=object)[point],
        "stratum": stratum[point],
        "effects": effects,
    }


def _latents(
    rng: np.random.Generator,
    d: dict[str, np.ndarray],
    eff: dict[str, np.ndarray],
    cluster: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Latent scales of every item (higher = more lonely / less contact / more of the coded trait).
    ``cluster``: the survey points' random effects per respondent (``_design``), added to each latent."""
    n = d["pref"].size
    band, sex, pref, single = d["band"], d["sex"], d["pref"], d["single"]
    c = cluster or {name: 0.0 for name in PSU_EFFECT_SD}
    men = sex == 1
    women = sex == 2
    group = np.zeros(n)
    for s, effects in LONELY_EFFECT.items():
        m = sex == s
        group[m] = effects[band[m]]
    z = group + single * (0.45 + 0.22 * men - 0.15 * women) + eff["lonely"][pref] + c["lonely"] + rng.normal(0, 1, n)
    zs = z / 1.05  # about unit variance
    noise = rng.normal(0, 1, (7, n))
    ucla = 0.78 * zs + 0.63 * noise[0]
    contact_age = np.array([-0.45, -0.15, 0.10, 0.15, 0.15, 0.0, -0.05, 0.15])
    contact = 0.35 * zs + contact_age[band] + 0.12 * men + eff["contact"][pref] + c["contact"] + noise[1]
    part_age = np.array([-0.25, 0.30, 0.20, 0.15, 0.10, -0.10, -0.25, 0.15])
    participation = 0.25 * zs + part_age[band] + 0.05 * men + eff["participation"][pref] + c["participation"] + noise[2]
    worry_age = np.array([-0.20, 0.05, 0.15, 0.20, 0.20, 0.0, -0.10, -0.05])
    worries = 0.55 * zs + worry_age[band] + 0.05 * women + eff["worries"][pref] + c["worries"] + noise[3]
    support_age = np.array([-0.15, -0.15, -0.10, -0.10, -0.05, 0.05, 0.30, 0.55])
    support = (
        0.20 * zs + support_age[band] + 0.15 * (women & (band == 7)) + eff["support"][pref] + c["support"] + noise[4]
    )
    reliable_none = (
        0.70 * zs
        + 0.20 * men
        + 0.15 * (men & (band >= 5))
        + 0.15 * single
        + eff["reliable"][pref]
        + c["reliable"]
        + 0.75 * noise[5]
    )
    help_age = np.array([0.50, 0.10, 0.0, 0.0, 0.0, -0.05, -0.15, -0.35])
    help_ = -0.20 * zs + help_age[band] + 0.08 * women + eff["help"][pref] + c["help"] + noise[6]
    return {
        "z": z,
        "ucla": ucla,
        "contact": contact,
        "participation": participation,
        "worries": worries,
        "support": support,
        "reliable_none": reliable_none,
        "help": help_,
    }


def _na_masks(rng: np.random.Generator, n: int, year: int, loneliness_na: float | None = None) -> dict[str, np.ndarray]:
    u = rng.random((9, n))
    na = {
        "q_loneliness": u[0] < (LONELINESS[year][1] if loneliness_na is None else loneliness_na) / 100,
        "ucla": u[1] < UCLA_BANDS_TARGET[year][1] / 100,
        "q_contact_inperson": u[2] < CONTACT[year][1] / 100,
        "q_participation_none": u[3] < PARTICIPATION_NONE[year][1] / 100,
        "q_has_worries": u[4] < HAS_WORRIES[year][1] / 100,
        "q_support_received": u[5] < SUPPORT[year][2] / sum(SUPPORT[year]),
        "q_reliable_person": u[6] < RELIABLE_NONE[year][1] / 100,
        "q_help_intention": u[7] < HELP[year][1] / 100,
    }
    na["ucla_all"] = u[8] < 0.4  # of those with a missing UCLA item, 40% skipped all three
    return na


def _ucla_score_shares(year: int) -> list[float]:
    bands = UCLA_BANDS_TARGET[year][0]
    out: list[float] = []
    for band in ("3", "4-6", "7-9", "10-12"):
        out += [bands[band] * f for f in _UCLA_SPLIT[band]]
    return out


def _compute_cuts(
    lat: dict[str, np.ndarray],
    na: dict[str, np.ndarray],
    year: int,
    loneliness: tuple[list[float], float] | None = None,
) -> dict[str, np.ndarray]:
    """Cut points reproducing the round's published shares on this sample (無回答 excluded)."""
    lon = (loneliness or LONELINESS[year])[0]
    cuts = {
        "q_loneliness": _cut_points(lat["z"][~na["q_loneliness"]], lon),
        "ucla": _cut_points(lat["ucla"][~na["ucla"]], _ucla_score_shares(year)),
        "q_contact_inperson": _cut_points(lat["contact"][~na["q_contact_inperson"]], CONTACT[year][0]),
    }
    p = PARTICIPATION_NONE[year][0]
    cuts["q_participation_none"] = _cut_points(
        lat["participation"][~na["q_participation_none"]], [100 - PARTICIPATION_NONE[year][1] - p, p]
    )
    w = HAS_WORRIES[year][0]
    worries_cut = _cut_points(lat["worries"][~na["q_has_worries"]], [100 - HAS_WORRIES[year][1] - w, w])
    cuts["q_has_worries"] = worries_cut
    worried = (~na["q_has_worries"]) & (_categorise(lat["worries"], worries_cut) == 1)
    rec, notrec, _ = SUPPORT[year]
    cuts["q_support_received"] = _cut_points(lat["support"][worried & ~na["q_support_received"]], [notrec, rec])
    none = RELIABLE_NONE[year][0]
    cuts["q_reliable_person"] = _cut_points(
        lat["reliable_none"][~na["q_reliable_person"]], [100 - RELIABLE_NONE[year][1] - none, none]
    )
    # help: higher latent = more willing = code 1; shares in increasing-latent order are codes 4..1
    cuts["q_help_intention"] = _cut_points(lat["help"][~na["q_help_intention"]], HELP[year][0][::-1])
    return cuts


def _answers(
    rng: np.random.Generator, lat: dict[str, np.ndarray], na: dict[str, np.ndarray], cuts: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    n = lat["z"].size
    out: dict[str, np.ndarray] = {}
    out["q_loneliness"] = np.where(na["q_loneliness"], 9, _categorise(lat["z"], cuts["q_loneliness"]) + 1)
    score = _categorise(lat["ucla"], cuts["ucla"]) + 3
    table, counts = _ucla_table()
    pick = np.floor(rng.random(n) * counts[score]).astype(np.int64)
    items = table[score, pick]  # (n, 3)
    which = rng.integers(0, 3, n)
    miss = na["ucla"]
    for k in range(3):
        col = items[:, k].copy()
        col[miss & (na["ucla_all"] | (which == k))] = 9
        out[f"q_ucla_{k + 1}"] = col
    out["q_contact_inperson"] = np.where(
        na["q_contact_inperson"], 9, _categorise(lat["contact"], cuts["q_contact_inperson"]) + 1
    )
    out["q_participation_none"] = np.where(
        na["q_participation_none"], 9, _categorise(lat["participation"], cuts["q_participation_none"])
    )
    worried = _categorise(lat["worries"], cuts["q_has_worries"]) == 1
    out["q_has_worries"] = np.where(na["q_has_worries"], 9, np.where(worried, 1, 2))
    received = _categorise(lat["support"], cuts["q_support_received"]) == 1
    # Asked only of respondents with worries; the contract has no 非該当 code, so not asked -> 9.
    out["q_support_received"] = np.where(
        out["q_has_worries"] != 1, 9, np.where(na["q_support_received"], 9, np.where(received, 1, 2))
    )
    nobody = _categorise(lat["reliable_none"], cuts["q_reliable_person"]) == 1
    out["q_reliable_person"] = np.where(na["q_reliable_person"], 9, np.where(nobody, 2, 1))
    out["q_help_intention"] = np.where(
        na["q_help_intention"], 9, 4 - _categorise(lat["help"], cuts["q_help_intention"])
    )
    return out


def _frame(
    survey_id: str,
    year: int,
    ids: np.ndarray | pd.Series,
    d: dict[str, np.ndarray],
    answers: dict[str, np.ndarray],
    weight: np.ndarray,
    design: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    n = d["pref"].size
    cols: dict[str, object] = {
        "survey_id": np.full(n, survey_id, dtype=object),
        "survey_year": np.full(n, year, dtype=np.int64),
        "respondent_id": np.asarray(ids, dtype=object),
        "pref_code": d["pref"].astype(np.int64),
        "sex": d["sex"].astype(np.int64),
        "age": d["age"].astype(np.int64),
        "household_single": d["single_obs"].astype(np.int64),
    }
    for q in schema.QUESTIONS:
        cols[q] = answers[q].astype(np.int64)
    cols["weight"] = weight.astype(np.float64)
    columns = list(schema.SURVEY_COLUMNS)
    if design is not None:  # the sample design columns, after the contract's
        for col in schema.SURVEY_DESIGN_COLUMNS:
            cols[col] = design[col]
        columns += schema.SURVEY_DESIGN_COLUMNS
    df = pd.DataFrame(cols)
    return df[columns]


def _ids(prefix: str, n: int) -> pd.Series:
    width = max(6 if prefix.startswith("N") else 5, len(str(n)))
    return prefix + pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(width)


def national_round(year: int, rows: int | None = None, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Synthetic national microdata of one round (contract columns, integer codes, weight 1.0, then
    the sample design: stratum, psu)."""
    return _national(year, rows, seed)[0]


def _national(year: int, rows: int | None, seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    if year not in NATIONAL_ROWS:
        raise UsageError("year", f"'{year}' has no synthetic national round (2022–2024)")
    n = NATIONAL_ROWS[year] if rows is None else int(rows)
    rng = np.random.default_rng([seed, year])
    eff = _pref_effects(seed)
    d = _demographics(rng, n, None)
    design = _design(np.random.default_rng([seed, year, 99]), d["pref"])
    lat = _latents(rng, d, eff, design["effects"])
    na = _na_masks(rng, n, year)
    cuts = _compute_cuts(lat, na, year)
    answers = _answers(rng, lat, na, cuts)
    df = _frame(f"national-{year}", year, _ids(f"N{year}-", n), d, answers, np.ones(n), design)
    return df, cuts


def prefecture_survey(
    pref_code: int, year: int, n: int, seed: int = DEFAULT_SEED, national_cuts: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """Synthetic own survey of one prefecture on the national questionnaire, with varying weights."""
    if national_cuts is None:
        _, national_cuts = _national(year, None, seed)
    rng = np.random.default_rng([seed, year, pref_code])
    eff = _pref_effects(seed)
    d = _demographics(rng, n, pref_code)
    # Drawn by survey points like the national survey (same clustering of the answers), but the file
    # is delivered without its design columns: the default design effect applies to it.
    design = _design(np.random.default_rng([seed, year, pref_code, 99]), d["pref"])
    lat = _latents(rng, d, eff, design["effects"])
    published = SAITAMA_2023_LONELINESS if (pref_code, year) == (11, 2023) else None
    na = _na_masks(rng, n, year, loneliness_na=published[1] if published else None)
    cuts = dict(national_cuts)
    if published:
        cuts["q_loneliness"] = _cut_points(lat["z"][~na["q_loneliness"]], published[0])
    answers = _answers(rng, lat, na, cuts)
    # Non-response weights: young respondents answer less, so they weigh more; 0.5-2.0.
    base = np.array([1.6, 1.5, 1.3, 1.1, 1.0, 0.85, 0.8, 0.9])[d["band"]]
    w = base * np.exp(rng.normal(0, 0.2, n))
    w = np.clip(w / w.mean(), 0.5, 2.0).round(4)
    return _frame(f"pref{pref_code:02d}-{year}", year, _ids(f"P{pref_code:02d}-{year}-", n), d, answers, w)


TRUE_SHARE_RESPONDENTS = 60_000  # simulated per prefecture for ``true_shares``


def true_shares(
    year: int, seed: int = DEFAULT_SEED, per_pref: int = TRUE_SHARE_RESPONDENTS, catalogue=None, prefs=None
) -> pd.DataFrame:
    """Each prefecture's TRUE share of every survey indicator and breakdown in round ``year``, as the
    generator defines it: what the national survey's respondents of that prefecture estimate
    (for a simulation test of the small-area estimates, issue #24).

    Computed by simulation with the same generator: ``per_pref`` respondents per prefecture
    (own random stream per prefecture and round) with the prefecture's demographics, its effects
    (``_pref_effects``), survey-point effects drawn afresh for every respondent (the population over
    all survey points, not the round's few points), the round's 無回答 rates and the national
    round's cut points; then the catalogue's numerators and denominators (``indicators.aggregate``,
    unit weights). Monte Carlo error: sqrt(p(1 - p) / per_pref), about 0.1 point for p = 5%
    at the default 60,000 (a breakdown's share: its part of them). Own surveys of a prefecture
    (weights, Saitama 2023's own cut points) estimate something else: this is the national
    instrument's truth. ``prefs``: the prefecture codes (default all 47).

    Returns year, area_code ('01'..'47'), indicator_id, breakdown, p_true (0..1), n_sim."""
    import duckdb

    from pipelines.domain.catalogue import load_catalogue
    from pipelines.indicators import stage as ind_mod

    inds = [i for i in (catalogue if catalogue is not None else load_catalogue()) if i.source == "survey"]
    cuts = _national(year, None, seed)[1]
    eff = _pref_effects(seed)
    codes = [int(c) for c in (range(1, 48) if prefs is None else prefs)]
    con = duckdb.connect()
    parts = []
    try:
        for start in range(0, len(codes), 12):  # 12 prefectures per pass, to bound the rows held in memory
            frames = []
            for pref in codes[start : start + 12]:
                rng = np.random.default_rng([seed, year, pref, 7])
                d = _demographics(rng, int(per_pref), pref)
                cluster = {name: rng.normal(0.0, PSU_EFFECT_SD[name], int(per_pref)) for name in sorted(PSU_EFFECT_SD)}
                lat = _latents(rng, d, eff, cluster)
                na = _na_masks(rng, int(per_pref), year)
                answers = _answers(rng, lat, na, cuts)
                age = pd.Series(d["age"])
                frames.append(
                    pd.DataFrame(
                        {
                            "survey_year": year,
                            "survey_kind": "national",
                            "pref_code": d["pref"],
                            "sex": d["sex"],
                            "age_band": _bands(age, False),
                            "uk_age_band": _bands(age, True),
                            "household_single": d["single_obs"],
                            "weight": 1.0,
                            **{q: answers[q] for q in schema.QUESTIONS},
                        }
                    )
                )
            con.register("survey_responses", pd.concat(frames, ignore_index=True))
            wide = ind_mod.aggregate(con, year, inds, with_distributions=False)
            con.unregister("survey_responses")
            cells = ind_mod.survey_cells(wide, inds)
            cells = cells[cells["area_code"].isin([f"{c:02d}" for c in codes[start : start + 12]])]
            parts.append(
                pd.DataFrame(
                    {
                        "year": year,
                        "area_code": cells["area_code"],
                        "indicator_id": cells["indicator_id"],
                        "breakdown": cells["breakdown"],
                        "p_true": cells["p"],
                        "n_sim": cells["n"],
                    }
                )
            )
    finally:
        con.close()
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["area_code"], kind="stable").reset_index(drop=True)


def _bands(age: pd.Series, uk: bool) -> np.ndarray:
    """schema.age_band / uk_age_band of every age, vectorised (ages 16-99 here)."""
    a = age.to_numpy()
    if uk:
        edges, labels = [25, 35, 50, 65, 75], schema.UK_AGE_BANDS
    else:
        edges, labels = [20, 30, 40, 50, 60, 70, 80], schema.AGE_BANDS
    return np.asarray(labels, dtype=object)[np.searchsorted(edges, a, side="right")]


def programme_frame(seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Synthetic programme data, long format, every prefecture x fiscal year x metric."""
    rng = np.random.default_rng([seed, 1])
    pops = _pref_population()
    codes = pops.pref_code.to_numpy()
    pop = pops.population_2020.to_numpy(dtype=float)
    k = codes.size
    years = np.array(PROGRAMME_YEARS)
    # flags: platform model prefectures (FY2022 model projects) first, then others join; never leave
    model = np.isin(codes, [11, 21, 25, 27, 31, 36, 38])
    platform_start = np.where(
        model, 2022, rng.choice([2022, 2023, 2024, 2025, 2026], size=k, p=[0.10, 0.35, 0.30, 0.15, 0.10])
    )
    council_start = rng.choice([2022, 2023, 2024, 2025], size=k, p=[0.06, 0.14, 0.40, 0.40])
    council_start = np.where(model, np.minimum(council_start, 2024), council_start)
    activity = np.exp(rng.normal(0, 0.25, k))  # how active a prefecture is, persistent
    rows = []
    for i, fy in enumerate(years):
        growth = 1.0 + 0.12 * i
        noise = np.exp(rng.normal(0, 0.08, (5, k)))
        phone = np.round(pop / 1e5 * 120 * activity * growth * noise[0])
        sns = np.round(pop / 1e5 * 35 * activity * (1.0 + 0.35 * i) * noise[1])
        grants = np.maximum(1, np.round(pop / 1e6 * 6 * activity * growth * noise[2]))
        grant_yen = np.round(grants * 1_500_000 * noise[3], -3)
        trained = np.round(pop / 1e4 * 2.5 * activity * (0.25 + 0.75 * i) * noise[4])
        metrics = {
            "consultations_phone": phone,
            "consultations_sns": sns,
            "platform": (platform_start <= fy).astype(float),
            "regional_council": (council_start <= fy).astype(float),
            "npo_grants_count": grants,
            "npo_grants_yen": grant_yen,
            "supporters_trained": trained,
        }
        for metric, (_, unit) in schema.PROGRAMME_METRICS.items():
            rows.append(
                pd.DataFrame(
                    {
                        "fiscal_year": fy,
                        "pref_code": codes,
                        "metric_id": metric,
                        "value": metrics[metric].astype(np.int64),
                        "unit": unit,
                        "source": PROGRAMME_SOURCE,
                    }
                )
            )
    df = pd.concat(rows, ignore_index=True)
    return df.sort_values(["fiscal_year", "pref_code", "metric_id"], kind="stable").reset_index(drop=True)


# --- Writers -------------------------------------------------------------------------------------


def _write_csv_fast(df: pd.DataFrame, path: Path) -> None:
    """UTF-8 CSV without BOM, LF, no quoting (pyarrow: much faster than pandas for 1M rows)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    df = df.copy()
    df["weight"] = df["weight"].astype(str)  # '1.0', not '1': the column stays a float for readers
    bad = [c for c in df.columns if df[c].dtype == object and df[c].str.contains(r'[",\r\n]').any()]
    if bad:  # the writer below does not quote; our generated strings never need it
        raise ValueError(f"values needing CSV quotes in {bad}")
    table = pa.Table.from_pandas(df, preserve_index=False)
    with pa.OSFile(str(path), "wb") as f:  # header written by hand: pyarrow always quotes it
        f.write((",".join(df.columns) + "\n").encode("utf-8"))
        pacsv.write_csv(table, f, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))


def _write_xlsx(df: pd.DataFrame, path: Path, sheet: str = "data") -> None:
    """XLSX with fixed zip and document timestamps, so the same data give the same bytes."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(list(df.columns))
    for row in df.itertuples(index=False, name=None):
        ws.append([v.item() if hasattr(v, "item") else v for v in row])
    buf = io.BytesIO()
    wb.save(buf)
    fixed = "2025-01-01T00:00:00Z"
    with (
        zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src,
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(r"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", rf"\g<1>{fixed}\2", text)
                data = text.encode("utf-8")
            zi = zipfile.ZipInfo(info.filename, date_time=(2025, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            dst.writestr(zi, data)


def _japanese(df: pd.DataFrame) -> pd.DataFrame:
    """Japanese headers and value labels, as prefecture offices deliver their files."""
    out = df.copy()
    out["sex"] = out["sex"].map(schema.SEX)
    out["household_single"] = out["household_single"].map(schema.YES_NO)
    for q, labels in schema.QUESTIONS.items():
        out[q] = out[q].map(schema.YES_NO if q == "q_participation_none" else labels)
    return out.rename(columns=JA_HEADERS)[list(JA_HEADERS.values())]


def _marker_text(seed: int) -> str:
    return (
        "SYNTHETIC DATA / 合成データ\n"
        "\n"
        "このフォルダのデータはすべて合成（架空）データです。"
        f"`tsunagari sample-data --seed {seed}` で生成したもので、公的統計ではありません。\n"
        "公表値に近い分布になるよう調整していますが、個々の回答者・都道府県の数値に意味はありません。\n"
        "\n"
        "All data in this folder are synthetic, generated by `tsunagari sample-data` "
        f"with seed {seed}. They are not official statistics.\n"
        "They are calibrated to be close to the published national figures; no respondent or "
        "prefecture value in them means anything.\n"
    )


def _readme_text(seed: int, files: list[tuple[str, str]]) -> str:
    lines = [
        "# Synthetic sample data / 合成サンプルデータ",
        "",
        "**These files are synthetic (合成データ), not official statistics.** They were generated by",
        f"`tsunagari sample-data --out DIR --seed {seed}` (`pipelines/ingest/sample.py`), deterministically: the same",
        "seed gives the same bytes. The file `SYNTHETIC` beside them makes `tsunagari ingest` flag every",
        "file of this folder as synthetic, and the reports carry a watermark.",
        "",
        "| file | contents |",
        "|---|---|",
        *[f"| `{name}` | {desc} |" for name, desc in files],
        "",
        "## How the data are made",
        "- Respondents are spread over prefectures in proportion to the 2020 census population",
        "  (`data/reference/prefectures.csv`); the sex x age mix follows the published 2022 respondent counts;",
        "  ages are drawn within the 10-year bands (80+: 80-99); about 17% live alone.",
        "- A latent loneliness score (sex x age effect, living alone, a per-prefecture effect, noise)",
        "  drives the direct question and the three UCLA items; the isolation items (contact, participation,",
        "  worries, support, reliable person, help intention) each have their own age/sex pattern, a modest",
        "  per-prefecture effect and a link to the loneliness score.",
        "- Each prefecture effect is a known linear function of the prefecture's standardised log population",
        "  2020 (`data/reference/prefecture_covariates.csv`) plus noise (`PREF_COVARIATE_SLOPE`,",
        "  `PREF_EFFECT_SD` in `pipelines/ingest/sample.py`): larger prefectures are somewhat lonelier and more",
        "  isolated. `pipelines.ingest.sample.true_shares(year)` gives each prefecture's true share of every",
        "  indicator (by simulating a large population with the same generator), for simulation tests of",
        "  the small-area estimates.",
        "- Each national round is cut at the quantiles that reproduce that round's published shares",
        "  (`data/reference/national_results.csv`), 無回答 (code 9) included at 0.3-1.5%. Prefecture surveys use",
        "  the national cut points, so they differ from national through their prefecture effect; Saitama 2023",
        "  reproduces the published Saitama shares of the direct question.",
        "- `q_support_received` is asked only of respondents with worries (`q_has_worries` = 1); the others are",
        "  coded 9 because the contract has no separate 非該当 code. Use the base `q_has_worries = 1`.",
        "- National files are unweighted (weight 1.0, as the published results); prefecture surveys carry",
        "  non-response weights between 0.5 and 2.0 (young respondents weigh more).",
        "- Sample design: respondents are grouped in survey points (調査地点, about 25 each) within their",
        "  prefecture, and each point has a random effect on every answer (the clustering of a two-stage",
        "  sample). The national files carry the design: `stratum` (`R3S1`: region 1-8 x city size class 1 大都市,",
        "  2 その他の市, 3 町村, assigned to points by invented quotas) and `psu` (the point, e.g. `13-012`), so",
        "  their variances are design-based (Taylor linearisation) with estimated design effects. The",
        "  prefecture surveys are drawn the same way but delivered without design columns: the default",
        "  design effect applies to them.",
        "- Programme data are entirely invented: counts scale with population, the platform and council flags",
        "  grow over the fiscal years (FY2022 platform model prefectures 埼玉, 岐阜, 滋賀, 大阪, 鳥取, 徳島, 愛媛",
        "  start at 1). Per-prefecture programme figures are not published anywhere.",
        "",
        "Regenerate: `tsunagari sample-data --out data/sample` (tests check that this folder matches).",
        "",
    ]
    return "\n".join(lines)


def write_sample(out_dir: Path, seed: int = DEFAULT_SEED, rows: int | None = None) -> list[Path]:
    """Write the synthetic input set into out_dir; returns the written paths.

    rows overrides the number of respondents of each national round (default 11,218 / 11,141 / 10,876).
    """
    if rows is not None and int(rows) < 1:
        raise UsageError("--rows", f"'{rows}' must be 1 or more")
    if int(seed) < 0:
        raise UsageError("--seed", f"'{seed}' must be 0 or more")
    seed = int(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    described: list[tuple[str, str]] = []

    national_cuts: dict[int, dict[str, np.ndarray]] = {}
    for year in sorted(NATIONAL_ROWS):
        df, cuts = _national(year, rows, seed)
        national_cuts[year] = cuts
        path = out_dir / f"national-{year}.csv"
        _write_csv_fast(df, path)
        written.append(path)
        described.append(
            (
                path.name,
                f"national survey {year}, {len(df):,} respondents, contract columns, "
                f"UTF-8, weight 1.0, sample design ({df['stratum'].nunique()} strata, "
                f"{df['psu'].nunique()} survey points)",
            )
        )

    for pref_code, year, name, n in PREF_SURVEYS:
        df = prefecture_survey(pref_code, year, n, seed=seed, national_cuts=national_cuts[year])
        path = out_dir / name
        if name.endswith(".xlsx"):
            _write_xlsx(df, path)
            desc = f"prefecture {pref_code:02d} own survey {year}, {n:,} respondents, XLSX, contract columns, weighted"
        elif name.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
            desc = (
                f"prefecture {pref_code:02d} own survey {year}, {n:,} respondents, Parquet, contract columns, weighted"
            )
        else:
            _japanese(df).to_csv(path, index=False, encoding="cp932", lineterminator="\r\n")
            desc = (
                f"prefecture {pref_code:02d} own survey {year}, {n:,} respondents, CSV in CP932 (Shift_JIS) "
                "with Japanese headers and value labels (mapped by pipelines/ingest/mapping.yml), weighted"
            )
        written.append(path)
        described.append((name, desc))

    prog = programme_frame(seed)
    path = out_dir / "programme.csv"
    prog.to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    written.append(path)
    described.append(
        (
            path.name,
            f"programme data FY{PROGRAMME_YEARS[0]}–{PROGRAMME_YEARS[-1]}, all 47 prefectures, "
            f"{len(schema.PROGRAMME_METRICS)} metrics, long format, UTF-8 with BOM (as Excel "
            "saves it), invented",
        )
    )

    marker = out_dir / "SYNTHETIC"
    marker.write_text(_marker_text(seed), encoding="utf-8", newline="\n")
    written.append(marker)
    described.append(("SYNTHETIC", "marker: every file in this folder is synthetic"))
    readme = out_dir / "README.md"
    readme.write_text(_readme_text(seed, described), encoding="utf-8", newline="\n")
    written.append(readme)
    return written
