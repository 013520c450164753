"""Load benchmark: the build beside CPU-bound processes, and ten national rounds of 1,000,000
respondents each through the real pipeline.

    python bench/bench_load.py [--busy 6] [--rows 1000000] [--first 2015] [--last 2024] [--jobs 2]
                               [--keep DIR] [--stages busy,interrupt,ingest,indicators,build]

CPU load (stages ``busy`` and ``interrupt``, on the bundled sample data, each beside ``--busy`` N
processes that spin ``while True: pass``, default 6, i.e. load 6 and more on this 2-core machine):

``busy``
    a cold ``tsunagari build`` (empty warehouse and output: ingest, validation, indicators, 48
    reports, site): wall time and exit code;
``interrupt``
    a cold build stopped while its reports run, once by SIGINT to its process group (a terminal's
    Ctrl-C) and once by SIGTERM to the build alone: seconds from the signal to the build's exit
    and to the end of the last process it started, and its exit code.

Each build runs with ``TMPDIR`` set to an empty folder of its own; afterwards the benchmark checks
that no process of the build is alive (none whose environment names that folder) and that the
folder holds nothing, and says so (``FAILED`` otherwise, exit status 1).

Data volume (stages ``ingest``, ``indicators``, ``build``): generates ``national-{year}.parquet``
for every round (``pipelines.ingest.sample.national_round``; the
generator models only 2022–2024, so earlier rounds reuse one of those models with their own seed,
survey id, year and respondent ids) plus the synthetic ``programme.csv`` and the ``SYNTHETIC``
marker. Then runs each stage as a child process of the real CLI:

1. ``tsunagari ingest <folder>`` – every round, with validation, one transaction;
2. ``tsunagari indicators --year <last>`` and ``--year <first>``;
3. ``tsunagari build --pref 13 --pref 31 --year <last>`` – ingest (nothing new: skipped by sha256),
   quality page (the validation suites over every committed file), indicators, two area reports
   (HTML + PDF) and the site.

Per stage it prints wall time, the peak resident set of the largest single process (``wait4``
rusage: the child and every descendant it reaped, e.g. notebook kernels) and the peak of the summed
resident set of the whole process tree (sampled from /proc every 0.1 s); after ingest and at the end
the warehouse size on disk and the row counts of the committed and staging tables. For scale it
also prints what all the microdata would take as one pandas DataFrame (one round's deep memory
usage x rounds): a stage whose peak stays well below that did not load all of it at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.engine.publish import work_dir  # noqa: E402  (needs ROOT on sys.path)
from tests.process_helpers import with_tmpdir  # noqa: E402

MODEL_YEARS = (2022, 2023, 2024)  # rounds the synthetic generator models


# --- Measuring a child process tree ---------------------------------------------------------------


def _tree_rss_kib(root: int) -> int:
    """Summed VmRSS (KiB) of ``root`` and all its descendants, from /proc."""
    from pipelines.engine.interrupt import descendants

    total = 0
    for pid in [root] + descendants([root]):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def run_stage(name: str, args: list[str], log_dir: Path, env: dict[str, str]) -> dict:
    """Run ``python -m pipelines.cli *args``; wall seconds, peak RSS of one process and of the tree."""
    cmd = [sys.executable, "-m", "pipelines.cli", *args]
    out_path = log_dir / f"{name}.log"
    with open(out_path, "w", encoding="utf-8") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        peak_tree = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak_tree
            while not stop.is_set():
                peak_tree = max(peak_tree, _tree_rss_kib(proc.pid))
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        secs = time.perf_counter() - t0
    r = {
        "stage": name,
        "seconds": secs,
        "peak_mib": usage.ru_maxrss / 1024,
        "tree_peak_mib": peak_tree / 1024,
        "rc": proc.returncode,
        "log": out_path,
    }
    flag = "" if proc.returncode == 0 else f"  FAILED rc={proc.returncode} (see {out_path})"
    print(
        f"  {name:22s} {secs:8.1f} s   peak RSS {r['peak_mib']:8,.0f} MiB (one process)   "
        f"{r['tree_peak_mib']:8,.0f} MiB (process tree){flag}",
        flush=True,
    )
    if proc.returncode != 0:
        print("    " + "\n    ".join(out_path.read_text(encoding="utf-8").splitlines()[-15:]), flush=True)
    return r


# --- Input --------------------------------------------------------------------------------------


def generate(folder: Path, years: list[int], rows: int, seed: int) -> float:
    """Write national-{year}.parquet per round, programme.csv and SYNTHETIC; returns the deep pandas
    memory (MiB) of one round (for the 'all microdata in pandas' reference figure)."""
    from pipelines.ingest import sample

    folder.mkdir(parents=True, exist_ok=True)
    one_round_mib = 0.0
    for year in years:
        model = year if year in MODEL_YEARS else MODEL_YEARS[year % len(MODEL_YEARS)]
        df = sample.national_round(model, rows=rows, seed=seed + year)
        if model != year:
            df["survey_id"] = f"national-{year}"
            df["survey_year"] = year
            df["respondent_id"] = df["respondent_id"].str.replace(f"N{model}-", f"N{year}-", regex=False)
        one_round_mib = max(one_round_mib, df.memory_usage(deep=True).sum() / 2**20)
        df.to_parquet(folder / f"national-{year}.parquet", index=False)
        del df
    sample.programme_frame(seed).to_csv(folder / "programme.csv", index=False, encoding="utf-8")
    (folder / "SYNTHETIC").write_text("synthetic load-test data / 負荷試験用の合成データ\n", encoding="utf-8")
    return one_round_mib


# --- Warehouse ------------------------------------------------------------------------------------


def warehouse_facts(path: Path) -> str:
    import duckdb

    size = path.stat().st_size / 2**20
    wal = path.with_name(path.name + ".wal")
    wal_size = wal.stat().st_size / 2**20 if wal.exists() else 0.0
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
            ).fetchall()
        ]
        counts = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        blocks = con.execute(
            "SELECT total_blocks, used_blocks, free_blocks, block_size FROM pragma_database_size()"
        ).fetchone()
    finally:
        con.close()
    rows = ", ".join(f"{t} {n:,}" for t, n in counts.items())
    return (
        f"warehouse {size:,.0f} MiB on disk (+ WAL {wal_size:,.0f} MiB); blocks used {blocks[1]:,} / "
        f"free {blocks[2]:,} of {blocks[3] // 1024} KiB; rows: {rows}"
    )


def du_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# --- CPU load ------------------------------------------------------------------------------------


def busy_processes(n: int) -> list[subprocess.Popen]:
    """`n` processes that spin on a core each until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def leftovers(tmp: Path, wait: float = 30.0) -> tuple[list[str], list[str]]:
    """(processes of the build still alive, files in its TMPDIR), after waiting up to `wait` s for
    both to be gone."""
    end = time.monotonic() + wait
    while time.monotonic() < end and (with_tmpdir(tmp) or any(tmp.iterdir())):
        time.sleep(0.1)
    return with_tmpdir(tmp), sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))


