"""The one place that opens the DuckDB warehouse.

Tsunagari only ever reads or writes a warehouse it created. A warehouse is identified by a metadata
table, ``tsunagari_meta(format_version, created_by, created_at)``, written when the file is created.
A warehouse made by an earlier version (no metadata table, but the Tsunagari tables ``files``,
``survey_responses`` and ``programme``, or the provenance table ``files`` with its Tsunagari columns)
is accepted and gets the metadata table at its next write.

``--warehouse`` (or ``$TSUNAGARI_WAREHOUSE``) must therefore be either
- an existing DuckDB file created by Tsunagari, or
- a path that does not exist yet and ends in ``.duckdb`` (created on the first write).
Anything else (a folder, a CSV/JSON/Parquet/SQLite file, another application's DuckDB file) is
refused before it is opened for writing, with a message naming ``--warehouse``; it is never modified.

Connections are read-only unless ``write=True``. DuckDB's own errors for the usual accidents (the
file is locked by another process, read-only, missing permissions, a full disk) become a
``WarehouseError`` with a message the user can act on, not a traceback.
"""

from __future__ import annotations

import errno
import os
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from pipelines.domain import config
from pipelines.domain.errors import TsunagariError, UsageError

OPTION = "--warehouse"
META_TABLE = "tsunagari_meta"
FORMAT_VERSION = 1
CREATED_BY = "tsunagari"
SUFFIX = ".duckdb"
# The tables every Tsunagari warehouse has had since its first version (identify one made before
# the metadata table existed).
LEGACY_TABLES = frozenset({"files", "survey_responses", "programme"})
# ... or at least the provenance table `files` with its own columns (schema.FILES_TABLE_DDL).
LEGACY_FILES_COLUMNS = frozenset({"file_id", "file_name", "path", "kind", "row_count", "synthetic", "loaded_at"})
DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of a DuckDB database file

META_DDL = f"""
CREATE TABLE IF NOT EXISTS {META_TABLE} (
    format_version INTEGER NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
)"""


class WarehouseError(TsunagariError):
    """The warehouse cannot be opened or written (locked, read-only, disk full). Nothing changed."""

    exit_code = 1


def _describe(head: bytes) -> str:
    """What a file that is not a DuckDB database looks like, for the message."""
    if head.startswith(b"SQLite format 3"):
        return "an SQLite database"
    if head.startswith(b"PAR1"):
        return "a Parquet file"
    if head.startswith(b"ARROW1"):
        return "an Arrow/Feather file"
    if head.startswith(b"PK"):
        return "a ZIP/XLSX file"
    if not head:
        return "an empty file"
    return "not a DuckDB file"


