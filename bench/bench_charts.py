"""Time the report charts: per chart type and per area (every chart of one report).

    python bench/bench_charts.py [--warehouse PATH] [--year 2024] [--areas 0 13 31 ...] [--keep DIR]

Runs the code cells of reports/report.ipynb in this process (no kernel, no rendering), area after
area, with the chart functions of pipelines.outputs.charts wrapped by timers, so the charts get exactly the
data frames the report gives them. A chart's time is its chart function (building the ggplot) plus
`charts.show` (its three renditions: the wide PNG, the SVG for the PDF and the phone layout's PNG of
256 colours, and the chart cache's key); a cell that extends the chart with `+` is timed under the
chart function called last. The renditions are also timed apart (CPU ms per chart): "wide draw"
(plotnine's figure), "png" and "svg" (each encoding, matplotlib's drawing included), "phone" (the
phone layout, its figure and PNG). The chart cache is a new empty folder (a cold build: every chart
drawn, every key computed); --no-cache turns it off. The first area is a warm-up (imports, font loading) and is reported
separately; the rest give the median per chart type and the mean per area, and the resident memory
along the way (it must not keep growing: figures are collected, nothing is kept per chart).

Without --warehouse, the sample data are ingested into a fresh warehouse and the indicators computed
(~15 s; the bundled sample has one round, so there is no trend chart). The trend chart is then also
timed on the test fixture warehouse (three rounds) with --trend.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.domain.reference import prefectures  # noqa: E402
from pipelines.outputs import charts  # noqa: E402

CHART_FUNCTIONS = ["spine_chart", "distribution_chart", "estimate_chart", "trend_chart", "strip_chart"]


def sample_warehouse(folder: Path) -> Path:
    """Ingest data/sample and compute the indicators of its latest round into folder/wh.duckdb."""
    wh = folder / "wh.duckdb"
    wh.unlink(missing_ok=True)
    for cmd in (
        ["ingest", str(ROOT / "data" / "sample")],
        ["indicators", "--year", "2024", "--out", str(folder / "out")],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *cmd, "--warehouse", str(wh), "--quiet"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wh


class Timer:
    """Wraps the chart functions and `show`; records seconds per chart (build + PNG)."""

    def __init__(self) -> None:
        self.pending: tuple[str, float] = ("?", 0.0)
        self.records: list[tuple[str, float]] = []
        self.originals = {name: getattr(charts, name) for name in CHART_FUNCTIONS + ["show"]}

    def install(self) -> None:
        for name in CHART_FUNCTIONS:
            setattr(charts, name, self._wrap(name, self.originals[name]))
        charts.show = self._show

    def uninstall(self) -> None:
        for name, fn in self.originals.items():
            setattr(charts, name, fn)

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            chart = fn(*args, **kwargs)
            secs = time.perf_counter() - t
            label = name + ("(flip)" if kwargs.get("flip") else "")
            self.pending = (label, secs)
            return chart

        return timed

    def _show(self, chart, alt, width=charts.WIDTH, height=3.6, **kwargs):
        import IPython.display

        label, secs = self.pending
        self.pending = ("?", 0.0)
        shown = []
        display, IPython.display.display = IPython.display.display, lambda *a, **k: shown.append(a)
        self.parts = defaultdict(float)
        t = time.perf_counter()
        try:
            self.originals["show"](chart, alt, width, height, **kwargs)
        finally:
            IPython.display.display = display
        secs += time.perf_counter() - t
        assert any("image/png" in a[0] for a in shown if a and isinstance(a[0], dict)) or not charts.has_data(chart)
        self.records.append((label, secs))
        self.rendition_parts.append(dict(self.parts))

    def _timed_part(self, fn, part):
        def timed(*args, **kwargs):
            nested = self.in_part
            self.in_part = True
            t = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.in_part = nested
                if not nested:
                    self.parts[part(args, kwargs)] += time.process_time() - t

        return timed

    def install_parts(self) -> None:
        """Time the renditions apart (CPU): wide draw, png, svg, phone (layout, draw and png8)."""
        self.in_part = False
        self.rendition_parts = []
        self.parts = defaultdict(float)
        self.part_originals = {
            n: getattr(charts, n) for n in ("_draw", "_png_encode", "_svg_encode", "phone_layout") if hasattr(charts, n)
        }
        phone = lambda a, k: "phone"  # noqa: E731
        wide_or_phone = lambda a, k: "phone" if a[0].theme.getp("figure_size")[0] == charts.PHONE_WIDTH else "wide draw"  # noqa: E731
        if "_draw" in self.part_originals:  # (older code drew inside charts.renditions)
            charts._draw = self._timed_part(self.part_originals["_draw"], wide_or_phone)
        charts._png_encode = self._timed_part(
            self.part_originals["_png_encode"], lambda a, k: "phone" if k.get("palette") else "png"
        )
        charts._svg_encode = self._timed_part(self.part_originals["_svg_encode"], lambda a, k: "svg")
        charts.phone_layout = self._timed_part(self.part_originals["phone_layout"], phone)

    def uninstall_parts(self) -> None:
        for name, fn in self.part_originals.items():
            setattr(charts, name, fn)


def rss_mb() -> float:
    """Resident set size of this process now (Linux), or the peak elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def code_cells() -> list[str]:
    nb = nbformat.read(ROOT / "reports" / "report.ipynb", as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]


