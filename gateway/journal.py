"""Local journals that make a turn durable before the sheet has it: the turn journal and the update inbox.

Reply first, write after. A chat turn (the partner's text and the answer, as ONE write op) is recorded here,
durably, before the reply goes out; the write to the sheet then runs in the background, off the reply's
path. Until the sheet (or the outbox) holds the write, reads of that row overlay it, so the next turn's
history never misses a turn. A crash between the reply and the write loses nothing: on start the journal
hands every unconfirmed turn to the outbox, which replays it once, idempotently.

The update inbox records every Telegram update before Telegram is told it was received (the next
getUpdates offset, or the webhook's 200), and marks it done only when its turn is finished. On start the
unfinished ones are processed again; a turn already journaled is not asked of the model again, its logged
reply is sent.

Both live in the state file (`chat_memory.db`) beside the outbox, on the StateStore's connection: one
connection never contends for SQLite's write lock with itself (two connections did, under load), and its
statements take turns with the outbox's transactions (gateway/sqlite.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.batch import _holds_entry, _join
from gateway.errors import GatewayError
from gateway.ops import OpKind, WriteOp
from gateway.records import Record
from gateway.state import StateStore

log = logging.getLogger(__name__)

WriteFn = Callable[[Sequence[WriteOp]], Awaitable[None]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turn_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, turn_id TEXT NOT NULL UNIQUE, sheet TEXT NOT NULL, key TEXT NOT NULL,
    op TEXT NOT NULL, reply TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turn_journal_row ON turn_journal(sheet, key, state);
CREATE TABLE IF NOT EXISTS update_inbox (
    update_id INTEGER PRIMARY KEY, chat_id INTEGER, payload TEXT NOT NULL, state TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS update_inbox_state ON update_inbox(state, update_id);
"""

PENDING = "pending"  # journaled; neither the sheet nor the outbox confirmed it yet
WRITTEN = "written"  # in the sheet or in the outbox
REJECTED = "rejected"  # the sheet refused it for good (bad data): nothing to overlay or replay
UNFINISHED = "unfinished"
DONE = "done"
KEEP_SECONDS = 2 * 86_400.0  # finished entries are kept this long (a resumed update may still look its reply up)


