"""The write path under interleavings: concurrent replays, cancelled callers, shutdown, poisoned batches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import pytest

from gateway import AsyncSheetsGateway, BadRequest, GatewayMetrics, Rows, SchemaError, TransientBackendError
from gateway.a1 import sheet_range
from gateway.backends.local import LocalSheetsBackend
from gateway.resilience import ResilientBackend, RetryPolicy
from gateway.schemas import APPEALS, PROMOTIONS, QUEUE, AppealCol, PromoCol, QueueCol
from gateway.state import OutboxEntry, StateStore

Hook = Callable[[], Awaitable[None]]


class HookBackend:
    """The local store with test hooks: `down` fails every call; `before[method]` runs before a call;
    `after[method]` runs after a call that reached the store (so it may raise a lost answer)."""

    name = "hook"

    def __init__(self, inner: LocalSheetsBackend) -> None:
        self.inner = inner
        self.down = False
        self.before: dict[str, Hook] = {}
        self.after: dict[str, Hook] = {}
        self.calls: list[str] = []

    async def _gate(self, method: str) -> None:
        self.calls.append(method)
        if method in self.before:
            await self.before[method]()
        if self.down:
            raise TransientBackendError("503 Service Unavailable")

    async def _done(self, method: str) -> None:
        if method in self.after:
            await self.after[method]()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def sheet_titles(self) -> list[str]:
        await self._gate("sheet_titles")
        return await self.inner.sheet_titles()

    async def add_sheet(self, title: str, headers: Sequence[str]) -> None:
        await self._gate("add_sheet")
        await self.inner.add_sheet(title, headers)

    async def batch_get(self, ranges: Sequence[str]) -> list[Rows]:
        await self._gate("batch_get")
        return await self.inner.batch_get(ranges)

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None:
        await self._gate("batch_update")
        await self.inner.batch_update(data)
        await self._done("batch_update")

    async def append(self, sheet: str, rows: Rows) -> int:
        await self._gate("append")
        first = await self.inner.append(sheet, rows)
        await self._done("append")
        return first

    async def format_sheet(self, sheet: str, headers: Sequence[str], dropdowns: Mapping[str, Sequence[str]]) -> None:
        await self.inner.format_sheet(sheet, headers, dropdowns)


def _gateway(
    tmp: Path, *, attempts: int = 1, fail_max: int = 50, reset: float = 0.05
) -> tuple[AsyncSheetsGateway, HookBackend]:
    hook = HookBackend(LocalSheetsBackend(tmp / "sheets.db"))
    metrics = GatewayMetrics()
    backend = ResilientBackend(
        hook,
        metrics=metrics,
        retry=RetryPolicy(max_attempts=attempts, initial_backoff=0.001, max_backoff=0.002),
        breaker_fail_max=fail_max,
        breaker_reset_timeout=reset,
    )
    return AsyncSheetsGateway(backend, StateStore(tmp / "chat_memory.db"), metrics, replay_interval=0.02), hook


@contextlib.asynccontextmanager
async def _running(
    tmp: Path, *, attempts: int = 1, fail_max: int = 50, reset: float = 0.05
) -> AsyncIterator[tuple[AsyncSheetsGateway, HookBackend]]:
    gw, hook = _gateway(tmp, attempts=attempts, fail_max=fail_max, reset=reset)
    await gw.start()
    await gw.ensure_sheets(fmt=False)
    try:
        yield gw, hook
    finally:
        hook.down = False
        hook.before.clear()
        hook.after.clear()
        await gw.close()


async def _sheet(tmp: Path, title: str) -> list[list[str]]:
    """A sheet's rows read straight from the store file (works after the gateway is closed)."""
    store = LocalSheetsBackend(tmp / "sheets.db")
    await store.open()
    try:
        (rows,) = await store.batch_get([sheet_range(title)])
    finally:
        await store.close()
    return rows


async def _log(gw: AsyncSheetsGateway, tid: str) -> str:
    rec = await gw.table(APPEALS).get(tid)
    return rec[AppealCol.LOG] if rec else ""


async def _until(cond: Callable[[], bool], within: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():  # noqa: ASYNC110 - the conditions are plain attributes, no event to wait on
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), within)


# -- concurrent applies ---------------------------------------------------------------------------


