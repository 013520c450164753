"""pipelines/io/xlsx.py: the one column-letter helper and its inverse, the formula-injection guard, and
that no second conversion between column numbers and letters creeps back into the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.io import xlsx

PKG = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.mark.parametrize(
    "index, letters",
    [
        (0, "A"),
        (1, "B"),
        (25, "Z"),
        (26, "AA"),
        (27, "AB"),
        (51, "AZ"),
        (52, "BA"),
        (701, "ZZ"),
        (702, "AAA"),
        (16383, "XFD"),
    ],
)
def test_column_letter_and_its_inverse(index, letters):
    assert xlsx.column_letter(index) == letters
    assert xlsx.column_index(letters) == index
    assert xlsx.column_index(letters.lower()) == index
    assert xlsx.column_index(f"{letters}12") == index  # a cell reference: its leading letters


def test_column_index_inverts_column_letter_over_excels_columns():
    assert [xlsx.column_index(xlsx.column_letter(i)) for i in range(16384)] == list(range(16384))
    assert len({xlsx.column_letter(i) for i in range(16384)}) == 16384
    assert xlsx.column_index("") == -1  # no letters: no column


def test_column_letters_table_is_the_helper():
    assert xlsx.COLUMN_LETTERS == [xlsx.column_letter(i) for i in range(len(xlsx.COLUMN_LETTERS))]
    assert isinstance(xlsx.COLUMN_LETTERS, list)  # the reader compares a list of a row's letters with a slice


def test_openpyxl_agrees_with_the_helper():
    from openpyxl.utils import column_index_from_string, get_column_letter

    for i in (0, 25, 26, 701, 702, 16383):
        assert xlsx.column_letter(i) == get_column_letter(i + 1)
        assert xlsx.column_index(get_column_letter(i + 1)) == column_index_from_string(get_column_letter(i + 1)) - 1


# Arithmetic that turns a column number into letters or back: chr(65 + r), ord(ch) - 64, divmod(n, 26).
_ARITHMETIC = re.compile(
    r"chr\(\s*(?:65|ord\(\s*['\"]A['\"]\s*\))|ord\([^)]*\)\)?\s*-\s*(?:64|65|ord\(\s*['\"]A['\"]\s*\))"
    r"|divmod\([^)]*,\s*26\s*\)|get_column_letter|column_index_from_string"
)
_OLD_NAMES = {"_col_letter", "col_letters", "_col_index", "col_index", "_COLUMN_LETTERS"}


def test_one_column_letter_helper_in_the_package():
    found, names = [], []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(PKG.parent).as_posix()
        if rel != "pipelines/io/xlsx.py":
            found += [f"{rel}: {m.group(0)}" for m in _ARITHMETIC.finditer(text)]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.Name, ast.alias, ast.Attribute)):
                name = getattr(node, "name", None) or getattr(node, "id", None) or getattr(node, "attr", None)
                if name in _OLD_NAMES or (isinstance(node, ast.alias) and node.asname in _OLD_NAMES):
                    names.append(f"{rel} line {node.lineno}: {name}")
    assert found == [], "convert column numbers and letters with pipelines.io.xlsx.column_letter / column_index"
    assert names == []
    # and the one helper holds the arithmetic the scan looks for (else the scan finds nothing anywhere)
    assert _ARITHMETIC.search((PKG / "io" / "xlsx.py").read_text(encoding="utf-8"))


def test_neutralise_frame_is_neutralise_on_every_cell():
    df = pd.DataFrame(
        {
            "text": ["=1+1", "+81", "-3", "@SUM", "\tx", "\rx", "東京都", "a=b", "", None],
            "num": [1.0, -2.0, np.nan, 3, 4, 5, 6, 7, 8, 9],
            "mixed": ["=A1", 5, None, True, "-x", "ok", 1.5, "'=q", "+", "@"],
        }
    )
    out = xlsx.neutralise_frame(df)
    for col in df.columns:
        want = [xlsx.neutralise(v) for v in df[col].tolist()]
        got = out[col].tolist()
        assert [type(g) for g in got] == [type(w) for w in want], col
        assert [g for g in got if g == g] == [w for w in want if w == w], col
    assert df["text"][0] == "=1+1"  # the input is left as it was
    assert out["text"][:6].tolist() == ["'=1+1", "'+81", "'-3", "'@SUM", "'\tx", "'\rx"]


def test_written_sheet_references_use_the_helper(tmp_path):
    """A row wider than the 256-column table: every cell's reference and the dimension from the helper."""
    row = [f"v{i}" for i in range(300)]
    sheet = xlsx.sheet_xml([row], dimension=True).decode()
    refs = re.findall(r'<c r="([A-Z]+)1"', sheet)
    assert refs == [xlsx.column_letter(i) for i in range(300)]
    assert '<dimension ref="A1:KN1" />' in sheet  # column 300 (0-based 299)
    path = xlsx.write_workbook(tmp_path / "wide.xlsx", [("s", sheet.encode())])
    assert xlsx.read_sheets(path)[0][1] == [row]
    assert xlsx.read_sheets(path, fast=False)[0][1] == [row]
