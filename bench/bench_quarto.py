"""Benchmark of the Quarto renderer (issue 16): figures printed, never asserted.

On the bundled sample data, for the same areas:

1. cold `tsunagari build --renderer pandoc` (the built-in renderer);
2. cold `tsunagari build --renderer quarto` (papermill in warm workers, then one Quarto project render
   per worker for the whole set), and the time of its Quarto render alone, from the build log;
3. the naive loop: `quarto render report.ipynb --execute -P ...` once per area and format (HTML and
   Typst), each run starting Quarto and a fresh kernel and executing the notebook again, its charts
   drawn (TSUNAGARI_CHART_CACHE=0: no chart cache, as a notebook without this project's cache);
4. a no-change rebuild with Quarto (incremental: nothing executed or rendered).

Each build is cold: a fresh output folder, warehouse and cache folder (TSUNAGARI_CACHE_DIR: no base
font subset, no chart cache). Needs the Quarto CLI on PATH or QUARTO_PATH. The load average is
printed before and after each phase (the figures mean little on a busy machine; the ratios of one
run, measured side by side, a little more).

    python bench/bench_quarto.py [--pref 13 --pref 31 ...] [--jobs N] [--skip-naive] [--skip-quarto-build]
                                 [--naive-sample N] [--keep DIR]

Without --pref: national and all 47 prefectures. The naive loop over all of them takes long
(~16 s per area on an idle 2-core machine); --naive-sample N times it on N of the areas, spread over
the list (national first), and extrapolates their mean time per area to all the areas (printed as
such, with the per-area times measured).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


CPU: list[float] = [0.0]  # CPU seconds of the last run()


def children_cpu() -> float:
    """User + system CPU seconds of the descendants waited for so far (each process counts once its
    parent has waited for it: build workers, kernels, Quarto, pandoc and Typst all are)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    """Wall seconds (CPU seconds in CPU[0]). A build that stops (exit 1, e.g. a disclosure finding in
    the data) still ran every stage it times, so its time is printed with the reason; anything else
    ends the bench."""
    cpu = children_cpu()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t
    CPU[0] = children_cpu() - cpu
    if proc.returncode == 1 and "NOT published" in proc.stdout + proc.stderr:
        failed = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip().startswith("- ")]
        print(f"    (build exit 1, not published: {'; '.join(failed)[:300]})")
    elif proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-3000:]}")
    return secs


