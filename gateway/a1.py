"""A1 notation: the only way ranges are named between the gateway and its backends.

Supported forms (sheet titles are always quoted with single quotes when built here):
``'Sheet'!A1:H1``, ``'Sheet'!5:5`` (whole rows), ``'Sheet'!E:E`` (whole columns),
``'Sheet'!A2:C`` (open-ended rows), ``'Sheet'`` (the whole sheet) and ``'Sheet'!B7`` (one cell).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_CELL_CHARS = 50_000

_CELL = re.compile(r"^([A-Z]*)(\d*)$")


def col_letter(index: int) -> str:
    """Column letter for a 1-based column index (1 → A, 27 → AA)."""
    if index < 1:
        raise ValueError(f"column index must be >= 1, got {index}")
    letters = ""
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def col_index(letters: str) -> int:
    """1-based column index for a column letter (A → 1, AA → 27)."""
    if not letters or not letters.isalpha():
        raise ValueError(f"not a column letter: {letters!r}")
    index = 0
    for ch in letters.upper():
        index = index * 26 + (ord(ch) - ord("A") + 1)
    return index


def quote_title(title: str) -> str:
    """Sheet title quoted for A1 notation (single quotes doubled inside)."""
    return "'" + title.replace("'", "''") + "'"


@dataclass(frozen=True)
class A1Range:
    """A parsed range; `None` bounds are open (whole column / whole row / to the end)."""

    sheet: str
    row1: int | None = None
    col1: int | None = None
    row2: int | None = None
    col2: int | None = None

    def __str__(self) -> str:
        start = (col_letter(self.col1) if self.col1 else "") + (str(self.row1) if self.row1 else "")
        end = (col_letter(self.col2) if self.col2 else "") + (str(self.row2) if self.row2 else "")
        if not start and not end:
            return quote_title(self.sheet)
        if start == end and self.row1 and self.col1:
            return f"{quote_title(self.sheet)}!{start}"
        return f"{quote_title(self.sheet)}!{start}:{end}"


def row_range(sheet: str, row: int) -> str:
    """The whole row `row` of `sheet`."""
    return str(A1Range(sheet, row1=row, row2=row))


def column_range(sheet: str, col: int) -> str:
    """The whole column `col` (1-based) of `sheet`."""
    return str(A1Range(sheet, col1=col, col2=col))


def cell_range(sheet: str, row: int, col: int) -> str:
    """One cell."""
    return str(A1Range(sheet, row1=row, col1=col, row2=row, col2=col))


def sheet_range(sheet: str) -> str:
    """The whole sheet."""
    return quote_title(sheet)


def _split_title(text: str) -> tuple[str, str]:
    if text.startswith("'"):
        i = 1
        title = []
        while i < len(text):
            ch = text[i]
            if ch == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    title.append("'")
                    i += 2
                    continue
                rest = text[i + 1 :]
                if rest and not rest.startswith("!"):
                    raise ValueError(f"bad A1 range: {text!r}")
                return "".join(title), rest[1:] if rest else ""
            title.append(ch)
            i += 1
        raise ValueError(f"unterminated sheet title in {text!r}")
    if "!" in text:
        name, _, rest = text.partition("!")
        return name, rest
    return text, ""


def _parse_cell(text: str, whole: str) -> tuple[int | None, int | None]:
    m = _CELL.match(text.upper())
    if not m or (not m.group(1) and not m.group(2)):
        raise ValueError(f"bad A1 range: {whole!r}")
    col = col_index(m.group(1)) if m.group(1) else None
    row = int(m.group(2)) if m.group(2) else None
    if row == 0:
        raise ValueError(f"bad A1 range (row 0): {whole!r}")
    return row, col


def parse(text: str) -> A1Range:
    """Parse an A1 range with a sheet title; raises ValueError on anything else."""
    title, ref = _split_title(text)
    if not title:
        raise ValueError(f"A1 range without a sheet title: {text!r}")
    if not ref:
        return A1Range(title)
    first, sep, second = ref.partition(":")
    r1, c1 = _parse_cell(first, text)
    if not sep:
        return A1Range(title, r1, c1, r1, c1)
    r2, c2 = _parse_cell(second, text)
    return A1Range(title, r1, c1, r2, c2)