def run_area(cells: list[str], warehouse: Path, year: int, pref_code: int, timer: Timer) -> list[tuple[str, float]]:
    timer.records = []
    ns: dict = {"year": year, "pref_code": pref_code, "warehouse": str(warehouse)}
    for i, src in enumerate(cells):
        exec(compile(src, f"<report cell {i}>", "exec"), ns)
        if "md" in ns:
            ns["md"] = lambda text: None  # Markdown output is not what is timed
    return timer.records


def bench(warehouse: Path, year: int, areas: list[int]) -> None:
    cells = code_cells()
    timer = Timer()
    timer.install()
    timer.install_parts()
    try:
        per_type: dict[str, list[float]] = defaultdict(list)
        per_area: list[tuple[int, int, float]] = []
        checkpoints = {1, len(areas) // 4, len(areas) // 2, 3 * len(areas) // 4, len(areas) - 1}
        rss: list[tuple[int, float]] = []
        parts: dict[str, list[float]] = defaultdict(list)
        for k, code in enumerate(areas):
            timer.rendition_parts = []
            recs = run_area(cells, warehouse, year, code, timer)
            total = sum(s for _, s in recs)
            if k == 0:
                print(
                    f"warm-up area {code:02d}: {len(recs)} charts, {total * 1000:.0f} ms "
                    + " ".join(f"{n}={s * 1000:.0f}" for n, s in recs)
                )
                continue
            per_area.append((code, len(recs), total))
            if k in checkpoints:
                gc.collect()
                rss.append((k, rss_mb()))
            for name, secs in recs:
                per_type[name].append(secs)
            for p in timer.rendition_parts:
                for part in ("wide draw", "png", "svg", "phone"):
                    parts[part].append(p.get(part, 0.0))
    finally:
        timer.uninstall()
        timer.uninstall_parts()
    if not per_area:
        return
    print(f"\nwarehouse {warehouse}, year {year}, {len(per_area)} areas after the warm-up")
    print(f"{'chart':<22}{'count':>7}{'median ms':>11}{'max ms':>9}")
    for name in sorted(per_type):
        v = per_type[name]
        print(f"{name:<22}{len(v):>7}{statistics.median(v) * 1000:>11.1f}{max(v) * 1000:>9.1f}")
    allc = [s for v in per_type.values() for s in v]
    print(f"{'every chart':<22}{len(allc):>7}{statistics.median(allc) * 1000:>11.1f}{max(allc) * 1000:>9.1f}")
    print(
        "renditions, CPU ms per chart (median / mean): "
        + "; ".join(
            f"{part} {statistics.median(v) * 1000:.0f} / {statistics.mean(v) * 1000:.0f}" for part, v in parts.items()
        )
    )
    tot = [t for _, _, t in per_area]
    n = statistics.median([c for _, c, _ in per_area])
    print(
        f"per area ({n:.0f} charts): mean {statistics.mean(tot) * 1000:.0f} ms, max {max(tot) * 1000:.0f} ms, "
        f"all areas {sum(tot):.2f} s"
    )
    print(
        "resident memory after area "
        + ", ".join(f"{k}: {mb:.0f} MB" for k, mb in rss)
        + " (caches fill during the first areas, then it stays flat)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, help="an existing warehouse (default: built from data/sample)")
    ap.add_argument("--year", type=int, default=2024)
    ap.add_argument("--areas", type=int, nargs="*", help="prefecture codes, 0 = national (default: all 48)")
    ap.add_argument("--keep", type=Path, help="folder for the sample warehouse (default: a temp folder)")
    ap.add_argument(
        "--trend",
        action="store_true",
        help="also time the 8 charts (with the trend chart) on the test fixture warehouse (3 rounds)",
    )
    ap.add_argument("--no-cache", action="store_true", help="no chart cache (default: a new empty cache folder)")
    args = ap.parse_args()
    if args.no_cache:
        os.environ["TSUNAGARI_CHART_CACHE"] = "0"
    else:
        os.environ["TSUNAGARI_CACHE_DIR"] = tempfile.mkdtemp(prefix="tsunagari-bench-charts-cache-")
    areas = args.areas or [0] + sorted(int(c) for c in prefectures()["pref_code"])
    if len(areas) == 1:
        areas = areas * 2  # one warm-up run, one timed run
    folder = args.keep or Path(tempfile.mkdtemp(prefix="tsunagari-bench-charts-"))
    folder.mkdir(parents=True, exist_ok=True)
    warehouse = args.warehouse
    if warehouse is None:
        t = time.perf_counter()
        warehouse = sample_warehouse(folder)
        print(f"sample warehouse built in {time.perf_counter() - t:.1f} s: {warehouse}")
    bench(warehouse.resolve(), args.year, areas)
    if args.trend:
        from tests.fixtures_reports import build_fixture_warehouse

        (folder / "fixture.duckdb").unlink(missing_ok=True)
        fixture = build_fixture_warehouse(folder / "fixture.duckdb")
        print("\n-- test fixture warehouse (three rounds: trend chart included)")
        bench(fixture, args.year, areas)


if __name__ == "__main__":
    main()
