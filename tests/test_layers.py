"""The package's layers (docs/DESIGN.md, "Layers"): no import cycles, even behind function-level
imports; no private name imported from another module; a module imports only from its own layer or
the layers below; every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pipelines"

# domain <- io <- stages <- build <- cli (the number is the layer; a module may import from its own
# layer or a lower one). A new module must be placed here: an unknown module fails the test.
LAYERS: dict[str, int] = {
    # 0 domain: facts, settings and pure computation; no files written, no warehouse opened
    "pipelines": 0, "pipelines.config": 0, "pipelines.errors": 0, "pipelines.schema": 0,
    "pipelines.stats": 0, "pipelines.survey_design": 0, "pipelines.catalogue": 0, "pipelines.conventions": 0,
    "pipelines.reference": 0, "pipelines.logs": 0, "pipelines.sae": 0,
    "pipelines.evaluation": 0, "pipelines.formatting": 0, "pipelines.dictionary": 0,
    # 1 input/output: the warehouse, staging, provenance, file writers, publishing, execution
    "pipelines.warehouse": 1, "pipelines.staging": 1, "pipelines.fingerprint": 1, "pipelines.keys": 1,
    "pipelines.interrupt": 1, "pipelines.gx_weights": 1,
    "pipelines.publish": 1, "pipelines.execute": 1, "pipelines.executor": 1,
    "pipelines.validator": 1, "pipelines.safe_yaml": 1, "pipelines.xlsx": 1, "pipelines.chart_cache": 1,
    # 2 stages
    "pipelines.ingest": 2, "pipelines.validate": 2, "pipelines.indicators": 2,
    "pipelines.downloads": 2, "pipelines.reports": 2, "pipelines.charts": 2, "pipelines.site": 2,
    "pipelines.disclosure": 2, "pipelines.quality": 2, "pipelines.audit": 2, "pipelines.published": 2,
    "pipelines.sample": 2, "pipelines.small_area": 2, "pipelines.method_statement": 2, "pipelines.report_data": 2, "pipelines.provenance": 2, "pipelines.render": 2, "pipelines.render.pandoc": 2,
    "pipelines.render.quarto": 2, "pipelines.render.common": 1,
    # 3 the build, 4 the command line
    "pipelines.build": 3, "pipelines.cli": 4,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


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
            # `from . import x` / `from .render import pandoc`: a submodule, not a name
            subs = [n for n in names if f"{mod}.{n}" in MODULES]
            for s in subs:
                found.append((f"{mod}.{s}", [], node.lineno))
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                found.append((mod, rest, node.lineno))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


class TestLayers:
    def test_every_module_has_a_layer(self):
        missing = sorted(set(MODULES) - set(LAYERS))
        assert not missing, f"place these modules in a layer (tests/test_layers.py, docs/DESIGN.md): {missing}"

    def test_no_import_cycles(self):
        edges = {m: {t for t, _, _ in GRAPH[m] if t in MODULES and t != m} for m in MODULES}
        # the package's __init__ is imported by every submodule: it must import none of them
        cycles = []
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()

        def strong(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in edges[v]:
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
        bad = [f"{m} line {line}: {name} from {t}" for m in MODULES for t, names, line in GRAPH[m]
               for name in names if name.startswith("_") and t != m]
        assert bad == []

    def test_imports_only_from_own_or_lower_layers(self):
        bad = [f"{m} (layer {LAYERS[m]}) imports {t} (layer {LAYERS[t]}) at line {line}"
               for m in MODULES if m in LAYERS for t, _, line in GRAPH[m]
               if t in LAYERS and LAYERS[t] > LAYERS[m]]
        assert bad == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_alone(module):
    """A cycle hidden behind import order shows up when the module is imported first."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
