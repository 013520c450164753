"""Tsunagari: the annual evaluation pipeline for Japan's loneliness and isolation policy.

The package is laid out by layer (docs/DESIGN.md, "Layers"); a module imports only from its own
layer or a lower one (tests/test_layers.py):

    domain/      facts, settings and pure computation (no file written, no warehouse opened)
    io/          the warehouse, staging tables, YAML, logs, XLSX
    engine/      kernels, notebook execution, interrupts, the fingerprint and cache keys, publishing
    ingest/ validate/ indicators/ outputs/ disclosure/ render/     one package per stage
    build.py     the stage graph;  cli.py  the command line

The modules' earlier flat names (``pipelines.config``, ``pipelines.report_data``, ``pipelines.charts``,
...) still import: forks' notebooks and scripts use them. ``OLD_NAMES`` maps each to its module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

OLD_NAMES = {
    "config": "domain.config",
    "errors": "domain.errors",
    "schema": "domain.schema",
    "reference": "domain.reference",
    "catalogue": "domain.catalogue",
    "conventions": "domain.conventions",
    "stats": "domain.stats",
    "audit": "domain.audit",
    "sae": "domain.sae",
    "small_area": "domain.small_area",
    "survey_design": "domain.survey_design",
    "evaluation": "domain.evaluation",
    "method_statement": "domain.method_statement",
    "formatting": "domain.formatting",
    "dictionary": "domain.dictionary",
    "warehouse": "io.warehouse",
    "staging": "io.staging",
    "safe_yaml": "io.safe_yaml",
    "logs": "io.logs",
    "xlsx": "io.xlsx",
    "executor": "engine.kernels",
    "execute": "engine.notebook",
    "interrupt": "engine.interrupt",
    "fingerprint": "engine.fingerprint",
    "publish": "engine.publish",
    "keys": "engine.keys",
    "provenance": "ingest.provenance",
    "sample": "ingest.sample",
    "validator": "validate.gx_process",
    "gx_weights": "validate.gx_weights",
    "published": "indicators.published_check",
    "report_data": "outputs.report_data",
    "charts": "outputs.charts",
    "chart_cache": "outputs.chart_cache",
    "reports": "outputs.reports",
    "downloads": "outputs.downloads",
    "site": "outputs.site",
    "quality": "outputs.quality",
}
# pipelines.ingest, .validate, .indicators and .disclosure are packages now: each gives the names of
# its stage module (``stage``; ``check``) as its own (their __init__.py: ``stage_names``).


def stage_names(package: str, stage: str):
    """The module ``__getattr__`` of a stage package: ``<package>.<name>`` is ``<package>.<stage>.<name>``,
    imported when first asked for. A submodule's name is not looked up in the stage module
    (``from <package> import x`` asks the package for x before importing ``<package>.x``: that must
    not import the stage module)."""

    def __getattr__(name: str):
        if name.startswith("__") or importlib.util.find_spec(f"{package}.{name}") is not None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{stage}"), name)

    return __getattr__


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import pipelines.<old name>`` gives the module itself: one module object under both names,
    so a setting changed through either name is seen through the other."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, old = fullname.partition(".")
        if prefix == __name__ and old in OLD_NAMES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{OLD_NAMES[spec.name.partition('.')[2]]}")

    def exec_module(self, module):
        pass


if not any(type(f).__name__ == "_OldNames" for f in sys.meta_path):
    sys.meta_path.insert(0, _OldNames())  # before any other finder (an editable install's too)
