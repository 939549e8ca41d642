"""Typed stores over the state file's ledgers, one per kind of record a service keeps.

Services never name a ledger table, a state string or a payload encoding: each store here owns its
on-disk format (kinds, states and payloads exactly as earlier releases wrote them, so their rows are
still read) and offers typed methods. `Ledgers` hands them out (`gateway.ledgers`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.state import DeliveryRecord, LedgerEntry, StateStore

# How an older release's string-ledger row of a delivery reads as a typed record (None: not a delivery).
LegacyDecoder = Callable[[LedgerEntry], DeliveryRecord | None]


class DeliveryLedger:
    """Deliveries of one kind (see bot/services/delivery.py), keyed by what is delivered to whom."""

    def __init__(
        self,
        state: StateStore,
        kind: str,
        *,
        legacy: LegacyDecoder | None = None,
        legacy_keys: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self._state = state
        self.kind = kind
        self._legacy = legacy
        self._legacy_keys = legacy_keys or (lambda key: (key,))

    async def get(self, key: str) -> DeliveryRecord | None:
        """The record of one delivery; an older release's row (under any of its legacy keys) when there is none."""
        found = await self._state.delivery_get(self.kind, key)
        if found is not None or self._legacy is None:
            return found
        for old in self._legacy_keys(key):
            entry = await self._state.ledger_get(self.kind, old)
            if entry is not None:
                record = self._legacy(entry)
                return replace(record, updated=entry.updated) if record is not None else None
        return None

    async def set(self, key: str, record: DeliveryRecord) -> None:
        """Record (durably) where one delivery stands."""
        await self._state.delivery_set(self.kind, key, record)

    async def all(self) -> dict[str, DeliveryRecord]:
        """Every delivery of this kind by key (an older release's rows under the newer records)."""
        out: dict[str, DeliveryRecord] = {}
        if self._legacy is not None:
            for entry in await self._state.ledger_list(self.kind):
                record = self._legacy(entry)
                if record is not None:
                    out[entry.key] = replace(record, updated=entry.updated)
        out.update(await self._state.delivery_list(self.kind))
        return out


@dataclass(frozen=True)
class Remembered:
    """A remembered successful authorization: the service's own encoding of it, and when it was written."""

    payload: str
    updated: float


class AuthMemory:
    """The last good authorization of each partner, so a restart during a sheet outage still knows them."""

    KIND = "auth-last-good"
    _AUTHORIZED, _DENIED = "authorized", "denied"

    def __init__(self, state: StateStore) -> None:
        self._state = state

    async def remember(self, telegram_id: int, payload: str) -> None:
        """Record that this partner was authorized (payload: the partner as the service encodes it)."""
        await self._state.ledger_set(self.KIND, str(telegram_id), self._AUTHORIZED, payload)

    async def deny(self, telegram_id: int) -> None:
        """Record that this partner is no longer authorized (the memory must not let them in)."""
        await self._state.ledger_set(self.KIND, str(telegram_id), self._DENIED)

    async def recall(self, telegram_id: int, *, max_age: float) -> Remembered | None:
        """The remembered authorization, if there is one and it is at most `max_age` seconds old."""
        entry = await self._state.ledger_get(self.KIND, str(telegram_id))
        if entry is None or entry.state != self._AUTHORIZED or time.time() - entry.updated > max_age:
            return None
        return Remembered(entry.payload, entry.updated)


class NoticeMap:
    """Which partner each of the bot's staff-chat notices is about (a reply to a notice goes to that partner)."""

    KIND = "staff-notice"
    _PARTNER = "partner"

    def __init__(self, state: StateStore) -> None:
        self._state = state

    async def link(self, message_id: int, telegram_id: int) -> None:
        """Remember that staff-chat message `message_id` is about partner `telegram_id`."""
        await self._state.ledger_set(self.KIND, str(message_id), self._PARTNER, str(telegram_id))

    async def partner_of(self, message_id: int) -> int | None:
        """The partner a staff-chat message is about, if it is a notice."""
        entry = await self._state.ledger_get(self.KIND, str(message_id))
        return int(entry.payload) if entry is not None and entry.payload.lstrip("-").isdigit() else None


@dataclass(frozen=True)
class JournaledJob:
    """A journaled job: its data (JSON-able) and whether it is still to be finished."""

    key: str
    data: dict[str, Any]
    pending: bool


