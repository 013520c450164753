"""Cache keys: what each stage declares it reads and writes, and the one function that makes a key.

A stage declares its inputs once (``Stage``): the warehouse tables and columns it reads (``Reads``:
every column pipelines/domain/schema.py gives the table, or a named subset of them) and any other input
whose digest it computes itself (``Input``: files, a chart's walk), plus the artefacts it writes.
``key`` derives the cache key of one artefact from the stage's declaration, the digest of each
declared input (``row_digests`` for a table, ``file_digest`` for files), the code fingerprint and
the stage's parameters; it refuses digests that are not exactly the declared inputs. A reader of
every column sees a new column of the schema (its name is in the key and its values in the rows);
a reader of a subset does not. DESIGN.md "Cache keys".

Floating-point columns (DOUBLE in the table's DDL in schema) are hashed at ``FLOAT_DIGITS``
significant digits: DuckDB's parallel sums differ in the last bits from run to run, which must not
count as a change.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from pipelines.domain import schema
from pipelines.io.warehouse import has_table

FORMAT = "tsunagari-key 1"
FLOAT_DIGITS = 10
FLOAT_TYPES = frozenset({"DOUBLE", "FLOAT", "REAL"})

# Warehouse table -> (the schema list that orders its columns, or None; its DDL in schema). Looked
# up when a key is made, so a column added to schema counts at once.
TABLES: dict[str, tuple[str | None, str]] = {
    "indicators": ("INDICATOR_COLUMNS", "INDICATORS_TABLE_DDL"),
    "distributions": (None, "DISTRIBUTIONS_TABLE_DDL"),
    "small_area": (None, "SMALL_AREA_TABLE_DDL"),
    "files": (None, "FILES_TABLE_DDL"),
    "survey_responses": (None, "SURVEY_TABLE_DDL"),
    "programme": (None, "PROGRAMME_TABLE_DDL"),
    "validation_results": (None, "VALIDATION_TABLE_DDL"),
}

_DDL_COLUMN = re.compile(r"^\s+([a-z_][a-z0-9_]*)\s+([A-Z]+)\b", re.MULTILINE)


def table_columns(table: str) -> dict[str, str]:
    """name -> SQL type of every column of `table` as pipelines/domain/schema.py defines it (in the order
    of the table's column list where schema has one, e.g. INDICATOR_COLUMNS)."""
    if table not in TABLES:
        raise ValueError(
            f"pipelines/engine/keys.py: table '{table}' is not one of the warehouse tables of "
            f"pipelines/domain/schema.py ({', '.join(TABLES)}) / 未知のテーブルです"
        )
    list_name, ddl_name = TABLES[table]
    types = dict(_DDL_COLUMN.findall(getattr(schema, ddl_name)))
    if list_name is None:
        return types
    names = list(getattr(schema, list_name))
    missing = [c for c in names if c not in types]
    extra = [c for c in types if c not in names]
    if missing or extra:
        raise ValueError(
            f"pipelines/domain/schema.py: {list_name} and {ddl_name} disagree on the columns of "
            f"'{table}' (only in the list: {missing}; only in the DDL: {extra}) / "
            "列の一覧と DDL が一致しません"
        )
    return {c: types[c] for c in names}


@dataclass(frozen=True)
class Reads:
    """A warehouse table a stage reads: every column schema gives it (``columns`` None), or a subset
    named in schema. ``rows`` says in words which rows (two reads of one table differ by it)."""

    table: str
    columns: tuple[str, ...] | None = None
    rows: str = "all"

    def column_types(self) -> dict[str, str]:
        every = table_columns(self.table)
        if self.columns is None:
            return every
        unknown = [c for c in self.columns if c not in every]
        if unknown:
            raise ValueError(
                f"pipelines/engine/keys.py: columns {unknown} read from '{self.table}' are not in "
                f"pipelines/domain/schema.py / スキーマにない列です"
            )
        return {c: every[c] for c in self.columns}

    def names(self) -> list[str]:
        return list(self.column_types())

    def row_text(self) -> str:
        """SQL text of one row of the read: its columns joined, floats at FLOAT_DIGITS digits."""
        parts = []
        for name, typ in self.column_types().items():
            expr = f"printf('%.{FLOAT_DIGITS}g', {name})" if typ in FLOAT_TYPES else f"CAST({name} AS VARCHAR)"
            parts.append(f"coalesce({expr}, '<null>')")
        return "concat_ws('|', " + ", ".join(parts) + ")"


@dataclass(frozen=True)
class Input:
    """An input that is not a warehouse table (files, a chart's walk): the stage computes its digest."""

    name: str


@dataclass(frozen=True)
class Stage:
    """What a stage reads and what it writes (artefacts: site paths, tables, records)."""

    name: str
    reads: tuple[Reads | Input, ...]
    writes: tuple[str, ...]


# Which files are committed (file_id is the sha256 of the file's bytes), and whether they are synthetic.
FILES = Reads("files", ("file_id", "file_name", "synthetic"), rows="every committed file")


def row_digests(
    con, read: Reads, where: str = "TRUE", params: Iterable = (), by: str | None = None, source: str | None = None
) -> dict[str, str]:
    """{group: md5 of the rows} of `read`: its columns of the rows matching `where` (with `params`),
    grouped by the SQL expression `by` (one group 'all' without it). `source`: a query to read from
    instead of the table (its columns must include the read's). {} when the table does not exist."""
    if not has_table(con, read.table):
        return {}
    frm = f"({source}) s" if source else read.table
    q = (
        f"SELECT k, md5(string_agg(r, '|' ORDER BY r)) FROM (SELECT {by or repr('all')} AS k, "
        f"{read.row_text()} AS r FROM {frm} WHERE {where}) GROUP BY k"
    )
    return {str(k): v for k, v in con.execute(q, list(params)).fetchall()}


def file_digest(paths: Iterable[Path]) -> str:
    """sha256 of the names and bytes of `paths` (a missing file counts as missing)."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\x00")
        try:
            h.update(p.read_bytes())
        except FileNotFoundError:
            h.update(b"<missing>")
        h.update(b"\x00")
    return h.hexdigest()


def key(stage: Stage, digests: Mapping[Reads | Input, str], code: str, *params: object) -> str:
    """The cache key of an artefact of `stage`: each declared read with its columns and types and
    its digest in `digests` (exactly the declared reads), the code fingerprint `code`, and
    `params` (JSON-able: the year, the area, the renderer, ...)."""
    given, declared = set(digests), set(stage.reads)
    if given != declared:
        raise ValueError(
            f"stage '{stage.name}': digests given for {sorted(map(repr, given - declared))} "
            f"not declared, none for {sorted(map(repr, declared - given))}"
        )
    h = hashlib.sha256(f"{FORMAT}|{stage.name}".encode())
    for r in stage.reads:
        what = [r.table, r.rows, list(r.column_types().items())] if isinstance(r, Reads) else [r.name]
        h.update(json.dumps([what, digests[r]], ensure_ascii=False).encode())
    h.update(f"|code|{code}|".encode())
    h.update(json.dumps(params, sort_keys=True, default=str, ensure_ascii=False).encode())
    return h.hexdigest()
