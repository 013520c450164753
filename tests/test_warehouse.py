"""The warehouse module: only a DuckDB file created by Tsunagari (or a new .duckdb path) is opened;
anything else is refused naming --warehouse and left byte-identical. Real DuckDB/SQLite/Parquet
files, the real command line (in process), a real second process holding DuckDB's lock."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines import cli
from pipelines.domain.errors import UsageError
from pipelines.io import warehouse
from pipelines.io.warehouse import WarehouseError
from pipelines.outputs.report_data import is_synthetic

PROGRAMME = "fiscal_year,pref_code,metric_id,value,unit,source\n2024,13,consultations_phone,120,件,test\n"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """The real command line, in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tsunagari", *args])
    rc = cli._run()
    return rc, capsys.readouterr().err


@pytest.fixture
def programme_file(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    (d / "programme.csv").write_text(PROGRAMME, encoding="utf-8")
    return d / "programme.csv"


def _foreign_duckdb(path: Path) -> Path:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE customers(id INTEGER, name VARCHAR)")
    con.execute("INSERT INTO customers VALUES (1, 'a'), (2, 'b')")
    con.close()
    return path


def _not_ours(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, the expected description in the message)."""
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n", encoding="utf-8")
    js = tmp_path / "x.json"
    js.write_text('{"a": 1}', encoding="utf-8")
    pq = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(pq)
    lite = tmp_path / "app.sqlite"
    c = sqlite3.connect(lite)
    c.execute("CREATE TABLE t(a)")
    c.commit()
    c.close()
    return {
        "csv": (csv, "not a DuckDB file"),
        "json": (js, "not a DuckDB file"),
        "parquet": (pq, "a Parquet file"),
        "sqlite": (lite, "an SQLite database"),
    }


class TestCheckPath:
    @pytest.mark.parametrize("kind", ["csv", "json", "parquet", "sqlite"])
    def test_a_file_that_is_not_duckdb_is_refused_unchanged(self, tmp_path: Path, kind: str) -> None:
        path, what = _not_ours(tmp_path)[kind]
        before = sha(path)
        with pytest.raises(UsageError) as err:
            warehouse.connect(path, write=True)
        assert str(err.value) == (
            f"--warehouse: '{path}' is not a Tsunagari warehouse ({what}); it was not "
            f"opened or changed / Tsunagari の倉庫ファイルではありません（変更していません）"
        )
        assert sha(path) == before

    def test_a_folder_is_refused(self, tmp_path: Path) -> None:
        d = tmp_path / "wh.duckdb"
        d.mkdir()
        with pytest.raises(UsageError, match=r"^--warehouse: '.*wh\.duckdb' is a folder, not a warehouse file"):
            warehouse.connect(d, write=True)

    def test_a_new_path_must_end_in_duckdb(self, tmp_path: Path) -> None:
        with pytest.raises(UsageError) as err:
            warehouse.connect(tmp_path / "wh.db", write=True)
        assert str(err.value).startswith(
            f"--warehouse: '{tmp_path / 'wh.db'}' does not exist and does not end in .duckdb"
        )
        assert not (tmp_path / "wh.db").exists()


class TestConnect:
    def test_a_new_warehouse_gets_the_metadata_table(self, tmp_path: Path) -> None:
        con = warehouse.connect(tmp_path / "new.duckdb", write=True)
        rows = con.execute("SELECT format_version, created_by FROM tsunagari_meta").fetchall()
        con.close()
        assert rows == [(warehouse.FORMAT_VERSION, "tsunagari")]
        assert warehouse.is_warehouse(tmp_path / "new.duckdb")

    def test_read_only_is_the_default(self, tmp_path: Path) -> None:
        warehouse.connect(tmp_path / "w.duckdb", write=True).close()
        con = warehouse.connect(tmp_path / "w.duckdb")
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE TABLE t(a INTEGER)")
        con.close()

    def test_a_missing_warehouse_is_not_created_for_reading(self, tmp_path: Path) -> None:
        with pytest.raises(UsageError, match="does not exist; run `tsunagari build` or `tsunagari ingest` first"):
            warehouse.connect(tmp_path / "w.duckdb")
        assert not (tmp_path / "w.duckdb").exists()

    def test_another_applications_duckdb_file_is_refused_unchanged(self, tmp_path: Path) -> None:
        path = _foreign_duckdb(tmp_path / "crm.duckdb")
        before = sha(path)
        for write in (False, True):
            with pytest.raises(UsageError) as err:
                warehouse.connect(path, write=write)
            assert str(err.value).startswith(
                f"--warehouse: '{path}' is a DuckDB file that Tsunagari did not create (no tsunagari_meta table)"
            )
        assert sha(path) == before
        assert not warehouse.is_warehouse(path)

    def test_a_warehouse_of_an_earlier_version_is_accepted_and_migrated_on_write(self, tmp_path: Path) -> None:
        from pipelines.ingest.stage import ensure_tables

        path = tmp_path / "old.duckdb"
        con = duckdb.connect(str(path))
        ensure_tables(con)  # the Tsunagari tables, no metadata table (as written before it existed)
        con.close()
        before = sha(path)
        warehouse.connect(path).close()  # reading does not change it
        assert sha(path) == before
        con = warehouse.connect(path, write=True)  # the first write adds the metadata table
        assert con.execute("SELECT created_by FROM tsunagari_meta").fetchall() == [("tsunagari",)]
        con.close()

    def test_a_read_only_file_is_a_clear_error_and_unchanged(self, tmp_path: Path) -> None:
        path = tmp_path / "w.duckdb"
        warehouse.connect(path, write=True).close()
        before = sha(path)
        path.chmod(0o444)
        try:
            with pytest.raises(WarehouseError) as err:
                warehouse.connect(path, write=True)
            assert str(err.value) == (
                f"--warehouse: '{path}' is read-only (no write permission); nothing was "
                "changed / 倉庫ファイルが読み取り専用です（変更していません）"
            )
            warehouse.connect(path).close()  # reading still works
        finally:
            path.chmod(0o644)
        assert sha(path) == before

    def test_a_warehouse_locked_by_another_process_is_a_clear_error(self, tmp_path: Path) -> None:
        path = tmp_path / "w.duckdb"
        warehouse.connect(path, write=True).close()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(120)",
                str(path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "held"
            for write in (False, True):
                with pytest.raises(WarehouseError) as err:
                    warehouse.connect(path, write=write)
                assert str(err.value) == (
                    f"--warehouse: '{path}' is in use by another process (PID {holder.pid}); wait for it to "
                    "finish (a build or ingest, or a notebook holding it open) / 倉庫ファイルは他のプロセスが使用中です"
                )
        finally:
            holder.kill()
            holder.wait()


class TestCommandLine:
    """`tsunagari ingest` and `rebuild-warehouse` on files that are not a Tsunagari warehouse: exit 2,
    a message naming --warehouse, no traceback, the file byte-identical and nothing created beside it."""

    @pytest.mark.parametrize("kind", ["csv", "json", "parquet", "sqlite", "foreign-duckdb"])
    def test_ingest_refuses(self, tmp_path: Path, programme_file: Path, monkeypatch, capsys, kind: str) -> None:
        path = _foreign_duckdb(tmp_path / "crm.duckdb") if kind == "foreign-duckdb" else _not_ours(tmp_path)[kind][0]
        before = sha(path)
        siblings = sorted(os.listdir(tmp_path))
        rc, err = run_cli(monkeypatch, capsys, "ingest", str(programme_file), "--warehouse", str(path), "--quiet")
        assert rc == 2
        assert err.startswith(f"error: --warehouse: '{path}' ")
        assert "Traceback" not in err
        assert sha(path) == before
        assert sorted(os.listdir(tmp_path)) == siblings

    def test_rebuild_refuses_another_applications_duckdb_twice(self, tmp_path: Path, monkeypatch, capsys) -> None:
        path = _foreign_duckdb(tmp_path / "crm.duckdb")
        before = sha(path)
        for _ in range(2):
            rc, err = run_cli(monkeypatch, capsys, "rebuild-warehouse", "--warehouse", str(path), "--quiet")
            assert rc == 2 and "Tsunagari did not create" in err
        assert sha(path) == before
        assert sorted(os.listdir(tmp_path)) == ["crm.duckdb"]  # no .bak, no rebuild file

    def test_ingest_into_a_folder_is_a_usage_error(
        self, tmp_path: Path, programme_file: Path, monkeypatch, capsys
    ) -> None:
        rc, err = run_cli(monkeypatch, capsys, "ingest", str(programme_file), "--warehouse", str(tmp_path), "--quiet")
        assert rc == 2
        assert (
            err
            == f"error: --warehouse: '{tmp_path}' is a folder, not a warehouse file / フォルダです（倉庫ファイルを指定してください）\n"
        )

    def test_ingest_while_the_warehouse_is_locked(
        self, tmp_path: Path, programme_file: Path, monkeypatch, capsys
    ) -> None:
        path = tmp_path / "w.duckdb"
        warehouse.connect(path, write=True).close()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(120)",
                str(path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "held"
            rc, err = run_cli(monkeypatch, capsys, "ingest", str(programme_file), "--warehouse", str(path), "--quiet")
        finally:
            holder.kill()
            holder.wait()
        assert rc == 1
        assert f"is in use by another process (PID {holder.pid})" in err and "Traceback" not in err


class TestDiskFull:
    def test_ingest_on_a_full_disk_is_a_clear_error(
        self, tmp_path: Path, programme_file: Path, monkeypatch, capsys
    ) -> None:
        """A real full disk: a small tmpfs, filled up to 16 KB (needs root to mount; skipped elsewhere)."""
        mnt = tmp_path / "small"
        mnt.mkdir()
        if (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
            ).returncode
            != 0
        ):
            pytest.skip("cannot mount a small tmpfs here")
        try:
            import shutil

            (mnt / "filler").write_bytes(b"\0" * (shutil.disk_usage(mnt).free - 16 * 1024))
            rc, err = run_cli(
                monkeypatch, capsys, "ingest", str(programme_file), "--warehouse", str(mnt / "w.duckdb"), "--quiet"
            )
            assert rc == 1
            assert "disk full" in err and "空き容量不足" in err and "Traceback" not in err
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


class TestIsSynthetic:
    """The watermark cannot silently disappear: when the flag cannot be read, the data count as synthetic."""

    def _wh(self, tmp_path: Path, ddl: str, rows: str = "") -> Path:
        path = tmp_path / "w.duckdb"
        con = warehouse.connect(path, write=True)
        if ddl:
            con.execute(ddl)
        if rows:
            con.execute(rows)
        con.close()
        return path

    def test_real_data_are_not_synthetic(self, tmp_path: Path) -> None:
        assert (
            is_synthetic(
                self._wh(tmp_path, "CREATE TABLE files(synthetic BOOLEAN)", "INSERT INTO files VALUES (false), (false)")
            )
            is False
        )

    def test_one_synthetic_file_makes_the_data_synthetic(self, tmp_path: Path) -> None:
        assert (
            is_synthetic(
                self._wh(tmp_path, "CREATE TABLE files(synthetic BOOLEAN)", "INSERT INTO files VALUES (false), (true)")
            )
            is True
        )

    def test_no_files_table_fails_closed(self, tmp_path: Path) -> None:
        assert is_synthetic(self._wh(tmp_path, "")) is True

    def test_an_unreadable_flag_fails_closed(self, tmp_path: Path) -> None:
        assert (
            is_synthetic(self._wh(tmp_path, "CREATE TABLE files(synthetic VARCHAR)", "INSERT INTO files VALUES ('no')"))
            is True
        )
