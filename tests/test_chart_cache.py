"""Tests of pipelines/outputs/chart_cache.py: the key of a drawn chart changes with everything that decides
its pixels (data, specification, theme, size, rcParams) and with nothing else (the same chart in
another process, with another string hashing, has the same key); a chart whose mapping reads a
notebook variable is never cached; a cached chart has the bytes of a fresh drawing; a damaged
entry is drawn again; the cache can be turned off; prune keeps the folder under its size."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib as mpl
import pandas as pd
import pytest
from PIL import Image
from plotnine import aes, facet_wrap, geom_point, ggplot, labs, theme

from pipelines.outputs import chart_cache, charts
from pipelines.outputs.report_data import load_report_data
from tests.fixtures_reports import build_fixture_warehouse

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TSUNAGARI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TSUNAGARI_CHART_CACHE", raising=False)
    return tmp_path / "cache" / "charts"


@pytest.fixture(scope="module")
def tokyo(tmp_path_factory):
    return load_report_data(build_fixture_warehouse(tmp_path_factory.mktemp("cache") / "wh.duckdb"), 2024, 13)


def frame(**changes) -> pd.DataFrame:
    f = pd.DataFrame(
        {
            "group": pd.Categorical(["男性", "女性"], categories=["男性", "女性"]),
            "place": pd.Categorical(["東京都", "全国"], categories=["東京都", "全国"]),
            "value": [12.5, 10.0],
            "lower_ci95": [10.0, 9.5],
            "upper_ci95": [15.0, 10.5],
        }
    )
    for k, v in changes.items():
        f[k] = v
    return f


def chart_of(f: pd.DataFrame | None = None):
    return charts.estimate_chart(frame() if f is None else f, "性別")


def key(chart, w=7.2, h=3.6, dpi=120) -> str:
    return chart_cache.key(chart + theme(figure_size=(w, h)), w, h, dpi)


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.png")) if folder.exists() else []


class TestKey:
    def test_same_chart_built_twice_same_key(self):
        assert key(chart_of()) == key(chart_of())

    def test_one_value_changes_the_key(self):
        assert key(chart_of()) != key(chart_of(frame(value=[12.5, 10.1])))

    def test_category_order_changes_the_key(self):
        other = frame(group=pd.Categorical(["男性", "女性"], categories=["女性", "男性"]))
        assert key(chart_of()) != key(chart_of(other))

    def test_extensions_a_fork_makes_change_the_key(self, monkeypatch):
        base = key(chart_of())
        assert key(chart_of() + labs(title="別の題")) != base
        assert key(chart_of() + facet_wrap("place")) != base
        monkeypatch.setattr(charts, "THEME", charts.report_theme(base_size=12))
        assert key(chart_of()) != base

    def test_size_and_dpi_change_the_key(self):
        c = chart_of()
        assert len({key(c), key(c, w=7.0), key(c, h=3.0), key(c, dpi=96)}) == 4

    def test_rcparams_change_the_key(self):
        base = key(chart_of())
        with mpl.rc_context({"lines.antialiased": not mpl.rcParams["lines.antialiased"]}):
            assert key(chart_of()) != base
        assert key(chart_of()) == base

    def test_same_key_in_another_process_with_other_string_hashing(self, tmp_path):
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); from tests.test_chart_cache import chart_of, key; "
            "print(key(chart_of()))"
        )
        keys = set()
        for seed in ("1", "2"):
            env = {**os.environ, "PYTHONHASHSEED": seed, "MPLBACKEND": "Agg"}
            out = subprocess.run(
                [sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, env=env, cwd=ROOT, check=True
            )
            keys.add(out.stdout.strip().splitlines()[-1])
        assert keys == {key(chart_of())}

    def test_report_charts_have_keys_and_differ(self, tokyo):
        ids = tokyo.ids("survey")
        a = charts.estimate_chart(tokyo.estimates(ids[:2]).assign(group=lambda f: f.indicator), "割合", flip=True)
        b = charts.estimate_chart(tokyo.estimates(ids[1:3]).assign(group=lambda f: f.indicator), "割合", flip=True)
        assert key(a) != key(b)


class TestMappingsClosed:
    def test_expression_of_data_columns_is_cached(self):
        c = ggplot(frame(), aes(x="group", y="value + 0.8")) + geom_point()
        assert len(key(c)) == 64

    def test_expression_reading_a_notebook_variable_is_not_cached(self):
        scale = 2.0  # noqa: F841 - read by the mapping below through the plot's environment
        c = ggplot(frame(), aes(x="group", y="value * scale")) + geom_point()
        with pytest.raises(chart_cache.Uncacheable, match="outside the data"):
            key(c)

    def test_layer_data_columns_count_for_its_own_mapping(self):
        layer_data = pd.DataFrame({"u": [1.0], "w": [2.0]})
        c = ggplot(frame(), aes(x="group", y="value")) + geom_point(layer_data, aes(x="u", y="w"), inherit_aes=False)
        assert len(key(c)) == 64
        bad = ggplot(frame(), aes(x="group", y="value")) + geom_point(
            layer_data, aes(x="u", y="value"), inherit_aes=False
        )
        with pytest.raises(chart_cache.Uncacheable):
            key(bad)

    def test_an_object_the_walk_does_not_know_is_not_cached(self):
        c = chart_of()
        c.layers[0].geom.params["pattern"] = re.compile("x")  # no attributes to walk
        with pytest.raises(chart_cache.Uncacheable, match="cannot describe"):
            key(c)


class TestPngBytesWithTheCache:
    def test_second_drawing_comes_from_the_cache_with_the_same_bytes(self, own_cache, monkeypatch):
        c = chart_of()
        fresh = charts.png_bytes(c, 7.2, 3.6, cache=False)
        assert entries(own_cache) == []
        first = charts.png_bytes(c, 7.2, 3.6)
        (entry,) = entries(own_cache)
        assert first == fresh == entry.read_bytes()

        def no_drawing(self, *a, **k):
            raise AssertionError("drawn although cached")

        monkeypatch.setattr(ggplot, "draw", no_drawing)
        assert charts.png_bytes(chart_of(), 7.2, 3.6) == fresh

    def test_a_damaged_entry_is_drawn_again_and_replaced(self, own_cache):
        good = charts.png_bytes(chart_of(), 7.2, 3.6)
        (entry,) = entries(own_cache)
        for damaged in (good[: len(good) // 2], good[:-40] + bytes(28) + good[-12:], b"not a png"):
            entry.write_bytes(damaged)
            assert charts.png_bytes(chart_of(), 7.2, 3.6) == good
            assert entry.read_bytes() == good

    def test_turned_off(self, own_cache, monkeypatch):
        monkeypatch.setenv("TSUNAGARI_CHART_CACHE", "0")
        charts.png_bytes(chart_of(), 7.2, 3.6)
        assert entries(own_cache) == []

    def test_unwritable_cache_folder_still_draws(self, tmp_path, monkeypatch):
        blocker = tmp_path / "file"
        blocker.write_text("x")
        monkeypatch.setenv("TSUNAGARI_CACHE_DIR", str(blocker / "cache"))  # under a file
        img = Image.open(io.BytesIO(charts.png_bytes(chart_of(), 7.2, 3.6)))
        assert img.size == (864, 432)

    def test_show_walks_the_chart_once_and_a_cached_phone_rendition_needs_no_phone_layout(self, own_cache, monkeypatch):
        import IPython.display

        shown = []
        monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
        walks = []
        digest = chart_cache.digest
        monkeypatch.setattr(chart_cache, "digest", lambda *a: walks.append(a) or digest(*a))
        charts.show(chart_of(), "図", height=3.6)
        assert len(walks) == 1  # one walk for the wide PNG, the SVG and the phone PNG
        assert len(entries(own_cache)) == 2 and len(list(own_cache.glob("*/*.svg"))) == 1
        first = shown[-1][1]["metadata"]["image/png"]["data-phone"]

        def no_drawing(self, *a, **k):
            raise AssertionError("drawn although cached")

        monkeypatch.setattr(ggplot, "draw", no_drawing)
        monkeypatch.setattr(charts, "phone_layout", lambda *a: pytest.fail("phone layout although cached"))
        charts.show(chart_of(), "図", height=3.6)
        assert shown[-1][1]["metadata"]["image/png"]["data-phone"] == first
        # another height is another phone layout: not the cached one
        with pytest.raises(AssertionError, match="drawn although cached"):
            charts.show(chart_of(), "図", height=3.0)

    def test_rendition_keys_differ_by_format_and_by_phone_layout(self):
        base = chart_cache.digest(chart_of() + theme(figure_size=(7.2, 3.6)), 7.2, 3.6, 120)
        keys = {chart_cache.derive(base, f) for f in chart_cache.FORMATS}
        keys.add(chart_cache.derive(base, "phone_layout", charts.PHONE_WIDTH, charts.PHONE_DPI, "png8"))
        assert len(keys) == 4 and all(re.fullmatch("[0-9a-f]{64}", k) for k in keys)

    def test_uncacheable_chart_is_drawn(self, own_cache):
        scale = 2.0  # noqa: F841
        c = ggplot(frame(), aes(x="group", y="value * scale")) + geom_point()
        assert charts.png_bytes(c, 2.0, 1.0).startswith(chart_cache.PNG_SIGNATURE)
        assert entries(own_cache) == []


class TestPrune:
    def test_least_recently_used_go_first(self, own_cache):
        sizes = {}
        for i in range(4):
            p = own_cache / "00" / f"{i:064d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x" * 1000)
            os.utime(p, (1_000_000 + i, 1_000_000 + i))
            sizes[p.name] = 1000
        left = own_cache / "00" / f"{9:064d}.png.123.tmp"  # left by a build killed while writing
        left.write_bytes(b"x")
        os.utime(left, (1_000_000, 1_000_000))
        (own_cache / "00" / f"{8:064d}.png.124.tmp").write_bytes(b"x")  # being written now: kept
        assert chart_cache.prune(max_bytes=2500) == 3
        assert [p.name for p in entries(own_cache)] == [f"{2:064d}.png", f"{3:064d}.png"]

    def test_files_it_did_not_write_are_left_alone(self, own_cache, tmp_path):
        # e.g. TSUNAGARI_CACHE_DIR=$HOME, and the user's own ~/charts folder
        mine = [
            own_cache / "ab" / "holiday.png",
            own_cache / "ab" / "notes.tmp",
            own_cache / "cd" / f"{1:064d}.png",
            own_cache / "old" / "x.png",
        ]
        for p in mine:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x" * 5000)
        outside = tmp_path / "elsewhere.png"
        outside.write_bytes(b"x" * 5000)
        (own_cache / "ab" / f"{7:064d}.png").symlink_to(outside)  # a link is not ours either
        assert chart_cache.prune(max_bytes=0) == 0
        assert all(p.exists() for p in mine) and outside.exists()

    def test_no_folder(self, own_cache):
        assert chart_cache.prune() == 0
