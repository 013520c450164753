"""The report charts are the same pictures as the reference (tests/chart_pixels.json): every chart of
the national, Tokyo and Tottori reports (the test fixture warehouse), in each rendition -- the wide
PNG's and the phone PNG's decoded pixels, the SVG's bytes. A change made to draw the charts faster
must leave every hash as it was (issue #23 item 8); an intended change of picture regenerates the
reference (tests/chart_pixels.py says how and when)."""

from __future__ import annotations

import json

import pytest

from tests import chart_pixels
from tests.fixtures_reports import build_fixture_warehouse


@pytest.fixture(scope="module")
def reference():
    data = json.loads(chart_pixels.REFERENCE.read_text(encoding="utf-8"))
    here = chart_pixels.environment()
    if here != data["environment"]:
        pytest.skip(
            f"the reference pictures were drawn with {data['environment']}, this is {here}: "
            "pixels differ between library versions and fonts"
        )
    return data["charts"]


def test_every_rendition_of_every_report_chart_is_the_reference_picture(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("TSUNAGARI_CHART_CACHE", "0")
    drawn = chart_pixels.report_renditions(build_fixture_warehouse(tmp_path / "wh.duckdb"))
    assert list(drawn) == list(reference), "the reports show other charts than the reference"
    changed = [
        f"{chart} {fmt}"
        for chart, hashes in drawn.items()
        for fmt, h in hashes.items()
        if reference[chart].get(fmt) != h
    ]
    assert not changed, f"{len(changed)} renditions are not the reference pictures: {changed}"