class JournalFile:
    """The journals' tables in the StateStore's file (opened after it: the store creates the outbox)."""

    def __init__(self, state: StateStore) -> None:
        self._file = state.file

    async def open(self) -> None:
        """Create the tables."""
        await self._file.db.executescript(_SCHEMA)

    async def close(self) -> None:
        """Nothing to release: the StateStore owns the connection."""

    async def execute(self, sql: str, args: Sequence[object] = ()) -> int:
        """Run one statement (autocommit: durable when this returns); returns the rows changed."""
        return await self._file.write(sql, args)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """One statement per parameter row, each committed on its own (durable when this returns)."""
        await self._file.write_many(sql, rows)

    async def fetch(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Rows of one query."""
        return await self._file.rows(sql, args)

    async def transaction(self, statements: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> None:
        """Several statements (each with its parameter rows) in one durable transaction."""
        async with self._file.transaction() as db:
            for sql, rows in statements:
                await db.executemany(sql, [tuple(r) for r in rows])


class TurnJournal:
    """Turns journaled before their reply, written to the sheet after it, overlaid on reads until then."""

    def __init__(
        self,
        file: JournalFile,
        write: WriteFn,
        *,
        write_interval: float = 0.0,
        outbox_depth: Callable[[], int] = lambda: 1,
    ) -> None:
        self._file = file
        self._write = write
        self._outbox_depth = outbox_depth
        # This run's journaled turns not yet confirmed, by row: overlays read them without a query on the
        # turn's path (a previous run's are in the outbox by then: `recover`).
        self._pending: dict[tuple[str, str], dict[str, WriteOp]] = {}
        # Under load, journaled writes go out together at most once per interval: every write batch costs a
        # verify-read, and the read quota is better spent on the loads partners wait for.
        self._interval = write_interval
        self._queue: list[tuple[str, WriteOp]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last_flush = -float("inf")
        self._hurry = asyncio.Event()  # set by drain(): shutdown does not wait out the pacing
        self._tasks: set[asyncio.Task[None]] = set()
        self._unfinished = 0

    async def record(self, turn_id: str, op: WriteOp, reply: str) -> None:
        """Journal a turn's write and its reply (durable when this returns); a turn id is recorded once."""
        added = await self._file.execute(
            "INSERT OR IGNORE INTO turn_journal(turn_id, sheet, key, op, reply, state, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (turn_id, op.sheet, _key(op.key), op.to_json(), reply, PENDING, time.time()),
        )
        if added:
            self._pending.setdefault((op.sheet, _key(op.key)), {})[turn_id] = op

    def write_later(self, turn_id: str, op: WriteOp) -> None:
        """Write the journaled turn to the sheet in the background (the sheet or the outbox takes it)."""
        self._unfinished += 1
        if not self._interval:
            self._track(asyncio.create_task(self._deliver(turn_id, op), name=f"turn-write:{turn_id}"))
            return
        self._queue.append((turn_id, op))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_paced(), name="turn-writes")
            self._track(self._flusher)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_paced(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            wait = self._last_flush + self._interval - loop.time()
            if wait > 0 and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), wait)
            batch, self._queue = self._queue, []
            self._last_flush = loop.time()
            try:
                # Submitted in journal order, so one partner's turns reach the sheet in order.
                states = await asyncio.gather(*(self._write_one(turn_id, op) for turn_id, op in batch))
                await self._mark([(turn_id, state) for (turn_id, _), state in zip(batch, states, strict=True)])
            finally:
                self._unfinished -= len(batch)

    async def commit(self, turn_id: str, op: WriteOp, reply: str) -> None:
        """Journal, then write in the background: what a turn calls right before sending its reply."""
        await self.record(turn_id, op, reply)
        self.write_later(turn_id, op)

    async def _deliver(self, turn_id: str, op: WriteOp) -> None:
        try:
            await self._mark([(turn_id, await self._write_one(turn_id, op))])
        finally:
            self._unfinished -= 1

    async def _write_one(self, turn_id: str, op: WriteOp) -> str | None:
        """The journal state after writing (None when cancelled: it stays pending for the next start)."""
        try:
            await self._write([op])  # returns once the write is in the sheet or durably in the outbox
        except GatewayError as exc:  # not an outage (those go to the outbox): bad data or a broken sheet
            log.error("could not write journaled turn %s to %s: %s", turn_id, op.sheet, exc)
            return REJECTED
        except asyncio.CancelledError:
            return None
        return WRITTEN

    async def _mark(self, outcomes: Sequence[tuple[str, str | None]]) -> None:
        """Record the outcomes, one statement per state (each statement is one commit: one fsync)."""
        done = {turn_id for turn_id, state in outcomes if state is not None}
        for row in list(self._pending):
            ops = self._pending[row]
            for turn_id in done & ops.keys():
                del ops[turn_id]
            if not ops:
                del self._pending[row]
        for state in (WRITTEN, REJECTED):
            ids = [turn_id for turn_id, s in outcomes if s == state]
            if ids:
                marks = ",".join("?" * len(ids))
                await self._file.execute(
                    f"UPDATE turn_journal SET state = ? WHERE turn_id IN ({marks})",  # only placeholders
                    [state, *ids],
                )

    async def drain(self) -> None:
        """Write what is queued now and wait for the background writes in flight (shutdown)."""
        self._hurry.set()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        """Journaled turns whose write has not finished yet."""
        return self._unfinished

    async def reply_of(self, turn_id: str) -> str | None:
        """The logged reply of a journaled turn (None when the turn was never journaled)."""
        rows = await self._file.fetch("SELECT reply FROM turn_journal WHERE turn_id = ?", (turn_id,))
        return str(rows[0][0]) if rows else None

    async def pending(self, sheet: str, key: str) -> list[WriteOp]:
        """Writes of one row the sheet may not hold yet, oldest first: the outbox's, then the journal's."""
        # The outbox holds older writes than the journal's unconfirmed ones; a turn on its way into the outbox
        # may be in both for a moment, hence the dedup by op id.
        ops: list[WriteOp] = []
        if self._outbox_depth():
            like_sheet = f'%"sheet": {json.dumps(sheet, ensure_ascii=False)}%'
            like_key = f'%"key": {json.dumps([key], ensure_ascii=False)}%'
            boxed = await self._file.fetch(
                "SELECT op FROM outbox WHERE op LIKE ? AND op LIKE ? ORDER BY seq", (like_sheet, like_key)
            )
            ops = [op for r in boxed if (op := WriteOp.from_json(str(r[0]))).sheet == sheet and op.key == (key,)]
        seen = {op.op_id for op in ops}
        ops += [op for op in self._pending.get((sheet, _key((key,))), {}).values() if op.op_id not in seen]
        return ops

    async def overlay(self, sheet: str, key: str, record: Record | None, text_columns: Sequence[str]) -> Record | None:
        """`record` as the sheet will hold it once the pending writes of its row land (None stays None when
        nothing is pending)."""
        ops = await self.pending(sheet, key)
        return overlay(record, ops, text_columns)

    async def prune(self, older_than: float = KEEP_SECONDS) -> int:
        """Forget turns written (or rejected) more than `older_than` seconds ago; returns how many."""
        return await self._file.execute(
            "DELETE FROM turn_journal WHERE state != ? AND created < ?", (PENDING, time.time() - older_than)
        )

    async def recover(self) -> int:
        """Hand every turn not confirmed written to the outbox (to be replayed idempotently); returns how many."""
        rows = await self._file.fetch("SELECT seq, op FROM turn_journal WHERE state = ? ORDER BY seq", (PENDING,))
        now = time.time()
        await self._file.transaction(
            [
                ("INSERT INTO outbox(op, maybe_applied, created) VALUES (?, 1, ?)", [(str(op), now) for _, op in rows]),
                ("UPDATE turn_journal SET state = ? WHERE seq = ?", [(WRITTEN, seq) for seq, _ in rows]),
                ("DELETE FROM turn_journal WHERE state != ? AND created < ?", [(PENDING, now - KEEP_SECONDS)]),
            ]
        )
        if rows:
            log.warning("%d turns journaled before a crash were not confirmed written: replaying them", len(rows))
        return len(rows)


