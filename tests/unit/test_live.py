"""The live-update hub (fan-out, limits, resume) and the ONE shared watcher of staff edits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.services.chatlog import ChatEntry
from bot.services.live import CHAT, STATUS, EventHub, LiveWatcher, TooManyStreams
from bot.services.sheet_time import MOSCOW
from gateway import AsyncSheetsGateway
from gateway.schemas import APPEALS, QUEUE, AppealCol, QueueCol
from tests.chat_support import FlakyBackend, chat_gateway_config, start_flaky_gateway

AT = datetime(2026, 11, 24, 15, 10, tzinfo=MOSCOW)


def entry(text: str, author: str = "ИИ") -> ChatEntry:
    """A log entry at a fixed minute."""
    return ChatEntry(AT, author, text)


def drain(queue: asyncio.Queue[Any]) -> list[Any]:
    """Everything queued so far."""
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def test_hub_announces_to_the_partners_own_streams_only() -> None:
    """An event reaches every open stream of its partner and no other partner's stream."""
    hub = EventHub()
    a1, a2, b = hub.subscribe(1), hub.subscribe(1), hub.subscribe(2)
    hub.baseline(1, "Новое", [], {})
    hub.baseline(2, "Новое", [], {})
    hub.entries_added(1, [entry("для первого")])
    assert [e.data["text"] for e in drain(a1.queue)] == ["для первого"]
    assert [e.data["text"] for e in drain(a2.queue)] == ["для первого"]
    assert drain(b.queue) == []


def test_hub_ignores_partners_nobody_watched_and_staff_notes() -> None:
    """Before a baseline nothing is announced (the page loads it through the API); untagged notes never are."""
    hub = EventHub()
    sub = hub.subscribe(1)
    hub.entries_added(1, [entry("рано")])
    hub.status_changed(1, "В работе")
    assert drain(sub.queue) == []
    hub.baseline(1, "Новое", [], {})
    hub.entries_added(1, [ChatEntry(AT, "", "заметка сотрудника"), entry("ответ")])
    assert [e.data["text"] for e in drain(sub.queue)] == ["ответ"]


def test_hub_announces_a_status_or_job_change_once() -> None:
    """The same status or job status reported twice (service, then watcher) is announced once."""
    hub = EventHub()
    sub = hub.subscribe(1)
    hub.baseline(1, "Ответ ИИ", [], {"j1": "NEW"})
    for _ in range(2):
        hub.status_changed(1, "В работе")
        hub.job_changed(1, "j1", "DONE", "DEMO-0001")
        hub.job_changed(1, "j1", "DONE", "DEMO-0001")
    events = drain(sub.queue)
    assert [(e.kind, e.data.get("status")) for e in events] == [(STATUS, "В работе"), ("analytics", "DONE")]


def test_hub_log_seen_announces_only_entries_not_announced_and_counts_repeats() -> None:
    """The watcher's view of the log adds only what the services did not announce; an identical entry
    written twice in the same minute is announced twice, with n telling them apart."""
    hub = EventHub()
    sub = hub.subscribe(1)
    hub.baseline(1, "", [entry("старое")], {})
    hub.entries_added(1, [entry("да")])
    hub.log_seen(1, [entry("старое"), entry("да")])
    hub.log_seen(1, [entry("старое"), entry("да"), entry("да"), entry("от оператора", "Оператор")])
    events = drain(sub.queue)
    assert [(e.kind, e.data["text"], e.data["n"]) for e in events] == [
        (CHAT, "да", 0),
        (CHAT, "да", 1),
        (CHAT, "от оператора", 0),
    ]


def test_hub_limits_streams_per_partner_and_in_total() -> None:
    """Beyond the per-partner or the total limit subscribe raises TooManyStreams; closing frees a place."""
    hub = EventHub(max_per_user=2, max_total=3)
    one, _ = hub.subscribe(1), hub.subscribe(1)
    with pytest.raises(TooManyStreams):
        hub.subscribe(1)
    hub.subscribe(2)
    with pytest.raises(TooManyStreams):
        hub.subscribe(3)
    assert hub.connected_users() == {1, 2}
    hub.unsubscribe(one)
    hub.subscribe(1)
    assert hub.stream_count == 3


