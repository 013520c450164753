"""Rebuild the warehouse from the raw files and their recorded provenance.

The `files` table records, for every committed file, its path, sha256, kind, declared survey,
encoding and load time. `rebuild_warehouse` re-ingests exactly those files, in their original load
order, into a new DuckDB file, checks that each file still has the recorded sha256 (a missing or
changed file stops the rebuild, naming it), and only then replaces the warehouse (the previous one is
kept as ``<warehouse>.bak``). Derived tables (indicators, distributions) are recomputed by the next
``tsunagari indicators`` or ``tsunagari build``.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipelines.domain.errors import DataError, UsageError
from pipelines.io import warehouse as warehouse_db

log = logging.getLogger("tsunagari.provenance")


@dataclass
class RebuildResult:
    warehouse: Path
    backup: Path | None
    files: list[str]
    rows: dict[str, int]

    def summary(self) -> str:
        total = sum(self.rows.values())
        return (
            f"rebuilt {self.warehouse} from {len(self.files)} raw file(s), {total:,} rows; previous warehouse "
            f"kept as {self.backup} / 元ファイルと来歴から倉庫を再構築しました（{len(self.files)}ファイル）"
        )


def recorded_files(warehouse: Path) -> list[dict]:
    """The provenance rows of the committed files, in load order."""
    if not Path(warehouse).exists():
        raise UsageError("--warehouse", f"'{warehouse}' does not exist / 倉庫ファイルがありません")
    con = warehouse_db.connect(warehouse)
    try:
        cur = con.execute(
            "SELECT file_id, file_name, path, kind, encoding, row_count FROM files ORDER BY loaded_at, file_name"
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        con.close()


def _locate(recorded: str, base: Path) -> Path | None:
    p = Path(recorded)
    for cand in (p, base / p) if not p.is_absolute() else (p,):
        if cand.is_file():
            return cand
    return None


def rebuild_warehouse(warehouse: Path, mapping: Path | None = None, base: Path | None = None) -> RebuildResult:
    """Re-ingest the recorded raw files into a fresh warehouse and swap it in (see module doc)."""
    from pipelines.ingest.stage import ingest_files, scan_file

    warehouse = Path(warehouse)
    base = Path(base or Path.cwd())
    rows = recorded_files(warehouse)
    if not rows:
        raise UsageError("--warehouse", f"'{warehouse}' records no files to rebuild from / 来歴がありません")
    located: list[tuple[dict, Path]] = []
    for r in rows:
        path = _locate(r["path"], base)
        if path is None:
            raise DataError(
                r["path"],
                "raw file not found for the rebuild / 再構築に必要な元ファイルがありません",
                detail="restore it, or run the rebuild from the folder the file was loaded from",
            )
        if scan_file(path)[0] != r["file_id"]:
            raise DataError(
                str(path),
                "raw file changed since it was loaded (sha256 differs) / 読み込み後に元ファイルが変更されています",
                detail=f"recorded sha256 {r['file_id'][:12]}…; ingest the corrected file instead",
            )
        located.append((r, path))

    backup = warehouse.with_name(warehouse.name + ".bak")
    if backup.exists() and not warehouse_db.is_warehouse(backup):
        raise UsageError(
            "--warehouse",
            f"'{backup}' exists and is not a Tsunagari warehouse (an earlier "
            f"backup would be overwritten); move it away / バックアップ先に別のファイルがあります",
        )
    # The new warehouse is written under a private name (never a user's file) and swapped in.
    tmp = warehouse.with_name(f".{warehouse.name}.tsunagari-rebuild.duckdb")
    for p in (tmp, Path(str(tmp) + ".wal")):
        if p.exists():
            p.unlink()
    for r, path in located:
        enc = r["encoding"] if r["encoding"] not in (None, "utf-8", "utf-8-sig") else None
        ingest_files([path], tmp, encoding=enc, mapping=mapping)
    new_counts = {r["file_name"]: r["row_count"] for r in recorded_files(tmp)}
    old_counts = {r["file_name"]: r["row_count"] for r in rows}
    if new_counts != old_counts:
        raise DataError(
            str(warehouse),
            "rebuilt warehouse differs from the recorded provenance / 再構築結果が来歴と一致しません",
            detail=f"recorded {old_counts}, rebuilt {new_counts}",
        )
    shutil.copy2(warehouse, backup)
    tmp.replace(warehouse)
    wal = Path(str(warehouse) + ".wal")
    if wal.exists():
        wal.unlink()
    log.info("rebuilt %s from %d files", warehouse, len(located))
    return RebuildResult(warehouse, backup, [r["file_name"] for r, _ in located], new_counts)
