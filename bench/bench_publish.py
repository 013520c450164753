"""Benchmark of what every build adds for cache keys and publishing safety.

Prints the time of
- ``fingerprint.compute`` (hash of the package, reports, reference data, suites, settings and
  library versions: once per build),
- ``warehouse.connect`` read-only on a Tsunagari warehouse, first (identity checked) and again
  (identity cached while the file is unchanged),
- ``publish.scan_site`` over a built site (every file's type and first bytes).

    python bench/bench_publish.py [--site DIR --warehouse FILE] [--repeat N]

Without --site/--warehouse only the first measurement and a fresh warehouse are used.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def main() -> None:
    from pipelines.engine import fingerprint, publish
    from pipelines.io import warehouse

    ap = argparse.ArgumentParser()
    ap.add_argument("--site", type=Path)
    ap.add_argument("--warehouse", type=Path)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()

    med, best = timed(fingerprint.compute, a.repeat)
    print(f"fingerprint.compute: median {med * 1000:.1f} ms, best {best * 1000:.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        wh = a.warehouse or Path(tmp) / "w.duckdb"
        if a.warehouse is None:
            warehouse.connect(wh, write=True).close()
        warehouse._VERIFIED.clear()
        t = time.perf_counter()
        warehouse.connect(wh).close()
        first = time.perf_counter() - t
        med, best = timed(lambda: warehouse.connect(wh).close(), a.repeat)
        print(
            f"warehouse.connect (read-only): first {first * 1000:.1f} ms (identity checked), "
            f"then median {med * 1000:.1f} ms, best {best * 1000:.1f} ms"
        )
        import duckdb

        med, best = timed(lambda: duckdb.connect(str(wh), read_only=True).close(), a.repeat)
        print(f"duckdb.connect (read-only, for comparison): median {med * 1000:.1f} ms, best {best * 1000:.1f} ms")

    if a.site is not None:
        n = sum(1 for p in a.site.rglob("*") if p.is_file())
        med, best = timed(lambda: publish.scan_site(a.site), max(3, a.repeat // 4))
        print(f"publish.scan_site: {n} files, median {med * 1000:.1f} ms, best {best * 1000:.1f} ms")


if __name__ == "__main__":
    main()