def test_hub_closes_a_stream_that_falls_behind() -> None:
    """A stream whose queue is full is closed (the page reconnects and resumes) instead of growing memory."""
    hub = EventHub()
    sub = hub.subscribe(1)
    hub.baseline(1, "", [], {})
    hub.entries_added(1, [entry(f"m{i}") for i in range(sub.queue.maxsize + 5)])
    assert sub.closed.is_set()
    assert hub.connected_users() == set()


def test_hub_replays_missed_events_or_asks_for_a_resync() -> None:
    """missed() returns the partner's events after an id of this process; an id of another process, from
    the future or older than the buffer reaches gives None (resync)."""
    hub = EventHub(buffer=3)
    sub = hub.subscribe(1)
    hub.baseline(1, "", [], {})
    hub.baseline(2, "", [], {})
    hub.entries_added(1, [entry("a")])
    first = drain(sub.queue)[0]
    hub.entries_added(2, [entry("чужое")])
    hub.entries_added(1, [entry("b")])
    missed = hub.missed(1, hub.event_id(first))
    assert missed is not None and [e.data["text"] for e in missed] == ["b"]
    assert hub.missed(1, None) == []
    assert hub.missed(1, f"other-{first.seq}") is None
    assert hub.missed(1, f"{hub.epoch}-99") is None
    hub.entries_added(1, [entry("c"), entry("d"), entry("e")])
    assert hub.missed(1, hub.event_id(first)) is None  # fell out of the buffer


@pytest.fixture
async def flaky(tmp_path: Path) -> AsyncIterator[tuple[AsyncSheetsGateway, FlakyBackend, list[Sequence[str]]]]:
    """A gateway whose backend's batch reads are recorded."""
    gw, backend = await start_flaky_gateway(chat_gateway_config(tmp_path))
    reads: list[Sequence[str]] = []
    inner = backend.batch_get

    async def counting(ranges: Sequence[str]) -> Any:
        reads.append(ranges)
        return await inner(ranges)

    backend.batch_get = counting  # type: ignore[method-assign]
    try:
        yield gw, backend, reads
    finally:
        await gw.close()


async def test_watcher_reads_nothing_while_nobody_is_connected(
    flaky: tuple[AsyncSheetsGateway, FlakyBackend, list[Sequence[str]]],
) -> None:
    """With no open stream a poll makes no sheet call at all."""
    gw, _, reads = flaky
    watcher = LiveWatcher(gw, EventHub())
    reads.clear()
    assert await watcher.poll_once() == 0
    assert reads == []


async def test_watcher_polls_every_connected_partner_with_one_batched_read(
    flaky: tuple[AsyncSheetsGateway, FlakyBackend, list[Sequence[str]]],
) -> None:
    """Fifty connected partners cost ONE batched read per poll when nothing changed; a status typed by staff
    and a request finished by the worker are announced to their partner."""
    gw, _, reads = flaky
    hub = EventHub(max_per_user=1, max_total=100)
    watcher = LiveWatcher(gw, hub)
    appeals, queue = gw.table(APPEALS), gw.table(QUEUE)
    ids = list(range(1000, 1050))
    await gw.write(
        [appeals.op_upsert(str(i), {AppealCol.STATUS: "Ответ ИИ", AppealCol.UPDATED: "t0"}) for i in ids]
        + [queue.op_insert({QueueCol.ID: "job-7", QueueCol.TELEGRAM_ID: "1007", QueueCol.STATUS: "NEW"})]
    )
    subs = {i: hub.subscribe(i) for i in ids}
    for i in ids:
        await watcher.take_baseline(i)
    await watcher.poll_once()  # warms the header cache
    reads.clear()
    assert await watcher.poll_once() == 50
    assert len(reads) == 1
    assert all(drain(s.queue) == [] for s in subs.values())

    await gw.write(
        [
            appeals.op_upsert("1003", {AppealCol.STATUS: "в работе"}),
            queue.op_upsert("job-7", {QueueCol.STATUS: "DONE"}),
        ]
    )
    await watcher.poll_once()
    assert [(e.kind, e.data["status"]) for e in drain(subs[1003].queue)] == [(STATUS, "В работе")]
    assert [(e.kind, e.data["status"]) for e in drain(subs[1007].queue)] == [("analytics", "DONE")]
    assert all(drain(s.queue) == [] for i, s in subs.items() if i not in (1003, 1007))
