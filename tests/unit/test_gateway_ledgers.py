"""The typed ledger stores read and write the state file exactly as earlier releases did."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import DeliveryPhase, DeliveryRecord, LedgerEntry, Ledgers, StateStore


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    """A fresh state store."""
    store = StateStore(tmp_path / "state.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _old(entry: LedgerEntry) -> DeliveryRecord | None:
    return DeliveryRecord(DeliveryPhase.SENT, entry.payload) if entry.state == "sent" else None


async def test_delivery_ledger_reads_old_rows_under_legacy_keys_until_a_typed_record_exists(state: StateStore) -> None:
    """An older release's row answers (with its own time) until a typed record of the key replaces it."""
    await state.ledger_set("k", "job-1", "sent", "fp")
    await state.ledger_set("k", "job-2", "junk", "")
    ledger = Ledgers(state).deliveries("k", legacy=_old, legacy_keys=lambda key: (key, key.partition("@")[0]))
    old = await ledger.get("job-1@12:00")
    assert old == DeliveryRecord(DeliveryPhase.SENT, "fp") and old is not None and old.updated > 0
    assert await ledger.get("job-2") is None and await ledger.get("job-3") is None
    await ledger.set("job-1@12:00", DeliveryRecord(DeliveryPhase.SENDING, "new", 1))
    assert await ledger.get("job-1@12:00") == DeliveryRecord(DeliveryPhase.SENDING, "new", 1)
    assert await ledger.all() == {
        "job-1": DeliveryRecord(DeliveryPhase.SENT, "fp"),
        "job-1@12:00": DeliveryRecord(DeliveryPhase.SENDING, "new", 1),
    }
    assert await Ledgers(state).deliveries("k").get("job-1") is None  # no decoder: typed records only


async def test_auth_memory_keeps_the_old_format_and_forgets_denials_and_old_checks(state: StateStore) -> None:
    """A row written by an older release is recalled; a denial or an entry past max_age is not."""
    await state.ledger_set("auth-last-good", "42", "authorized", '{"code": "P-1"}')
    memory = Ledgers(state).auth_memory
    remembered = await memory.recall(42, max_age=60)
    assert remembered is not None and remembered.payload == '{"code": "P-1"}'
    assert await memory.recall(42, max_age=-1) is None
    await memory.deny(42)
    assert await memory.recall(42, max_age=60) is None
    await memory.remember(7, "x")
    entry = await state.ledger_get("auth-last-good", "7")
    assert entry is not None and (entry.state, entry.payload) == ("authorized", "x")
    assert entry.updated <= time.time()


async def test_staff_notices_map_messages_to_partners_as_before(state: StateStore) -> None:
    """A notice recorded by an older release maps to its partner; anything else maps to nobody."""
    await state.ledger_set("staff-notice", "501", "partner", "-100")
    notices = Ledgers(state).staff_notices
    assert await notices.partner_of(501) == -100 and await notices.partner_of(502) is None
    await notices.link(503, 42)
    assert await notices.partner_of(503) == 42
    raw = await state.ledger_get("staff-notice", "503")
    assert raw is not None and (raw.state, raw.payload) == ("partner", "42")


async def test_job_journal_adds_once_lists_pending_and_keeps_data_when_finished(state: StateStore) -> None:
    """A second add of the same key is refused; finished jobs leave the pending list but keep their data."""
    jobs = Ledgers(state).jobs("staff-reply")
    assert await jobs.add("9", {"partner": 42, "text": "привет"}) is True
    assert await jobs.add("9", {"partner": 1}) is False
    [pending] = await jobs.pending()
    assert (pending.key, pending.data, pending.pending) == ("9", {"partner": 42, "text": "привет"}, True)
    await jobs.finish("9")
    assert await jobs.pending() == []
    done = await jobs.get("9")
    assert done is not None and not done.pending and done.data["text"] == "привет"
    raw = await state.ledger_get("staff-reply", "9")
    assert raw is not None and raw.state == "done"


async def test_counts_marks_notes_and_run_markers_use_the_old_keys(state: StateStore) -> None:
    """AI answer counts, once-marks, notes and run markers land under the names earlier releases used."""
    ledgers = Ledgers(state)
    await state.counter_add("ai-answers:42", "2026-11-23", 2)
    assert await ledgers.ai_answers.add("42", "2026-11-23") == 3
    await ledgers.ai_answers.add("7", "2026-11-23")
    assert await ledgers.ai_answers.total("2026-11-23") == 4 and await ledgers.ai_answers.get("7", "2026-11-22") == 0
    stuck = ledgers.once("analytics-stuck")
    assert not await stuck.done("job-1")
    await stuck.mark("job-1")
    assert await stuck.done("job-1")
    notes = ledgers.notes("promo-meta:A1")
    await notes.set("picture", "broken", "картинка не открылась")
    assert await notes.get("picture") == "картинка не открылась" and await notes.get("other") is None
    await ledgers.runs.mark(123)
    assert await state.meta_keys("run:") == ["run:123"] and await ledgers.runs.others() == [123]
    await ledgers.runs.clear(123)
    assert await ledgers.runs.others() == []
