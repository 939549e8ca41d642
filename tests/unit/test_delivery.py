"""The delivery module: multi-part, recorded before and after each part, resumable, exactly once but one window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.delivery import Deliveries, Outcome, Part
from bot.services.ports import DeliveryError
from gateway import DeliveryLedger, DeliveryPhase, DeliveryRecord, LedgerEntry, StateStore


class Crash(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    """A fresh state store."""
    store = StateStore(tmp_path / "state.db")
    await store.open()
    yield store
    await store.close()


def parts(sent: list[str], names: list[str], fail: dict[str, BaseException] | None = None) -> list[Part]:
    """Parts that append their name to `sent`, or raise the given error once."""
    fail = dict(fail or {})

    def part(name: str) -> Part:
        async def send() -> None:
            if name in fail:
                raise fail.pop(name)
            sent.append(name)

        return send

    return [part(n) for n in names]


async def test_every_part_once_then_already(state: StateStore) -> None:
    """A message and a document go out once; asking again sends nothing."""
    d, sent = Deliveries(DeliveryLedger(state, "k")), []
    result = await d.deliver("1", "fp", parts(sent, ["text", "pdf"]))
    assert result.outcome is Outcome.DELIVERED and sent == ["text", "pdf"]
    assert (await d.deliver("1", "fp", parts(sent, ["text", "pdf"]))).outcome is Outcome.ALREADY
    assert sent == ["text", "pdf"]


async def test_transient_failure_resumes_at_the_failed_part(state: StateStore) -> None:
    """A part that fails transiently is retried later from that part, earlier parts are not resent."""
    d, sent = Deliveries(DeliveryLedger(state, "k"), max_failures=3), []
    first = await d.deliver("1", "fp", parts(sent, ["a", "b", "c"], {"b": DeliveryError("timeout", permanent=False)}))
    assert first.outcome is Outcome.RETRY and first.record == DeliveryRecord(DeliveryPhase.SENDING, "fp", 1, 1)
    assert (await d.deliver("1", "fp", parts(sent, ["a", "b", "c"]))).outcome is Outcome.DELIVERED
    assert sent == ["a", "b", "c"]


async def test_permanent_failure_and_too_many_failures_give_up(state: StateStore) -> None:
    """A permanent error, or max_failures transient ones, record FAILED; later calls send nothing."""
    d, sent = Deliveries(DeliveryLedger(state, "k"), max_failures=2), []
    gone = await d.deliver("1", "fp", parts(sent, ["a"], {"a": DeliveryError("blocked", permanent=True)}))
    assert gone.outcome is Outcome.FAILED and gone.record.phase is DeliveryPhase.FAILED
    assert "blocked" in gone.record.note
    assert (await d.deliver("1", "fp", parts(sent, ["a"]))).outcome is Outcome.ABANDONED
    flaky = DeliveryError("timeout", permanent=False)
    assert (await d.deliver("2", "fp", parts(sent, ["a"], {"a": flaky}))).outcome is Outcome.RETRY
    assert (await d.deliver("2", "fp", parts(sent, ["a"], {"a": flaky}))).outcome is Outcome.FAILED
    assert sent == []


async def test_crash_before_the_after_record_resends_only_that_part(tmp_path: Path) -> None:
    """Killed after a part was accepted but before it was recorded (the one window): only that part again."""
    path = tmp_path / "state.db"
    store = StateStore(path)
    await store.open()
    sent: list[str] = []
    original = store.delivery_set

    async def die_after_b(kind: str, key: str, record: DeliveryRecord) -> None:
        if record.next_part == 2:
            raise Crash
        await original(kind, key, record)

    store.delivery_set = die_after_b  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await Deliveries(DeliveryLedger(store, "k")).deliver("1", "fp", parts(sent, ["a", "b", "c"]))
    await store.close()
    store = StateStore(path)  # the restarted process
    await store.open()
    result = await Deliveries(DeliveryLedger(store, "k")).deliver("1", "fp", parts(sent, ["a", "b", "c"]))
    await store.close()
    assert result.outcome is Outcome.DELIVERED and sent == ["a", "b", "b", "c"]


async def test_new_fingerprint_or_fresh_starts_over(state: StateStore) -> None:
    """Another fingerprint under the same key, or fresh=True, is a new delivery from part 0."""
    d, sent = Deliveries(DeliveryLedger(state, "k")), []
    await d.deliver("1", "v1", parts(sent, ["a"]))
    await d.settle("1", "v1")
    await d.deliver("1", "v2", parts(sent, ["b"]))
    await d.deliver("1", "v2", parts(sent, ["c"]), fresh=True)
    assert sent == ["a", "b", "c"]


async def test_cancellation_waits_for_the_part_in_flight(state: StateStore) -> None:
    """Cancelling the caller mid-send lets the send and its record finish, so nothing is doubled."""
    d, sent = Deliveries(DeliveryLedger(state, "k")), []
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(0.05)
        sent.append("slow")

    task = asyncio.create_task(d.deliver("1", "fp", [slow, *parts(sent, ["next"])]))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent == ["slow"]
    assert await state.delivery_get("k", "1") == DeliveryRecord(DeliveryPhase.SENDING, "fp", 1)
    await d.deliver("1", "fp", [slow, *parts(sent, ["next"])])
    assert sent == ["slow", "next"]


async def test_legacy_reader_is_asked_only_without_a_typed_record(state: StateStore) -> None:
    """An older release's record is honoured until the first typed record replaces it."""

    def legacy(entry: LedgerEntry) -> DeliveryRecord | None:
        return DeliveryRecord(DeliveryPhase.SENT, entry.payload) if entry.state == "sent" else None

    await state.ledger_set("k", "old", "sent", "fp")
    d, sent = Deliveries(DeliveryLedger(state, "k", legacy=legacy)), []
    assert (await d.deliver("old", "fp", parts(sent, ["a"]))).outcome is Outcome.ALREADY
    assert (await d.deliver("new", "fp", parts(sent, ["b"]))).outcome is Outcome.DELIVERED
    assert sent == ["b"]
