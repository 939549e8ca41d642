"""The durable local state next to the outbox (`chat_memory.db`): outbox, delivery ledgers, counters.

This is the only place besides the local backend that touches SQLite; services reach it through
the gateway's small methods, never directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import aiosqlite

from gateway.ops import WriteOp
from gateway.sqlite import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, maybe_applied INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, payload TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL, PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL, period TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (name, period)
);
"""
# One typed row per delivery (bot/services/delivery.py), kept apart from the string-keyed ledger.
_DELIVERY_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivery (
    kind TEXT NOT NULL, key TEXT NOT NULL, phase TEXT NOT NULL, fingerprint TEXT NOT NULL,
    next_part INTEGER NOT NULL, failures INTEGER NOT NULL, note TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
"""


class DeliveryPhase(StrEnum):
    """Where one delivery stands."""

    SENDING = "sending"  # parts before `next_part` were accepted; `next_part` may be in flight
    SENT = "sent"  # every part accepted; the bookkeeping after it (e.g. a sheet write) may still be due
    SETTLED = "settled"  # delivered and its bookkeeping done
    FAILED = "failed"  # given up (permanent error or too many failures); `note` says why


@dataclass(frozen=True)
class DeliveryRecord:
    """The durable state of one delivery: what is delivered (`fingerprint`) and how far it got."""

    phase: DeliveryPhase
    fingerprint: str = ""
    next_part: int = 0
    failures: int = 0
    note: str = ""
    updated: float = field(default=0.0, compare=False)  # when it was last recorded (epoch seconds), as read


@dataclass(frozen=True)
class OutboxEntry:
    """A journaled write waiting for the sheet."""

    seq: int
    op: WriteOp
    maybe_applied: bool


@dataclass(frozen=True)
class LedgerEntry:
    """The recorded state of one delivery (an operator reply, a broadcast recipient…)."""

    kind: str
    key: str
    state: str
    payload: str
    updated: float


class StateStore:
    """aiosqlite-backed durable state shared by the outbox, delivery ledgers and counters."""

    def __init__(self, path: str | Path) -> None:
        # FULL: an acknowledged outbox entry must survive a power cut, not only a process kill.
        self._file = SqliteFile(path, _SCHEMA + _DELIVERY_SCHEMA, synchronous="FULL")
        self.path = self._file.path

    async def open(self) -> None:
        """Open (and create) the file in WAL mode."""
        await self._file.open()

    async def close(self) -> None:
        """Close the file."""
        await self._file.close()

    @property
    def db(self) -> aiosqlite.Connection:
        return self._file.db

    # -- outbox ------------------------------------------------------------------------------

    async def outbox_put(self, ops: list[WriteOp], *, maybe_applied: bool) -> None:
        """Journal ops in order; durable when this returns."""
        now = time.time()
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.executemany(
                "INSERT INTO outbox(op, maybe_applied, created) VALUES (?, ?, ?)",
                [(op.to_json(), int(maybe_applied), now) for op in ops],
            )
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")

    async def outbox_peek(self, limit: int) -> list[OutboxEntry]:
        """The oldest `limit` entries, in order."""
        async with self.db.execute("SELECT seq, op, maybe_applied FROM outbox ORDER BY seq LIMIT ?", (limit,)) as cur:
            return [OutboxEntry(int(s), WriteOp.from_json(str(o)), bool(m)) async for s, o, m in cur]

    async def outbox_mark_attempted(self, seqs: list[int]) -> None:
        """Record that a replay is about to send these, so a crash mid-call replays them idempotently."""
        await self.db.executemany("UPDATE outbox SET maybe_applied = 1 WHERE seq = ?", [(s,) for s in seqs])

    async def outbox_delete(self, seqs: list[int]) -> None:
        """Forget entries that reached the sheet."""
        await self.db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    async def outbox_depth(self) -> int:
        """How many writes wait for the sheet."""
        async with self.db.execute("SELECT COUNT(*) FROM outbox") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def outbox_pending(self, sheet: str) -> list[WriteOp]:
        """Journaled ops for one sheet, oldest first (to overlay on fresh reads)."""
        return [e.op for e in await self.outbox_peek(1_000_000) if e.op.sheet == sheet]

    # -- ledgers -------------------------------------------------------------------------------

    async def ledger_get(self, kind: str, key: str) -> LedgerEntry | None:
        """The recorded state of one delivery, if any."""
        async with self.db.execute(
            "SELECT state, payload, updated FROM ledger WHERE kind = ? AND key = ?", (kind, key)
        ) as cur:
            row = await cur.fetchone()
        return LedgerEntry(kind, key, str(row[0]), str(row[1]), float(row[2])) if row else None

    async def ledger_set(self, kind: str, key: str, state: str, payload: str = "") -> None:
        """Record (durably) the state of one delivery."""
        await self.db.execute(
            "INSERT INTO ledger(kind, key, state, payload, updated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(kind, key) DO UPDATE SET state = excluded.state, payload = excluded.payload, "
            "updated = excluded.updated",
            (kind, key, state, payload, time.time()),
        )

    async def ledger_list(self, kind: str, state: str | None = None) -> list[LedgerEntry]:
        """Every entry of a kind (optionally in one state)."""
        sql = "SELECT key, state, payload, updated FROM ledger WHERE kind = ?"
        args: tuple[str, ...] = (kind,)
        if state is not None:
            sql += " AND state = ?"
            args = (kind, state)
        async with self.db.execute(sql + " ORDER BY updated", args) as cur:
            return [LedgerEntry(kind, str(k), str(s), str(p), float(u)) async for k, s, p, u in cur]

    # -- deliveries ----------------------------------------------------------------------------

    async def delivery_get(self, kind: str, key: str) -> DeliveryRecord | None:
        """The recorded state of one delivery, if any."""
        async with self.db.execute(
            "SELECT phase, fingerprint, next_part, failures, note, updated FROM delivery WHERE kind = ? AND key = ?",
            (kind, key),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return DeliveryRecord(
            DeliveryPhase(str(row[0])), str(row[1]), int(row[2]), int(row[3]), str(row[4]), float(row[5])
        )

    async def delivery_set(self, kind: str, key: str, record: DeliveryRecord) -> None:
        """Record (durably) the state of one delivery."""
        await self.db.execute(
            "INSERT INTO delivery(kind, key, phase, fingerprint, next_part, failures, note, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(kind, key) DO UPDATE SET phase = excluded.phase, "
            "fingerprint = excluded.fingerprint, next_part = excluded.next_part, failures = excluded.failures, "
            "note = excluded.note, updated = excluded.updated",
            (
                kind,
                key,
                record.phase.value,
                record.fingerprint,
                record.next_part,
                record.failures,
                record.note,
                time.time(),
            ),
        )

    async def delivery_list(self, kind: str) -> dict[str, DeliveryRecord]:
        """Every delivery of a kind, by key."""
        async with self.db.execute(
            "SELECT key, phase, fingerprint, next_part, failures, note, updated FROM delivery WHERE kind = ?", (kind,)
        ) as cur:
            return {
                str(k): DeliveryRecord(DeliveryPhase(str(p)), str(f), int(n), int(c), str(t), float(u))
                async for k, p, f, n, c, t, u in cur
            }

    # -- counters ------------------------------------------------------------------------------

    async def counter_add(self, name: str, period: str, delta: int = 1) -> int:
        """Add to a per-period counter (e.g. AI answers per user per day); returns the new value."""
        await self.db.execute(
            "INSERT INTO counters(name, period, value) VALUES (?, ?, ?) "
            "ON CONFLICT(name, period) DO UPDATE SET value = value + excluded.value",
            (name, period, delta),
        )
        return await self.counter_get(name, period)

    async def counter_get(self, name: str, period: str) -> int:
        """Current value of a per-period counter (0 when unset)."""
        async with self.db.execute("SELECT value FROM counters WHERE name = ? AND period = ?", (name, period)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def counter_sum(self, prefix: str, period: str) -> int:
        """Sum of counters whose name starts with `prefix` for one period."""
        async with self.db.execute(
            "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name LIKE ? AND period = ?",
            (prefix.replace("%", r"\%") + "%", period),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
