"""Bounded growth: a year of traffic leaves Очередь and the state file at the size of the retention window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.services.queue_poller import DELIVERY_LEDGER
from bot.services.retention import RetentionService
from bot.services.sheet_time import MOSCOW
from gateway import AsyncSheetsGateway, DeliveryPhase, DeliveryRecord
from gateway.a1 import sheet_range
from gateway.schemas import QUEUE, QUEUE_ARCHIVE, QueueCol
from tests.conftest import google_config, local_config, started_gateway
from tests.fakes.sheets_server import FakeSheetsServer

PER_DAY = 12
RETENTION = 30


class SimClock:
    """Simulated time for the services (aware datetimes) and the state store (epoch seconds)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()


def _stamp(at: datetime) -> str:
    return at.astimezone(MOSCOW).strftime("%Y-%m-%d %H:%M:%S")


async def _day(gw: AsyncSheetsGateway, clock: SimClock, day: int) -> None:
    """One day of traffic: requests created, done and delivered; their ledgers and an AI counter."""
    queue = gw.table(QUEUE)
    ops = []
    for i in range(PER_DAY):
        job = f"job-{day:03d}-{i:02d}"
        ops.append(
            queue.op_insert(
                {
                    QueueCol.ID: job,
                    QueueCol.CREATED_AT: _stamp(clock.now),
                    QueueCol.OBJECT_CODE: "DEMO-0001",
                    QueueCol.TELEGRAM_ID: str(100000 + i),
                    QueueCol.STATUS: "DONE",
                    QueueCol.RESULT_TEXT: "Итог: " + "x" * 200,
                    QueueCol.DELIVERED_AT: _stamp(clock.now),
                }
            )
        )
        await gw.state.ledger_set("queue-delivery", job, "sent", "{}")  # an older release's record
        await gw.state.delivery_set(DELIVERY_LEDGER, job, DeliveryRecord(DeliveryPhase.SETTLED, "done"))
        await gw.state.counter_add(f"ai-answers:{100000 + i}", clock.now.date().isoformat(), 3)
    await queue.write(ops)


def _state_bytes(path: Path) -> int:
    """The state file with its write-ahead log."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def _rows(gw: AsyncSheetsGateway, title: str) -> int:
    (rows,) = await gw.read_ranges([sheet_range(title)])
    return sum(1 for r in rows[1:] if any(r))


async def _year(gw: AsyncSheetsGateway, monkeypatch: pytest.MonkeyPatch, days: int) -> tuple[list[int], list[int]]:
    clock = SimClock()
    monkeypatch.setattr("gateway.state.time.time", clock.epoch)
    monkeypatch.setattr("gateway.retention.time.time", clock.epoch)
    retention = RetentionService(gw, queue_retention_days=RETENTION, clock=clock)
    queue_sizes, file_sizes = [], []
    for day in range(days):
        await _day(gw, clock, day)
        await retention.run_once()
        clock.now += timedelta(days=1)
        if day % 30 == 29:
            queue_sizes.append(await _rows(gw, QUEUE.title))
            file_sizes.append(_state_bytes(gw.state.path))
    return queue_sizes, file_sizes


async def test_a_year_of_traffic_keeps_the_queue_and_the_state_file_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """365 days × 12 delivered requests: Очередь holds only the last 30 days, the rest is in «Очередь архив» once
    each; ledgers and counters stop growing; the state file size levels off (sizes printed)."""
    async with started_gateway(local_config(tmp_path)) as gw:
        queue_sizes, file_sizes = await _year(gw, monkeypatch, 365)
        archived = await gw.table(QUEUE_ARCHIVE).all()
        live = await gw.table(QUEUE).all()
        ledgers = await gw.state.ledger_list("queue-delivery")
        deliveries = await gw.state.delivery_list(DELIVERY_LEDGER)
        (counters,) = await gw.state.file.row("SELECT COUNT(*) FROM counters") or (0,)
    print(f"\nОчередь rows at each 30th day: {queue_sizes}")
    print(f"state file bytes at each 30th day: {file_sizes}")
    print(
        f"after a year: Очередь {len(live)} rows, Очередь архив {len(archived)} rows, "
        f"{len(ledgers)} delivery ledgers, {len(deliveries)} delivery records, {counters} counters"
    )
    assert max(queue_sizes) <= (RETENTION + 1) * PER_DAY
    assert len(live) + len(archived) == 365 * PER_DAY
    ids = [r[QueueCol.ID] for r in archived] + [r[QueueCol.ID] for r in live]
    assert len(set(ids)) == len(ids)  # each request exactly once
    assert ids == sorted(ids)  # archived in order, the live ones after them
    assert len(ledgers) <= (RETENTION + 30 + 1) * PER_DAY
    assert len(deliveries) <= (RETENTION + 30 + 1) * PER_DAY
    assert counters <= 8 * PER_DAY
    assert max(file_sizes[6:]) <= max(file_sizes[:6]) * 1.5  # levelled off after the first months


async def test_archiving_on_google_moves_rows_with_one_delete_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Google the expired rows are appended to «Очередь архив» and deleted with one batchUpdate; the rest stay."""
    with FakeSheetsServer(sheets=()) as server:
        async with started_gateway(google_config(tmp_path, server)) as gw:
            server.reset_counters()
            await _year(gw, monkeypatch, 40)
            assert server.calls["sheetsBatchUpdate"] <= 10  # one per day that had expired rows
            live = [r[0] for r in server.values(QUEUE.title)[1:]]
            archived = [r[0] for r in server.values(QUEUE_ARCHIVE.title)[1:]]
            assert len(live) <= (RETENTION + 1) * PER_DAY and sorted(archived + live) == archived + live
            assert len(archived) + len(live) == 40 * PER_DAY


async def test_rows_in_progress_hold_the_move(tmp_path: Path) -> None:
    """While a row is NEW or PROCESSING (a worker writes it by row number), nothing moves."""
    async with started_gateway(local_config(tmp_path)) as gw:
        clock = SimClock()
        old = _stamp(clock.now - timedelta(days=90))
        await gw.table(QUEUE).write(
            [gw.table(QUEUE).op_insert({QueueCol.ID: "old", QueueCol.STATUS: "DONE", QueueCol.DELIVERED_AT: old})]
        )
        await gw.table(QUEUE).write([gw.table(QUEUE).op_insert({QueueCol.ID: "busy", QueueCol.STATUS: "PROCESSING"})])
        result = await RetentionService(gw, clock=clock).run_once()
        assert result.moved == 0 and result.skipped
        await gw.table(QUEUE).write([gw.table(QUEUE).op_upsert("busy", {QueueCol.STATUS: "ERROR"})])
        assert (await RetentionService(gw, clock=clock).run_once()).moved == 1
        assert [r[QueueCol.ID] for r in await gw.table(QUEUE).all()] == ["busy"]
