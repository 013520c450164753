"""The package's layers (docs/DESIGN.md, "Layers"), read from its folders: a module's layer is its
folder's. No import cycle, even behind function-level imports; no private name imported from
another module; a module imports only from its own layer or a lower one; the stage packages import
each other without a cycle; the longest chain of imports (cli -> ... -> the lowest module) is at
most MAX_DEPTH modules; every module imports on its own in a fresh interpreter; the modules' old
flat names (pipelines.OLD_NAMES) are the same modules."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pipelines"

# The layer of each folder of pipelines/ (a module may import from its own layer or a lower one).
# A new folder must be placed here: a module in an unknown folder fails the test.
FOLDER_LAYERS: dict[str, int] = {
    "domain": 0,  # facts, settings and pure computation: no file written, no warehouse opened
    "io": 1,  # the warehouse, staging tables, YAML, logs, XLSX and CSV files
    "engine": 2,  # kernels, notebook runs, interrupts, fingerprint and cache keys, publishing
    "ingest": 3,
    "validate": 3,
    "indicators": 3,
    "outputs": 3,
    "disclosure": 3,
    "render": 3,  # stages
}
TOP_LAYERS = {"pipelines": 0, "pipelines.build": 4, "pipelines.cli": 5}  # the package, the graph, the CLI
STAGES = {folder for folder, layer in FOLDER_LAYERS.items() if layer == 3}
MAX_DEPTH = 7


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def layer_of(module: str) -> int | None:
    if module in TOP_LAYERS:
        return TOP_LAYERS[module]
    parts = module.split(".")
    return FOLDER_LAYERS.get(parts[1]) if len(parts) > 2 or (len(parts) == 2 and parts[1] in FOLDER_LAYERS) else None


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pipelines":
                    found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "pipelines":
                continue
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{mod}.{n}" in MODULES]  # `from pipelines.domain import config`
            found += [(f"{mod}.{s}", [], node.lineno) for s in subs]
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                found.append((mod, rest, node.lineno))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
EDGES = {m: {t for t, _, _ in GRAPH[m] if t in MODULES and t != m} for m in MODULES}


@lru_cache(maxsize=None)
def longest_chain(module: str) -> tuple[str, ...]:
    chains = [longest_chain(t) for t in EDGES[module]]
    return (module,) + max(chains, key=len, default=())


class TestLayers:
    def test_every_module_has_a_layer(self):
        missing = sorted(m for m in MODULES if layer_of(m) is None)
        assert not missing, (
            f"place these modules' folders in FOLDER_LAYERS (tests/test_layers.py, docs/DESIGN.md): {missing}"
        )

    def test_no_import_cycles(self):
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()
        cycles = []

        def strong(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in EDGES[v]:
                if w not in index:
                    strong(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))

        for m in MODULES:
            if m not in index:
                strong(m)
        assert cycles == []

    def test_no_private_name_imported_across_modules(self):
        bad = [
            f"{m} line {line}: {name} from {t}"
            for m in MODULES
            for t, names, line in GRAPH[m]
            for name in names
            if name.startswith("_") and t != m
        ]
        assert bad == []

    def test_imports_only_from_own_or_lower_layers(self):
        bad = [
            f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)}) at line {line}"
            for m in MODULES
            for t, _, line in GRAPH[m]
            if t in MODULES and layer_of(t) is not None and layer_of(m) is not None and layer_of(t) > layer_of(m)
        ]
        assert bad == []

    def test_stage_packages_import_each_other_without_a_cycle(self):
        def stage(m: str) -> str | None:
            parts = m.split(".")
            return parts[1] if len(parts) > 1 and parts[1] in STAGES else None

        uses = {s: set() for s in STAGES}
        for m in MODULES:
            for t in EDGES[m]:
                if stage(m) and stage(t) and stage(m) != stage(t):
                    uses[stage(m)].add(stage(t))

        def reaches(a: str, b: str, seen=()) -> bool:
            return any(n == b or (n not in seen and reaches(n, b, seen + (n,))) for n in uses[a])

        assert [s for s in sorted(STAGES) if reaches(s, s)] == [], uses

    def test_longest_import_chain(self):
        chain = max((longest_chain(m) for m in MODULES), key=len)
        assert chain[0] == "pipelines.cli"
        assert len(chain) <= MAX_DEPTH, " -> ".join(chain)

    def test_old_flat_names_are_the_same_modules(self):
        import pipelines

        for old, new in pipelines.OLD_NAMES.items():
            assert importlib.import_module(f"pipelines.{old}") is importlib.import_module(f"pipelines.{new}"), old
        for stage, module in (
            ("ingest", "stage"),
            ("validate", "stage"),
            ("indicators", "stage"),
            ("disclosure", "check"),
        ):
            pkg, mod = (
                importlib.import_module(f"pipelines.{stage}"),
                importlib.import_module(f"pipelines.{stage}.{module}"),
            )
            public = [n for n in vars(mod) if not n.startswith("__")]
            assert public and all(getattr(pkg, n) is getattr(mod, n) for n in public if not hasattr(type(pkg), n))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_alone(module):
    """A cycle hidden behind import order shows up when the module is imported first."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_notebook_imports_keep_working():
    """The report and indicators notebooks' import lines (what forks copy) run as they are."""
    import json

    lines = []
    for nb in (ROOT / "reports" / "report.ipynb", PKG / "indicators" / "notebooks" / "indicators.ipynb"):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                tree = ast.parse(src)
                lines += [
                    ast.get_source_segment(src, n)
                    for n in ast.walk(tree)
                    if isinstance(n, (ast.Import, ast.ImportFrom)) and "pipelines" in ast.get_source_segment(src, n)
                ]
    assert lines
    proc = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
