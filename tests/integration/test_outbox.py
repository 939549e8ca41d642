"""The durable outbox: acknowledged writes survive outages, lost answers and crashes, and land exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from gateway import AsyncSheetsGateway, GatewayMetrics, Rows, SheetUnavailable, StateStore, TransientBackendError
from gateway.backends.local import LocalSheetsBackend
from gateway.resilience import ResilientBackend, RetryPolicy
from gateway.schemas import APPEALS, QUEUE, AppealCol, QueueCol


class FlakyBackend:
    """The local store behind switches: `down` fails every call; `lose_answers` applies writes then fails."""

    name = "flaky"

    def __init__(self, inner: LocalSheetsBackend) -> None:
        self.inner = inner
        self.down = False
        self.lose_answers = False

    def _gate(self) -> None:
        if self.down:
            raise TransientBackendError("503 Service Unavailable")

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def sheet_titles(self) -> list[str]:
        self._gate()
        return await self.inner.sheet_titles()

    async def add_sheet(self, title: str, headers: Sequence[str]) -> None:
        self._gate()
        await self.inner.add_sheet(title, headers)

    async def batch_get(self, ranges: Sequence[str]) -> list[Rows]:
        self._gate()
        return await self.inner.batch_get(ranges)

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None:
        self._gate()
        await self.inner.batch_update(data)
        if self.lose_answers:
            raise TransientBackendError("timeout after the write was applied")

    async def append(self, sheet: str, rows: Rows) -> int:
        self._gate()
        first = await self.inner.append(sheet, rows)
        if self.lose_answers:
            raise TransientBackendError("timeout after the append was applied")
        return first

    async def format_sheet(self, sheet: str, headers: Sequence[str], dropdowns: Mapping[str, Sequence[str]]) -> None:
        await self.inner.format_sheet(sheet, headers, dropdowns)


def _gateway(tmp: Path, flaky: FlakyBackend | None = None) -> tuple[AsyncSheetsGateway, FlakyBackend]:
    flaky = flaky or FlakyBackend(LocalSheetsBackend(tmp / "sheets.db"))
    metrics = GatewayMetrics()
    backend = ResilientBackend(
        flaky,
        metrics=metrics,
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.002),
        breaker_fail_max=3,
        breaker_reset_timeout=0.05,
    )
    return AsyncSheetsGateway(backend, StateStore(tmp / "chat_memory.db"), metrics, replay_interval=0.02), flaky


@pytest.fixture
async def pair(tmp_path: Path) -> tuple[AsyncSheetsGateway, FlakyBackend]:
    gw, flaky = _gateway(tmp_path)
    await gw.start()
    await gw.ensure_sheets()
    yield gw, flaky
    await gw.close()


async def _log(gw: AsyncSheetsGateway, tid: str) -> str:
    rec = await gw.table(APPEALS).get(tid)
    return rec[AppealCol.LOG] if rec else ""


async def test_writes_during_outage_are_acked_and_land_in_order(pair: tuple[AsyncSheetsGateway, FlakyBackend]) -> None:
    """During an outage writes return (journaled), reads fail loudly, and on recovery all land once, in order."""
    gw, flaky = pair
    appeals = gw.table(APPEALS)
    await appeals.write([appeals.op_append_text("1", AppealCol.LOG, "before")])
    flaky.down = True
    for i in range(5):
        await appeals.write([appeals.op_append_text("1", AppealCol.LOG, f"during {i}")])
    await appeals.write([appeals.op_upsert("1", {AppealCol.STATUS: "В работе"})])
    assert gw.outbox_depth == 6
    with pytest.raises(SheetUnavailable):
        await appeals.get("1")
    flaky.down = False
    assert await gw.writer.wait_empty(5)
    rec = await appeals.get("1")
    assert rec is not None
    assert rec[AppealCol.LOG] == "before\n" + "\n".join(f"during {i}" for i in range(5))
    assert rec[AppealCol.STATUS] == "В работе"


async def test_lost_answer_is_replayed_without_duplicating(pair: tuple[AsyncSheetsGateway, FlakyBackend]) -> None:
    """A write that reached the sheet but whose answer was lost is replayed idempotently: the text appears once."""
    gw, flaky = pair
    appeals = gw.table(APPEALS)
    await appeals.write([appeals.op_append_text("2", AppealCol.LOG, "[2026-11-23 10:00] Пользователь: one")])
    flaky.lose_answers = True
    await appeals.write([appeals.op_append_text("2", AppealCol.LOG, "[2026-11-23 10:01] Пользователь: two")])
    assert gw.outbox_depth == 1
    flaky.lose_answers = False
    assert await gw.writer.wait_empty(5)
    assert await _log(gw, "2") == "[2026-11-23 10:00] Пользователь: one\n[2026-11-23 10:01] Пользователь: two"


async def test_lost_append_of_new_row_is_not_duplicated(pair: tuple[AsyncSheetsGateway, FlakyBackend]) -> None:
    """A new queue row whose append answer was lost is not inserted a second time on replay."""
    gw, flaky = pair
    queue = gw.table(QUEUE)
    flaky.lose_answers = True
    await queue.write(
        [queue.op_insert({QueueCol.ID: "job-1", QueueCol.STATUS: "NEW", QueueCol.OBJECT_CODE: "DEMO-0001"})]
    )
    flaky.lose_answers = False
    assert await gw.writer.wait_empty(5)
    rows = [r for r in await queue.all() if r[QueueCol.ID] == "job-1"]
    assert len(rows) == 1


async def test_crash_with_journaled_writes_replays_them_once_after_restart(tmp_path: Path) -> None:
    """Killed with writes in the outbox (never closed), a restarted gateway replays each exactly once."""
    gw, flaky = _gateway(tmp_path)
    await gw.start()
    await gw.ensure_sheets()
    flaky.down = True
    for i in range(3):
        await gw.table(APPEALS).write([gw.table(APPEALS).op_append_text("3", AppealCol.LOG, f"entry {i}")])
    assert gw.outbox_depth == 3
    # Simulate a kill: stop the replayer and drop connections without flushing anything.
    assert gw.writer._replayer is not None
    gw.writer._replayer.cancel()
    await asyncio.gather(gw.writer._replayer, return_exceptions=True)
    await gw.state.close()
    await gw.backend.close()

    gw2, _ = _gateway(tmp_path)
    await gw2.start()
    try:
        assert await gw2.writer.wait_empty(5)
        assert await _log(gw2, "3") == "entry 0\nentry 1\nentry 2"
    finally:
        await gw2.close()


async def test_replay_marked_attempted_survives_crash_mid_replay(tmp_path: Path) -> None:
    """A crash after the replay reached the sheet but before the outbox entry was deleted does not double it."""
    gw, flaky = _gateway(tmp_path)
    await gw.start()
    await gw.ensure_sheets()
    flaky.down = True
    await gw.table(APPEALS).write(
        [gw.table(APPEALS).op_append_text("4", AppealCol.LOG, "[2026-11-23 11:00] ИИ: ответ")]
    )
    entries = await gw.state.outbox_peek(10)
    # The replay marks, applies, then "dies" before deleting.
    assert gw.writer._replayer is not None
    gw.writer._replayer.cancel()
    await asyncio.gather(gw.writer._replayer, return_exceptions=True)
    flaky.down = False
    await gw.state.outbox_mark_attempted([e.seq for e in entries])
    from gateway.batch import Job

    await gw.writer._applier.apply([Job(e.op) for e in entries])
    await gw.state.close()
    await gw.backend.close()

    gw2, _ = _gateway(tmp_path)
    await gw2.start()
    try:
        assert await gw2.writer.wait_empty(5)
        assert await _log(gw2, "4") == "[2026-11-23 11:00] ИИ: ответ"
    finally:
        await gw2.close()


async def test_breaker_opens_during_outage_and_recovers(pair: tuple[AsyncSheetsGateway, FlakyBackend]) -> None:
    """Repeated failures open the breaker (health shows it) and it closes again once the sheet answers."""
    gw, flaky = pair
    flaky.down = True
    for _ in range(3):
        with pytest.raises(SheetUnavailable):
            await gw.table(APPEALS).get("x")
    assert gw.breaker_state == "open"
    flaky.down = False
    await asyncio.sleep(0.06)
    await gw.table(APPEALS).get("x")
    assert gw.breaker_state == "closed"
