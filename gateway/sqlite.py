"""One SQLite file opened the way both of our stores need it: WAL, a busy timeout, autocommit mode.

Two processes share each file (the old and the new slot during a deploy, the CLI beside the bot), so every
caller goes through the four doors below rather than the raw connection:

- `rows`/`row` read a query whole in one step on the connection's thread. A cursor read piece by piece keeps
  a read transaction open between the pieces; a write another coroutine runs on this connection meanwhile
  then fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT: no busy wait) whenever the other
  process wrote since the read began.
- `write`/`write_many` and `transaction` take turns: an autocommit statement never lands inside another
  caller's open transaction, where a ROLLBACK would take it back after it was reported durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from gateway.errors import GatewayError
from gateway.private import private_dir, private_file


class SqliteFile:
    """Owns one aiosqlite connection; `open()` creates the file, its folder and the schema."""

    def __init__(
        self, path: str | Path, schema: str, *, synchronous: Literal["NORMAL", "FULL"], busy_timeout_ms: int = 10_000
    ) -> None:
        self.path = Path(path)
        self._schema = schema
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        self._writing = asyncio.Lock()

    async def open(self) -> None:
        """Open (and create) the file in WAL mode, so another process can read and write it too."""
        # Conversations and phones: 0600 in a 0700 folder; SQLite gives its -wal/-shm files the same mode.
        private_dir(self.path.parent)
        private_file(self.path)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute(f"PRAGMA synchronous = {self._synchronous}")
        await db.executescript(self._schema)
        self._db = db

    async def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise GatewayError(f"{self.path} used before open()")
        return self._db

    async def rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Every row of one query, read in one step (no statement stays open across an await)."""
        return [tuple(r) for r in await self.db.execute_fetchall(sql, tuple(args))]

    async def row(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...] | None:
        """The first row of one query, or None."""
        found = await self.rows(sql, args)
        return found[0] if found else None

    async def write(self, sql: str, args: Sequence[object] = ()) -> int:
        """Run one statement, durable when this returns; the rows it changed."""
        async with self._writing:
            cur = await self.db.execute(sql, tuple(args))
            count = cur.rowcount
            await cur.close()
        return int(count)

    async def write_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """One statement per parameter row, each durable when this returns."""
        async with self._writing:
            await self.db.executemany(sql, [tuple(r) for r in rows])

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK when the body fails), one at a time; the body runs its statements
        on the connection it is given (reading with `execute_fetchall`)."""
        async with self._writing:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")
