"""A cache of drawn report charts, keyed by everything that decides their pixels.

Drawing its plotnine charts is most of a report's time (bench/bench_charts.py). A chart whose
data, specification and environment are unchanged gives the same PNG and SVG bytes
(``charts.renditions`` writes no time or software chunk), so a rebuild after a code change (every report is executed
again) or after one prefecture's correction (the national report again, most of its charts
unchanged) need not draw it again.

The key is a SHA-256 over a canonical walk of the whole ``ggplot`` object as ``charts.png_bytes``
draws it: its data frames (every value, dtype, category and index), aesthetic mappings, layers with
their parameters, scales (the values of a manual palette live in a closure: closures are walked),
coordinates, facets, labels, guides and the complete theme; plus the figure size and dpi, the
drawing code (the source of ``pipelines/outputs/charts.py`` and of this module), the library versions,
plotnine's global options, matplotlib's rcParams and the installed fonts. Nothing reaches the key
through ``repr`` of an arbitrary object (which may hold a memory address); an object the walk does
not know raises ``Uncacheable`` and the chart is simply drawn. The walk (``digest``) is made once
per chart shown; each rendition's key is derived from it (``derive``: the format, and for the phone
layout, which charts.py makes from the chart and its height, that function's name and size).

One input is not walked: the plot's evaluation environment (the notebook's variables). A mapping
such as ``aes(y="value * scale")`` with ``scale`` a notebook variable would then hit a stale entry,
so a chart is cached only when every name in every mapping expression is a column of the data it
is evaluated on (``aes(y="value + 0.8")`` is cached; ``aes(y="value * scale")`` is always drawn).

Files live in ``config.cache_dir()/charts`` (``TSUNAGARI_CACHE_DIR``; deleting it is always
safe), written under a temporary name and renamed; a file that is not a complete PNG is ignored
and replaced. ``TSUNAGARI_CHART_CACHE=0`` turns the cache off. ``prune()`` keeps the folder under
``MAX_BYTES`` by removing the entries used least recently (the build calls it at the end).
"""

from __future__ import annotations

import ast
import hashlib
import io
import logging
import os
import re
import struct
import time
import types
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.domain import config
from pipelines.engine import keys

log = logging.getLogger("tsunagari.charts")

MAX_BYTES = 512 * 1024 * 1024
FORMAT = "tsunagari-chart-cache 1"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class Uncacheable(Exception):
    """The chart holds something the key cannot describe; it is drawn, not cached."""


def enabled() -> bool:
    """The setting run.chart_cache (``TSUNAGARI_CHART_CACHE=0`` turns the cache off)."""
    from pipelines.domain.config import settings

    return settings().chart_cache


def folder() -> Path:
    return config.cache_dir() / "charts"


# ---------------------------------------------------------------------------------------------
# The key
# ---------------------------------------------------------------------------------------------

# environment: the ggplot's evaluation environment (see the module docstring); _build_objs: what a
# drawing built (shared by copies), not an input
_SKIP = {"environment", "_build_objs"}
# rcParams of the interactive backends and key bindings: they do not change a PNG drawn with Agg
# (and "backend" may be an unresolved sentinel object)
_GUI_PARAMS = ("backend", "interactive", "keymap.", "toolbar", "webagg.", "tk.", "macosx.")
_MAX_NODES = 200_000


