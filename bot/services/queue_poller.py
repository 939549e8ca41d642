"""Delivers finished Аналитика 360 requests to partners, exactly once, with one sheet read per poll.

Every poll reads Очередь once (the short columns of all rows: one call however many are pending) and then:
- DONE, not yet delivered → the result text, then the PDF as a document (or its link), then `delivered_at`;
- ERROR, not yet delivered → a clear Russian message with the worker's error, then `delivered_at`;
- NEW / PROCESSING older than `stuck_after` → one notice to the partner and to staff.

Exactly once across restarts: each delivery (the text, then the PDF) goes through the delivery module
(bot/services/delivery.py: a typed record written before and after each part, with its one duplicate
window). A crash between the last send and the `delivered_at` write finds the record SENT and only writes
the mark. Records of older releases (JSON in the string ledger, under the current or the pre-finish-time
key) are read as typed records, so an upgrade never re-sends a report.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bot.services.analytics import PENDING, read_queue_columns
from bot.services.delivery import Deliveries, Outcome
from bot.services.ports import Clock, Messenger, PdfDownloader, utc_now
from bot.services.sheet_time import MOSCOW, parse_stamp, stamp
from gateway import (
    AsyncSheetsGateway,
    DeliveryPhase,
    DeliveryRecord,
    GatewayError,
    LedgerEntry,
    Record,
    drive_file_id,
    drive_report_stem,
    normalize_key,
    private_dir,
    write_private,
)
from gateway.schemas import QUEUE, QueueCol, QueueStatus

log = logging.getLogger(__name__)

PdfLoader = Callable[[str], Awaitable[bytes | None]]
DELIVERY_LEDGER = "analytics-delivery"
STUCK_LEDGER = "analytics-stuck"
TELEGRAM_TEXT_LIMIT = 4096
MAX_PDF_BYTES = 20 * 1024 * 1024  # what a bot may upload as a document is 50 MB; a report is far smaller
# Everything a poll needs except result_text (long; fetched only for rows about to be delivered).
POLL_COLUMNS = (
    QueueCol.ID,
    QueueCol.CREATED_AT,
    QueueCol.OBJECT_CODE,
    QueueCol.TELEGRAM_ID,
    QueueCol.STATUS,
    QueueCol.ATTEMPTS,
    QueueCol.FINISHED_AT,
    QueueCol.PDF_URL,
    QueueCol.ERROR,
    QueueCol.DELIVERED_AT,
)


@dataclass(frozen=True)
class PollStats:
    """What one poll saw and did."""

    rows: int = 0
    pending: int = 0
    delivered: int = 0
    errors_reported: int = 0
    stuck_reported: int = 0
    send_failures: int = 0
    oldest_pending_seconds: float | None = None
    read_failed: bool = False
    oldest_new_seconds: float | None = None  # a NEW row no worker has claimed yet (health: worker idle)


class _Done(StrEnum):
    """What delivering one finished row did."""

    SENT = "sent"  # delivered now
    RESUMED = "resumed"  # delivered before; only the delivered_at mark was missing
    FAILED = "failed"  # a transient failure: the next poll retries
    SKIPPED = "skipped"  # given up (now or before) and reported to staff


def _legacy_record(entry: LedgerEntry) -> DeliveryRecord | None:
    """A delivery recorded by an older release: JSON `{"done", "failures"}` in the string ledger."""
    data = json.loads(entry.payload) if entry.payload else {}
    phases = {"sending": DeliveryPhase.SENDING, "sent": DeliveryPhase.SENT, "failed": DeliveryPhase.FAILED}
    phase = phases.get(entry.state)
    return DeliveryRecord(phase, "", int(data.get("done", 0)), int(data.get("failures", 0))) if phase else None


def _legacy_keys(key: str) -> tuple[str, ...]:
    # Recorded before the finish time was part of the key (a delivery in progress at an upgrade).
    return (key, key.rpartition("@")[0]) if "@" in key else (key,)


class QueuePoller:
    """Polls Очередь and delivers results, errors and stuck-request notices to partners."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        messenger: Messenger,
        *,
        stuck_after: timedelta,
        pdf_loader: PdfLoader,
        clock: Clock = utc_now,
        tz: tzinfo = MOSCOW,
        max_send_failures: int = 5,
    ) -> None:
        self._gw = gw
        self._queue = gw.table(QUEUE)
        self._messenger = messenger
        self._stuck_after = stuck_after
        self._load_pdf = pdf_loader
        self._clock = clock
        self._tz = tz
        self._deliveries = Deliveries(
            gw.ledgers.deliveries(DELIVERY_LEDGER, legacy=_legacy_record, legacy_keys=_legacy_keys),
            max_failures=max_send_failures,
        )
        self._stuck_reported = gw.ledgers.once(STUCK_LEDGER)
        self.last_stats: PollStats | None = None
        self._stuck_known: set[str] = set()  # ledger answers cached: a long-stuck backlog costs no queries

    async def poll_once(self) -> PollStats:
        """One poll: one read of Очередь for every pending request, then every due delivery and notice.

        The poll reads only the short columns. The long result_text of rows due for delivery is fetched
        in one more read, only in a poll that has something to deliver, so a growing history of delivered
        reports never makes the every-15-seconds read heavier than a few small columns.
        """
        try:
            rows = await read_queue_columns(self._gw, POLL_COLUMNS)
        except GatewayError as exc:
            log.warning("queue poll skipped: %s", exc)
            self.last_stats = PollStats(read_failed=True)
            return self.last_stats
        now = self._clock()
        pending = delivered = errors = stuck = failures = 0
        oldest: float | None = None
        oldest_new: float | None = None
        due: list[tuple[Record, DeliveryPhase]] = []
        for rec in rows:
            status = rec[QueueCol.STATUS].strip().upper()
            if not rec[QueueCol.ID].strip():
                continue
            if status in PENDING:
                pending += 1
                created = parse_stamp(rec[QueueCol.CREATED_AT], self._tz)
                if created is not None:
                    age = (now - created).total_seconds()
                    oldest = age if oldest is None else max(oldest, age)
                    if status == QueueStatus.NEW:
                        oldest_new = age if oldest_new is None else max(oldest_new, age)
                    if age >= self._stuck_after.total_seconds() and await self._report_stuck(rec):
                        stuck += 1
            elif status in (QueueStatus.DONE, QueueStatus.ERROR) and not rec[QueueCol.DELIVERED_AT].strip():
                record = await self._deliveries.record(_delivery_key(rec))
                due.append((rec, record.phase if record else DeliveryPhase.SENDING))
        texts_needed = [r for r, p in due if p is DeliveryPhase.SENDING and _status(r) == QueueStatus.DONE]
        full = await self._full_rows(texts_needed) if texts_needed else {}
        marks: dict[str, str] = {}
        for rec, phase in due:
            job_id = rec[QueueCol.ID].strip()
            status = _status(rec)
            if phase is DeliveryPhase.SENDING and status == QueueStatus.DONE:
                fresh = full.get(job_id)
                if fresh is None:
                    continue  # rows moved between the two reads, or the fetch failed: next poll
                rec = fresh
            outcome = await self._deliver(rec, status)
            if outcome in (_Done.SENT, _Done.RESUMED):
                marks[job_id] = stamp(self._clock(), self._tz)
            if outcome is _Done.SENT:
                if status == QueueStatus.DONE:
                    delivered += 1
                else:
                    errors += 1
            elif outcome is _Done.FAILED:
                failures += 1
        await self._mark_delivered(marks)
        self.last_stats = PollStats(
            len(rows), pending, delivered, errors, stuck, failures, oldest, oldest_new_seconds=oldest_new
        )
        return self.last_stats

    async def _full_rows(self, recs: list[Record]) -> dict[str, Record]:
        """Whole rows (with result_text) by their row numbers, in one read, verified by id."""
        try:
            return await self._gw.table(QUEUE).reread(recs, QueueCol.ID)
        except GatewayError as exc:
            log.warning("finished rows not fetched, delivering next poll: %s", exc)
            return {}

    # -- deliveries ----------------------------------------------------------------------------

    async def _deliver(self, rec: Mapping[str, str], status: str) -> _Done:
        """Send what is due for one finished row (the text, then the PDF; or the error message)."""
        key = _delivery_key(rec)
        chat_id = _chat_id(rec)
        if chat_id is None:
            record = await self._deliveries.record(key)
            if record is not None and record.phase is not DeliveryPhase.SENDING:
                return _Done.RESUMED if record.phase is not DeliveryPhase.FAILED else _Done.SKIPPED
            await self._deliveries.give_up(key, "", "no valid telegram_id")
            await self._tell_staff(rec, "в строке нет корректного telegram_id")
            return _Done.SKIPPED
        steps = self._done_steps(rec, chat_id) if status == QueueStatus.DONE else self._error_steps(rec, chat_id)
        result = await self._deliveries.deliver(key, "", steps)
        if result.outcome is Outcome.DELIVERED:
            return _Done.SENT
        if result.outcome is Outcome.ALREADY:
            return _Done.RESUMED  # delivered before a crash or restart; only the delivered_at mark is missing
        if result.outcome is Outcome.ABANDONED:
            return _Done.SKIPPED  # given up and reported to staff; staff decide what to do
        log.warning("delivery of %s to %s failed (%d): %s", key, chat_id, result.record.failures, result.error)
        if result.outcome is Outcome.FAILED:
            await self._tell_staff(rec, f"Telegram не принимает сообщения: {result.error}")
            return _Done.SKIPPED
        return _Done.FAILED

    def _done_steps(self, rec: Mapping[str, str], chat_id: int) -> list[Callable[[], Awaitable[None]]]:
        code = rec[QueueCol.OBJECT_CODE].strip()
        text = rec[QueueCol.RESULT_TEXT].strip() or f"Аналитика 360 по объекту {code} готова."
        pdf_url = rec[QueueCol.PDF_URL].strip()

        async def send_text() -> None:
            await self._messenger.send_text(chat_id, _fit(text))

        async def send_pdf() -> None:
            data = await self._load_pdf(pdf_url)
            if data:
                caption = f"Аналитика 360 · {code} (PDF)"
                await self._messenger.send_document(chat_id, data, _pdf_name(code), caption)
            else:
                await self._messenger.send_text(chat_id, f"PDF-отчёт по объекту {code}: {pdf_url}")

        return [send_text, send_pdf] if pdf_url else [send_text]

    def _error_steps(self, rec: Mapping[str, str], chat_id: int) -> list[Callable[[], Awaitable[None]]]:
        code = rec[QueueCol.OBJECT_CODE].strip()
        reason = rec[QueueCol.ERROR].strip() or "причина не указана"
        text = (
            f"Не удалось подготовить Аналитику 360 по объекту {code}.\n{reason}\n\n"
            "Если нужна помощь — напишите «оператор», и менеджер подключится."
        )

        async def send_error() -> None:
            await self._messenger.send_text(chat_id, _fit(text))

        return [send_error]

    async def _tell_staff(self, rec: Mapping[str, str], why: str) -> None:
        note = (
            f"Аналитика 360: не удалось доставить результат запроса {rec[QueueCol.ID].strip()} "
            f"(объект {rec[QueueCol.OBJECT_CODE].strip()}, telegram_id {rec[QueueCol.TELEGRAM_ID].strip()}): {why}."
        )
        try:
            await self._messenger.notify_staff(note)
        except Exception:
            log.exception("staff notice failed: %s", note)

    async def _mark_delivered(self, marks: dict[str, str]) -> None:
        """Write every delivered_at of this poll in one acknowledged write (sheet or outbox)."""
        if not marks:
            return
        ops = [self._queue.op_upsert(k, {QueueCol.DELIVERED_AT: v}, create=False) for k, v in marks.items()]
        try:
            await self._gw.write(ops)
        except GatewayError as exc:
            # A row deleted by staff meanwhile; the ledger still prevents any second send.
            log.warning("could not mark deliveries %s: %s", sorted(marks), exc)

    # -- stuck requests ------------------------------------------------------------------------

    async def _report_stuck(self, rec: Mapping[str, str]) -> bool:
        """Tell the partner and staff once that a request waits too long; True when told now."""
        key = rec[QueueCol.ID].strip()
        if key in self._stuck_known:
            return False
        if await self._stuck_reported.done(key):
            self._stuck_known.add(key)
            return False
        self._stuck_known.add(key)
        # Recorded first: a notice lost to a crash is acceptable, one repeated every poll is not.
        await self._stuck_reported.mark(key)
        code = rec[QueueCol.OBJECT_CODE].strip()
        status = rec[QueueCol.STATUS].strip().upper()
        minutes = int(self._stuck_after.total_seconds() // 60)
        chat_id = _chat_id(rec)
        if chat_id is not None:
            try:
                await self._messenger.send_text(
                    chat_id,
                    f"Аналитика 360 по объекту {code} готовится дольше обычного (более {minutes} мин). "
                    "Мы уже сообщили менеджеру; отчёт придёт сюда, как только будет готов.",
                )
            except Exception as exc:
                log.warning("stuck notice to %s failed: %s", chat_id, exc)
        try:
            await self._messenger.notify_staff(
                f"Аналитика 360: запрос {key} (объект {code}, telegram_id {rec[QueueCol.TELEGRAM_ID].strip()}) "
                f"в статусе {status} дольше {minutes} мин (создан {rec[QueueCol.CREATED_AT].strip()}). "
                "Проверьте, работает ли обработчик очереди (Apps Script или marketingbot worker)."
            )
        except Exception:
            log.exception("staff notice about stuck request %s failed", key)
        return True


# -- PDF loading -------------------------------------------------------------------------------


def make_pdf_loader(
    reports_dir: Path | None,
    reports_base_url: str | None,
    http: httpx.AsyncClient | None = None,
    *,
    drive: PdfDownloader | None = None,
) -> PdfLoader:
    """A loader reading our own reports from `reports_dir`, downloading private Apps Script reports from Drive
    when `drive` is given (kept as a 0600 copy in `reports_dir`, which the Mini App then links to), and, when
    `http` is given, fetching other URLs.

    A URL that gives no PDF (e.g. a Drive file not shared with the service account) gives None, so the
    partner gets the text without the document.
    """
    prefix = (reports_base_url or "").rstrip("/") + "/reports/"

    async def from_drive(file_id: str) -> bytes | None:
        assert drive is not None
        cached = reports_dir / f"{drive_report_stem(file_id)}.pdf" if reports_dir is not None else None
        if cached is not None and cached.is_file():
            return await asyncio.to_thread(cached.read_bytes)
        try:
            data = await drive.download(file_id)
        except GatewayError as exc:
            log.warning("report %s not downloaded from Drive: %s", file_id, exc)
            return None
        if not data.startswith(b"%PDF") or len(data) > MAX_PDF_BYTES:
            log.warning("Drive file %s is not a report PDF", file_id)
            return None
        if cached is not None:
            await asyncio.to_thread(_save_private, cached, data)
        return data

    async def load(url: str) -> bytes | None:
        file_id = drive_file_id(url)
        if file_id is not None and drive is not None:
            return await from_drive(file_id)
        if reports_dir is not None and reports_base_url and url.startswith(prefix):
            name = url[len(prefix) :]
            if "/" in name or "\\" in name or not name.endswith(".pdf") or name.startswith("."):
                return None
            path = reports_dir / name
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                log.warning("report %s unreadable: %s", path, exc)
                return None
            return data if data.startswith(b"%PDF") else None
        if http is None or urlsplit(url).scheme not in ("http", "https"):
            return None
        try:
            resp = await http.get(url, follow_redirects=True)
        except httpx.HTTPError as exc:
            log.warning("report %s not fetched: %s", url, exc)
            return None
        body = resp.content
        if resp.status_code != 200 or not body.startswith(b"%PDF") or len(body) > MAX_PDF_BYTES:
            return None
        return body

    return load


# -- helpers -----------------------------------------------------------------------------------


def _delivery_key(rec: Mapping[str, str]) -> str:
    # The attempt number and the finish time are part of the key: staff re-running a request (status back to
    # NEW, «attempts» perhaps reset too) get the new result delivered, while one result is never sent twice.
    finished = rec[QueueCol.FINISHED_AT].strip()
    return f"{rec[QueueCol.ID].strip()}#{rec[QueueCol.ATTEMPTS].strip() or '0'}" + (f"@{finished}" if finished else "")


def _status(rec: Mapping[str, str]) -> str:
    return rec[QueueCol.STATUS].strip().upper()


def _chat_id(rec: Mapping[str, str]) -> int | None:
    raw = normalize_key(rec[QueueCol.TELEGRAM_ID])
    try:
        return int(raw)
    except ValueError:
        return None


def _fit(text: str) -> str:
    return text if len(text) <= TELEGRAM_TEXT_LIMIT else text[: TELEGRAM_TEXT_LIMIT - 1] + "…"


def _save_private(path: Path, data: bytes) -> None:
    private_dir(path.parent)
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    write_private(tmp, data)
    os.replace(tmp, path)


def _pdf_name(code: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch == "-" else "_" for ch in code) or "object"
    return f"analytics_{safe}.pdf"
