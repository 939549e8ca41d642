"""Live updates for open Mini Apps: an in-process event hub and ONE shared sheet watcher.

Sources of events:
- our own services publish right after they write (a turn answered, an operator reply delivered, an
  analytics request changed) — the page hears about it at once;
- staff edit the sheet directly (a status typed in «Статус», a report finished by the Apps Script): the
  `LiveWatcher` reads Обращения and Очередь for ALL connected partners in one batched call every few
  seconds, and only while at least one Mini App is connected — never one read per client.

Both paths go through the hub, which remembers per partner what it has already announced (log entry keys, the
status, each request's status), so an entry published by a service and then seen by the watcher is announced
once. Events carry a sequence id; a reconnecting page sends the last one (`Last-Event-ID`) and gets what it
missed from a bounded buffer; when the buffer no longer reaches back that far (or the server restarted) the
stream says it did not resume (bot/web/live.py), and the page reloads its lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.services import chatlog
from bot.services.chatlog import ChatEntry
from bot.services.sheet_time import MOSCOW
from gateway import AsyncSheetsGateway, GatewayError, Record
from gateway.schemas import APPEALS, QUEUE, AppealCol, QueueCol

log = logging.getLogger(__name__)

CHAT, STATUS, ANALYTICS = "chat", "status", "analytics"
DEFAULT_MAX_PER_USER = 3
DEFAULT_MAX_TOTAL = 2000
DEFAULT_BUFFER = 5000
QUEUE_SIZE = 500


class TooManyStreams(Exception):
    """Raised when a partner (or the server) already has the allowed number of open event streams."""


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event for one partner: `seq` orders every event of this process."""

    seq: int
    telegram_id: int
    kind: str
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    """One open event stream. `closed` is set when the stream must end (overflow or shutdown)."""

    telegram_id: int
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Known:
    """What the hub has announced (or found already present) for one partner."""

    keys: Counter[str] = field(default_factory=Counter)  # entry key → how many of it are in the log
    status: str | None = None
    jobs: dict[str, str] = field(default_factory=dict)
    updated: str | None = None  # Обращения «Обновлено» as last seen by the watcher


def entry_json(entry: ChatEntry, n: int = 0) -> dict[str, Any]:
    """An entry as the API shows it (the shape of /api/chat/history), plus `n`: how many identical entries
    (same minute, author and text) come before it in the log, so the page can tell a repeat from a copy."""
    at = entry.at.isoformat() if isinstance(entry.at, datetime) else None
    return {"at": at, "author": entry.author, "text": entry.text, "n": n}


def entry_key(entry: ChatEntry) -> str:
    """Identity of a log entry: time (minute), author and text."""
    at = entry.at.isoformat() if isinstance(entry.at, datetime) else ""
    return f"{at}|{entry.author}|{entry.text}"