class _Walker:
    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.seen: dict[int, int] = {}
        self.keep: list = []  # objects stay alive while walked, so no id is reused meanwhile
        self.nodes = 0

    def tag(self, text: str) -> None:
        data = text.encode("utf-8", "surrogatepass")
        self.h.update(struct.pack("<I", len(data)))
        self.h.update(data)

    def raw(self, data: bytes) -> None:
        self.h.update(struct.pack("<Q", len(data)))
        self.h.update(data)

    def walk(self, obj) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise Uncacheable("object graph too large")
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
            self.tag(f"{type(obj).__name__}:{obj!r}")
            return
        if isinstance(obj, np.generic):
            self.tag(f"np:{obj.dtype.str}")
            self.raw(obj.tobytes() if obj.dtype.kind != "O" else repr(obj).encode())
            return
        ref = self.seen.get(id(obj))
        if ref is not None:
            self.tag(f"ref:{ref}")
            return
        self.seen[id(obj)] = len(self.seen)
        self.keep.append(obj)
        if isinstance(obj, pd.DataFrame):
            self.frame(obj)
        elif isinstance(obj, pd.Series):
            self.tag("series")
            self.walk(obj.name)
            self.column(obj)
            self.index(obj.index)
        elif isinstance(obj, pd.Index):
            self.index(obj)
        elif isinstance(obj, np.ndarray):
            self.array(obj)
        elif isinstance(obj, (list, tuple)):
            self.tag(f"{type(obj).__module__}.{type(obj).__qualname__}[{len(obj)}]")
            for x in obj:
                self.walk(x)
            if hasattr(obj, "__dict__") and vars(obj):  # a list subclass with attributes (Layers)
                self.attributes(obj)
        elif isinstance(obj, dict):
            self.tag(f"{type(obj).__module__}.{type(obj).__qualname__}{{{len(obj)}}}")
            items = list(obj.items())
            if all(type(k) is str for k, _ in items):
                # plotnine fills some dicts (e.g. a geom's aes_params) from a set, whose order
                # changes with the process's string hashing: str keys are taken sorted
                items.sort(key=lambda kv: kv[0])
            for k, v in items:
                self.walk(k)
                self.walk(v)
            if hasattr(obj, "__dict__") and vars(obj):
                self.attributes(obj)
        elif isinstance(obj, (set, frozenset)):
            parts = []
            for x in obj:
                sub = _Walker()
                sub.walk(x)
                parts.append(sub.h.hexdigest())
            self.tag(f"set:{','.join(sorted(parts))}")
        elif isinstance(obj, types.FunctionType):  # lambdas too
            self.function(obj)
        elif isinstance(obj, types.MethodType):
            self.tag("method")
            self.function(obj.__func__)
            self.walk(obj.__self__)
        elif isinstance(obj, (types.BuiltinFunctionType, type, types.ModuleType)):
            self.tag(f"named:{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj.__name__)}")
        elif isinstance(obj, types.CodeType):
            self.code(obj)
        elif isinstance(obj, (pd.api.extensions.ExtensionDtype, np.dtype)):
            self.tag(f"dtype:{obj}")
        elif hasattr(obj, "__dict__") or hasattr(type(obj), "__slots__"):
            self.attributes(obj)
        else:
            raise Uncacheable(f"cannot describe a {type(obj).__module__}.{type(obj).__qualname__}")

    def attributes(self, obj) -> None:
        cls = type(obj)
        self.tag(f"obj:{cls.__module__}.{cls.__qualname__}")
        items = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                    items.setdefault(name, getattr(obj, name))
        for name in sorted(items):
            if name in _SKIP:
                continue
            self.tag(name)
            self.walk(items[name])

    def function(self, fn) -> None:
        self.tag(f"fn:{fn.__module__}.{fn.__qualname__}")
        self.code(fn.__code__)
        self.walk(fn.__defaults__)
        self.walk(fn.__kwdefaults__)
        for cell in fn.__closure__ or ():
            try:
                self.walk(cell.cell_contents)
            except ValueError:  # an empty cell
                self.tag("empty-cell")

    def code(self, co: types.CodeType) -> None:
        self.tag(f"code:{co.co_name}")
        self.raw(co.co_code)
        self.tag(repr(co.co_names))
        for c in co.co_consts:
            if isinstance(c, types.CodeType):
                self.code(c)
            else:
                self.walk(c)

    def array(self, a: np.ndarray) -> None:
        self.tag(f"nd:{a.dtype.str}:{a.shape}")
        if a.dtype.kind == "O":
            for x in a.ravel().tolist():
                self.walk(x)
        else:
            self.raw(np.ascontiguousarray(a).tobytes())

    def column(self, s: pd.Series) -> None:
        self.tag(f"col:{s.dtype}")
        if isinstance(s.dtype, pd.CategoricalDtype):
            self.tag(f"ordered:{s.cat.ordered}")
            self.index(s.cat.categories)
            self.raw(np.asarray(s.cat.codes).tobytes())
            return
        values = s.to_numpy()
        if values.dtype.kind in "biufcmM":
            self.raw(np.ascontiguousarray(values).tobytes())
        else:  # strings, objects, nullable: their hash, plus where the missing values are
            self.raw(pd.util.hash_pandas_object(s, index=False, categorize=False).to_numpy().tobytes())
            self.raw(np.asarray(s.isna()).tobytes())
            kinds = {type(x).__name__ for x in values.tolist()}
            self.tag(f"kinds:{sorted(kinds)}")

    def index(self, idx: pd.Index) -> None:
        self.tag(f"index:{type(idx).__name__}:{idx.dtype}:{len(idx)}")
        if isinstance(idx, pd.RangeIndex):
            self.tag(f"range:{idx.start}:{idx.stop}:{idx.step}")
        else:
            self.column(pd.Series(idx))
        self.walk(list(idx.names))

    def frame(self, df: pd.DataFrame) -> None:
        self.tag(f"frame:{df.shape}")
        self.index(df.columns)
        self.index(df.index)
        for i in range(df.shape[1]):
            self.column(df.iloc[:, i])
        self.walk(dict(df.attrs))


