"""What ingest hands to validation: one StagedFile per input file, its rows in a staging table.

Staging tables live in the warehouse connection inside the ingest transaction:
``staging_survey`` and ``staging_programme`` (columns of schema.SURVEY_TABLE_DDL /
PROGRAMME_TABLE_DDL, ``file_id`` identifies the file, ``source_row`` the 1-based data row).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StagedFile:
    path: Path
    file_name: str
    file_id: str  # sha256 of the bytes
    kind: str  # 'survey' | 'programme'
    row_count: int
    encoding: str | None = None
    survey_id: str | None = None  # declared survey, e.g. 'national-2024' (from the file name or column)
    survey_year: int | None = None  # declared round (the year in survey_id)
    synthetic: bool = False

    @property
    def staging_table(self) -> str:
        return "staging_survey" if self.kind == "survey" else "staging_programme"
