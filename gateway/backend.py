"""The narrow protocol every storage backend implements (Google Sheets, the local store).

Backends speak A1 ranges and lists of strings only. They know nothing of headers, keys,
retries or batching: the gateway adds those on top so both backends behave the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

Rows = list[list[str]]


class SheetsBackend(Protocol):
    """Storage for a spreadsheet: named sheets of string cells addressed by A1 ranges."""

    name: str

    async def open(self) -> None:
        """Connect / open files. Called once before any other call."""

    async def close(self) -> None:
        """Release connections and files."""

    async def sheet_titles(self) -> list[str]:
        """Titles of the existing sheets, in order."""

    async def add_sheet(self, title: str, headers: Sequence[str]) -> None:
        """Create a sheet whose first row holds `headers`."""

    async def batch_get(self, ranges: Sequence[str]) -> list[Rows]:
        """Values of each range (one call). Trailing empty cells and rows are trimmed, as Google does."""

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None:
        """Write each (range, rows) pair RAW (never evaluated as a formula), in one call."""

    async def append(self, sheet: str, rows: Rows) -> int:
        """Append rows after the last non-empty row (INSERT_ROWS, RAW); returns the first row number used."""

    async def format_sheet(self, sheet: str, headers: Sequence[str], dropdowns: Mapping[str, Sequence[str]]) -> None:
        """Freeze the header row and add status dropdowns (a no-op where there is no UI)."""

    async def delete_rows(self, sheet: str, rows: Sequence[int]) -> None:
        """Delete whole rows (1-based numbers) in one call; the rows below move up, the grid shrinks."""