async def test_close_during_a_replay_does_not_insert_twice(tmp_path: Path) -> None:
    """Shutdown while the replayer is mid-append: the journaled insert still lands exactly once."""
    async with _running(tmp_path) as (gw, hook):
        hook.down = True
        await gw.table(QUEUE).write([gw.table(QUEUE).op_insert({QueueCol.ID: "job-1", QueueCol.STATUS: "NEW"})])
        assert gw.outbox_depth == 1
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow_append() -> None:
            entered.set()
            await release.wait()

        hook.before["append"] = slow_append
        hook.down = False
        await asyncio.wait_for(entered.wait(), 5)  # the replayer is inside its append
        closing = asyncio.create_task(gw.close())
        await asyncio.sleep(0.1)  # close() gets every chance to replay the same entry meanwhile
        release.set()
        await closing
    gw2, _ = _gateway(tmp_path)  # whatever the shutdown left in the outbox is replayed on the next start
    await gw2.start()
    try:
        assert await gw2.writer.wait_empty(5)
    finally:
        await gw2.close()
    rows = await _sheet(tmp_path, QUEUE.title)
    assert [r[0] for r in rows[1:]].count("job-1") == 1


async def test_replay_and_a_concurrent_batch_keep_both_appends(tmp_path: Path) -> None:
    """A replay and a batch that was already queued never read-modify-write the same cell at once."""
    async with _running(tmp_path) as (gw, hook):
        appeals = gw.table(APPEALS)
        await appeals.write([appeals.op_append_text("1", AppealCol.LOG, "base")])
        a_in_flight, proceed = asyncio.Event(), asyncio.Event()
        arrived: list[int] = []
        second = asyncio.Event()

        async def first_fails_then_barrier() -> None:
            arrived.append(1)
            if len(arrived) == 1:
                a_in_flight.set()
                await proceed.wait()
                raise TransientBackendError("503 on the first write")
            if len(arrived) == 3:
                second.set()
            # Hold each write until another one arrives (they overlap) or 0.3 s pass (they are serialized).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(second.wait(), 0.3)

        hook.before["batch_update"] = first_fails_then_barrier
        a = asyncio.create_task(appeals.write([appeals.op_append_text("1", AppealCol.LOG, "[10:00] a")]))
        await asyncio.wait_for(a_in_flight.wait(), 5)
        b = asyncio.create_task(appeals.write([appeals.op_append_text("1", AppealCol.LOG, "[10:01] b")]))
        await asyncio.sleep(0.02)  # b is queued behind the batch in flight, not journaled
        proceed.set()
        await asyncio.gather(a, b)
        assert await gw.writer.wait_empty(5)
        hook.before.clear()
        lines = (await _log(gw, "1")).split("\n")
        assert sorted(lines) == ["[10:00] a", "[10:01] b", "base"]


# -- the outbox depth --------------------------------------------------------------------------------


async def test_write_journaled_while_replay_sees_an_empty_outbox_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write journaled just after the replayer's peek found the outbox empty is still counted and replayed."""
    async with _running(tmp_path) as (gw, hook):
        appeals = gw.table(APPEALS)
        hook.down = True
        await appeals.write([appeals.op_append_text("5", AppealCol.LOG, "first")])
        delete, peek = gw.state.outbox_delete, gw.state.outbox_peek
        late: list[asyncio.Task[None]] = []

        async def delete_then_write(seqs: list[int]) -> None:
            await delete(seqs)
            if not late:  # a caller writes now: it sees the outbox non-empty and queues behind it
                late.append(asyncio.create_task(appeals.write([appeals.op_append_text("5", AppealCol.LOG, "second")])))
                await asyncio.sleep(0.01)

        async def peek_before_the_journal(limit: int) -> list[OutboxEntry]:
            entries = await peek(limit)
            if late and not late[0].done():
                await asyncio.wait_for(asyncio.shield(late[0]), 5)  # journaled after our SELECT ran
            return entries

        monkeypatch.setattr(gw.state, "outbox_delete", delete_then_write)
        monkeypatch.setattr(gw.state, "outbox_peek", peek_before_the_journal)
        hook.down = False
        await _until(lambda: bool(late) and late[0].done())
        await asyncio.sleep(0.05)
        assert gw.outbox_depth == await gw.state.outbox_depth()
        assert await gw.writer.wait_empty(5)
        assert await _log(gw, "5") == "first\nsecond"


# -- cancellation and shutdown ---------------------------------------------------------------------


async def test_close_waits_for_a_failed_write_to_be_journaled(tmp_path: Path) -> None:
    """A write whose batch fails while the gateway closes is journaled, not lost, and lands after restart."""
    async with _running(tmp_path) as (gw, hook):
        entered = asyncio.Event()

        async def note() -> None:
            entered.set()
            await asyncio.sleep(0.05)

        hook.down = True
        hook.before["batch_get"] = note
        write = asyncio.create_task(
            gw.table(APPEALS).write([gw.table(APPEALS).op_append_text("6", AppealCol.LOG, "during shutdown")])
        )
        await asyncio.wait_for(entered.wait(), 5)
        await gw.close()
        await write  # acknowledged: it is in the outbox
    gw2, _ = _gateway(tmp_path)
    await gw2.start()
    try:
        assert await gw2.writer.wait_empty(5)
        assert await _log(gw2, "6") == "during shutdown"
    finally:
        await gw2.close()


