"""Cache keys from declared inputs (pipelines/engine/keys.py): a new column of the indicators table
invalidates exactly the artefacts that read every column, on a real warehouse and a real build;
a value changed in one prefecture's row invalidates what reads that row only."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.build import input_keys, run_build
from pipelines.domain import schema
from pipelines.domain.config import BuildConfig
from pipelines.engine import keys
from tests.shared_builds import copy_build, folder_config, shared_build

YEAR = 2024
PREFS = [0, 11, 31]  # national, Saitama (own survey in 2024), Tottori (national subsample)
BUILD_TIME = "1765000000"  # test_views.py's: the shared build "fixed-time" is made under it
REPORTS = {"report:2024:national", "report:2024:11-saitama", "report:2024:31-tottori"}


def _cfg(root: Path) -> BuildConfig:
    return folder_config(root, PREFS)


@pytest.fixture(scope="module", autouse=True)
def fixed_build_time():
    """The build time test_views.py fixes (SOURCE_DATE_EPOCH, part of the build's fingerprint): the
    tests build on copies of the build made under it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", BUILD_TIME)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def built(tmp_path_factory, fixed_build_time) -> Path:
    """A real build of three areas on small synthetic data; tests work on copies of its folder. The
    session's shared build "fixed-time" (``shared_build``, made once, also copied by test_views.py)."""
    return shared_build(tmp_path_factory, "fixed-time", prefs=PREFS)


def _copy(built: Path, tmp_path: Path) -> Path:
    return copy_build(built, tmp_path / "b")


def _keys(root: Path) -> dict[str, str]:
    cfg = _cfg(root)
    return input_keys(cfg.warehouse, YEAR, PREFS, "pandoc", cfg.out_dir)


def _add_indicator_column(monkeypatch, warehouse: Path) -> None:
    """A new DOUBLE column in schema's indicators table (list and DDL) and in the warehouse, filled."""
    monkeypatch.setattr(schema, "INDICATOR_COLUMNS", [*schema.INDICATOR_COLUMNS, "extra_share"])
    ddl = schema.INDICATORS_TABLE_DDL.rstrip()
    assert ddl.endswith(")")
    monkeypatch.setattr(schema, "INDICATORS_TABLE_DDL", ddl[:-1] + ",\n    extra_share DOUBLE\n)")
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("ALTER TABLE indicators ADD COLUMN extra_share DOUBLE")
        con.execute("UPDATE indicators SET extra_share = coalesce(value, 0) / 2 + 1")
    finally:
        con.close()


class TestDeclarations:
    def test_columns_and_types_come_from_schema(self) -> None:
        cols = keys.table_columns("indicators")
        assert list(cols) == schema.INDICATOR_COLUMNS
        assert cols["value"] == "DOUBLE" and cols["n_unweighted"] == "INTEGER" and cols["note"] == "VARCHAR"
        assert "printf('%.10g', value)" in keys.Reads("indicators", ("value",)).row_text()
        assert "CAST(n_unweighted AS VARCHAR)" in keys.Reads("indicators", ("n_unweighted",)).row_text()
        assert list(keys.table_columns("distributions"))[:3] == ["year", "area_code", "question"]

    def test_bad_declarations_are_refused_by_name(self, monkeypatch) -> None:
        with pytest.raises(ValueError, match="no_such_column"):
            keys.Reads("indicators", ("value", "no_such_column")).names()
        with pytest.raises(ValueError, match="no_such_table"):
            keys.Reads("no_such_table").names()
        monkeypatch.setattr(schema, "INDICATOR_COLUMNS", [*schema.INDICATOR_COLUMNS, "listed_only"])
        with pytest.raises(ValueError, match="listed_only"):
            keys.table_columns("indicators")
        stage = keys.Stage("s", reads=(keys.FILES,), writes=())
        with pytest.raises(ValueError, match="stage 's'"):
            keys.key(stage, {}, "code")

    def test_float_noise_is_not_a_change_and_a_real_difference_is(self, tmp_path: Path) -> None:
        con = duckdb.connect(str(tmp_path / "w.duckdb"))
        con.execute(schema.DISTRIBUTIONS_TABLE_DDL)
        con.execute(
            "INSERT INTO distributions VALUES (2024, '01', 'q', 'total', '1', 'a', 12.345678901234, "
            "10.0, 15.0, 50, false)"
        )
        read = keys.Reads("distributions")
        before = keys.row_digests(con, read)
        con.execute("UPDATE distributions SET value = value * (1 + 1e-14)")
        assert keys.row_digests(con, read) == before
        con.execute("UPDATE distributions SET value = value + 1e-6")
        assert keys.row_digests(con, read) != before
        con.close()


class TestInvalidation:
    def test_a_new_indicators_column_rebuilds_exactly_its_readers(
        self, built: Path, tmp_path: Path, monkeypatch
    ) -> None:
        root = _copy(built, tmp_path)
        before = _keys(root)
        _add_indicator_column(monkeypatch, root / "wh.duckdb")
        after = _keys(root)
        changed = {k for k in before if after[k] != before[k]}
        # Reports and site pages read every column; the downloads and workbooks the columns of the
        # data dictionary; the quality page and the indicators stage the files.
        assert changed == REPORTS | {"site:2024"}
        assert {
            "downloads",
            "downloads:2022",
            "downloads:2023",
            "downloads:2024",
            "workbooks:2024",
            "quality",
            "indicators:2024",
        } <= set(before) - changed

        second = run_build(_cfg(root))
        assert second.ok, second.failed
        assert sorted(second.rendered) == ["11-saitama", "31-tottori", "national"]
        assert "site:2024" in second.built
        rebuilt = {b for b in second.built if not b.startswith("ingest")}
        assert rebuilt == REPORTS | {"site:2024"} | {b for b in rebuilt if b.startswith("disclosure")}
        assert {"downloads", "downloads:2024", "workbooks:2024", "quality", "indicators:2024"} <= set(second.skipped)
        assert "indicators-2024" not in second.executed
        # and the build state now holds the new keys: a third build rebuilds nothing
        third = run_build(_cfg(root))
        assert third.ok and third.rendered == [] and not [b for b in third.built if not b.startswith("ingest")]

    def test_one_prefecture_value_changes_its_report_and_the_national_one(self, built: Path, tmp_path: Path) -> None:
        root = _copy(built, tmp_path)
        before = _keys(root)
        con = duckdb.connect(str(root / "wh.duckdb"))
        try:
            n = con.execute(
                "UPDATE indicators SET value = value + 0.5 WHERE year = 2024 AND area_code = '11' "
                "AND breakdown = 'sex=1' AND value IS NOT NULL"
            ).fetchone()[0]
        finally:
            con.close()
        assert n > 0
        after = _keys(root)
        changed = {k for k in before if after[k] != before[k]}
        assert {"report:2024:11-saitama", "report:2024:national"} <= changed
        assert "report:2024:31-tottori" not in changed
        # what reads the round's rows changes; earlier rounds' downloads and the stages reading files do not
        assert {"site:2024", "downloads", "downloads:2024", "workbooks:2024"} <= changed
        assert not changed & {"downloads:2023", "downloads:2022", "quality", "indicators:2024"}