def clean_report(tmp: Path) -> bool:
    procs, files = leftovers(tmp)
    print(
        f"      afterwards: {len(procs)} process(es) of the build alive, {len(files)} file(s) in its TMPDIR"
        + ("" if not procs and not files else "  FAILED"),
        flush=True,
    )
    for line in procs[:10] + files[:10]:
        print(f"        {line}", flush=True)
    return not procs and not files


def cold_build_cmd(work: Path, *extra: str) -> list[str]:
    return [
        "build",
        "--out",
        str(work / "site"),
        "--warehouse",
        str(work / "warehouse.duckdb"),
        "--renderer",
        "pandoc",
        "-q",
        *extra,
    ]


def fresh(work: Path) -> tuple[Path, dict[str, str]]:
    """An empty work folder with an empty TMPDIR in it; the environment to run a build with."""
    if work.exists():
        shutil.rmtree(work)
    tmp = work / "tmp"
    tmp.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return tmp, env


def busy_build(work: Path, n: int, logs: Path) -> bool:
    tmp, env = fresh(work)
    print(
        f"  cold build of the bundled sample beside {n} CPU-bound process(es) "
        f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
        flush=True,
    )
    busy = busy_processes(n)
    try:
        r = run_stage(f"cold build, {n} busy", cold_build_cmd(work), logs, env)
    finally:
        stop_all(busy)
    return clean_report(tmp) and r["rc"] == 0


def interrupted_build(work: Path, n: int, name: str, group: bool, logs: Path) -> bool:
    """A cold build stopped by signal `name` (to its process group when `group`) while its reports
    run; prints the seconds from the signal to the build's exit and to the end of its last process."""
    tmp, env = fresh(work)
    busy = busy_processes(n)
    log = work_dir(work / "site") / "build.log"
    try:
        with open(logs / f"interrupt-{name}.log", "w", encoding="utf-8") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", *cold_build_cmd(work)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            while proc.poll() is None and not (
                log.exists()
                and "指標 done in" in log.read_text(encoding="utf-8")
                and any("ipykernel" in p for p in with_tmpdir(tmp))
            ):
                time.sleep(0.05)
            if proc.poll() is not None:
                print(f"  {name}: the build ended (rc={proc.returncode}) before its reports ran  FAILED", flush=True)
                return False
            reached = time.monotonic() - t0
            alive = len(with_tmpdir(tmp))
            sent = time.monotonic()
            (os.killpg if group else os.kill)(proc.pid, getattr(signal, name))
            proc.wait()
            exited = time.monotonic() - sent
            while with_tmpdir(tmp) and time.monotonic() - sent < 120:
                time.sleep(0.02)
            gone = time.monotonic() - sent
    finally:
        stop_all(busy)
    last = (logs / f"interrupt-{name}.log").read_text(encoding="utf-8").strip().splitlines()[-1:]
    ok = proc.returncode == 130
    print(
        f"  {name:7s} to the {'process group' if group else 'build'} {reached:5.1f} s into the build "
        f"({alive} processes): exit {proc.returncode} after {exited:5.2f} s, its last process gone after "
        f"{gone:5.2f} s; said {last[0] if last else '(nothing)'!r}{'' if ok else '  FAILED'}",
        flush=True,
    )
    return clean_report(tmp) and ok


