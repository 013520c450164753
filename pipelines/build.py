"""`tsunagari build`: ingest -> validate -> indicators -> reports -> site.

Thin orchestration: reads one BuildConfig, sets up logging (stderr + a log file), logs the config,
and calls the named stages. (Parallel/incremental/atomic publishing: issue 7.)
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field

from .config import BuildConfig

log = logging.getLogger("tsunagari.build")


@dataclass
class BuildSummary:
    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_built_yet: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _stage(module: str):
    try:
        return importlib.import_module(f"pipelines.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"pipelines.{module}":
            return None
        raise


def run_build(cfg: BuildConfig) -> BuildSummary:
    from .cli import setup_logging

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(cfg.out_dir / "build.log", quiet=cfg.quiet)
    log.info("build config: %s", cfg.as_dict())
    summary = BuildSummary()

    ingest = _stage("ingest")
    if ingest is None:
        summary.not_built_yet.append("ingest")
    else:
        result = ingest.ingest_dir(cfg.input_dir, cfg.warehouse)
        summary.built.append(f"ingest: {result.summary()}")

    for stage in ("indicators", "reports", "site"):
        if _stage(stage) is None:
            summary.not_built_yet.append(stage)
    if summary.not_built_yet:
        log.warning("stages not built yet: %s", ", ".join(summary.not_built_yet))
    return summary
