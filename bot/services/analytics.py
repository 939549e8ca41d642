"""Аналитика 360, the bot's side: queue a partner's request in Очередь and read back their requests.

The heavy work happens elsewhere (Apps Script or `marketingbot worker`); this service only writes NEW
rows, guards the queue against floods and duplicates, and answers "what about my requests?".
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from bot.analytics.analysis import plural
from bot.services.ports import Clock, utc_now
from bot.services.sheet_time import MOSCOW, parse_stamp, stamp
from gateway import AsyncSheetsGateway, Record
from gateway.schemas import OBJECTS, QUEUE, ObjectCol, QueueCol, QueueStatus

CODE_MIN_LEN = 3
CODE_MAX_LEN = 32
# Latin or Cyrillic letters and digits, dashes only inside: DEMO-0001, КВ-12.
_CODE = re.compile(r"^[A-ZА-ЯЁ0-9](?:[A-ZА-ЯЁ0-9-]*[A-ZА-ЯЁ0-9])?$")
_DASHES = str.maketrans({"‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "−": "-"})
PENDING = frozenset({QueueStatus.NEW, QueueStatus.PROCESSING})
# What the pending/duplicate check reads (not the long result texts).
REQUEST_CHECK_COLUMNS = (QueueCol.ID, QueueCol.CREATED_AT, QueueCol.OBJECT_CODE, QueueCol.TELEGRAM_ID, QueueCol.STATUS)


def claim_stamp(moment: datetime, zone: tzinfo = MOSCOW) -> str:
    """A started_at value that doubles as a claim token: ISO time with random microseconds and the offset.

    `2026-11-24T15:10:05.482913+03:00` is unique per claim (10⁶ values within one second), and the Apps
    Script worker parses it with Date.parse and compares it for equality just like its own stamps.
    """
    local = moment.astimezone(zone).replace(microsecond=secrets.randbelow(1_000_000))
    return local.isoformat(timespec="microseconds")


def normalize_code(code: str) -> str:
    """Trim, upper-case and turn look-alike dashes into `-` (no validation)."""
    return code.strip().translate(_DASHES).upper()


async def read_queue_columns(gw: AsyncSheetsGateway, columns: Sequence[str]) -> list[Record]:
    """Some columns of every row of Очередь in one read, also the first time after a start.

    Reading only short columns keeps the frequent reads small however many long result texts the
    sheet has accumulated. With no header known yet, the default layout is taken as a guess: select()
    reads the header row in the same call and reads again with the real one if staff changed the layout.
    """
    return await gw.table(QUEUE).select(columns, default_header=True)


class AnalyticsRequestError(Exception):
    """A request for Аналитика 360 was refused; `message` is the Russian text for the partner."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidObjectCode(AnalyticsRequestError):
    """The code does not look like an object code (letters, digits and dashes, 3-32 characters)."""


class TooManyPendingRequests(AnalyticsRequestError):
    """The partner already has the maximum number of requests waiting in the queue."""


class UnknownObjectCode(AnalyticsRequestError):
    """No row of Объекты carries this code."""


@dataclass(frozen=True)
class Job:
    """One row of Очередь as a partner sees it. Times are the sheet's text ('' when not yet set)."""

    id: str
    object_code: str
    status: str
    created_at: str
    finished_at: str
    result_text: str
    pdf_url: str
    error: str
    delivered_at: str
    existing: bool = False  # request() returned an already-pending job instead of queueing a new one

    @property
    def pending(self) -> bool:
        """Still waiting for the worker (NEW or PROCESSING)."""
        return self.status in PENDING


def job_from_record(rec: Mapping[str, str], *, existing: bool = False) -> Job:
    """A Job from a row of Очередь."""
    return Job(
        id=rec[QueueCol.ID].strip(),
        object_code=rec[QueueCol.OBJECT_CODE].strip(),
        status=rec[QueueCol.STATUS].strip().upper(),
        created_at=rec[QueueCol.CREATED_AT],
        finished_at=rec[QueueCol.FINISHED_AT],
        result_text=rec[QueueCol.RESULT_TEXT],
        pdf_url=rec[QueueCol.PDF_URL].strip(),
        error=rec[QueueCol.ERROR],
        delivered_at=rec[QueueCol.DELIVERED_AT],
        existing=existing,
    )