def _names(expr: str) -> set[str] | None:
    """The variable names in a mapping expression; None when it is not a Python expression."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _mappings_closed(chart) -> bool:
    """Whether every mapping of the chart reads only columns of the data it is evaluated on (so the
    notebook's variables cannot change what is drawn behind the key's back)."""
    plot_cols = set(map(str, chart.data.columns)) if isinstance(chart.data, pd.DataFrame) else set()

    def closed(mapping, cols: set[str]) -> bool:
        for value in (mapping or {}).values():
            if isinstance(value, str):
                names = _names(value)
                if names is None or not names <= cols:
                    return False
            elif not isinstance(value, (int, float, bool, np.ndarray, pd.Series, list, tuple)):
                return False  # stage objects (after_stat, after_scale) and the like: not cached
        return True

    if not closed(chart.mapping, plot_cols):
        return False
    for layer in chart.layers:
        data = getattr(layer, "_data", None)
        cols = set(map(str, data.columns)) if isinstance(data, pd.DataFrame) else plot_cols
        if callable(data):
            return False
        mapping = dict(layer.mapping or {})
        if getattr(layer, "inherit_aes", True):
            mapping = {**dict(chart.mapping or {}), **mapping}
        if not closed(mapping, cols):
            return False
    return True


@lru_cache(maxsize=1)
def _environment_digest() -> str:
    """Libraries, drawing code and installed fonts: fixed for the life of the process."""
    import importlib.metadata as md

    from matplotlib import font_manager

    h = hashlib.sha256(FORMAT.encode())
    for dist in ("plotnine", "matplotlib", "mizani", "numpy", "pandas", "pillow", "matplotlib-fontja"):
        try:
            h.update(f"{dist} {md.version(dist)}\n".encode())
        except md.PackageNotFoundError:
            h.update(f"{dist} -\n".encode())
    here = Path(__file__).resolve().parent
    for src in (here / "charts.py", here / "chart_cache.py", here.parent / "domain" / "conventions.py"):
        h.update(src.read_bytes())
    for f in sorted(font_manager.fontManager.ttflist, key=lambda f: (f.fname, f.name)):
        try:
            st = os.stat(f.fname)
            h.update(f"{f.fname}|{f.name}|{f.style}|{f.weight}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f.fname}|missing\n".encode())
    return h.hexdigest()


def digest(chart, width: float, height: float, dpi: int) -> str:
    """The walk of `chart` drawn at width x height inches and `dpi`, in every format: ``derive``
    gives each rendition's key from it (one walk for the wide PNG, the SVG and the phone layout of
    the same chart). Raises Uncacheable."""
    import matplotlib as mpl
    from plotnine import options

    if not _mappings_closed(chart):
        raise Uncacheable("a mapping reads a variable outside the data")
    w = _Walker()
    w.tag(_environment_digest())
    w.tag(f"size:{float(width)!r}x{float(height)!r}@{int(dpi)}")
    w.walk(
        {
            k: v
            for k, v in sorted(vars(options).items())
            if not k.startswith("_") and not callable(v) and not isinstance(v, types.ModuleType)
        }
    )
    params = sorted((k, repr(v)) for k, v in mpl.rcParams.items() if not k.startswith(_GUI_PARAMS))
    if any(" at 0x" in v for _, v in params):
        raise Uncacheable("an rcParams value has no stable description")
    w.tag(repr(params))
    w.walk(chart)
    return w.h.hexdigest()


# A drawn chart: its walk (``digest``: data, specification, size) is its input; its code is the
# drawing code, libraries and fonts (``_environment_digest``), not the whole package, so that a
# rebuild after an unrelated code change draws nothing again.
CHART = keys.Input("the chart's walk")
CHARTS = keys.Stage("chart", reads=(CHART,), writes=("<cache dir>/charts/{key[:2]}/{key}.png|svg",))


def derive(base: str, *parts) -> str:
    """The key of a rendition of the chart whose ``digest`` is `base`: its format, and for a
    rendition made from the chart by a function of charts.py (the phone layout: its source is in
    the digest) that function's name and arguments."""
    return keys.key(CHARTS, {CHART: base}, _environment_digest(), FORMAT, [repr(p) for p in parts])


