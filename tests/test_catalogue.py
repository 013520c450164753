"""pipelines/domain/catalogue.py: one Indicator model, checked, cached by file key; and a new catalogue
entry reaches the report section, the site and the downloads with no code changed."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import duckdb
import nbformat
import pytest

from pipelines.domain import catalogue as catalogue_mod
from pipelines.domain import config
from pipelines.domain.catalogue import PILLARS, load_catalogue
from pipelines.domain.errors import DataError

NEW_ENTRY = """
  - id: has_reliable_person
    name_ja: 困った時に頼れる人が「いる」人の割合（テスト追加）
    name_en: Has someone to rely on (added in a test)
    pillar: 2
    section: 2
    domain_ja: 相談・支援
    source: survey
    numerator: q_reliable_person = 1
    denominator: all
    denominator_ja: 全回答者（無回答を含む）
    polarity: high_is_good
    uk_comparable: false
    unit: percent
"""


def copy_with(tmp_path: Path, extra: str = NEW_ENTRY) -> Path:
    path = tmp_path / "indicators.yml"
    path.write_text(
        config.INDICATOR_CATALOGUE.read_text(encoding="utf-8").rstrip("\n") + "\n" + extra, encoding="utf-8"
    )
    return path


class TestLoadCatalogue:
    def test_one_frozen_model_with_defaults(self):
        cat = load_catalogue()
        first = cat[0]
        with pytest.raises(AttributeError):
            first.name_ja = "x"  # frozen
        for ind in cat:
            assert ind.section in PILLARS and ind.domain_ja
        assert [i.id for i in cat if i.headline][0] == "lonely_often_always"
        programme = [i for i in cat if i.source == "programme"]
        assert programme and {i.domain_ja for i in programme} == {"施策"}

    def test_cached_while_the_file_is_unchanged(self, tmp_path):
        path = copy_with(tmp_path)
        first = load_catalogue(path)
        assert load_catalogue(path) is first
        text = path.read_text(encoding="utf-8").replace("（テスト追加）", "（変更）")
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(1, 1))  # a rewrite within the same clock tick still changes the key
        second = load_catalogue(path)
        assert second is not first and second[-1].name_ja.endswith("（変更）")

    def test_environment_variable_points_every_stage_at_a_copy(self, tmp_path, monkeypatch):
        monkeypatch.setenv("TSUNAGARI_CATALOGUE", str(copy_with(tmp_path)))
        assert catalogue_mod.catalogue_path() == tmp_path / "indicators.yml"
        assert load_catalogue()[-1].id == "has_reliable_person"

    def test_section_defaults_to_the_pillar(self, tmp_path):
        entry = NEW_ENTRY.replace("    section: 2\n", "").replace("pillar: 2", "pillar: 4")
        ind = load_catalogue(copy_with(tmp_path, entry))[-1]
        assert ind.section == 4 and ind.section_label == PILLARS[4]

    @pytest.mark.parametrize(
        "old,new,message",
        [
            ("section: 2", "section: 5", "entry 14 (has_reliable_person): section must be 1-4 (基本方針(1)-(4))"),
            ("section: 2", "section: true", "entry 14 (has_reliable_person): section must be 1-4 (基本方針(1)-(4))"),
            (
                "domain_ja: 相談・支援",
                "headline: yes please",
                "entry 14 (has_reliable_person): headline must be true or false",
            ),
            (
                "domain_ja: 相談・支援",
                "distribution: 'q; DROP'",
                "entry 14 (has_reliable_person): distribution must be a question name (snake_case)",
            ),
        ],
    )
    def test_bad_new_fields_name_the_entry_and_field(self, tmp_path, old, new, message):
        path = copy_with(tmp_path, NEW_ENTRY.replace(old, new))
        with pytest.raises(DataError) as err:
            load_catalogue(path)
        assert message in str(err.value) and str(path) in str(err.value)


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """A warehouse computed with a copy of the catalogue that has one more entry."""
    from pipelines.indicators.stage import compute_indicators, write_indicators
    from tests.test_indicators import create_tables, generate_programme, generate_round

    root = tmp_path_factory.mktemp("catalogue")
    path = copy_with(root)
    old = os.environ.get("TSUNAGARI_CATALOGUE")
    os.environ["TSUNAGARI_CATALOGUE"] = str(path)
    try:
        wh = root / "warehouse.duckdb"
        con = duckdb.connect(str(wh))
        create_tables(con)
        generate_round(con, 2024, 12_000, seed=0.22)
        generate_programme(con, 2024)
        ind, dist = compute_indicators(con, 2024)
        write_indicators(con, 2024, ind, dist)
        con.close()
        yield root, wh
    finally:
        if old is None:
            os.environ.pop("TSUNAGARI_CATALOGUE", None)
        else:
            os.environ["TSUNAGARI_CATALOGUE"] = old


class TestNewEntryNeedsNoCode:
    NAME = "困った時に頼れる人が「いる」人の割合（テスト追加）"

    def test_in_its_report_section(self, extended):
        from pipelines.engine.notebook import execute_notebook

        root, wh = extended
        out = root / "executed.ipynb"
        execute_notebook(
            config.REPORTS_DIR / "report.ipynb",
            out,
            {"year": 2024, "pref_code": 13, "warehouse": str(wh)},
            cwd=config.REPORTS_DIR,
        )
        nb = nbformat.read(out, as_version=4)
        texts = [
            o["data"]["text/markdown"]
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if "text/markdown" in o.get("data", {})
        ]
        text = "\n".join(texts).replace("\\", "")
        start, end = text.index("## 基本方針(2)"), text.index("## 基本方針(3)")
        assert self.NAME in text[start:end]
        assert self.NAME not in text[end : text.index("## 基本方針(4)")]
        row = next(x for x in text[start:end].splitlines() if self.NAME in x)
        assert row.startswith("| 相談・支援 |")

    def test_on_the_site(self, extended):
        from pipelines.outputs.site import build_site

        root, wh = extended
        site = root / "_site"
        build_site(2024, wh, site)
        assert 'data-indicator="has_reliable_person"' in (site / "methodology.html").read_text(encoding="utf-8")
        assert self.NAME in (site / "index.html").read_text(encoding="utf-8")

    def test_in_the_downloads(self, extended):
        from pipelines.outputs.downloads import write_indicator_downloads

        root, wh = extended
        con = duckdb.connect(str(wh), read_only=True)
        csv_path, _ = write_indicator_downloads(con, 2024, root / "downloads")
        con.close()
        with open(csv_path, encoding="utf-8-sig", newline="") as f:
            next(f)  # line 1: the Japanese headers; line 2: the column codes
            rows = [r for r in csv.DictReader(f) if r["indicator_id"] == "has_reliable_person"]
        assert rows and {r["breakdown"] for r in rows} >= {"total", "sex=1", "age=16-19"}
        national = next(r for r in rows if r["area_code"] == "00" and r["breakdown"] == "total")
        assert 85 < float(national["value"]) < 99  # q_reliable_person = 1 for ~92% of the generated respondents