class JobJournal:
    """Jobs journaled before they are done, so a crash or a failure finishes them later (e.g. staff replies)."""

    _PENDING, _DONE = "pending", "done"

    def __init__(self, state: StateStore, kind: str) -> None:
        self._state = state
        self.kind = kind

    async def add(self, key: str, data: dict[str, Any]) -> bool:
        """Journal a job unless one with this key exists (a redelivered request is the same job); True if added."""
        if await self._state.ledger_get(self.kind, key) is not None:
            return False
        await self._state.ledger_set(self.kind, key, self._PENDING, json.dumps(data, ensure_ascii=False))
        return True

    async def get(self, key: str) -> JournaledJob | None:
        """One job, if journaled."""
        entry = await self._state.ledger_get(self.kind, key)
        return None if entry is None else self._job(entry)

    async def pending(self) -> list[JournaledJob]:
        """Every job still to be finished, oldest first."""
        return [self._job(e) for e in await self._state.ledger_list(self.kind, self._PENDING)]

    async def finish(self, key: str) -> None:
        """Mark a job done (delivered, or given up); its data stays for the record."""
        entry = await self._state.ledger_get(self.kind, key)
        await self._state.ledger_set(self.kind, key, self._DONE, entry.payload if entry is not None else "")

    def _job(self, entry: LedgerEntry) -> JournaledJob:
        data = json.loads(entry.payload) if entry.payload else {}
        return JournaledJob(entry.key, data if isinstance(data, dict) else {}, entry.state == self._PENDING)


class OnceMarks:
    """Keys something was done for once (e.g. a stuck request reported to staff): never done twice."""

    _DONE = "reported"

    def __init__(self, state: StateStore, kind: str) -> None:
        self._state = state
        self.kind = kind

    async def done(self, key: str) -> bool:
        """Whether it was done for `key`."""
        return await self._state.ledger_get(self.kind, key) is not None

    async def mark(self, key: str) -> None:
        """Record that it was done for `key`."""
        await self._state.ledger_set(self.kind, key, self._DONE)


class Notes:
    """Short notes about a subject, by topic (e.g. a promotion's picture found broken, and why)."""

    def __init__(self, state: StateStore, subject: str) -> None:
        self._state = state
        self._kind = subject

    async def get(self, topic: str) -> str | None:
        """The note on `topic`, if any."""
        entry = await self._state.ledger_get(self._kind, topic)
        return entry.payload if entry is not None else None

    async def set(self, topic: str, flag: str, note: str) -> None:
        """Record a note on `topic` (`flag`: its one-word state, as staff tools show it)."""
        await self._state.ledger_set(self._kind, topic, flag, note)


class DailyCounts:
    """Counts per name per day (ISO date), under one name prefix (e.g. AI answers per partner per day)."""

    def __init__(self, state: StateStore, prefix: str) -> None:
        self._state = state
        self._prefix = prefix

    async def add(self, name: str, day: str, delta: int = 1) -> int:
        """Count `delta` more for `name` on `day`; returns the new count."""
        return await self._state.counter_add(self._prefix + name, day, delta)

    async def get(self, name: str, day: str) -> int:
        """The count of `name` on `day` (0 when none)."""
        return await self._state.counter_get(self._prefix + name, day)

    async def total(self, day: str) -> int:
        """The sum over every name on `day`."""
        return await self._state.counter_sum(self._prefix, day)


class RunMarkers:
    """One marker per running process: a marker left by a process that is gone means it did not stop cleanly."""

    PREFIX = "run:"

    def __init__(self, state: StateStore) -> None:
        self._state = state

    async def others(self) -> list[int]:
        """The process ids of the other markers (alive or not: the caller checks)."""
        pids = [key.removeprefix(self.PREFIX) for key in await self._state.meta_keys(self.PREFIX)]
        return [int(p) for p in pids if p.isdigit()]

    async def mark(self, pid: int) -> None:
        """Record that process `pid` is running."""
        await self._state.meta_set(f"{self.PREFIX}{pid}", str(time.time()))

    async def clear(self, pid: int) -> None:
        """Forget the marker of `pid` (a clean stop, or a crashed run already reported)."""
        await self._state.meta_delete(f"{self.PREFIX}{pid}")


class Ledgers:
    """The typed stores of one state file."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self.auth_memory = AuthMemory(state)
        self.staff_notices = NoticeMap(state)
        self.runs = RunMarkers(state)
        self.ai_answers = DailyCounts(state, "ai-answers:")  # model answers per partner per day (the daily limit)

    def deliveries(
        self,
        kind: str,
        *,
        legacy: LegacyDecoder | None = None,
        legacy_keys: Callable[[str], Sequence[str]] | None = None,
    ) -> DeliveryLedger:
        """The deliveries of one kind (with an older release's decoder, where it kept them differently)."""
        return DeliveryLedger(self._state, kind, legacy=legacy, legacy_keys=legacy_keys)

    def jobs(self, kind: str) -> JobJournal:
        """The journaled jobs of one kind."""
        return JobJournal(self._state, kind)

    def once(self, kind: str) -> OnceMarks:
        """Things done at most once per key, of one kind."""
        return OnceMarks(self._state, kind)

    def notes(self, subject: str) -> Notes:
        """The notes about one subject."""
        return Notes(self._state, subject)
