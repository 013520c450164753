"""Benchmark of the Quarto renderer (issue 16): figures printed, never asserted.

On the bundled sample data, for the same areas:

1. cold `tsunagari build --renderer pandoc` (the built-in renderer);
2. cold `tsunagari build --renderer quarto` (papermill in warm workers, then one Quarto project render
   per worker for the whole set), and the time of its Quarto render alone, from the build log;
3. the naive loop: `quarto render report.ipynb --execute -P ...` once per area and format (HTML and
   Typst), each run starting Quarto and a fresh kernel and executing the notebook again;
4. a no-change rebuild with Quarto (incremental: nothing executed or rendered).

Each build gets a fresh output folder and warehouse (cold). Needs the Quarto CLI on PATH or QUARTO_PATH.

    python bench/bench_quarto.py [--pref 13 --pref 31 ...] [--jobs N] [--skip-naive] [--keep DIR]

Without --pref: national and all 47 prefectures (the naive loop then takes a long time).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    """Wall seconds. A build that stops (exit 1, e.g. a disclosure finding in the data) still ran
    every stage it times, so its time is printed with the reason; anything else ends the bench."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t
    if proc.returncode == 1 and "NOT published" in proc.stdout + proc.stderr:
        failed = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip().startswith("- ")]
        print(f"    (build exit 1, not published: {'; '.join(failed)[:300]})")
    elif proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-3000:]}")
    return secs


def quarto_seconds(site: Path) -> str:
    """The Quarto project render's share of a build, from the log (the span of its log lines)."""
    from datetime import datetime

    candidates = [site.parent / f".{site.name}.tsunagari-work" / "build.log",   # the build's working folder
                  site / "build.log"]                                          # (a site of an earlier version)
    log_file = next((p for p in candidates if p.is_file()), None)
    if log_file is None:
        return "?"
    text = log_file.read_text(encoding="utf-8")
    text = text[text.rfind("build config:"):]
    start = re.findall(r"^(\d\d:\d\d:\d\d) INFO tsunagari\.render\.quarto: running ", text, re.M)
    end = re.search(r"^(\d\d:\d\d:\d\d) INFO tsunagari\.render\.quarto: quarto: rendered (\d+) areas .* in (\d+) project",
                    text, re.M)
    if not start or not end:
        return "?"
    secs = (datetime.strptime(end.group(1), "%H:%M:%S") - datetime.strptime(start[0], "%H:%M:%S")).seconds
    return f"{secs} s for {end.group(2)} areas in {end.group(3)} Quarto project render(s) at once"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pref", action="append", type=int, default=[], help="area code (0 = national); repeat")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-naive", action="store_true", help="do not time the naive per-area loop")
    ap.add_argument("--keep", type=Path, help="keep the sites and the work folder here")
    ap.add_argument("--naive-only", action="store_true",
                    help="time only the naive loop, on the warehouse of an earlier run kept with --keep")
    args = ap.parse_args()

    from pipelines.reference import prefectures
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
        site, wh = work / f"site-{name}", work / f"wh-{name}.duckdb"
        for p in (site, wh):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        cmd = [exe, "build", "--renderer", renderer, "--out", str(site), "--warehouse", str(wh),
               "--jobs", str(args.jobs), "--quiet", *pref_args]
        return run(cmd, work, env), site

    t_pandoc = t_quarto = None
    if args.naive_only:
        if not (work / "wh-quarto.duckdb").is_file():
            sys.exit(f"--naive-only needs {work / 'wh-quarto.duckdb'} from an earlier run with --keep {work}")
    else:
        t_pandoc, t_quarto = builds(build, work, exe, env, args, pref_args)
    if args.skip_naive:
        print("naive loop not timed (--skip-naive)")
        return
    t_naive = naive_loop(quarto, codes, work, env)
    print(f"naive loop, quarto render --execute per area+format: {t_naive:7.1f} s   ({t_naive / len(codes):.1f} s per area)")
    if t_quarto:
        print(f"Quarto project render build vs naive loop: {t_naive / t_quarto:.1f}x faster; "
              f"vs built-in: {t_quarto / t_pandoc:.1f}x the time")


def builds(build, work: Path, exe: str, env: dict, args, pref_args: list[str]) -> tuple[float, float]:
    t_pandoc, _ = build("pandoc", "pandoc")
    print(f"cold build, built-in renderer (pandoc + typst):      {t_pandoc:7.1f} s")
    t_quarto, site = build("quarto", "quarto")
    print(f"cold build, Quarto renderer (one project render):    {t_quarto:7.1f} s   "
          f"(Quarto render: {quarto_seconds(site)})")
    cmd = [exe, "build", "--renderer", "quarto", "--out", str(site), "--warehouse", str(work / "wh-quarto.duckdb"),
           "--jobs", str(args.jobs), "--quiet", *pref_args]
    print(f"no-change rebuild, Quarto renderer:                   {run(cmd, work, env):7.1f} s")
    return t_pandoc, t_quarto


def naive_loop(quarto: Path, codes: list[int], work: Path, env: dict) -> float:
    """The naive approach: one `quarto render --execute` per area and format, with this Python
    (QUARTO_PYTHON) so that the notebook's imports are there. A failed run ends the bench."""
    from pipelines.reference import pref_slug

    naive = work / "naive"
    shutil.copytree(ROOT / "reports", naive, dirs_exist_ok=True)
    wh = str((work / "wh-quarto.duckdb").resolve())
    run_env = {**env, "PYTHONPATH": str(ROOT), "QUARTO_PYTHON": sys.executable}
    t = time.perf_counter()
    for code in codes:
        for fmt in ("html", "typst"):
            run([str(quarto), "render", "report.ipynb", "--execute", "--to", fmt,
                 "-P", f"pref_code:{code}", "-P", "year:2024", "-P", f"warehouse:{wh}",
                 "--output", f"{pref_slug(code)}.{'html' if fmt == 'html' else 'pdf'}"], naive, run_env)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
