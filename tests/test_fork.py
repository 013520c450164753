"""A researcher's fork of the report notebook (README "For researchers"): changing the shared theme
and adding `+ facet_wrap(...)` to one chart are notebook edits only; papermill executes the modified
copy and its figures change; TSUNAGARI_REPORTS_DIR makes `tsunagari reports` use the fork."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from pipelines.domain import config
from tests.fixtures_reports import build_fixture_warehouse

ROOT = Path(__file__).resolve().parents[1]
THEME_EDIT = "charts.THEME = charts.report_theme(base_size=13)   # fork: larger type in every chart\n"
FACET_OLD = '    chart = charts.estimate_chart(frame, f"割合（％、横線は{level}%信頼区間）", flip=True)\n'
FACET_NEW = (
    '    chart = charts.estimate_chart(frame, f"割合（％、横線は{level}%信頼区間）", flip=True) + facet_wrap("place")'
    "   # fork\n"
)


def fork(folder: Path, theme: bool = True, facet: bool = True) -> Path:
    """Copy reports/ and make the edits a researcher would make in Jupyter."""
    shutil.copytree(config.REPORTS_DIR, folder)
    nb = nbformat.read(folder / "report.ipynb", as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code" and "load_report_data(" in c.source)
    setup.source = setup.source.replace("from plotnine import labs", "from plotnine import facet_wrap, labs")
    if theme:
        setup.source += "\n" + THEME_EDIT
    figures = next(c for c in nb.cells if c.cell_type == "code" and "def survey_figure" in c.source)
    assert FACET_OLD in figures.source
    if facet:
        figures.source = figures.source.replace(FACET_OLD, FACET_NEW)
    nbformat.write(nb, folder / "report.ipynb")
    return folder


def images(path: Path) -> list[tuple[str, bytes]]:
    nb = nbformat.read(path, as_version=4)
    return [
        (o["data"].get("text/plain", ""), base64.b64decode(o["data"]["image/png"]))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return build_fixture_warehouse(tmp_path_factory.mktemp("fork") / "wh.duckdb")


@pytest.mark.slow
def test_theme_and_facet_edits_change_the_figures(tmp_path, warehouse):
    from pipelines.engine.notebook import execute_notebook

    params = {"year": 2024, "pref_code": 13, "warehouse": str(warehouse)}
    original = execute_notebook(
        config.REPORTS_DIR / "report.ipynb", tmp_path / "original.ipynb", params, cwd=config.REPORTS_DIR
    )
    before = images(original)
    # + facet_wrap on one chart function's call: exactly the figures it draws change
    folder = fork(tmp_path / "facet-only", theme=False)
    faceted = images(execute_notebook(folder / "report.ipynb", tmp_path / "faceted.ipynb", params, cwd=folder))
    assert [alt for alt, _ in before] == [alt for alt, _ in faceted]  # same figures, same alt text
    changed = [alt for (alt, a), (_, b) in zip(before, faceted) if a != b]
    # survey_figure's alt text: "<indicator names>を東京都・全国で比較した図。" (one per report section)
    survey_figures = [
        alt for alt, _ in before if alt.endswith("を東京都・全国で比較した図。") and not alt.startswith("男女")
    ]
    assert changed and set(changed) == set(survey_figures), changed
    # the shared theme changed in one line: every figure changes
    folder = fork(tmp_path / "my-reports")
    after = images(execute_notebook(folder / "report.ipynb", tmp_path / "forked.ipynb", params, cwd=folder))
    assert len(before) == len(after) > 5
    assert all(a != b for (_, a), (_, b) in zip(before, after))


@pytest.mark.slow
def test_reports_dir_makes_the_build_use_the_fork(tmp_path, warehouse):
    folder = fork(tmp_path / "my-reports")
    env = {**os.environ, "TSUNAGARI_REPORTS_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "reports",
            "--year",
            "2024",
            "--pref",
            "13",
            "--out",
            str(tmp_path / "site"),
            "--warehouse",
            str(warehouse),
            "--renderer",
            "pandoc",
            "--quiet",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    executed = nbformat.read(tmp_path / ".site.tsunagari-work" / "executed" / "13-tokyo.ipynb", as_version=4)
    assert not (tmp_path / "site" / ".work").exists()  # the notebook is not put into the output folder
    assert any(THEME_EDIT.strip() in c.source for c in executed.cells)
    assert (tmp_path / "site" / "prefectures" / "13-tokyo.html").stat().st_size > 10_000
