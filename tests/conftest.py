"""Shared fixtures: a real DuckDB warehouse in a temporary folder, the bundled reference data."""

from __future__ import annotations

import shutil
from pathlib import Path

import browser_helpers
import pytest

from tests.shared_builds import shared_build

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """Path of a fresh (not yet created) warehouse file."""
    return tmp_path / "warehouse.duckdb"


@pytest.fixture(scope="session")
def built_reports(tmp_path_factory):
    """The reports stage run once per session on the fixture warehouse (tests/fixtures_reports.py):
    Tokyo, Tottori (the smallest sample) and national, HTML and PDF (the built-in renderer).
    Returns (result, site folder, warehouse). test_reports.py and test_pdf_structure.py read it."""
    from pipelines.outputs.reports import run_reports
    from tests.fixtures_reports import build_fixture_warehouse

    root = tmp_path_factory.mktemp("reports")
    wh = build_fixture_warehouse(root / "warehouse.duckdb")
    out = root / "site"
    result = run_reports(2024, wh, out, prefs=[13, 31, 0], renderer="pandoc")
    return result, out, wh


def pytest_collection_modifyitems(config, items):
    if shutil.which("quarto") is None:
        import os

        if not os.environ.get("QUARTO_PATH"):
            skip = pytest.mark.skip(reason="Quarto CLI not installed (not on PATH, QUARTO_PATH unset)")
            for item in items:
                if item.get_closest_marker("quarto") is not None:  # (keywords hold the module name too)
                    item.add_marker(skip)


# --- the browser tests (test_accessibility, test_compare) ------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (skipped, saying why, without Chromium or playwright)."""
    if browser_helpers.chromium_path() is None:
        pytest.skip("Chromium not installed (apt-get install chromium, or set CHROMIUM)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser_helpers.chromium_path(), args=browser_helpers.CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The shared build's site (``shared_build``): national, Tokyo, Osaka, Tottori and Tokushima
    reports and every site page. Read only."""
    return shared_build(tmp_path_factory) / "site"