def check_path(path: str | os.PathLike[str]) -> Path:
    """Guard for --warehouse before anything is opened: an existing regular file with a DuckDB
    header, or a new path ending in .duckdb. Raises UsageError naming --warehouse."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(
            OPTION, f"'{p}' is a folder, not a warehouse file / フォルダです（倉庫ファイルを指定してください）"
        )
    if p.exists():
        if not p.is_file():
            raise UsageError(OPTION, f"'{p}' is not a regular file / 通常のファイルではありません")
        try:
            with open(p, "rb") as fh:
                head = fh.read(16)
        except PermissionError:
            raise WarehouseError(
                f"{OPTION}: '{p}' cannot be read (permission denied) / 倉庫ファイルを読む権限がありません"
            ) from None
        if head[8:12] != DUCKDB_MAGIC:
            raise UsageError(
                OPTION,
                f"'{p}' is not a Tsunagari warehouse ({_describe(head)}); it was not "
                f"opened or changed / Tsunagari の倉庫ファイルではありません（変更していません）",
            )
        return p
    if p.suffix != SUFFIX:
        raise UsageError(
            OPTION,
            f"'{p}' does not exist and does not end in {SUFFIX}; a new warehouse "
            f"must be a .duckdb file / 新しい倉庫ファイル名は .duckdb で終わる必要があります",
        )
    if p.parent.exists() and not p.parent.is_dir():
        raise UsageError(OPTION, f"'{p.parent}' is not a folder / フォルダではありません")
    return p


def _map_error(p: Path, exc: BaseException, write: bool) -> TsunagariError:
    text = str(exc)
    low = text.lower()
    if "could not set lock" in low or "conflicting lock" in low:
        holder = ""
        if "(PID" in text:
            holder = " (" + text[text.index("(PID") + 1 :].split(")")[0] + ")"
        return WarehouseError(
            f"{OPTION}: '{p}' is in use by another process{holder}; wait for it to "
            f"finish (a build or ingest, or a notebook holding it open) / "
            f"倉庫ファイルは他のプロセスが使用中です"
        )
    if "no space left" in low or getattr(exc, "errno", None) == errno.ENOSPC:
        return WarehouseError(
            f"{OPTION}: disk full while writing '{p}'; nothing was committed / "
            f"空き容量不足のため倉庫に書き込めません（変更はありません）"
        )
    if "permission denied" in low or isinstance(exc, PermissionError):
        return WarehouseError(
            f"{OPTION}: permission denied for '{p}'"
            f"{' (writing needs write access to the file and its folder)' if write else ''}"
            f" / 倉庫ファイルへのアクセス権がありません"
        )
    if "read-only file system" in low or getattr(exc, "errno", None) == errno.EROFS:
        return WarehouseError(f"{OPTION}: '{p}' is on a read-only file system / 読み取り専用のファイルシステムです")
    if "is a directory" in low:
        return UsageError(OPTION, f"'{p}' is a folder, not a warehouse file / フォルダです")
    return WarehouseError(
        f"{OPTION}: cannot open '{p}': {text.splitlines()[0] if text else type(exc).__name__} "
        f"/ 倉庫ファイルを開けません"
    )


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the connection has a table or view called ``name`` (the warehouse's own, a temporary
    one or a registered data frame: DuckDB lists them all under the schema 'main')."""
    return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0] > 0


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The names of the tables and views of the connection."""
    return {
        r[0]
        for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()
    }


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ?", [table]
        ).fetchall()
    }


def _identity(con: duckdb.DuckDBPyConnection) -> str:
    """'tsunagari', 'legacy' (Tsunagari tables, no metadata yet), 'empty' or 'foreign'."""
    names = tables(con)
    if META_TABLE in names:
        row = con.execute(f"SELECT created_by, max(format_version) FROM {META_TABLE} GROUP BY created_by").fetchall()
        if len(row) == 1 and row[0][0] == CREATED_BY:
            if row[0][1] is not None and int(row[0][1]) > FORMAT_VERSION:
                return "newer"
            return "tsunagari"
        return "foreign"
    if LEGACY_TABLES <= names or ("files" in names and LEGACY_FILES_COLUMNS <= _columns(con, "files")):
        return "legacy"
    return "empty" if not names else "foreign"


_VERIFIED: dict[str, tuple] = {}  # resolved path -> file identity of a file checked in this process


def _verify(p: Path) -> str:
    """Check an existing file is a Tsunagari warehouse (read-only: never writes). Returns its identity."""
    key = str(p.resolve())
    try:
        fk = config.file_key(p)
    except FileNotFoundError:
        fk = None
    if fk is not None and _VERIFIED.get(key) == fk:
        return "tsunagari"
    try:
        con = duckdb.connect(str(p), read_only=True)
    except duckdb.Error as exc:
        raise _map_error(p, exc, write=False) from None
    try:
        ident = _identity(con)
    finally:
        con.close()
    if ident == "foreign":
        raise UsageError(
            OPTION,
            f"'{p}' is a DuckDB file that Tsunagari did not create (no {META_TABLE} "
            f"table); it was not changed. Use a new .duckdb path / Tsunagari が作成した"
            f"倉庫ではありません（変更していません）",
        )
    if ident == "empty":
        raise UsageError(
            OPTION,
            f"'{p}' is an empty DuckDB file that Tsunagari did not create; it was not "
            f"changed. Delete it or use a new .duckdb path / Tsunagari が作成した倉庫ではありません",
        )
    if ident == "newer":
        raise UsageError(
            OPTION,
            f"'{p}' was written by a newer Tsunagari (format > {FORMAT_VERSION}); "
            f"upgrade / 新しい版の Tsunagari で作成された倉庫です",
        )
    if ident == "tsunagari" and fk is not None:
        _VERIFIED[key] = fk
    return ident


def _write_meta(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(META_DDL)
    if not con.execute(f"SELECT count(*) FROM {META_TABLE}").fetchone()[0]:
        con.execute(
            f"INSERT INTO {META_TABLE} VALUES (?, ?, ?)",
            [FORMAT_VERSION, CREATED_BY, datetime.now(timezone.utc).replace(tzinfo=None)],
        )


def connect(path: str | os.PathLike[str], write: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse: read-only by default. With write=True a missing .duckdb path is created
    (with its metadata table) and a warehouse of an earlier version gets the metadata table.
    Raises UsageError (exit 2) for a path that is not a Tsunagari warehouse and WarehouseError
    (exit 1) when it cannot be opened (locked, permissions, disk full); the file is not changed."""
    p = check_path(path)
    existed = p.exists()
    if not existed and not write:
        raise UsageError(
            OPTION,
            f"'{p}' does not exist; run `tsunagari build` or `tsunagari ingest` first / 倉庫ファイルがありません",
        )
    ident = _verify(p) if existed else "new"
    if write and existed and not os.stat(p).st_mode & 0o222:
        raise WarehouseError(
            f"{OPTION}: '{p}' is read-only (no write permission); nothing was changed / "
            "倉庫ファイルが読み取り専用です（変更していません）"
        )
    if write and not existed:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _map_error(p, exc, write=True) from None
    try:
        con = duckdb.connect(str(p), read_only=not write)
    except duckdb.Error as exc:
        raise _map_error(p, exc, write) from None
    if write and ident in ("new", "legacy"):
        try:
            _write_meta(con)
        except duckdb.Error as exc:
            con.close()
            raise _map_error(p, exc, write) from None
    return con


