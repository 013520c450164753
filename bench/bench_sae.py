"""Time Fay–Herriot fits of the size the build needs (pipelines/domain/sae.py).

    python bench/bench_sae.py [--indicators 10] [--rounds 3] [--repeat 5] [--seed 1]

Synthetic 47-prefecture inputs (nothing is read from disk): for every indicator x round a share
around 5-50 % with effective sample sizes 50-1,200 (the national survey's per-prefecture range),
log population 2020 (data/reference/prefecture_covariates.csv) and a synthetic second covariate.
Each fit is the full call the build would make: arcsin transformation, REML, Prasad–Rao MSE,
bias-corrected back-transformation and ratio benchmarking to the population-weighted national
share. Prints the total time of all fits (best and median of ``--repeat`` passes), the time per fit,
how many fits took the Fisher-scoring path and how many the score-root fallback, and the same for
untransformed inputs.

Figures (2 shared cores, load ~0.6): 30 fits (10 indicators x 3 rounds) 0.021-0.023 s per pass
with arcsin + benchmark (0.7-0.8 ms per fit), 0.020 s untransformed; 90 fits 0.064 s. 3-4 of the
30 fits per pass take the score-root fallback (Fisher scoring stepping below A = 0), the rest sae's
Fisher scoring. Not included: importing scipy.optimize on the first fallback (~0.45 s, once per
process) and importing the module (~0.3-0.6 s, pandas).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.domain.sae import fay_herriot  # noqa: E402


def _inputs(n_indicators: int, n_rounds: int, seed: int):
    rng = np.random.default_rng(seed)
    cov = pd.read_csv(ROOT / "data" / "reference" / "prefecture_covariates.csv")
    logpop = cov["log_population_2020"].to_numpy(float)
    pop = cov["population_2020"].to_numpy(float)
    other = rng.normal(size=47)
    X = np.column_stack([logpop - logpop.mean(), other])
    n_eff = np.clip(np.exp(logpop - logpop.max()) * 1200, 50, 1200)
    jobs = []
    for _ in range(n_indicators):
        base = rng.uniform(0.05, 0.5)
        for _ in range(n_rounds):
            theta = np.clip(base + 0.01 * X[:, 0] + rng.normal(scale=0.02, size=47), 0.01, 0.95)
            p = rng.binomial(n_eff.astype(int), theta) / n_eff.astype(int)
            national = float(pop @ p / pop.sum())
            jobs.append((p, n_eff, X, pop, national))
    return jobs


def _time(jobs, transform: bool, repeat: int) -> tuple[list[float], Counter]:
    times, paths = [], Counter()
    for _ in range(repeat):
        start = time.perf_counter()
        for p, n_eff, X, pop, national in jobs:
            if transform:
                r = fay_herriot(p, None, X, transform="arcsin", n=n_eff, benchmark=national, benchmark_weights=pop)
            else:
                q = np.clip(p, 0.01, 0.99)  # a zero share would give a zero variance
                r = fay_herriot(p, q * (1 - q) / n_eff, X, benchmark=national, benchmark_weights=pop)
            paths[r.algorithm] += 1
        times.append(time.perf_counter() - start)
    return times, paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--indicators", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    jobs = _inputs(args.indicators, args.rounds, args.seed)
    fay_herriot(*jobs[0][:1], None, jobs[0][2], transform="arcsin", n=jobs[0][1])  # warm imports
    print(f"{len(jobs)} fits of 47 areas ({args.indicators} indicators x {args.rounds} rounds), {args.repeat} passes")
    for label, transform in (("arcsin + bc + ratio benchmark", True), ("untransformed + benchmark", False)):
        times, paths = _time(jobs, transform, args.repeat)
        per_pass = {k: v // args.repeat for k, v in paths.items()}
        print(
            f"  {label:32s} best {min(times):.3f} s, median {statistics.median(times):.3f} s "
            f"per pass ({1000 * min(times) / len(jobs):.1f} ms per fit); paths per pass: {per_pass}"
        )


if __name__ == "__main__":
    main()