def key(chart, width: float, height: float, dpi: int, fmt: str = "png") -> str:
    """The cache key of `chart` drawn at width x height inches and `dpi` as `fmt` (png, png8, svg).
    Raises Uncacheable."""
    return derive(digest(chart, width, height, dpi), fmt)


# ---------------------------------------------------------------------------------------------
# The files
# ---------------------------------------------------------------------------------------------

FORMATS = ("png", "png8", "svg")
SVG_END = b"</svg>\n"


def _path(k: str, fmt: str = "png") -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"chart cache format {fmt!r}")
    return folder() / k[:2] / f"{k}.{'svg' if fmt == 'svg' else 'png'}"


def _complete_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END)


def _complete(data: bytes, fmt: str) -> bool:
    if fmt == "svg":  # written whole by matplotlib: the XML declaration to the closing tag
        return data.startswith(b"<?xml") and data.endswith(SVG_END)
    if not _complete_png(data):
        return False
    try:
        from PIL import Image

        Image.open(io.BytesIO(data)).verify()  # every chunk's CRC
    except Exception:  # noqa: BLE001 - a damaged entry is a miss (it is replaced), never an error
        return False
    return True


def get(k: str, fmt: str = "png") -> bytes | None:
    """The cached chart of key `k` as `fmt`, or None (absent, unreadable or not complete)."""
    path = _path(k, fmt)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not _complete(data, fmt):
        return None
    try:
        os.utime(path)  # recently used: kept by prune()
    except OSError:
        pass  # a read-only cache still serves its entries
    return data


def put(k: str, data: bytes, fmt: str = "png") -> None:
    """Store `data` under `k` (temporary name, then rename); a failure only costs a later draw."""
    path = _path(k, fmt)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        log.debug("chart not cached (%s): %s", path, exc)


_ENTRY = re.compile(r"([0-9a-f]{64})\.(?:png|svg)(\.[0-9]+\.tmp)?")


def prune(max_bytes: int = MAX_BYTES) -> int:
    """Remove the least recently used entries until the folder holds at most `max_bytes`
    (and leftover temporary files). Only files named as ``put`` names them are counted or removed.
    Returns the number of files removed."""
    root = folder()
    if not root.is_dir():
        return 0
    entries = []
    removed = 0
    for p in root.glob("*/*"):
        m = _ENTRY.fullmatch(p.name)
        if m is None or p.parent.name != m.group(1)[:2] or p.is_symlink() or not p.is_file():
            continue  # only what put() writes: a folder named by a user is not emptied
        try:
            st = p.stat()
        except OSError:
            continue
        if m.group(2):
            if time.time() - st.st_mtime < 3600:  # another build may be writing it now
                continue
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
            continue
        entries.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in entries)
    for _, size, p in sorted(entries):
        if total <= max_bytes:
            break
        try:
            p.unlink()
            total -= size
            removed += 1
        except OSError:
            pass
    return removed
