"""One SQLite file opened the way both of our stores need it: WAL, a busy timeout, autocommit mode."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