class AnalyticsService:
    """Queues Аналитика 360 requests in Очередь and lists a partner's own requests."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        *,
        max_pending_per_user: int = 3,
        clock: Clock = utc_now,
        tz: tzinfo = MOSCOW,
        check_objects: bool = True,
    ) -> None:
        self._gw = gw
        self._queue = gw.table(QUEUE)
        self._objects = gw.table(OBJECTS)
        self._max_pending = max_pending_per_user
        self._clock = clock
        self._tz = tz
        self._check_objects = check_objects
        # One request at a time per partner in this process, so a double tap cannot queue twice.
        self._user_locks: dict[int, asyncio.Lock] = {}

    def validate_code(self, code: str) -> str:
        """The normalized code (upper case), or InvalidObjectCode with a Russian explanation."""
        norm = normalize_code(code)
        if not norm:
            raise InvalidObjectCode("Укажите код объекта, например: /analytics DEMO-0001")
        if not CODE_MIN_LEN <= len(norm) <= CODE_MAX_LEN or not _CODE.match(norm):
            shown = code.strip()[:40]
            raise InvalidObjectCode(
                f"«{shown}» не похоже на код объекта. Код состоит из букв, цифр и дефисов "
                f"({CODE_MIN_LEN}–{CODE_MAX_LEN} символа), например DEMO-0001."
            )
        return norm

    async def request(self, telegram_id: int, requested_by: str, object_code: str) -> Job:
        """Queue a NEW request (or return the same code's pending one); refuse floods and unknown codes."""
        code = self.validate_code(object_code)
        lock = self._user_locks.setdefault(telegram_id, asyncio.Lock())
        async with lock:
            # Both reads are issued together, so the gateway serves them with one batch call.
            if self._check_objects:
                rows, objects = await asyncio.gather(
                    read_queue_columns(self._gw, REQUEST_CHECK_COLUMNS), self._objects.select([ObjectCol.CODE])
                )
                known = {normalize_code(r[ObjectCol.CODE]) for r in objects}
                if code not in known:
                    raise UnknownObjectCode(
                        f"Объект с кодом {code} не найден в базе агентства. Код указан в карточке объекта "
                        "в CRM и в списке объектов агентства (формат как DEMO-0001). Проверьте код или "
                        "уточните его у своего менеджера."
                    )
            else:
                rows = await read_queue_columns(self._gw, REQUEST_CHECK_COLUMNS)
            pending = [j for r in rows if _same_user(r, telegram_id) and (j := job_from_record(r)).pending]
            for job in pending:
                if normalize_code(job.object_code) == code:
                    return replace(job, existing=True)
            if len(pending) >= self._max_pending:
                n = len(pending)
                raise TooManyPendingRequests(
                    f"У вас уже {n} {plural(n, 'запрос', 'запроса', 'запросов')} в очереди — это максимум. "
                    "Дождитесь готовых отчётов (обычно 1–2 минуты) и отправьте новый запрос."
                )
            now = stamp(self._clock(), self._tz)
            job_id = str(uuid.uuid4())
            values = {
                QueueCol.ID: job_id,
                QueueCol.CREATED_AT: now,
                QueueCol.OBJECT_CODE: code,
                QueueCol.TELEGRAM_ID: str(telegram_id),
                QueueCol.REQUESTED_BY: requested_by,
                QueueCol.STATUS: QueueStatus.NEW,
                QueueCol.ATTEMPTS: "0",
            }
            await self._queue.write([self._queue.op_insert({str(k): v for k, v in values.items()})])
            return Job(job_id, code, str(QueueStatus.NEW), now, "", "", "", "", "")

    async def list_for(self, telegram_id: int) -> list[Job]:
        """The partner's own requests, newest first (one read)."""
        rows = [r for r in await self._queue.all() if _same_user(r, telegram_id)]
        oldest = datetime.min.replace(tzinfo=self._tz)
        # The time has whole seconds; rows are appended as requests come, so the row breaks a tie.
        rows.sort(key=lambda r: (parse_stamp(r[QueueCol.CREATED_AT], self._tz) or oldest, r.row), reverse=True)
        return [job_from_record(r) for r in rows]

    async def get(self, telegram_id: int, job_id: str) -> Job | None:
        """One of the partner's own requests by id; None when absent or someone else's."""
        job_id = job_id.strip()
        if not job_id:
            return None
        rec = await self._queue.get(job_id)
        if rec is None or not _same_user(rec, telegram_id):
            return None
        return job_from_record(rec)


def _same_user(rec: Mapping[str, str], telegram_id: int) -> bool:
    return rec[QueueCol.TELEGRAM_ID].strip() == str(telegram_id)
