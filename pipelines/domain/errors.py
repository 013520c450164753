"""Errors a user can act on.

``DataError`` (exit 1) names the file, the column, the rule, how many rows and a few example rows.
``UsageError`` (exit 2) names the offending parameter.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

MAX_EXAMPLES = 5
RULE_UNREADABLE = "unreadable file / 読み込めません"  # a file no reader can open

# Control, format and line/paragraph-separator characters: a file name or header holding one could
# forge lines in a terminal or log (issue #15), or hide text (U+202E reverses what follows).
_HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def printable(text: object) -> str:
    """``text`` with every control/format character written as a Python escape (a newline as
    ``\\n``, ESC as ``\\x1b``, U+2028 as ``\\u2028``); other characters, Japanese included, unchanged."""
    s = str(text)
    if s.isascii() and s.isprintable() or not any(unicodedata.category(c) in _HIDDEN for c in s):
        return s
    return "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _HIDDEN else c for c in s)


class TsunagariError(Exception):
    exit_code = 1


class DataError(TsunagariError):
    """The data were rejected. Nothing was committed."""

    exit_code = 1

    def __init__(
        self,
        file: str,
        rule: str,
        column: str | None = None,
        rows: Sequence[int] = (),
        count: int | None = None,
        examples: Sequence[object] = (),
        detail: str | None = None,
    ) -> None:
        self.file = file
        self.column = column
        self.rule = rule
        self.rows = list(rows)
        self.count = count if count is not None else len(self.rows)
        self.examples = list(examples)
        self.detail = detail
        super().__init__(self.format())

    def format(self) -> str:
        """One line: file name, column and detail have control characters escaped (``printable``)."""
        parts = [printable(self.file)]
        if self.column is not None:
            parts.append(f"column '{printable(self.column)}'")
        head = ": ".join([", ".join(parts), self.rule])
        bits = []
        if self.count:
            bits.append(f"{self.count} row{'s' if self.count != 1 else ''}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:MAX_EXAMPLES])
            more = " …" if len(self.rows) > MAX_EXAMPLES else ""
            bits.append(f"rows {shown}{more}")
        if self.examples:
            shown = ", ".join(repr(e) for e in self.examples[:MAX_EXAMPLES])
            bits.append(f"examples {shown}")
        msg = head
        if bits:
            msg += " (" + "; ".join(bits) + ")"
        if self.detail:
            msg += f". {printable(self.detail)}"
        return msg


class UsageError(TsunagariError):
    """A command-line parameter is invalid (exit 2)."""

    exit_code = 2

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(printable(f"{parameter}: {message}"))


def check_pref_code(value: object, parameter: str = "--pref") -> int:
    """Guard: a JIS prefecture code 1..47 (also accepts '01'). Raises UsageError naming the parameter."""
    text = str(value).strip()
    if not text.isdecimal() or not 1 <= int(text) <= 47:
        raise UsageError(
            parameter, f"'{value}' is not a prefecture code (1–47, JIS X 0401) / 都道府県コードではありません"
        )
    return int(text)


def check_year(value: object, parameter: str = "--year") -> int:
    """Guard: a four-digit fieldwork year 2000..2100."""
    text = str(value).strip()
    if not text.isdecimal() or not 2000 <= int(text) <= 2100:
        raise UsageError(parameter, f"'{value}' is not a survey year (e.g. 2024) / 調査年ではありません")
    return int(text)