class EventHub:
    """Fans events out to the open streams of each partner and remembers what was announced."""

    def __init__(
        self,
        *,
        max_per_user: int = DEFAULT_MAX_PER_USER,
        max_total: int = DEFAULT_MAX_TOTAL,
        buffer: int = DEFAULT_BUFFER,
    ) -> None:
        self.epoch = secrets.token_hex(4)  # ids of another process (before a restart) are not resumable
        self._max_per_user = max_per_user
        self._max_total = max_total
        self._buffer: deque[LiveEvent] = deque(maxlen=buffer)
        self._seq = 0
        self._subs: dict[int, list[Subscription]] = {}
        self._known: dict[int, _Known] = {}

    # -- streams --------------------------------------------------------------------------------

    def subscribe(self, telegram_id: int) -> Subscription:
        """Open a stream for a partner; TooManyStreams beyond the limits."""
        mine = self._subs.setdefault(telegram_id, [])
        if len(mine) >= self._max_per_user or self.stream_count >= self._max_total:
            if not mine:
                del self._subs[telegram_id]
            raise TooManyStreams(f"{len(mine)} streams open for {telegram_id}")
        sub = Subscription(telegram_id)
        mine.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Close a stream (idempotent)."""
        mine = self._subs.get(sub.telegram_id, [])
        with contextlib.suppress(ValueError):
            mine.remove(sub)
        if not mine:
            self._subs.pop(sub.telegram_id, None)
        if not sub.closed.is_set():
            sub.closed.set()
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)  # wakes the stream's reader so it ends now

    def close_all(self) -> None:
        """End every stream (shutdown)."""
        for subs in list(self._subs.values()):
            for sub in list(subs):
                self.unsubscribe(sub)

    @property
    def stream_count(self) -> int:
        """Open streams."""
        return sum(len(s) for s in self._subs.values())

    def connected_users(self) -> set[int]:
        """Partners with at least one open stream."""
        return set(self._subs)

    def event_id(self, event: LiveEvent) -> str:
        """The SSE id of an event: `<epoch>-<seq>`."""
        return f"{self.epoch}-{event.seq}"

    def missed(self, telegram_id: int, last_event_id: str | None) -> list[LiveEvent] | None:
        """Events of the partner after `last_event_id`; None when they cannot be replayed (resync)."""
        if not last_event_id:
            return []
        epoch, _, raw = last_event_id.strip().partition("-")
        if epoch != self.epoch or not raw.isdigit():
            return None
        seq = int(raw)
        if seq > self._seq:
            return None
        if seq < self._seq and (not self._buffer or self._buffer[0].seq > seq + 1):
            return None  # the buffer no longer reaches back to it
        return [e for e in self._buffer if e.seq > seq and e.telegram_id == telegram_id]

    # -- what services publish (LiveSink) ----------------------------------------------------------

    def entries_added(self, telegram_id: int, entries: Sequence[ChatEntry]) -> None:
        """Announce entries a service has just appended to the partner's log."""
        known = self._known.get(telegram_id)
        if known is None:
            return  # nobody has watched this partner yet: a stream takes its baseline when it opens
        for entry in entries:
            if entry.known_author is None:
                continue  # staff notes are not the partner's to read (as in /api/chat/history)
            key = entry_key(entry)
            known.keys[key] += 1
            self._emit(telegram_id, CHAT, entry_json(entry, known.keys[key] - 1))

    def log_seen(self, telegram_id: int, entries: Sequence[ChatEntry]) -> None:
        """The whole log as read from the sheet: announce the entries not announced yet (a staff edit)."""
        known = self._known.get(telegram_id)
        if known is None:
            return
        in_log: Counter[str] = Counter()
        for entry in entries:
            if entry.known_author is None:
                continue
            key = entry_key(entry)
            in_log[key] += 1
            if in_log[key] > known.keys[key]:
                known.keys[key] = in_log[key]
                self._emit(telegram_id, CHAT, entry_json(entry, in_log[key] - 1))

    def status_changed(self, telegram_id: int, status: str) -> None:
        """Announce the appeal's status when it differs from the last one announced."""
        known = self._known.get(telegram_id)
        if known is not None and status and status != known.status:
            known.status = status
            self._emit(telegram_id, STATUS, {"status": status})

    def job_changed(self, telegram_id: int, job_id: str, status: str, object_code: str) -> None:
        """Announce a request's status when it differs from the last one announced."""
        known = self._known.get(telegram_id)
        if known is not None and job_id and known.jobs.get(job_id) != status:
            known.jobs[job_id] = status
            self._emit(telegram_id, ANALYTICS, {"id": job_id, "status": status, "object_code": object_code})

    # -- what the watcher reports ------------------------------------------------------------------

    def is_known(self, telegram_id: int) -> bool:
        """Whether the hub has a baseline for this partner."""
        return telegram_id in self._known

    def baseline(self, telegram_id: int, status: str, entries: Iterable[ChatEntry], jobs: dict[str, str]) -> None:
        """Record the current state without announcing it (the page loads it through the API)."""
        known = self._known_for(telegram_id)
        known.keys = Counter(entry_key(e) for e in entries if e.known_author is not None)
        known.status = status
        known.jobs.update(jobs)

    def status_of(self, telegram_id: int) -> str | None:
        """The last known status of the partner's appeal."""
        known = self._known.get(telegram_id)
        return known.status if known else None

    def updated_of(self, telegram_id: int) -> str | None:
        """Обращения «Обновлено» of the partner as the watcher last saw it."""
        known = self._known.get(telegram_id)
        return known.updated if known else None

    def set_updated(self, telegram_id: int, updated: str) -> None:
        """Remember «Обновлено» as seen with the log it belongs to."""
        self._known_for(telegram_id).updated = updated

    def _known_for(self, telegram_id: int) -> _Known:
        known = self._known.get(telegram_id)
        if known is None:
            if len(self._known) >= self._max_total * 4:
                # Forget partners nobody watches: the next connection takes a fresh baseline.
                for tid in [t for t in self._known if t not in self._subs][: len(self._known) // 2]:
                    del self._known[tid]
            known = self._known[telegram_id] = _Known()
        return known

    def _emit(self, telegram_id: int, kind: str, data: dict[str, Any]) -> None:
        self._seq += 1
        event = LiveEvent(self._seq, telegram_id, kind, data)
        self._buffer.append(event)
        for sub in list(self._subs.get(telegram_id, [])):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A stream that cannot keep up is closed; the page reconnects and resumes or resyncs.
                log.warning("event stream of %s fell behind; closing it", telegram_id)
                self.unsubscribe(sub)


class LiveWatcher:
    """The ONE shared poller of staff edits for every connected partner (see the module docstring)."""

    def __init__(self, gw: AsyncSheetsGateway, hub: EventHub, *, interval: float = 5.0, tz: ZoneInfo = MOSCOW) -> None:
        self._gw = gw
        self._appeals = gw.table(APPEALS)
        self._queue = gw.table(QUEUE)
        self._hub = hub
        self.interval = interval
        self._tz = tz
        self._lock = asyncio.Lock()
        self._kicks: set[asyncio.Task[int]] = set()
        self.reads = 0  # polls that read the sheet (the benchmark and tests look at it)

    def kick(self) -> None:
        """Poll now rather than at the next tick (after a local staff edit); the lock keeps polls apart."""
        if self._hub.connected_users():
            task = asyncio.create_task(self.poll_once(), name="live-watcher-kick")
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)

    async def poll_once(self) -> int:
        """One poll for every connected partner; returns the number of partners looked at."""
        users = self._hub.connected_users()
        if not users:
            return 0
        async with self._lock:
            return await self._poll(users)

    async def _poll(self, users: set[int]) -> int:
        try:
            # Issued together: the gateway serves both with one batched call.
            appeals, jobs = await asyncio.gather(
                self._appeals.select([AppealCol.TELEGRAM_ID, AppealCol.STATUS, AppealCol.UPDATED]),
                self._queue.select([QueueCol.ID, QueueCol.TELEGRAM_ID, QueueCol.STATUS, QueueCol.OBJECT_CODE]),
            )
        except GatewayError as exc:
            log.info("live watcher: sheet not read (%s)", exc)
            return 0
        self.reads += 1
        rows: dict[int, Record] = {}
        for rec in appeals:
            raw = rec[AppealCol.TELEGRAM_ID].strip()
            if raw.lstrip("-").isdigit() and int(raw) in users and int(raw) not in rows:
                rows[int(raw)] = rec
        by_user: dict[int, dict[str, tuple[str, str]]] = {u: {} for u in users}
        for rec in jobs:
            raw = rec[QueueCol.TELEGRAM_ID].strip()
            if raw.lstrip("-").isdigit() and int(raw) in by_user:
                status = rec[QueueCol.STATUS].strip().upper()
                by_user[int(raw)][rec[QueueCol.ID].strip()] = (status, rec[QueueCol.OBJECT_CODE].strip())
        changed_logs: list[int] = []
        for tid in users:
            row = rows.get(tid)
            status = _canonical(row[AppealCol.STATUS]) if row else ""
            updated = row[AppealCol.UPDATED].strip() if row else ""
            jobs_now = by_user[tid]
            if not self._hub.is_known(tid):
                continue  # the stream takes its own baseline when it opens
            if updated != self._hub.updated_of(tid):
                changed_logs.append(tid)
            self._hub.status_changed(tid, status)
            for job_id, (job_status, code) in jobs_now.items():
                self._hub.job_changed(tid, job_id, job_status, code)
        if changed_logs:
            await self._read_logs(changed_logs)
        return len(users)

    async def _read_logs(self, users: list[int]) -> None:
        """The logs of partners whose «Обновлено» moved: announce entries not announced yet."""
        try:
            found = await self._appeals.get_many([str(u) for u in users])
        except GatewayError as exc:
            log.info("live watcher: logs not read (%s)", exc)
            return
        for tid in users:
            rec = found.get(str(tid))
            if rec is None:
                continue
            self._hub.set_updated(tid, rec[AppealCol.UPDATED].strip())
            self._hub.log_seen(tid, chatlog.parse(rec[AppealCol.LOG], self._tz))

    async def take_baseline(self, telegram_id: int) -> str:
        """Read the partner's row and requests (one batched call) as the baseline of a new stream; the status.

        A partner the hub already knows (a reconnect) is diffed instead, so what changed while the page was
        away is announced."""
        try:
            rec, jobs = await asyncio.gather(self._appeals.get(str(telegram_id)), self._queue_for(telegram_id))
        except GatewayError as exc:
            log.info("live baseline of %s not read (%s)", telegram_id, exc)
            return self._hub.status_of(telegram_id) or ""
        status = _canonical(rec[AppealCol.STATUS]) if rec else ""
        entries = chatlog.parse(rec[AppealCol.LOG], self._tz) if rec else []
        if self._hub.is_known(telegram_id):
            self._hub.log_seen(telegram_id, entries)
            self._hub.status_changed(telegram_id, status)
            for job_id, (job_status, code) in jobs.items():
                self._hub.job_changed(telegram_id, job_id, job_status, code)
        else:
            self._hub.baseline(telegram_id, status, entries, {k: v[0] for k, v in jobs.items()})
        self._hub.set_updated(telegram_id, rec[AppealCol.UPDATED].strip() if rec else "")
        return status

    async def _queue_for(self, telegram_id: int) -> dict[str, tuple[str, str]]:
        rows = await self._queue.select([QueueCol.ID, QueueCol.TELEGRAM_ID, QueueCol.STATUS, QueueCol.OBJECT_CODE])
        return {
            r[QueueCol.ID].strip(): (r[QueueCol.STATUS].strip().upper(), r[QueueCol.OBJECT_CODE].strip())
            for r in rows
            if r[QueueCol.TELEGRAM_ID].strip() == str(telegram_id)
        }


def _canonical(raw: str) -> str:
    from bot.services.appeals import canonical_status  # appeals imports this module: import late

    return canonical_status(raw)
