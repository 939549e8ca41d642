"""One way to deliver: resumable, multi-part, exactly once across restarts (but for one window, below).

A delivery is a sequence of parts (a long text split into messages; a message then a document) sent to one
chat, identified by a `kind` (what sort of delivery) and a `key` (which one), with a `fingerprint` of what is
being delivered (the hash of a reply's text, a variant…). Its progress is ONE typed record in the durable
state store (gateway/state.py, `DeliveryRecord`), written before and after each part:

    record SENDING(next_part=i)  →  send part i  →  record SENDING(next_part=i+1) … → record SENT
                                               ↘  permanent failure (or too many) → record FAILED(note)

`deliver()` called again for the same key and fingerprint resumes from the record: SENT or SETTLED is not
sent again, FAILED is left for staff, SENDING sends part `next_part` onwards. A different fingerprint under
the same key is a new delivery from part 0. The caller marks SETTLED once its own bookkeeping after the
send (a sheet write) is done, so a crash between the send and that write redoes only the write.

A part in flight is not abandoned when the calling task is cancelled (shutdown): the send and the record
after it finish first, then the cancellation goes through, so a graceful stop never doubles a part.

THE ONE DUPLICATE WINDOW: Telegram accepted a part and the process was killed (or the HTTP response was lost,
e.g. a read timeout) before the record after it was written. The Bot API has no idempotency key, so nobody
can tell whether that part went out; it is sent again rather than risk losing it, and the partner may see
that one part twice. Every other crash point neither loses nor repeats a part.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from bot.services.ports import DeliveryError
from gateway import DeliveryLedger, DeliveryPhase, DeliveryRecord

log = logging.getLogger(__name__)

T = TypeVar("T")

#: One part of a delivery: sends one message (raises on failure; DeliveryError.permanent when hopeless).
Part = Callable[[], Awaitable[None]]


class Outcome(StrEnum):
    """What one `deliver()` call did."""

    DELIVERED = "delivered"  # the last part was accepted now
    ALREADY = "already"  # delivered before (SENT or SETTLED): nothing sent now
    RETRY = "retry"  # a transient failure; the record keeps the place for the next attempt
    FAILED = "failed"  # given up now (permanent failure, or `max_failures` transient ones)
    ABANDONED = "abandoned"  # given up before: nothing sent now


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome, the record as it now stands, and the error of a failed part."""

    outcome: Outcome
    record: DeliveryRecord
    error: Exception | None = None


class Deliveries:
    """Deliveries of one kind, recorded in their ledger (see the module docstring).

    The ledger (`gateway.ledgers.deliveries(kind, legacy=…)`) also reads an older release's records in their
    own encoding, so an upgrade never re-sends."""

    def __init__(self, ledger: DeliveryLedger, *, max_failures: int | None = None) -> None:
        self._ledger = ledger
        self.kind = ledger.kind
        self._max_failures = max_failures  # None: a transient failure never gives up

    async def record(self, key: str) -> DeliveryRecord | None:
        """The recorded state of one delivery (an older release's record when there is no new one)."""
        return await self._ledger.get(key)

    async def deliver(
        self,
        key: str,
        fingerprint: str,
        parts: Sequence[Part],
        *,
        fresh: bool = False,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> DeliveryResult:
        """Send the parts not yet accepted, recording each step; see the module docstring.

        `fresh`: a new delivery from part 0 whatever is recorded (e.g. staff sent the same text again).
        `pace`: awaited before each part (a rate limiter's slot), outside the part's cancellation shield."""
        rec = None if fresh else await self.record(key)
        if rec is not None and rec.fingerprint == fingerprint:
            if rec.phase in (DeliveryPhase.SENT, DeliveryPhase.SETTLED):
                return DeliveryResult(Outcome.ALREADY, rec)
            if rec.phase is DeliveryPhase.FAILED:
                return DeliveryResult(Outcome.ABANDONED, rec)
        else:
            rec = DeliveryRecord(DeliveryPhase.SENDING, fingerprint)
        while rec.next_part < len(parts):
            await self._save(key, rec)  # before: "part next_part may be in flight"
            if pace is not None:
                await pace()
            try:
                rec = await _finish_despite_cancel(self._send(key, rec, parts))
            except Exception as exc:
                failures = rec.failures + 1
                permanent = isinstance(exc, DeliveryError) and exc.permanent
                if permanent or (self._max_failures is not None and failures >= self._max_failures):
                    rec = replace(rec, phase=DeliveryPhase.FAILED, failures=failures, note=str(exc)[:500])
                    await self._save(key, rec)
                    return DeliveryResult(Outcome.FAILED, rec, exc)
                rec = replace(rec, failures=failures)
                await self._save(key, rec)
                return DeliveryResult(Outcome.RETRY, rec, exc)
        if rec.phase is not DeliveryPhase.SENT:  # nothing to send at all
            rec = replace(rec, phase=DeliveryPhase.SENT)
            await self._save(key, rec)
        return DeliveryResult(Outcome.DELIVERED, rec)

    async def settle(self, key: str, fingerprint: str) -> None:
        """Record that the bookkeeping after a delivery is done (SETTLED)."""
        await self._save(key, DeliveryRecord(DeliveryPhase.SETTLED, fingerprint))

    async def give_up(self, key: str, fingerprint: str, note: str) -> DeliveryRecord:
        """Record a delivery as FAILED without sending (e.g. no valid chat to send to)."""
        rec = await self.record(key)
        failures = rec.failures if rec is not None and rec.fingerprint == fingerprint else 0
        failed = DeliveryRecord(DeliveryPhase.FAILED, fingerprint, failures=failures, note=note[:500])
        await self._save(key, failed)
        return failed

    async def _send(self, key: str, rec: DeliveryRecord, parts: Sequence[Part]) -> DeliveryRecord:
        await parts[rec.next_part]()
        # ← THE DUPLICATE WINDOW: Telegram has the part; a kill before this write sends it again.
        done = rec.next_part + 1
        after = replace(rec, next_part=done, phase=DeliveryPhase.SENT if done >= len(parts) else DeliveryPhase.SENDING)
        await self._save(key, after)
        return after

    async def _save(self, key: str, rec: DeliveryRecord) -> None:
        await self._ledger.set(key, rec)


async def _finish_despite_cancel(coro: Awaitable[T]) -> T:
    """Await `coro` to its end even if the caller is cancelled (once or more) meanwhile; then let the
    cancellation through. A part Telegram may have accepted is recorded before the task gives way."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
        except Exception:
            break  # the part's own failure: task.result() below raises it
    if cancelled:
        if task.exception() is not None:
            log.debug("a part in flight at cancellation failed: %s", task.exception())
        raise asyncio.CancelledError
    return task.result()