def overlay(record: Record | None, ops: Sequence[WriteOp], text_columns: Sequence[str]) -> Record | None:
    """Apply pending ops to a row as read (text appended unless the cell already holds it, values set)."""
    if not ops:
        return record
    data = dict(record.data) if record is not None else {}
    if record is None:
        first = ops[0]
        data.update(first.insert_defaults)
        for column, value in zip(first.key_columns, first.key, strict=True):
            data.setdefault(column, value)
    for op in ops:
        data.update(op.values)
        if op.kind is OpKind.APPEND_TEXT and op.text_column is not None and op.text:
            column = next((c for c in text_columns if c.casefold() == op.text_column.casefold()), op.text_column)
            current = data.get(column, "")
            if not _holds_entry(current, op.text):
                data[column] = _join(current, op.text)
    return Record(record.row if record is not None else 0, data)


@dataclass(frozen=True)
class InboxUpdate:
    """An update journaled in the inbox."""

    update_id: int
    chat_id: int | None
    payload: dict[str, object]


class UpdateInbox:
    """Telegram updates, journaled before they are acknowledged, done when their turn is finished."""

    def __init__(self, file: JournalFile) -> None:
        self._file = file

    async def put(self, updates: Sequence[InboxUpdate]) -> list[InboxUpdate]:
        """Journal updates (durable when this returns); returns the ones not journaled before, in order."""
        if not updates:
            return []
        ids = [u.update_id for u in updates]
        marks = ",".join("?" * len(ids))
        known = {
            int(str(r[0]))
            for r in await self._file.fetch(f"SELECT update_id FROM update_inbox WHERE update_id IN ({marks})", ids)
        }
        fresh = [u for u in updates if u.update_id not in known]
        now = time.time()
        await self._file.execute_many(
            "INSERT OR IGNORE INTO update_inbox(update_id, chat_id, payload, state, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(u.update_id, u.chat_id, json.dumps(u.payload, ensure_ascii=False), UNFINISHED, now, now) for u in fresh],
        )
        return fresh

    async def done(self, update_id: int) -> None:
        """Mark an update's turn finished."""
        await self._file.execute(
            "UPDATE update_inbox SET state = ?, updated = ? WHERE update_id = ?", (DONE, time.time(), update_id)
        )

    async def unfinished(self) -> list[InboxUpdate]:
        """Updates whose turn did not finish, in arrival order."""
        rows = await self._file.fetch(
            "SELECT update_id, chat_id, payload FROM update_inbox WHERE state = ? ORDER BY update_id", (UNFINISHED,)
        )
        return [
            InboxUpdate(int(str(u)), int(str(c)) if c is not None else None, json.loads(str(p))) for u, c, p in rows
        ]

    async def last_update_id(self) -> int | None:
        """The highest update id ever journaled (the next getUpdates offset is one more)."""
        rows = await self._file.fetch("SELECT MAX(update_id) FROM update_inbox")
        return int(str(rows[0][0])) if rows and rows[0][0] is not None else None

    async def prune(self, older_than: float = KEEP_SECONDS) -> int:
        """Forget finished updates older than `older_than` seconds, keeping the newest (it carries the offset)."""
        return await self._file.execute(
            "DELETE FROM update_inbox WHERE state = ? AND updated < ? "
            "AND update_id < (SELECT MAX(update_id) FROM update_inbox)",
            (DONE, time.time() - older_than),
        )


def _key(key: Sequence[str]) -> str:
    return "\x1f".join(k.strip() for k in key)