# --- Main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="respondents per round")
    ap.add_argument("--first", type=int, default=2015)
    ap.add_argument("--last", type=int, default=2024)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--jobs", type=int, default=2, help="report workers for the build")
    ap.add_argument("--stages", default="busy,interrupt,ingest,indicators,build")
    ap.add_argument("--busy", type=int, default=6, help="CPU-bound processes beside the builds of busy/interrupt")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()
    stages = set(args.stages.split(","))
    years = list(range(args.first, args.last + 1))

    tmp = None
    if args.keep:
        work = args.keep
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="tsunagari-load-")
        work = Path(tmp.name)
    inp, wh, logs = work / "input", work / "warehouse.duckdb", work / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    failures = 0
    if "busy" in stages:
        failures += not busy_build(work / "busy", args.busy, logs)
    if "interrupt" in stages:
        print(f"  stopping a cold build while its reports run, beside {args.busy} CPU-bound process(es)", flush=True)
        failures += not interrupted_build(work / "interrupt", args.busy, "SIGINT", True, logs)
        failures += not interrupted_build(work / "interrupt", args.busy, "SIGTERM", False, logs)
    if not stages & {"ingest", "indicators", "build"}:
        if tmp is not None:
            tmp.cleanup()
        sys.exit(1 if failures else 0)

    print(
        f"load benchmark: {len(years)} rounds ({years[0]}–{years[-1]}) x {args.rows:,} respondents "
        f"= {len(years) * args.rows:,} rows; work folder {work}",
        flush=True,
    )
    t0 = time.perf_counter()
    if inp.exists():
        shutil.rmtree(inp)
    one_round = generate(inp, years, args.rows, args.seed)
    print(
        f"  generated in {time.perf_counter() - t0:.1f} s: input {du_mib(inp):,.0f} MiB Parquet; one round as a "
        f"pandas DataFrame {one_round:,.0f} MiB, so all rounds at once would be ~{one_round * len(years):,.0f} MiB",
        flush=True,
    )

    results = []
    if "ingest" in stages:
        for p in (wh, wh.with_name(wh.name + ".wal")):
            p.unlink(missing_ok=True)
        results.append(run_stage("ingest+validate", ["ingest", str(inp), "--warehouse", str(wh)], logs, env))
        if results[-1]["rc"] == 0:
            print("  after ingest: " + warehouse_facts(wh), flush=True)
    if "indicators" in stages and wh.exists():
        for year in dict.fromkeys([args.last, args.first]):
            results.append(
                run_stage(
                    f"indicators {year}",
                    [
                        "indicators",
                        "--year",
                        str(year),
                        "--warehouse",
                        str(wh),
                        "--out",
                        str(work / "indicators-out"),
                        "-q",
                    ],
                    logs,
                    env,
                )
            )
    if "build" in stages:
        site = work / "site"
        if site.exists():
            shutil.rmtree(site)
        r = run_stage(
            "build (2 areas)",
            [
                "build",
                "--input",
                str(inp),
                "--warehouse",
                str(wh),
                "--out",
                str(site),
                "--pref",
                "13",
                "--pref",
                "31",
                "--year",
                str(args.last),
                "--jobs",
                str(args.jobs),
                "--renderer",
                "pandoc",
                "-q",
            ],
            logs,
            env,
        )
        results.append(r)
        build_log = site.parent / f".{site.name}.tsunagari-work" / "build.log"
        if build_log.exists():
            for line in build_log.read_text(encoding="utf-8").splitlines():
                if " done in " in line or ": ok in " in line:
                    print("      " + line.split(": ", 1)[-1], flush=True)
        if r["rc"] == 0:
            print(f"  site {du_mib(site):,.1f} MiB", flush=True)
    if wh.exists():
        print("  at the end: " + warehouse_facts(wh), flush=True)

    ok = [r for r in results if r["rc"] == 0]
    if ok:
        worst = max(ok, key=lambda r: r["tree_peak_mib"])
        print(
            f"peak over all stages: {max(r['peak_mib'] for r in ok):,.0f} MiB in one process, "
            f"{worst['tree_peak_mib']:,.0f} MiB for a whole stage ({worst['stage']}); all microdata as one "
            f"pandas frame would be ~{one_round * len(years):,.0f} MiB",
            flush=True,
        )
    if tmp is not None:
        tmp.cleanup()
    if len(ok) != len(results) or failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
