"""Shared fixtures: a real DuckDB warehouse in a temporary folder, the bundled reference data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """Path of a fresh (not yet created) warehouse file."""
    return tmp_path / "warehouse.duckdb"


def pytest_collection_modifyitems(config, items):
    if shutil.which("quarto") is None:
        import os

        if not os.environ.get("QUARTO_PATH"):
            skip = pytest.mark.skip(reason="Quarto CLI not installed (not on PATH, QUARTO_PATH unset)")
            for item in items:
                if item.get_closest_marker("quarto") is not None:   # (keywords hold the module name too)
                    item.add_marker(skip)