async def test_cancelled_caller_write_still_reaches_the_outbox(tmp_path: Path) -> None:
    """A caller cancelled while its batch is in flight: when the batch fails, its ops are journaled, not dropped."""
    async with _running(tmp_path) as (gw, hook):
        entered = asyncio.Event()

        async def note() -> None:
            entered.set()
            await asyncio.sleep(0.05)

        hook.down = True
        hook.before["batch_get"] = note
        write = asyncio.create_task(
            gw.table(APPEALS).write([gw.table(APPEALS).op_append_text("7", AppealCol.LOG, "cancelled caller")])
        )
        await asyncio.wait_for(entered.wait(), 5)
        write.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await write
        await _until(lambda: gw.outbox_depth == 1)
        hook.before.clear()
        hook.down = False
        assert await gw.writer.wait_empty(5)
        assert await _log(gw, "7") == "cancelled caller"


# -- what a failure says about what landed ------------------------------------------------------------


async def test_breaker_opening_after_a_lost_answer_does_not_double_the_text(tmp_path: Path) -> None:
    """A write that landed but lost its answer, then met an open breaker on retry, is replayed idempotently."""
    async with _running(tmp_path, attempts=2, fail_max=1, reset=0.05) as (gw, hook):
        appeals = gw.table(APPEALS)
        await appeals.write([appeals.op_append_text("8", AppealCol.LOG, "[2026-11-23 10:00] Пользователь: раз")])
        lost = [True]

        async def lose_once() -> None:
            if lost.pop() if lost else False:
                raise TransientBackendError("timeout after the write was applied")

        hook.after["batch_update"] = lose_once
        await appeals.write([appeals.op_append_text("8", AppealCol.LOG, "[2026-11-23 10:01] Пользователь: два")])
        gw.backend.breaker.close()  # the sheet is back before the replayer's first try
        assert await gw.writer.wait_empty(5)
        assert await _log(gw, "8") == "[2026-11-23 10:00] Пользователь: раз\n[2026-11-23 10:01] Пользователь: два"


async def test_replayed_message_is_not_mistaken_for_a_longer_one_already_logged(tmp_path: Path) -> None:
    """A maybe-applied replay skips only a text logged as a whole entry, never one that merely occurs inside another."""
    async with _running(tmp_path) as (gw, hook):
        appeals = gw.table(APPEALS)
        await appeals.write(
            [appeals.op_append_text("11", AppealCol.LOG, "[2026-11-23 14:05] Пользователь: да, конечно")]
        )
        hook.down = True  # a 503 mid-write: journaled as "maybe applied" though it never landed
        await appeals.write([appeals.op_append_text("11", AppealCol.LOG, "[2026-11-23 14:05] Пользователь: да")])
        hook.down = False
        assert await gw.writer.wait_empty(5)
        assert await _log(gw, "11") == (
            "[2026-11-23 14:05] Пользователь: да, конечно\n[2026-11-23 14:05] Пользователь: да"
        )


# -- one bad write never takes others down with it --------------------------------------------------


async def _break_promotions_key(gw: AsyncSheetsGateway, hook: HookBackend) -> None:
    """Staff rename the key column of Акции (the sheet no longer has an `id` header)."""
    await hook.inner.batch_update([(f"{sheet_range(PROMOTIONS.title)}!A1", [["номер"]])])
    gw.locator.headers.pop(PROMOTIONS.title, None)


async def test_a_write_to_a_broken_sheet_waits_while_the_other_writers_of_its_batch_land(tmp_path: Path) -> None:
    """One caller's op on a sheet without its key column waits in the outbox; a partner's message in its batch lands."""
    async with _running(tmp_path) as (gw, hook):
        await gw.table(PROMOTIONS).write(
            [gw.table(PROMOTIONS).op_insert({PromoCol.ID: "p-1", PromoCol.STATUS: "SENDING"})]
        )
        await _break_promotions_key(gw, hook)
        promo, turn = await asyncio.gather(
            gw.table(PROMOTIONS).write(
                [gw.table(PROMOTIONS).op_upsert("p-1", {PromoCol.STATUS: "SENT"}, create=False)]
            ),
            gw.table(APPEALS).write([gw.table(APPEALS).op_append_text("9", AppealCol.LOG, "сообщение партнёра")]),
            return_exceptions=True,
        )
        assert promo is None and turn is None  # both acknowledged: one in the sheet, one in the outbox
        assert await _log(gw, "9") == "сообщение партнёра"
        assert gw.outbox_depth == 1
        assert isinstance(gw.writer.fault, SchemaError) and gw.writer.fault.sheet == PROMOTIONS.title