def load() -> str:
    """The machine's load averages (1, 5, 15 min) and core count, as uptime prints them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


def sample(codes: list[int], n: int) -> list[int]:
    """n of the codes spread evenly over the list, the first one included (all when n >= len)."""
    if n <= 0 or n >= len(codes):
        return list(codes)
    return [codes[(i * len(codes)) // n] for i in range(n)]


def quarto_seconds(site: Path) -> str:
    """The Quarto project render's share of a build, from the log (the span of its log lines)."""
    from datetime import datetime

    candidates = [
        site.parent / f".{site.name}.tsunagari-work" / "build.log",  # the build's working folder
        site / "build.log",
    ]  # (a site of an earlier version)
    log_file = next((p for p in candidates if p.is_file()), None)
    if log_file is None:
        return "?"
    text = log_file.read_text(encoding="utf-8")
    text = text[text.rfind("build config:") :]
    start = re.findall(r"^(\d\d:\d\d:\d\d) INFO tsunagari\.render\.quarto: running ", text, re.M)
    end = re.search(
        r"^(\d\d:\d\d:\d\d) INFO tsunagari\.render\.quarto: quarto: rendered (\d+) areas .* in (\d+) project",
        text,
        re.M,
    )
    if not start or not end:
        return "?"
    secs = (datetime.strptime(end.group(1), "%H:%M:%S") - datetime.strptime(start[0], "%H:%M:%S")).seconds
    return f"{secs} s for {end.group(2)} areas in {end.group(3)} Quarto project render(s) at once"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pref", action="append", type=int, default=[], help="area code (0 = national); repeat")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-naive", action="store_true", help="do not time the naive per-area loop")
    ap.add_argument(
        "--skip-quarto-build",
        action="store_true",
        help="time the built-in build and the naive loop only (not the --renderer quarto build)",
    )
    ap.add_argument(
        "--naive-sample",
        type=int,
        default=0,
        metavar="N",
        help="time the naive loop on N of the areas and extrapolate to all of them",
    )
    ap.add_argument(
        "--naive-first",
        action="store_true",
        help="time the naive loop before the builds (its warehouse: a cold built-in build's, made first, untimed)",
    )
    ap.add_argument("--keep", type=Path, help="keep the sites and the work folder here")
    ap.add_argument(
        "--naive-only",
        action="store_true",
        help="time only the naive loop, on the warehouse of an earlier run kept with --keep",
    )
    args = ap.parse_args()

    from pipelines.domain.reference import prefectures
    from pipelines.render.quarto import quarto_available, quarto_version

    quarto = quarto_available()
    if quarto is None:
        sys.exit("Quarto CLI not found (PATH or QUARTO_PATH): nothing to compare")
    codes = args.pref or [0] + [int(c) for c in prefectures().pref_code]
    exe = shutil.which("tsunagari") or sys.exit("the tsunagari command is not installed")
    work = args.keep or Path(tempfile.mkdtemp(prefix="tsunagari-bench-quarto-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "QUARTO_PATH": str(quarto)}
    print(f"Quarto {quarto_version()} ({quarto}); {len(codes)} areas; --jobs {args.jobs}; {os.cpu_count()} cores")
    pref_args = [a for c in (args.pref or []) for a in ("--pref", str(c))]

    def build(renderer: str, name: str) -> tuple[float, Path]:
        site, wh, cache = work / f"site-{name}", work / f"wh-{name}.duckdb", work / f"cache-{name}"
        for p in (site, wh, cache, work / f".{site.name}.tsunagari-work"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        cmd = [
            exe,
            "build",
            "--renderer",
            renderer,
            "--out",
            str(site),
            "--warehouse",
            str(wh),
            "--jobs",
            str(args.jobs),
            "--quiet",
            *pref_args,
        ]
        return run(cmd, work, {**env, "TSUNAGARI_CACHE_DIR": str(cache)}), site

    t_pandoc = t_quarto = None
    naive = None
    if args.naive_only:
        wh = next((w for w in (work / "wh-quarto.duckdb", work / "wh-pandoc.duckdb") if w.is_file()), None)
        if wh is None:
            sys.exit(
                f"--naive-only needs {work}/wh-quarto.duckdb or wh-pandoc.duckdb from an earlier run with --keep {work}"
            )
    elif args.naive_first and not args.skip_naive:
        build("pandoc", "warehouse")  # the naive loop's warehouse (untimed; the builds below are cold)
        wh = work / "wh-warehouse.duckdb"
        naive = naive_phase(quarto, codes, work, env, wh, args)
        t_pandoc, t_quarto = builds(build, work, exe, env, args, pref_args)
    else:
        t_pandoc, t_quarto = builds(build, work, exe, env, args, pref_args)
        wh = work / ("wh-pandoc.duckdb" if args.skip_quarto_build else "wh-quarto.duckdb")
    if args.skip_naive:
        print("naive loop not timed (--skip-naive)")
        return
    t_naive, cpu_naive = naive if naive is not None else naive_phase(quarto, codes, work, env, wh, args)
    for label, t in (("built-in renderer", t_pandoc), ("Quarto renderer", t_quarto)):
        if t:
            wall, cpu = t
            print(
                f"cold build, {label}, vs naive loop: {t_naive / wall:.1f}x faster in wall time ({wall:.1f} s "
                f"against {t_naive:.1f} s); {cpu_naive / cpu:.1f}x less CPU ({cpu:.0f} s against {cpu_naive:.0f} s)"
            )
    if t_quarto and t_pandoc:
        print(f"Quarto renderer build vs built-in: {t_quarto[0] / t_pandoc[0]:.1f}x the time")


def naive_phase(quarto: Path, codes: list[int], work: Path, env: dict, wh: Path, args) -> tuple[float, float]:
    """Time the naive loop (on a sample with --naive-sample) and print it; returns (wall, CPU)
    seconds for all the areas (extrapolated from the sample's mean)."""
    timed = sample(codes, args.naive_sample)
    print(f"[{load()}]")
    per_area, cpu_timed = naive_loop(quarto, timed, work, env, wh)
    t_timed = sum(per_area.values())
    print(f"[{load()}]")
    mean = t_timed / len(timed)
    t_naive, cpu_naive = mean * len(codes), cpu_timed / len(timed) * len(codes)
    print(
        "naive loop per area (quarto render --execute, HTML + Typst): "
        + ", ".join(f"{slug} {secs:.1f}" for slug, secs in per_area.items())
        + " s"
    )
    if len(timed) < len(codes):
        print(
            f"naive loop, quarto render --execute per area+format: {t_timed:7.1f} s measured for {len(timed)} "
            f"of {len(codes)} areas ({mean:.1f} s per area; CPU {cpu_timed:.0f} s) -> {t_naive:7.1f} s "
            f"extrapolated to {len(codes)} areas (CPU {cpu_naive:.0f} s)"
        )
    else:
        print(
            f"naive loop, quarto render --execute per area+format: {t_naive:7.1f} s   ({mean:.1f} s per area; "
            f"CPU {cpu_naive:.0f} s)"
        )
    return t_naive, cpu_naive


def builds(build, work: Path, exe: str, env: dict, args, pref_args: list[str]) -> tuple[tuple, tuple | None]:
    """The cold builds; returns (wall, CPU) seconds of each."""
    print(f"[{load()}]")
    t_pandoc, _ = build("pandoc", "pandoc")
    c_pandoc = CPU[0]
    print(f"cold build, built-in renderer (pandoc + typst):      {t_pandoc:7.1f} s (CPU {c_pandoc:.0f} s)   [{load()}]")
    if args.skip_quarto_build:
        return (t_pandoc, c_pandoc), None
    t_quarto, site = build("quarto", "quarto")
    c_quarto = CPU[0]
    print(
        f"cold build, Quarto renderer (one project render):    {t_quarto:7.1f} s (CPU {c_quarto:.0f} s)   "
        f"(Quarto render: {quarto_seconds(site)})   [{load()}]"
    )
    cmd = [
        exe,
        "build",
        "--renderer",
        "quarto",
        "--out",
        str(site),
        "--warehouse",
        str(work / "wh-quarto.duckdb"),
        "--jobs",
        str(args.jobs),
        "--quiet",
        *pref_args,
    ]
    again = run(cmd, work, {**env, "TSUNAGARI_CACHE_DIR": str(work / "cache-quarto")})
    print(f"no-change rebuild, Quarto renderer:                   {again:7.1f} s")
    return (t_pandoc, c_pandoc), (t_quarto, c_quarto)


def naive_loop(
    quarto: Path, codes: list[int], work: Path, env: dict, warehouse: Path
) -> tuple[dict[str, float], float]:
    """The naive approach: one `quarto render --execute` per area and format, with this Python
    (QUARTO_PYTHON) so that the notebook's imports are there, every chart drawn (no chart cache).
    A failed run, or a run that wrote no output, ends the bench. Returns the seconds per area
    (both formats) and the CPU seconds of the whole loop."""
    from pipelines.domain.reference import pref_slug

    naive = work / "naive"
    shutil.rmtree(naive, ignore_errors=True)
    shutil.copytree(ROOT / "reports", naive, dirs_exist_ok=True)
    wh = str(Path(warehouse).resolve())
    run_env = {
        **env,
        "PYTHONPATH": str(ROOT),
        "QUARTO_PYTHON": sys.executable,
        "TSUNAGARI_CHART_CACHE": "0",
        "TSUNAGARI_CACHE_DIR": str(work / "cache-naive"),
    }
    times = {}
    cpu = 0.0
    for code in codes:
        secs = 0.0
        for fmt in ("html", "typst"):
            out = f"{pref_slug(code)}.{'html' if fmt == 'html' else 'pdf'}"
            secs += run(
                [
                    str(quarto),
                    "render",
                    "report.ipynb",
                    "--execute",
                    "--to",
                    fmt,
                    "-P",
                    f"pref_code:{code}",
                    "-P",
                    "year:2024",
                    "-P",
                    f"warehouse:{wh}",
                    "--output",
                    out,
                ],
                naive,
                run_env,
            )
            cpu += CPU[0]
            if not (naive / out).is_file() or (naive / out).stat().st_size < 10_000:
                sys.exit(f"naive loop: quarto render wrote no {out} in {naive}")
        times[pref_slug(code)] = secs
    return times, cpu


if __name__ == "__main__":
    main()
