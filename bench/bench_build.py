"""Benchmark of `tsunagari build` on the bundled sample data (three rounds, all 47 prefectures + national).

Prints: cold full build (ingest + validation + indicators + 48 reports HTML+PDF + site; empty cache
folder), no-change rebuild, one-prefecture-changed rebuild (Saitama's own 2024 survey corrected),
a forced rebuild (every report executed again, the charts from the chart cache), and peak memory (the
largest resident set of the build process and of its workers/kernels). When the Quarto CLI is
installed (PATH or QUARTO_PATH), also times the common approach for comparison: `quarto render
report.ipynb --execute -P pref_code:X` once per area (national and the 47 prefectures) and format,
charts drawn, on the same machine in the same run (bench_quarto.py's naive loop; bench_quarto.py
--naive-sample N times it on a sample of the areas instead).

    python bench/bench_build.py [--jobs N] [--renderer pandoc|quarto] [--keep DIR] [--rounds 2024 ...]

--rounds keeps only the survey files of those rounds (the programme file as it is): the cost of
more rounds is the cold build with every round against the same build with the latest only.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of the largest descendant of this run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    secs = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return secs, max(before, after)


def stages(site: Path) -> str:
    """Where the time went, from the build log: each stage, and the span of the reports."""
    import re
    from datetime import datetime

    text = (site.parent / f".{site.name}.tsunagari-work" / "build.log").read_text(encoding="utf-8")  # beside the site
    text = text[text.rfind("\n", 0, text.rfind("build config:")) + 1 :]  # the last build only
    parts = [
        f"{m.group(1).split(' / ')[0]} {float(m.group(2)):.1f}"
        for m in re.finditer(r"INFO tsunagari\.build: (.+?) done in ([0-9.]+) s", text)
    ]
    times = [
        datetime.strptime(m.group(1), "%H:%M:%S")
        for m in re.finditer(r"^(\d\d:\d\d:\d\d) INFO tsunagari\.build: report:\S+ ok in", text, re.M)
    ]
    per = [float(x) for x in re.findall(r"report:\S+: ok in ([0-9.]+) s", text)]
    if per:
        parts.append(
            f"{len(per)} reports {sum(per) / len(per):.2f} s each (last done "
            f"{(max(times) - datetime.strptime(text[:8], '%H:%M:%S')).seconds} s after the start)"
        )
    return "    stages (s): " + "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--renderer", default="pandoc")
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument(
        "--rounds",
        type=int,
        nargs="*",
        default=None,
        help="keep only the survey files of these rounds (default: every round of the sample)",
    )
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="tsunagari-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    inp = work / "input"
    if inp.exists():
        shutil.rmtree(inp)
    shutil.copytree(ROOT / "data" / "sample", inp)
    if args.rounds:
        import re

        for f in inp.iterdir():
            m = re.search(r"-(\d{4})\.", f.name)
            if m and int(m.group(1)) not in args.rounds:
                f.unlink()
    # A cold build starts with an empty cache folder (the base font subset, the chart cache)
    os.environ["TSUNAGARI_CACHE_DIR"] = str(work / "cache")
    for p in (work / "wh.duckdb", work / "site", work / "cache"):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "build",
        "--input",
        str(inp),
        "--out",
        str(work / "site"),
        "--warehouse",
        str(work / "wh.duckdb"),
        "--jobs",
        str(args.jobs),
        "--renderer",
        args.renderer,
        "--quiet",
    ]
    print(
        f"machine: {os.cpu_count()} cores; jobs={args.jobs}; renderer={args.renderer}; work={work}; "
        f"inputs: {', '.join(sorted(p.name for p in inp.iterdir() if not p.name.startswith(('README', 'SYNTHETIC'))))}"
    )

    cold, rss1 = run(cmd, work)
    print(f"cold full build (48 reports HTML+PDF, index, quality, downloads): {cold:6.1f} s")
    print(stages(work / "site"))
    nochange, rss2 = run(cmd, work)
    print(f"no-change rebuild:                                            {nochange:6.1f} s")

    path = inp / "pref11-2024.csv"
    df = pd.read_csv(path, encoding="cp932", dtype=str)
    df.loc[df.index[:100], "孤独感"] = "しばしばある・常にある"
    df.to_csv(path, encoding="cp932", index=False)
    one, rss3 = run(cmd, work)
    summary = (work / ".site.tsunagari-work" / "build-summary.txt").read_text(encoding="utf-8")
    print(f"one prefecture changed (Saitama own survey) rebuild:          {one:6.1f} s")
    print(stages(work / "site"))
    # Every report again (as after a code change), the charts from the cache the builds above filled
    forced, rss4 = run(cmd + ["--force"], work)
    print(f"forced rebuild (--force; chart cache warm, as after a code change): {forced:6.1f} s")
    print(stages(work / "site"))
    print(
        f"peak memory (largest process: build, worker or kernel):       {max(rss1, rss2, rss3, rss4) / 1024:6.0f} MiB"
    )
    print("last build summary:\n" + summary)

    sys.path.insert(0, str(ROOT))
    from pipelines.render.quarto import quarto_available

    quarto = quarto_available()  # $QUARTO_PATH (the binary or its folder) or quarto on PATH
    if quarto:
        # The common approach: one `quarto render --execute` per area and format, each executing the
        # notebook and drawing its charts (bench_quarto.naive_loop: this Python, failures stop the bench).
        from bench_quarto import load, naive_loop

        from pipelines.domain.reference import prefectures

        codes = [0] + [int(c) for c in prefectures().pref_code]
        print(f"[{load()}]")
        per_area, _ = naive_loop(quarto, codes, work, dict(os.environ), work / "wh.duckdb")
        naive = sum(per_area.values())
        print(
            f"quarto render --execute once per area and format (naive, {len(codes)} areas): {naive:6.1f} s "
            f"({naive / len(codes):.1f} s per area; the cold build {naive / cold:.1f}x faster)   [{load()}]"
        )
    else:
        print("quarto not installed: the naive `quarto render -P` comparison was not measured")


if __name__ == "__main__":
    main()
