"""What the report's chart renditions cost, and what one layout for every screen would save (issue #23).

    python bench/bench_chart_layouts.py [--warehouse PATH] [--areas 13 31 1 2 3] [--naive-per-area S]

Runs the code cells of reports/report.ipynb in this process (as bench/bench_charts.py does: no kernel,
no rendering, no chart cache) for a few areas after a warm-up one, and prints the CPU seconds per area
of the whole notebook under three ways of showing each chart:

- ``current``: what the reports do today (``charts.show``): the wide layout as PNG (screens wider than
  PHONE_MEDIA) and as SVG (the PDF), and the phone layout as PNG of 256 colours;
- ``one layout, SVG``: the phone layout only, drawn once as SVG (vector: the same file on a phone, a
  desktop and in the PDF);
- ``one layout, PNG + SVG``: the phone layout only, as PNG (screens) and SVG (the PDF).

The alternatives are not what the reports do: they are measured here so that the choice between the
current pictures and a faster build can be made on figures. With --naive-per-area S (the naive
`quarto render --execute` loop's seconds per area from bench/bench_quarto.py, measured the same day),
it also prints the ratio each option could reach, from a simple model of the cold build on this
machine's cores: both the build and the naive loop (which executes the notebook twice per area, once
per format) pay the notebook's CPU; the build adds --render-per-area CPU seconds per area (pandoc,
Typst, the check) and --fixed seconds of stages that are not per area, the naive loop its start-up
per run (S minus twice the current notebook's CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TSUNAGARI_CACHE_DIR", tempfile.mkdtemp(prefix="tsunagari-bench-"))
os.environ["TSUNAGARI_CHART_CACHE"] = "0"  # every chart drawn, as in a cold build

import bench_charts  # noqa: E402
import IPython.display  # noqa: E402

from pipelines.outputs import charts  # noqa: E402

OPTIONS = {"current": None, "one layout, SVG": ("svg",), "one layout, PNG + SVG": ("png", "svg")}


def one_layout(formats: tuple[str, ...], sizes: list[int]):
    """A ``charts.show`` that draws the phone layout only, in `formats`."""

    def show(chart, alt, width=charts.WIDTH, height=3.6, name=None, phone=None):
        if not charts.has_data(chart):
            return
        small, h = phone if phone else charts.phone_layout(chart, height)
        drawn = charts.renditions(small, charts.PHONE_WIDTH, h, charts.PHONE_DPI, formats, cache=False)
        sizes.append(sum(len(v) for v in drawn.values()))

    return show


def measure(name: str, cells: list[str], warehouse: Path, areas: list[int]) -> tuple[float, float]:
    """(CPU seconds per area, KB of chart files per area) of the notebook under option `name`."""
    sizes: list[int] = []
    original = charts.show
    if OPTIONS[name] is not None:
        charts.show = one_layout(OPTIONS[name], sizes)
    else:

        def show(chart, alt, *args, **kwargs):
            shown = []
            display, IPython.display.display = IPython.display.display, lambda *a, **k: shown.append(a)
            try:
                original(chart, alt, *args, **kwargs)
            finally:
                IPython.display.display = display
            for a in shown:
                if a and isinstance(a[0], dict):
                    sizes.append(sum(len(v) for v in a[0].values() if isinstance(v, str)))

        charts.show = show
    timer = bench_charts.Timer()
    try:
        bench_charts.run_area(cells, warehouse, 2024, areas[0], timer)  # warm-up
        sizes.clear()
        cpu = []
        for code in areas[1:]:
            t = time.process_time()
            bench_charts.run_area(cells, warehouse, 2024, code, timer)
            cpu.append(time.process_time() - t)
    finally:
        charts.show = original
    return statistics.mean(cpu), sum(sizes) / 1024 / max(1, len(areas) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, help="an existing warehouse (default: built from data/sample)")
    ap.add_argument("--keep", type=Path, help="folder for the sample warehouse (default: a temp folder)")
    ap.add_argument("--areas", type=int, nargs="*", default=[0, 13, 31, 1, 2, 3], help="the first is a warm-up")
    ap.add_argument("--naive-per-area", type=float, help="the naive Quarto loop's seconds per area (bench_quarto)")
    ap.add_argument("--render-per-area", type=float, default=0.8, help="CPU s per area besides the notebook")
    ap.add_argument("--fixed", type=float, default=42.0, help="CPU s of the build's stages that are not per area")
    ap.add_argument("--area-count", type=int, default=48)
    args = ap.parse_args()
    IPython.display.display = lambda *a, **k: None
    warehouse = args.warehouse or bench_charts.sample_warehouse(args.keep or Path(tempfile.mkdtemp()))
    cells = bench_charts.code_cells()
    cores = os.cpu_count() or 1
    results = {name: measure(name, cells, warehouse, args.areas) for name in OPTIONS}
    current = results["current"][0]
    print(f"report notebook, {len(args.areas) - 1} areas after a warm-up, no chart cache")
    print(f"{'option':<24}{'CPU s/area':>11}{'chart KB/area':>15}")
    for name, (cpu, kb) in results.items():
        print(f"{name:<24}{cpu:>11.2f}{kb:>15.0f}")
    if args.naive_per_area:
        startup = args.naive_per_area - 2 * current
        print(
            f"\nmodel ({cores} cores, {args.area_count} areas): naive loop {args.naive_per_area:.1f} s/area = "
            f"2 runs x ({startup / 2:.1f} s start-up + notebook); build = {args.fixed:.0f} CPU s + "
            f"(notebook + {args.render_per_area:.1f} s) per area, over {cores} cores"
        )
        for name, (cpu, _) in results.items():
            naive = args.area_count * (startup + 2 * cpu)
            build = (args.fixed + args.area_count * (cpu + args.render_per_area)) / cores
            print(f"{name:<24} build ~{build:5.0f} s, naive ~{naive:5.0f} s: {naive / build:4.1f}x")
        need = (
            12 * (args.fixed / cores) + 12 * args.area_count * args.render_per_area / cores - args.area_count * startup
        )
        need /= args.area_count * (2 - 12 / cores)
        print(f"12x needs the notebook at about {need:.2f} CPU s per area (charts included)")


if __name__ == "__main__":
    main()
