"""Time the disclosure audit on the bundled sample data (47 prefectures x indicators x breakdowns).

    python bench/bench_audit.py [--warehouse PATH] [--years 2022 2023 2024]

Ingests data/sample into a temporary warehouse (unless --warehouse names one), then per round:
compute_indicators (whose suppression is the audit-driven ``audit.protect``, run for the round and
for the previous round used by the change column), the time spent in ``audit.protect`` and in
``audit.intervals`` (the audit's bounds), the number of suppressed cells (primary / secondary) in the indicators and
distributions, and the time of ``audit.audit_published`` on the round's published indicators table
(the check the build runs on the downloads). ``protect`` is memoised on its frame: the previous
round of a change column is answered from the memo when that round was computed before in the same
process (its call is counted, its time is the hashing only).

Figures (sample warehouse, 2 shared cores under load 5-7, 30 Nov 2026): audit.protect per computed
round 12.3 / 16.7 / 13.8 s before (per call; 1 / 2 / 2 calls) -> 3.1 / 3.9 / 2.9 s per round after
(2023 and 2024: one computed call and one memo hit); LP solver 7.9 s -> 1.1 s per round; same
suppressed counts (2022: 4,361 / 15,678; 2023: 4,428 / 15,954; 2024: 4,350 / 15,636).
Later the same day (quiet machine): the LP (HiGHS, ~1 s per round) replaced by shortest paths over
the age atoms and the national relation vectorised: compute_rounds for the three rounds 11.7 s ->
2.8 s, the same tables (every column of every row).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.domain import audit  # noqa: E402
from pipelines.indicators.stage import compute_indicators  # noqa: E402


def _timed(mod, name, acc):
    real = getattr(mod, name)

    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t
            acc[name + "_calls"] = acc.get(name + "_calls", 0) + 1

    setattr(mod, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path)
    ap.add_argument("--years", type=int, nargs="*", default=[2022, 2023, 2024])
    args = ap.parse_args()
    wh = args.warehouse
    if wh is None:
        wh = Path(tempfile.mkdtemp()) / "wh.duckdb"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "ingest",
                str(ROOT / "data" / "sample"),
                "--warehouse",
                str(wh),
                "-q",
            ],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
    acc: dict = {}
    _timed(audit, "protect", acc)
    _timed(audit, "intervals", acc)
    con = duckdb.connect(str(wh), read_only=True)
    for year in args.years:
        acc.clear()
        t = time.perf_counter()
        ind, dist = compute_indicators(con, year)
        total = time.perf_counter() - t
        t = time.perf_counter()
        exposures = audit.audit_published(ind)
        check = time.perf_counter() - t
        prim = int(ind.note.str.contains("n<30", regex=False).sum())
        sec = int(ind.note.str.contains("二次秘匿", regex=False).sum())
        print(
            f"{year}: indicators {len(ind):,} rows, suppressed {int(ind.suppressed.sum()):,} "
            f"(primary {prim:,}, secondary {sec:,}); distributions {len(dist):,} rows, suppressed "
            f"{int(dist.suppressed.sum()):,}"
        )
        print(
            f"  compute_indicators {total:.1f} s, of which audit.protect {acc.get('protect', 0):.1f} s "
            f"({acc.get('protect_calls', 0)} calls; intervals {acc.get('intervals', 0):.1f} s in "
            f"{acc.get('intervals_calls', 0)} calls); audit_published {check:.2f} s, "
            f"{len(exposures)} exposure(s)"
        )
    con.close()


if __name__ == "__main__":
    main()
