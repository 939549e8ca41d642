"""The embedded backend: one aiosqlite file (WAL) holding sheets as rows of string cells.

It honours the same A1 semantics as Google Sheets (trimmed trailing cells and rows, RAW values,
INSERT_ROWS appends, the 50,000-character cell limit) so every service runs unchanged on it.
Another process (the CLI) may read and write the same file at the same time.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from gateway import a1
from gateway.backend import Rows
from gateway.errors import BadRequest, CellTooLarge, SheetMissing, TransientBackendError
from gateway.sqlite import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sheets (title TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    sheet TEXT NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (sheet, row, col)
) WITHOUT ROWID;
"""


class LocalSheetsBackend:
    """Sheets stored in a local SQLite file; the embedded default backend."""

    name = "local"

    def __init__(self, path: str | Path, busy_timeout_ms: int = 10_000) -> None:
        # NORMAL is enough here: this file stands in for Google's storage, the outbox is the durable journal.
        self._file = SqliteFile(path, _SCHEMA, synchronous="NORMAL", busy_timeout_ms=busy_timeout_ms)

    async def open(self) -> None:
        """Open the file (creating it and its folder) in WAL mode."""
        await self._file.open()

    async def close(self) -> None:
        """Close the file."""
        await self._file.close()

    @property
    def db(self) -> aiosqlite.Connection:
        return self._file.db

    async def sheet_titles(self) -> list[str]:
        """Titles in creation order."""
        try:
            return [str(r[0]) for r in await self._file.rows("SELECT title FROM sheets ORDER BY position")]
        except sqlite3.OperationalError as exc:
            raise TransientBackendError(f"local store busy: {exc}") from exc

    async def add_sheet(self, title: str, headers: Sequence[str]) -> None:
        """Create a sheet with a header row (no-op for the sheet if it exists)."""
        async with self._write() as db:
            await db.execute(
                "INSERT OR IGNORE INTO sheets(title, position) "
                "VALUES (?, (SELECT COALESCE(MAX(position), 0) + 1 FROM sheets))",
                (title,),
            )
            await db.executemany(
                "INSERT OR REPLACE INTO cells(sheet, row, col, value) VALUES (?, 1, ?, ?)",
                [(title, i + 1, h) for i, h in enumerate(headers) if h],
            )

    async def batch_get(self, ranges: Sequence[str]) -> list[Rows]:
        """Values of each range, trimmed like Google's values API."""
        parsed = [self._parse(r) for r in ranges]
        titles = set(await self.sheet_titles())
        out: list[Rows] = []
        try:
            for rng in parsed:
                if rng.sheet not in titles:
                    raise _missing(rng.sheet)
                out.append(await self._read(rng))
        except sqlite3.OperationalError as exc:
            raise TransientBackendError(f"local store busy: {exc}") from exc
        return out

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None:
        """Write every (range, rows) pair in one transaction; values are stored verbatim."""
        parsed = [(self._parse(rng), rows) for rng, rows in data]
        for _, rows in parsed:
            _check_sizes(rows)
        titles = set(await self.sheet_titles())
        async with self._write() as db:
            for rng, rows in parsed:
                if rng.sheet not in titles:
                    raise _missing(rng.sheet)
                await self._put(db, rng.sheet, rng.row1 or 1, rng.col1 or 1, rows)

    async def append(self, sheet: str, rows: Rows) -> int:
        """Insert rows after the last non-empty row, atomically against other writers."""
        _check_sizes(rows)
        if sheet not in set(await self.sheet_titles()):
            raise _missing(sheet)
        async with self._write() as db:
            found = await db.execute_fetchall("SELECT COALESCE(MAX(row), 0) FROM cells WHERE sheet = ?", (sheet,))
            first = next((int(r[0]) for r in found), 0) + 1
            await self._put(db, sheet, first, 1, rows)
        return first

    async def format_sheet(self, sheet: str, headers: Sequence[str], dropdowns: Mapping[str, Sequence[str]]) -> None:
        """Nothing to format without a spreadsheet UI."""

    async def delete_rows(self, sheet: str, rows: Sequence[int]) -> None:
        """Delete rows in one transaction; the rows below move up (as a deleteDimension does)."""
        gone = sorted(set(rows))
        if not gone:
            return
        if sheet not in set(await self.sheet_titles()):
            raise _missing(sheet)
        async with self._write() as db:
            below = [
                (int(r), int(c), str(v))
                for r, c, v in await db.execute_fetchall(
                    "SELECT row, col, value FROM cells WHERE sheet = ? AND row >= ?", (sheet, gone[0])
                )
            ]
            await db.execute("DELETE FROM cells WHERE sheet = ? AND row >= ?", (sheet, gone[0]))
            kept = []
            for r, c, v in below:
                if r in gone:
                    continue
                shift = bisect.bisect_left(gone, r)  # deleted rows above this one
                kept.append((sheet, r - shift, c, v))
            await db.executemany("INSERT INTO cells(sheet, row, col, value) VALUES (?, ?, ?, ?)", kept)

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _parse(rng: str) -> a1.A1Range:
        try:
            return a1.parse(rng)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT, so appends from two processes never pick the same row."""
        try:
            async with self._file.transaction() as db:
                yield db
        except sqlite3.OperationalError as exc:  # the other process held the lock past the busy timeout
            raise TransientBackendError(f"local store busy: {exc}") from exc

    async def _read(self, rng: a1.A1Range) -> Rows:
        sql = "SELECT row, col, value FROM cells WHERE sheet = ?"
        args: list[object] = [rng.sheet]
        for column, op, bound in (
            ("row", ">=", rng.row1),
            ("row", "<=", rng.row2),
            ("col", ">=", rng.col1),
            ("col", "<=", rng.col2),
        ):
            if bound is not None:
                sql += f" AND {column} {op} ?"
                args.append(bound)
        sql += " ORDER BY row, col"
        row0 = rng.row1 or 1
        col0 = rng.col1 or 1
        grid: dict[int, dict[int, str]] = {}
        for r, c, v in await self._file.rows(sql, args):
            if v != "":
                grid.setdefault(int(r) - row0, {})[int(c) - col0] = str(v)
        if not grid:
            return []
        out: Rows = []
        for i in range(max(grid) + 1):
            cells = grid.get(i, {})
            out.append([cells.get(j, "") for j in range(max(cells) + 1)] if cells else [])
        return out

    @staticmethod
    async def _put(db: aiosqlite.Connection, sheet: str, row0: int, col0: int, rows: Rows) -> None:
        upserts: list[tuple[str, int, int, str]] = []
        deletes: list[tuple[str, int, int]] = []
        for i, cells in enumerate(rows):
            for j, value in enumerate(cells):
                if value == "":
                    deletes.append((sheet, row0 + i, col0 + j))
                else:
                    upserts.append((sheet, row0 + i, col0 + j, value))
        if deletes:
            await db.executemany("DELETE FROM cells WHERE sheet = ? AND row = ? AND col = ?", deletes)
        if upserts:
            await db.executemany("INSERT OR REPLACE INTO cells(sheet, row, col, value) VALUES (?, ?, ?, ?)", upserts)


def _missing(sheet: str) -> SheetMissing:
    return SheetMissing(f"Unable to parse range: {a1.quote_title(sheet)}", sheet=sheet)


def _check_sizes(rows: Rows) -> None:
    for cells in rows:
        for value in cells:
            if not isinstance(value, str):
                raise BadRequest(f"cell values must be strings, got {type(value).__name__}")
            if len(value) > a1.MAX_CELL_CHARS:
                raise CellTooLarge(
                    f"Your input contains more than the maximum of {a1.MAX_CELL_CHARS} characters in a single cell."
                )
