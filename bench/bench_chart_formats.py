"""Time one report's charts drawn to PNG at several dpi, and to SVG, and with text hinting off.

    python bench/bench_chart_formats.py [--warehouse PATH]

Each variant draws the same ggplots (Tokyo's estimate chart by sex/age and trend chart, from the
test fixture warehouse unless given) 5 times, interleaved, and prints the median ms and output size.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

from pipelines.domain import schema  # noqa: E402
from pipelines.outputs import charts  # noqa: E402
from pipelines.outputs.report_data import load_report_data  # noqa: E402


def svg_bytes(chart, width, height) -> bytes:
    from plotnine import theme

    fig = (chart + theme(figure_size=(width, height))).draw()
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "tsunagari"}):
        fig.savefig(buf, format="svg", bbox_inches=None, metadata={"Date": None})
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warehouse", type=Path)
    args = ap.parse_args()
    wh = args.warehouse
    if wh is None:
        from tests.fixtures_reports import build_fixture_warehouse

        wh = build_fixture_warehouse(Path(tempfile.mkdtemp()) / "fixture.duckdb")
    data = load_report_data(wh, 2024, 13)
    groups = {f"sex={k}": v for k, v in schema.SEX.items() if k in (1, 2)}
    groups.update({f"age={b}": schema.AGE_BAND_LABELS[b] for b in schema.AGE_BANDS})
    made = {
        "estimate": (charts.estimate_chart(data.estimates(["lonely_often_always"], groups), "性別・年齢別"), 3.6),
        "trend": (charts.trend_chart(data.trends(data.headline_ids()), "推移"), 6.0),
    }
    variants = {
        "png 120 dpi": lambda c, h: charts.png_bytes(c, charts.WIDTH, h, dpi=120),
        "png 96 dpi": lambda c, h: charts.png_bytes(c, charts.WIDTH, h, dpi=96),
        "png 120 dpi, no hinting": None,
        "svg (glyphs as paths)": lambda c, h: svg_bytes(c, charts.WIDTH, h),
    }
    times = {(v, k): [] for v in variants for k in made}
    sizes = {}
    for _ in range(6):
        for v, fn in variants.items():
            for k, (c, h) in made.items():
                t = time.perf_counter()
                if fn is None:
                    with matplotlib.rc_context({"text.hinting": "none", "text.hinting_factor": 1}):
                        out = charts.png_bytes(c, charts.WIDTH, h)
                else:
                    out = fn(c, h)
                times[(v, k)].append(time.perf_counter() - t)
                sizes[(v, k)] = len(out)
    print(f"{'variant':<28}{'chart':<10}{'median ms':>10}{'bytes':>10}")
    for (v, k), ts in times.items():
        print(f"{v:<28}{k:<10}{statistics.median(ts[1:]) * 1000:>10.0f}{sizes[(v, k)]:>10,}")


if __name__ == "__main__":
    main()
