"""`marketingbot worker`: the Python twin of the Apps Script worker that processes Очередь.

Same statuses and rules as the Apps Script: NEW → PROCESSING (started_at, attempts + 1) → DONE
(result_text, pdf_url, finished_at) or ERROR (error, finished_at). An unexpected failure puts the row
back to NEW while attempts < max_attempts; an AnalysisError (unknown object, bad object data) is final.

Claiming without transactions. Google Sheets has no compare-and-set, and Apps Script's LockService does
not reach a Python process, so two workers agree through the sheet itself:
1. read the queue and pick NEW rows (and PROCESSING rows whose lease ran out: a worker died);
2. write PROCESSING with a `started_at` unique to this run (`claim_stamp`: random microseconds);
3. wait `settle` seconds, so a competing claim issued from the same stale read has landed;
4. read again: a row is ours only if its started_at is still exactly our stamp (the last claim wins,
   every other claimer sees a foreign stamp and leaves the row alone); the Apps Script's finishClaim
   checks ownership the same way;
5. before writing results, read once more and drop results for rows no longer ours (lease stolen).
This is safe as long as a worker's read→write gap is shorter than `settle`. Claims are only made while
the sheet is healthy (breaker closed, outbox empty), because a journaled claim replayed later could
land on a row another worker has finished meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from bot.analytics.analysis import AnalysisError, Report, analyze, narrative_prompt, render_summary, usable_narrative
from bot.analytics.pdf import render_pdf
from bot.services.analytics import claim_stamp, read_queue_columns
from bot.services.ports import Clock, utc_now
from bot.services.sheet_time import MOSCOW, parse_stamp, stamp
from gateway import AsyncSheetsGateway, GatewayError, Record, WriteOp, private_dir, write_private
from gateway.schemas import MARKET, OBJECTS, QUEUE, QueueCol, QueueStatus

log = logging.getLogger(__name__)

AiNarrator = Callable[[str], Awaitable[str]]
# What claiming reads: never the long result texts of finished rows.
CLAIM_COLUMNS = (
    QueueCol.ID,
    QueueCol.CREATED_AT,
    QueueCol.OBJECT_CODE,
    QueueCol.STATUS,
    QueueCol.STARTED_AT,
    QueueCol.ATTEMPTS,
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class WorkerRun:
    """What one run did: ids processed by this worker and how each ended."""

    claimed: tuple[str, ...] = ()
    done: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()  # ERROR, final
    retried: tuple[str, ...] = ()  # back to NEW for another attempt
    lost: tuple[str, ...] = ()  # claimed by another worker first
    expired: tuple[str, ...] = ()  # stuck in PROCESSING with no attempts left → ERROR
    skipped_reason: str = ""

    @property
    def processed(self) -> tuple[str, ...]:
        """Rows this run computed and wrote a result for."""
        return self.done + self.failed + self.retried


@dataclass
class _Outcome:
    job_id: str
    values: dict[str, str]
    kind: str  # "done" | "failed" | "retried"
    pdf_path: Path | None = None
    extra: list[str] = field(default_factory=list)


class AnalyticsWorker:
    """Claims NEW rows of Очередь, runs the analysis, writes the summary, the PDF link and the status."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        reports_dir: Path,
        reports_base_url: str,
        *,
        batch: int = 5,
        max_attempts: int = 3,
        clock: Clock = utc_now,
        tz: tzinfo = MOSCOW,
        ai_narrator: AiNarrator | None = None,
        narrator_timeout: float = 30.0,
        lease: timedelta = timedelta(minutes=10),
        settle: float = 1.0,
    ) -> None:
        self._gw = gw
        self._queue = gw.table(QUEUE)
        self._objects = gw.table(OBJECTS)
        self._market = gw.table(MARKET)
        self._reports_dir = reports_dir
        self._base_url = reports_base_url.rstrip("/")
        self._batch = batch
        self._max_attempts = max_attempts
        self._clock = clock
        self._tz = tz
        self._narrator = ai_narrator
        self._narrator_timeout = narrator_timeout
        self._lease = lease
        self._settle = settle

    async def run_once(self) -> WorkerRun:
        """Claim up to `batch` rows, process them and write their results."""
        if self._gw.breaker_state != "closed" or self._gw.outbox_depth:
            return WorkerRun(skipped_reason="sheet unavailable or outbox not empty")
        rows = await read_queue_columns(self._gw, CLAIM_COLUMNS)
        now = self._clock()
        claim, expire = self._candidates(rows, now)
        if not claim and not expire:
            return WorkerRun()
        stamp = claim_stamp(now, self._tz)
        ops = [
            self._queue.op_upsert(
                _id(r),
                {
                    QueueCol.STATUS: QueueStatus.PROCESSING,
                    QueueCol.STARTED_AT: stamp,
                    QueueCol.ATTEMPTS: str(_attempts(r) + 1),
                },
                create=False,
            )
            for r in claim
        ]
        ops += [
            self._queue.op_upsert(_id(r), self._final(QueueStatus.ERROR, _expired_error(_attempts(r))), create=False)
            for r in expire
        ]
        await self._write(ops, "claims")
        if not claim:
            return WorkerRun(expired=tuple(_id(r) for r in expire))
        if self._settle:
            await asyncio.sleep(self._settle)
        mine = await self._owned(stamp)
        lost = tuple(_id(r) for r in claim if _id(r) not in mine)
        if not mine:
            return WorkerRun(lost=lost, expired=tuple(_id(r) for r in expire))
        try:
            # Both sheets are read together: the gateway serves them with one batch call.
            objects, market = await asyncio.gather(self._objects.all(), self._market.all())
        except GatewayError as exc:
            log.warning("worker cannot read Объекты/Рынок, releasing %d claims: %s", len(mine), exc)
            # Handed back untouched: the claim does not count as an attempt (as the Apps Script does).
            release = [
                self._queue.op_upsert(
                    k,
                    {
                        QueueCol.STATUS: QueueStatus.NEW,
                        QueueCol.STARTED_AT: "",
                        QueueCol.ATTEMPTS: str(_attempts(r) - 1),
                    },
                    create=False,
                )
                for k, r in mine.items()
            ]
            await self._write(release, "releases")
            return WorkerRun(lost=lost, skipped_reason=f"Объекты/Рынок unreadable: {exc}")
        today = now.astimezone(self._tz).date()  # the agency's calendar day, as the Apps Script uses
        outcomes = [await self._process(rec, objects, market, today) for rec in mine.values()]
        still = await self._owned(stamp)
        kept = [o for o in outcomes if o.job_id in still]
        for o in outcomes:
            if o.job_id not in still:
                log.warning("request %s was taken over by another worker; result dropped", o.job_id)
                if o.pdf_path is not None:
                    with contextlib.suppress(OSError):
                        o.pdf_path.unlink()
        await self._write([self._queue.op_upsert(o.job_id, o.values, create=False) for o in kept], "results")
        return WorkerRun(
            claimed=tuple(mine),
            done=tuple(o.job_id for o in kept if o.kind == "done"),
            failed=tuple(o.job_id for o in kept if o.kind == "failed"),
            retried=tuple(o.job_id for o in kept if o.kind == "retried"),
            lost=lost + tuple(o.job_id for o in outcomes if o.job_id not in still),
            expired=tuple(_id(r) for r in expire),
        )

    async def run_forever(self, interval: float, stop: asyncio.Event | None = None) -> None:
        """Run batches every `interval` seconds (at once again after a full batch) until `stop` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            busy = False
            try:
                run = await self.run_once()
                busy = len(run.claimed) >= self._batch
            except Exception:
                log.exception("analytics worker run failed")
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    # -- claiming ------------------------------------------------------------------------------

    def _candidates(self, rows: Sequence[Record], now: datetime) -> tuple[list[Record], list[Record]]:
        """Rows to claim (oldest first, at most `batch`) and rows whose lease ran out with no attempts left."""
        fresh: list[Record] = []
        stale: list[Record] = []
        expire: list[Record] = []
        for r in rows:
            if not _id(r):
                continue
            status = r[QueueCol.STATUS].strip().upper()
            if status == QueueStatus.NEW:
                fresh.append(r)
            elif status == QueueStatus.PROCESSING:
                started = parse_stamp(r[QueueCol.STARTED_AT], self._tz)
                if started is None or now - started < self._lease:
                    continue  # someone is working on it (an unreadable start time is left to staff)
                if _attempts(r) >= self._max_attempts:
                    expire.append(r)
                else:
                    stale.append(r)
        fresh.sort(key=lambda r: (parse_stamp(r[QueueCol.CREATED_AT], self._tz) or now, r.row))
        return (stale + fresh)[: self._batch], expire

    async def _owned(self, stamp: str) -> dict[str, Record]:
        """Rows still PROCESSING under this run's claim token (one read)."""
        rows = await read_queue_columns(self._gw, CLAIM_COLUMNS)
        return {
            _id(r): r
            for r in rows
            if r[QueueCol.STARTED_AT].strip() == stamp and r[QueueCol.STATUS].strip().upper() == QueueStatus.PROCESSING
        }

    async def _write(self, ops: list[WriteOp], what: str) -> None:
        if not ops:
            return
        try:
            await self._gw.write(ops)
        except GatewayError as exc:
            # A row deleted by staff in the meantime; the other ops of the batch are applied.
            log.warning("worker %s partly rejected: %s", what, exc)

    # -- processing ----------------------------------------------------------------------------

    async def _process(
        self, rec: Record, objects: Sequence[Mapping[str, str]], market: Sequence[Mapping[str, str]], today: date
    ) -> _Outcome:
        job_id, code, attempt = _id(rec), rec[QueueCol.OBJECT_CODE].strip(), _attempts(rec)
        try:
            # CPU-bound: off the event loop, which may also be serving the bot (marketingbot local).
            report = await asyncio.to_thread(analyze, code, objects, market, today)
            narrative = await self._narrative(report)
            text = render_summary(report, narrative)
            pdf = await asyncio.to_thread(render_pdf, report, narrative)
            path = await asyncio.to_thread(self._save_pdf, job_id, pdf)
        except AnalysisError as exc:
            log.info("request %s (%s): %s", job_id, code, exc.message)
            return _Outcome(job_id, self._final(QueueStatus.ERROR, exc.message), "failed")
        except Exception:
            log.exception("request %s (%s) failed on attempt %d", job_id, code, attempt)
            if attempt < self._max_attempts:
                values: dict[str, str] = {
                    QueueCol.STATUS: str(QueueStatus.NEW),
                    QueueCol.STARTED_AT: "",
                    QueueCol.ERROR: f"Попытка {attempt} не удалась, будет повтор.",
                }
                return _Outcome(job_id, values, "retried")
            message = f"Не удалось подготовить отчёт из-за внутренней ошибки (попыток: {attempt}). Попробуйте позже."
            return _Outcome(job_id, self._final(QueueStatus.ERROR, message), "failed")
        done = self._final(QueueStatus.DONE, "")
        done[QueueCol.RESULT_TEXT] = text
        done[QueueCol.PDF_URL] = f"{self._base_url}/reports/{path.name}"
        return _Outcome(job_id, done, "done", path)

    def _final(self, status: QueueStatus, error: str) -> dict[str, str]:
        # delivered_at is cleared so a row staff re-ran (status back to NEW) is delivered again.
        return {
            QueueCol.STATUS: str(status),
            QueueCol.ERROR: error,
            QueueCol.FINISHED_AT: stamp(self._clock(), self._tz),
            QueueCol.DELIVERED_AT: "",
        }

    async def _narrative(self, report: Report) -> str | None:
        """The AI's paragraph when it is configured, answers in time and every number checks out."""
        if self._narrator is None:
            return None
        try:
            text = await asyncio.wait_for(self._narrator(narrative_prompt(report)), self._narrator_timeout)
        except Exception as exc:
            log.warning("AI narrative unavailable for %s, using the template: %s", report.object_code, exc)
            return None
        if not usable_narrative(text, report):
            log.info("AI narrative for %s rejected (numbers do not match the figures)", report.object_code)
            return None
        return text

    def _save_pdf(self, job_id: str, data: bytes) -> Path:
        return save_report_pdf(self._reports_dir, job_id, data)


def save_report_pdf(reports_dir: Path, job_id: str, data: bytes) -> Path:
    """Write the PDF atomically as <job id>.pdf (a hashed name for ids unsafe in a path), 0600 in a 0700 folder."""
    name = job_id if _SAFE_ID.match(job_id) else uuid.uuid5(uuid.NAMESPACE_URL, job_id).hex
    private_dir(reports_dir)
    path = reports_dir / f"{name}.pdf"
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    write_private(tmp, data)
    os.replace(tmp, path)
    return path


def _id(rec: Mapping[str, str]) -> str:
    return rec[QueueCol.ID].strip()


def _attempts(rec: Mapping[str, str]) -> int:
    try:
        return max(0, int(rec[QueueCol.ATTEMPTS].strip() or 0))
    except ValueError:
        return 0


def _expired_error(attempts: int) -> str:
    return f"Обработка прервалась {attempts} раз(а) подряд — отчёт не подготовлен. Попробуйте позже."