def check(path: str | os.PathLike[str]) -> Path:
    """Guard before a command starts: `path` is a new .duckdb path or a Tsunagari warehouse
    (checked read-only). Raises UsageError naming --warehouse; the file is never changed."""
    p = check_path(path)
    if p.exists():
        _verify(p)
    return p


def is_warehouse(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is an existing Tsunagari warehouse (never raises, never writes)."""
    try:
        p = check_path(path)
        return p.exists() and _verify(p) in ("tsunagari", "legacy")
    except TsunagariError:
        return False


def translate(exc: BaseException, path: str | os.PathLike[str], write: bool = True) -> TsunagariError:
    """A DuckDB or OS error raised while using the warehouse, as a WarehouseError (for callers that
    catch errors after connecting, e.g. a full disk at commit)."""
    return _map_error(Path(path), exc, write)


def synthetic_flag(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether any committed file is synthetic (the reports' watermark, the downloads' ``synthetic``
    column and notes). Fails closed: when the flag cannot be read (no `files` table, a damaged
    column) the data count as synthetic, so the statement is shown rather than silently dropped;
    the reason is logged."""
    try:
        return bool(con.execute("SELECT coalesce(bool_or(synthetic), false) FROM files").fetchone()[0])
    except Exception as exc:  # reported: logged, and the watermark shown
        import logging

        logging.getLogger("tsunagari.warehouse").warning(
            "synthetic flag unreadable (%s); treating the data as synthetic / 合成データとして扱います",
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        return True


# The rounds the warehouse holds (the indicators, downloads, validation and reports stages read them).


def national_years(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Rounds with a national survey in the warehouse, ascending."""
    if not has_table(con, "survey_responses"):
        return []
    rows = con.execute(
        "SELECT DISTINCT survey_year FROM survey_responses WHERE survey_kind = 'national' ORDER BY 1"
    ).fetchall()
    return [int(r[0]) for r in rows]


def programme_years(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Fiscal years present in the programme data, ascending."""
    if not has_table(con, "programme"):
        return []
    return [int(r[0]) for r in con.execute("SELECT DISTINCT fiscal_year FROM programme ORDER BY 1").fetchall()]


def previous_year(con: duckdb.DuckDBPyConnection, year: int) -> int | None:
    earlier = [y for y in national_years(con) if y < year]
    return max(earlier) if earlier else None


def rounds(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Every round the indicators table holds: the national survey rounds and the programme data's
    fiscal years (年度 = 調査年), ascending."""
    return sorted(set(national_years(con)) | set(programme_years(con)))
