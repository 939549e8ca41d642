"""The durable local state next to the outbox (`chat_memory.db`): outbox, delivery ledgers, counters.

This is the only place besides the local backend that touches SQLite; services reach it through
the gateway's small methods, never directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

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
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY, op TEXT NOT NULL, error TEXT NOT NULL, created REAL NOT NULL, dead_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
class QueuedWrite:
    """An outbox entry or a dead letter as the admin sees it (`marketingbot outbox list`)."""

    seq: int
    op: WriteOp
    created: float
    error: str
    dead: bool


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
        columns = {str(r[1]) for r in await self._file.rows("PRAGMA table_info(outbox)")}
        if "last_error" not in columns:  # state files written before the column existed
            await self._file.write("ALTER TABLE outbox ADD COLUMN last_error TEXT NOT NULL DEFAULT ''")
        await self._adopt_old_dead_letters()

    async def _adopt_old_dead_letters(self) -> None:
        """Earlier versions kept dead letters as 'outbox-dead' ledger rows: move them to the dead-letter table,
        with ids after every outbox id (so `marketingbot outbox` shows and handles them too)."""
        old = [
            (str(k), str(s), str(p), float(u))
            for k, s, p, u in await self._file.rows(
                "SELECT key, state, payload, updated FROM ledger WHERE kind = 'outbox-dead' ORDER BY updated"
            )
        ]
        if not old:
            return
        async with self._file.transaction() as db:
            found = await db.execute_fetchall(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0), "
                "COALESCE((SELECT MAX(seq) FROM dead_letters), 0))"
            )
            base = next((int(r[0]) for r in found), 0)
            await db.executemany(
                "INSERT INTO dead_letters(seq, op, error, created, dead_at) VALUES (?, ?, ?, ?, ?)",
                [
                    (base + i + 1, payload, state, updated, updated)
                    for i, (_, state, payload, updated) in enumerate(old)
                ],
            )
            # The next outbox id comes after them.
            await db.execute("DELETE FROM sqlite_sequence WHERE name = 'outbox'")
            await db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('outbox', ?)", (base + len(old),))
            await db.execute("DELETE FROM ledger WHERE kind = 'outbox-dead'")

    async def close(self) -> None:
        """Close the file."""
        await self._file.close()

    @property
    def file(self) -> SqliteFile:
        """The state file, for the journals kept beside the outbox (gateway/journal.py)."""
        return self._file

    # -- outbox ------------------------------------------------------------------------------

    async def outbox_put(self, ops: list[WriteOp], *, maybe_applied: bool) -> None:
        """Journal ops in order; durable when this returns."""
        now = time.time()
        async with self._file.transaction() as db:
            await db.executemany(
                "INSERT INTO outbox(op, maybe_applied, created) VALUES (?, ?, ?)",
                [(op.to_json(), int(maybe_applied), now) for op in ops],
            )

    async def outbox_peek(self, limit: int) -> list[OutboxEntry]:
        """The oldest `limit` entries, in order."""
        found = await self._file.rows("SELECT seq, op, maybe_applied FROM outbox ORDER BY seq LIMIT ?", (limit,))
        return [OutboxEntry(int(s), WriteOp.from_json(str(o)), bool(m)) for s, o, m in found]

    async def outbox_mark_attempted(self, seqs: list[int]) -> None:
        """Record that a replay is about to send these, so a crash mid-call replays them idempotently."""
        await self._file.write_many("UPDATE outbox SET maybe_applied = 1 WHERE seq = ?", [(s,) for s in seqs])

    async def outbox_delete(self, seqs: list[int]) -> None:
        """Forget entries that reached the sheet."""
        await self._file.write_many("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    async def outbox_depth(self) -> int:
        """How many writes wait for the sheet."""
        return await self._number("SELECT COUNT(*) FROM outbox")

    async def outbox_note_error(self, seq: int, error: str) -> None:
        """Remember why an entry is still waiting (shown by `marketingbot outbox list`)."""
        await self._file.write("UPDATE outbox SET last_error = ? WHERE seq = ?", (error, seq))

    async def outbox_oldest(self) -> float | None:
        """When the oldest waiting entry was journaled (epoch seconds), None when empty."""
        row = await self._file.row("SELECT MIN(created) FROM outbox")
        return float(row[0]) if row and row[0] is not None else None

    async def outbox_list(self) -> list[QueuedWrite]:
        """Every waiting entry (oldest first), then every dead letter."""
        waiting = await self._file.rows("SELECT seq, op, created, last_error FROM outbox ORDER BY seq")
        dead = await self._file.rows("SELECT seq, op, created, error FROM dead_letters ORDER BY seq")
        return [
            QueuedWrite(int(s), WriteOp.from_json(str(o)), float(c), str(e), is_dead)
            for found, is_dead in ((waiting, False), (dead, True))
            for s, o, c, e in found
        ]

    async def outbox_kill(self, entry: OutboxEntry, error: str) -> None:
        """Move an entry that can never apply to the dead letters (in one transaction)."""
        async with self._file.transaction() as db:
            found = await db.execute_fetchall("SELECT created FROM outbox WHERE seq = ?", (entry.seq,))
            created = next((float(r[0]) for r in found), time.time())
            await db.execute(
                "INSERT OR REPLACE INTO dead_letters(seq, op, error, created, dead_at) VALUES (?, ?, ?, ?, ?)",
                (entry.seq, entry.op.to_json(), error, created, time.time()),
            )
            await db.execute("DELETE FROM outbox WHERE seq = ?", (entry.seq,))

    async def dead_count(self) -> int:
        """How many dead letters there are."""
        return await self._number("SELECT COUNT(*) FROM dead_letters")

    async def dead_retry(self, seq: int) -> bool:
        """Put a dead letter back at the end of the outbox (False when there is none with that id)."""
        async with self._file.transaction() as db:
            found = list(await db.execute_fetchall("SELECT op FROM dead_letters WHERE seq = ?", (seq,)))
            if found:
                # maybe_applied: a replay must check the sheet first, whatever happened before.
                await db.execute(
                    "INSERT INTO outbox(op, maybe_applied, created) VALUES (?, 1, ?)", (str(found[0][0]), time.time())
                )
                await db.execute("DELETE FROM dead_letters WHERE seq = ?", (seq,))
        return bool(found)

    async def outbox_drop(self, seq: int) -> bool:
        """Delete one waiting entry or dead letter for good (False when there is none with that id)."""
        dropped = 0
        for table in ("outbox", "dead_letters"):
            dropped += await self._file.write(f"DELETE FROM {table} WHERE seq = ?", (seq,))  # fixed table names
        return dropped > 0

    # -- ledgers -------------------------------------------------------------------------------

    async def ledger_get(self, kind: str, key: str) -> LedgerEntry | None:
        """The recorded state of one delivery, if any."""
        row = await self._file.row("SELECT state, payload, updated FROM ledger WHERE kind = ? AND key = ?", (kind, key))
        return LedgerEntry(kind, key, str(row[0]), str(row[1]), float(row[2])) if row else None

    async def ledger_set(self, kind: str, key: str, state: str, payload: str = "") -> None:
        """Record (durably) the state of one delivery."""
        await self._file.write(
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
        found = await self._file.rows(sql + " ORDER BY updated", args)
        return [LedgerEntry(kind, str(k), str(s), str(p), float(u)) for k, s, p, u in found]

    # -- deliveries ----------------------------------------------------------------------------

    async def delivery_get(self, kind: str, key: str) -> DeliveryRecord | None:
        """The recorded state of one delivery, if any."""
        row = await self._file.row(
            "SELECT phase, fingerprint, next_part, failures, note, updated FROM delivery WHERE kind = ? AND key = ?",
            (kind, key),
        )
        if row is None:
            return None
        return DeliveryRecord(
            DeliveryPhase(str(row[0])), str(row[1]), int(row[2]), int(row[3]), str(row[4]), float(row[5])
        )

    async def delivery_set(self, kind: str, key: str, record: DeliveryRecord) -> None:
        """Record (durably) the state of one delivery."""
        await self._file.write(
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
        found = await self._file.rows(
            "SELECT key, phase, fingerprint, next_part, failures, note, updated FROM delivery WHERE kind = ?", (kind,)
        )
        return {
            str(k): DeliveryRecord(DeliveryPhase(str(p)), str(f), int(n), int(c), str(t), float(u))
            for k, p, f, n, c, t, u in found
        }

    async def delivery_prune(self, before: float) -> int:
        """Forget deliveries finished (sent, settled, failed) before `before` (epoch seconds); in-flight ones stay."""
        return await self._file.write(
            "DELETE FROM delivery WHERE updated < ? AND phase != ?", (before, DeliveryPhase.SENDING.value)
        )

    async def ledger_prune(self, before: float) -> int:
        """Forget finished entries last updated before `before` (epoch seconds); in-flight ('sending') ones stay."""
        return await self._file.write("DELETE FROM ledger WHERE updated < ? AND lower(state) != 'sending'", (before,))

    # -- meta (small named values: heartbeat, clean-stop marker) -------------------------------

    async def meta_get(self, key: str) -> str | None:
        """A stored value, or None."""
        row = await self._file.row("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def meta_set(self, key: str, value: str) -> None:
        """Store a value."""
        await self._file.write(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def meta_keys(self, prefix: str) -> list[str]:
        """Every stored key starting with `prefix`."""
        found = await self._file.rows("SELECT key FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return [str(r[0]) for r in found]

    async def meta_delete(self, key: str) -> None:
        """Forget a value."""
        await self._file.write("DELETE FROM meta WHERE key = ?", (key,))

    # -- counters ------------------------------------------------------------------------------

    async def counter_add(self, name: str, period: str, delta: int = 1) -> int:
        """Add to a per-period counter (e.g. AI answers per user per day); returns the new value."""
        await self._file.write(
            "INSERT INTO counters(name, period, value) VALUES (?, ?, ?) "
            "ON CONFLICT(name, period) DO UPDATE SET value = value + excluded.value",
            (name, period, delta),
        )
        return await self.counter_get(name, period)

    async def counter_get(self, name: str, period: str) -> int:
        """Current value of a per-period counter (0 when unset)."""
        return await self._number("SELECT value FROM counters WHERE name = ? AND period = ?", (name, period))

    async def counter_prune(self, before: str) -> int:
        """Forget counters of periods (ISO dates) before `before`."""
        return await self._file.write("DELETE FROM counters WHERE period < ?", (before,))

    async def counter_sum(self, prefix: str, period: str) -> int:
        """Sum of counters whose name starts with `prefix` for one period."""
        return await self._number(
            "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name LIKE ? AND period = ?",
            (prefix.replace("%", r"\%") + "%", period),
        )

    async def _number(self, sql: str, args: tuple[object, ...] = ()) -> int:
        row = await self._file.row(sql, args)
        return int(row[0]) if row and row[0] is not None else 0
