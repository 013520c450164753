"""Benchmark of the site stage and the disclosure check on a built sample site.

Prints the time of ``site.build_site`` (cold: no per-prefecture workbook yet; warm: nothing changed)
and of ``disclosure.check_published`` over every file (as on a cold build), with the time per file
type (``check_files`` with one ``make_context``). Works on a copy; the given site is not changed.

    python bench/bench_site.py [--site DIR --warehouse FILE] [--repeat N] [--keep DIR]

Without --site/--warehouse it first builds the bundled sample data (``tsunagari build``, ~1-2 min).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_sample(work: Path) -> tuple[Path, Path]:
    inp = work / "input"
    if not inp.exists():
        shutil.copytree(ROOT / "data" / "sample", inp)
    site, wh = work / "site", work / "wh.duckdb"
    if not (site / "index.html").is_file():
        print(f"building the sample site in {work} ...", flush=True)
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "build",
                "--input",
                str(inp),
                "--out",
                str(site),
                "--warehouse",
                str(wh),
                "--quiet",
            ],
            cwd=work,
            check=True,
        )
        print(f"  built in {time.perf_counter() - t:.1f} s")
    return site, wh


def best(times: list[float]) -> str:
    return f"{min(times):6.2f} s (median {statistics.median(times):.2f} s of {len(times)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", type=Path)
    ap.add_argument("--warehouse", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build the sample site here (reused when it exists)")
    args = ap.parse_args()

    from pipelines.disclosure import check as disclosure
    from pipelines.outputs.site import build_site

    if args.site and args.warehouse:
        site, wh = args.site, args.warehouse
    else:
        work = args.keep or Path(tempfile.mkdtemp(prefix="tsunagari-bench-site-"))
        work.mkdir(parents=True, exist_ok=True)
        site, wh = build_sample(work)
    year = max(int(p.stem.split("-")[1]) for p in site.glob("downloads/indicators-*.csv"))

    with tempfile.TemporaryDirectory(prefix="tsunagari-bench-") as tmp:
        copy = Path(tmp) / "site"
        shutil.copytree(site, copy)

        cold, warm = [], []
        for _ in range(args.repeat):
            for p in copy.glob(f"downloads/*-{year}.xlsx"):
                if not p.name.startswith("indicators-"):
                    p.unlink()
            (copy / "downloads" / ".xlsx-inputs.json").unlink(missing_ok=True)
            t = time.perf_counter()
            build_site(year, wh, copy)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            build_site(year, wh, copy)
            warm.append(time.perf_counter() - t)
        print(f"site stage (build_site {year}), cold: {best(cold)}")
        print(f"site stage, nothing changed:        {best(warm)}")

        total = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            findings = disclosure.check_published(copy, wh)
            total.append(time.perf_counter() - t)
        files = sorted(p for p in copy.rglob("*") if p.is_file())
        print(f"disclosure check, all {len(files)} files: {best(total)}; {len(findings)} finding(s)")

        by_type: dict[str, list[str]] = defaultdict(list)
        for p in files:
            by_type[p.suffix.lower() or "(none)"].append(p.relative_to(copy).as_posix())
        t = time.perf_counter()
        disclosure.make_context(wh, copy)
        print(f"  make_context (warehouse read once):   {time.perf_counter() - t:6.2f} s")
        for suffix, rels in sorted(by_type.items()):
            times = []
            for _ in range(args.repeat):
                ctx = disclosure.make_context(wh, copy)  # a fresh one: nothing remembered between rounds
                t = time.perf_counter()
                disclosure.check_files(copy, rels, ctx)
                times.append(time.perf_counter() - t)
            per = min(times) / len(rels)
            print(f"  {suffix:7} {len(rels):4d} files: {min(times):6.2f} s  ({per * 1000:7.1f} ms per file)")


if __name__ == "__main__":
    main()