async def test_an_outbox_entry_refused_by_the_sheet_structure_waits_and_keeps_the_order(tmp_path: Path) -> None:
    """A journaled op the sheet refuses structurally waits (no dead letter) with the writes behind it; after the fix
    all land in order."""
    async with _running(tmp_path) as (gw, hook):
        await gw.table(PROMOTIONS).write(
            [gw.table(PROMOTIONS).op_insert({PromoCol.ID: "p-1", PromoCol.STATUS: "SENDING"})]
        )
        hook.down = True
        await gw.table(PROMOTIONS).write(
            [gw.table(PROMOTIONS).op_upsert("p-1", {PromoCol.STATUS: "SENT"}, create=False)]
        )
        await gw.table(APPEALS).write([gw.table(APPEALS).op_append_text("10", AppealCol.LOG, "после акции")])
        assert gw.outbox_depth == 2
        await _break_promotions_key(gw, hook)
        hook.down = False
        assert not await gw.writer.wait_empty(0.3)
        assert gw.outbox_depth == 2 and await _log(gw, "10") == ""  # nothing overtakes the waiting write
        assert isinstance(gw.writer.fault, SchemaError)
        await hook.inner.batch_update([(f"{sheet_range(PROMOTIONS.title)}!A1", [["id"]])])  # staff fix the header
        assert await gw.writer.wait_empty(5)
        assert await _log(gw, "10") == "после акции"
        assert (await gw.table(PROMOTIONS).get("p-1") or {}).get(PromoCol.STATUS) == "SENT"
        assert await gw.state.dead_count() == 0
        assert gw.writer.fault is None


async def test_an_outbox_entry_that_can_never_apply_becomes_a_dead_letter(tmp_path: Path) -> None:
    """A journaled update of a row staff deleted goes to dead letters with its error; the writes behind it land."""
    async with _running(tmp_path) as (gw, hook):
        hook.down = True
        await gw.table(PROMOTIONS).write(
            [gw.table(PROMOTIONS).op_upsert("p-gone", {PromoCol.STATUS: "SENT"}, create=False)]
        )
        await gw.table(APPEALS).write([gw.table(APPEALS).op_append_text("11", AppealCol.LOG, "после акции")])
        hook.down = False
        assert await gw.writer.wait_empty(5)
        assert await _log(gw, "11") == "после акции"
        (dead,) = [w for w in await gw.state.outbox_list() if w.dead]
        assert dead.op.key == ("p-gone",) and dead.error.startswith("RowNotFound")


# -- the local store under concurrent writers ---------------------------------------------------------


async def test_concurrent_raw_writes_to_the_local_store_all_land(local_gateway: AsyncSheetsGateway) -> None:
    """Twenty concurrent cell writes (the staff console) and a batch write share one SQLite connection safely."""
    writes = [local_gateway.write_range(f"{sheet_range(APPEALS.title)}!H{i + 2}", [[f"v{i}"]]) for i in range(20)]
    await asyncio.gather(
        *writes, local_gateway.table(QUEUE).write([local_gateway.table(QUEUE).op_insert({QueueCol.ID: "job-9"})])
    )
    (rows,) = await local_gateway.read_ranges([f"{sheet_range(APPEALS.title)}!H2:H21"])
    assert [r[0] for r in rows] == [f"v{i}" for i in range(20)]
    assert local_gateway.breaker_state == "closed"


async def test_a_spreadsheet_refusing_everything_keeps_the_outbox_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journaled writes the spreadsheet refuses wholesale (revoked access: 403) wait in the outbox, not dead letters."""
    async with _running(tmp_path) as (gw, hook):
        hook.down = True
        await gw.table(APPEALS).write([gw.table(APPEALS).op_append_text("12", AppealCol.LOG, "one")])
        await gw.table(APPEALS).write([gw.table(APPEALS).op_append_text("13", AppealCol.LOG, "two")])
        mark, attempts = gw.state.outbox_mark_attempted, [0]

        async def count_attempts(seqs: list[int]) -> None:
            attempts[0] += 1
            await mark(seqs)

        async def refuse() -> None:
            if attempts[0] <= 3:  # whole replay attempts are refused, never half of one
                raise BadRequest("HTTP 403: the caller does not have permission")

        monkeypatch.setattr(gw.state, "outbox_mark_attempted", count_attempts)
        hook.before["batch_get"] = refuse
        hook.down = False
        assert await gw.writer.wait_empty(5)
        assert attempts[0] >= 4
        assert await gw.state.dead_count() == 0
        assert [await _log(gw, "12"), await _log(gw, "13")] == ["one", "two"]
