"""Promotions (Акции): staff set «Статус» = READY; the bot sends the promotion to every partner exactly once.

Each poll is ONE read of Акции. A due promotion (READY and «Начало» reached) is set to SENDING and sent to each
authorized partner of its «Аудитория» who has not opted out (Auth «Рассылка» = нет). A promotion found in
SENDING (the bot stopped or crashed mid-broadcast) is resumed. Each recipient's delivery goes through the
delivery module (bot/services/delivery.py): one typed record per recipient, kind `promo:<id>`, key the
partner's Telegram ID, fingerprint the variant (`p` with the picture, `t` text only), written before and
after each part:

    SENDING (part i)  →  send part i to Telegram  →  SENDING (part i+1) … → SENT
                                                 ↘  permanent failure → FAILED (short reason)

A recipient recorded SENT or FAILED is never sent to again; one left SENDING is sent the recorded part
again. Cancelling the broadcast task (shutdown, a failed job) is not a crash: the send in flight and its record
finish before the cancellation goes through, so nobody is skipped or doubled. Records of older releases (the
string ledger: `p:3`, a variant, a reason) are read as typed records, so an upgrade never re-sends.

THE ONE DUPLICATE WINDOW (the delivery module's): Telegram accepted a message and the process was killed (or
the HTTP response was lost) before the record after it was written; the part is sent again rather than risk
skipping the partner. A kill can double at most one message per send in flight (`max_in_flight`); every other
crash point neither skips nor doubles.

Pacing: every send takes a slot from one global Pacer (evenly spaced at `rate_per_second`, widened by a small
margin for network jitter), so no one-second window at Telegram holds more than the limit. A 429 RetryAfter
pauses the pacer for every sender and the same part is retried. A partner who blocked the bot (Forbidden) is
a recorded failure, reported in «Ошибки», not an error. A picture Telegram cannot fetch does not sink the
broadcast: that partner gets the text, the rest go without the picture, and «Ошибки» says so.

Sheet calls per broadcast do not grow with the audience: the poll read, the SENDING write, one read of Auth,
progress writes at most every `progress_every` recipients AND `progress_interval` seconds (each also checks the
row, so staff can pause a broadcast by changing «Статус»), and ONE final write: SENT, «Отправлено», «Ошибки».

The records make a promotion id reach each partner once: setting READY again after SENT only reaches partners
who were not in the audience before. To send the same offer again, add a row with a new id.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from bot.services.auth import Partner, is_authorized_status
from bot.services.delivery import Deliveries, Outcome
from bot.services.message_parts import MAX_CAPTION_LENGTH, split_message, utf16_len
from bot.services.ports import Clock, DeliveryError, Messenger, utc_now
from bot.services.sheet_time import MOSCOW
from gateway import (
    AsyncSheetsGateway,
    DeliveryPhase,
    DeliveryRecord,
    GatewayError,
    LedgerEntry,
    Record,
    WriteOp,
    normalize_key,
)
from gateway.schemas import AUTH, PROMOTIONS, AuthCol, PromoCol, PromoStatus

log = logging.getLogger(__name__)


LEDGER_PREFIX = "promo:"
META_PREFIX = "promo-meta:"
SENDING, SENT, FAILED = "sending", "sent", "failed"
WITH_PICTURE, TEXT_ONLY = "p", "t"
VARIANTS = (WITH_PICTURE, TEXT_ONLY)
ALL_PARTNERS = frozenset({"all", "все", "всем", "*"})
OPT_OUT_VALUES = frozenset({"нет", "no", "0", "false"})
OPT_IN, OPT_OUT = "да", "нет"
OPT_OUT_FOOTER = "Не хотите получать акции? Отправьте /stop_promo"
_START_FORMATS = (
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%Y-%m-%d",
    "%d.%m.%Y",
)
_DRIVE_HOSTS = frozenset({"drive.google.com", "docs.google.com", "drive.usercontent.google.com"})
_DRIVE_PATH_ID = re.compile(r"/d/([A-Za-z0-9_-]{10,})")


class PromotionError(Exception):
    """A promotion cannot be sent as asked; the message says why, in Russian, for the admin."""


class PromotionNotFound(PromotionError):
    """No row of Акции has the requested id."""


class StartDateError(PromotionError):
    """«Начало» holds something that is not a date."""


# -- the promotion ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """One row of Акции."""

    id: str
    title: str = ""
    text: str = ""
    picture: str = ""
    start: str = ""
    audience: str = ""
    status: str = ""
    row: int = 0

    @classmethod
    def from_record(cls, rec: Record) -> Promotion:
        """The promotion in a sheet record."""
        return cls(
            id=rec[PromoCol.ID].strip(),
            title=rec[PromoCol.TITLE].strip(),
            text=rec[PromoCol.TEXT].strip(),
            picture=rec[PromoCol.PICTURE].strip(),
            start=rec[PromoCol.START].strip(),
            audience=rec[PromoCol.AUDIENCE].strip(),
            status=rec[PromoCol.STATUS].strip(),
            row=rec.row,
        )

    @property
    def body(self) -> str:
        """Title and text as the partner reads them."""
        return "\n\n".join(p for p in (self.title, self.text) if p)

    @property
    def picture_url(self) -> str | None:
        """The URL Telegram can fetch the picture from (a Drive share link made direct), or None."""
        return picture_url(self.picture)

    @property
    def picture_problem(self) -> str:
        """Why «Картинка» is ignored ('' when it is empty or usable)."""
        if self.picture and self.picture_url is None:
            return f"картинка не отправлена: «{self.picture[:60]}» — не ссылка http(s)"
        return ""

    @property
    def audience_codes(self) -> frozenset[str] | None:
        """Partner codes (casefolded) the promotion is for; None means every partner."""
        tokens = {t.casefold() for t in re.split(r"[,;\s]+", self.audience) if t}
        if not tokens or tokens & ALL_PARTNERS:
            return None
        return frozenset(tokens)

    @property
    def is_empty(self) -> bool:
        """Nothing to send."""
        return not self.body and self.picture_url is None


@dataclass(frozen=True)
class Part:
    """One Telegram message of a promotion: text, or a picture with `text` as its caption."""

    text: str
    photo_url: str | None = None


def compose(promo: Promotion, *, with_picture: bool = True, footer: str = OPT_OUT_FOOTER) -> list[Part]:
    """The messages a partner gets: the picture with the text as its caption when it fits, else picture then
    text; every promotion ends with how to opt out."""
    body = "\n\n".join(p for p in (promo.title, promo.text, footer) if p)
    url = promo.picture_url if with_picture else None
    if url is None:
        return [Part(p) for p in split_message(body)]
    if utf16_len(body) <= MAX_CAPTION_LENGTH:
        return [Part(body, url)]
    if promo.title and utf16_len(promo.title) <= MAX_CAPTION_LENGTH:
        tail = "\n\n".join(p for p in (promo.text, footer) if p)
        return [Part(promo.title, url), *(Part(p) for p in split_message(tail))]
    return [Part("", url), *(Part(p) for p in split_message(body))]


def picture_url(raw: str) -> str | None:
    """An http(s) URL as is; a Google Drive share link as its direct download URL; anything else None."""
    url = raw.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if parts.netloc.lower() in _DRIVE_HOSTS:
        file_id = drive_file_id(url)
        if file_id:
            return f"https://drive.google.com/uc?export=download&id={file_id}"
    return url


def drive_file_id(url: str) -> str | None:
    """The file id in a Drive link (`/file/d/ID/view`, `open?id=ID`, `uc?id=ID`…), or None."""
    parts = urlsplit(url.strip())
    m = _DRIVE_PATH_ID.search(parts.path)
    if m:
        return m.group(1)
    ids = parse_qs(parts.query).get("id")
    return ids[0] if ids and re.fullmatch(r"[A-Za-z0-9_-]{10,}", ids[0]) else None


def parse_start(raw: str, tz: ZoneInfo = MOSCOW) -> datetime | None:
    """«Начало» as an aware time in `tz` (`YYYY-MM-DD HH:MM`, `DD.MM.YYYY HH:MM`, or a date); None when empty."""
    text = " ".join(raw.replace("T", " ").split())
    if not text:
        return None
    for fmt in _START_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    raise StartDateError(f"не понял дату в «Начало»: «{raw[:40]}» (нужно ГГГГ-ММ-ДД ЧЧ:ММ или ДД.ММ.ГГГГ ЧЧ:ММ)")


def is_opted_in(value: str) -> bool:
    """Whether an Auth «Рассылка» cell lets promotions through (empty means yes)."""
    return value.strip().casefold() not in OPT_OUT_VALUES


def short_reason(exc: DeliveryError) -> str:
    """A failure as staff read it in «Ошибки»."""
    text = str(exc).casefold()
    if "blocked" in text:
        return "заблокировали бота"
    if "deactivated" in text:
        return "аккаунт удалён"
    if "chat not found" in text:
        return "чат не найден"
    if "forbidden" in text:
        return "нет доступа к чату"
    return str(exc)[:80]


def format_errors(reasons: Counter[str], notes: Sequence[str] = ()) -> str:
    """«Ошибки»: the count, then the reasons with counts (`2: заблокировали бота — 2`), then notes."""
    total = sum(reasons.values())
    text = str(total)
    if reasons:
        text += ": " + ", ".join(f"{reason} — {n}" for reason, n in reasons.most_common())
    if notes:
        text += ". " + ". ".join(notes)
    return text


# -- pacing ----------------------------------------------------------------------------------------


class Pacer:
    """Hands out send slots evenly spaced at `rate` per second (FIFO), so no second holds more than `rate`.

    Even spacing rather than a bucket: a leaky bucket (aiolimiter, PTB's limiter) starts with a full burst, so a
    one-second window can see almost twice the rate. `margin` widens the spacing to absorb network jitter
    between our clock and Telegram's.
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.interval = (1.0 + margin) / rate
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Wait for the next slot."""
        async with self._lock:
            while True:
                now = self._clock()
                if now >= self._next:
                    self._next = now + self.interval
                    return
                await self._sleep(self._next - now)

    def pause(self, seconds: float) -> None:
        """Hand out no slot for `seconds` (Telegram said RetryAfter)."""
        self._next = max(self._next, self._clock() + seconds)


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A partner a promotion goes to."""

    telegram_id: int
    code: str


@dataclass(frozen=True)
class Audience:
    """Who gets a promotion, and how many matching partners opted out."""

    recipients: tuple[Recipient, ...]
    opted_out: int


@dataclass(frozen=True)
class BroadcastReport:
    """How a broadcast ended (`finished`: SENT was written; otherwise it resumes on a later poll)."""

    promo_id: str
    sent: int
    failed: int
    opted_out: int
    errors: str
    finished: bool


@dataclass(frozen=True)
class TestSend:
    """The result of /broadcast_test: what the real broadcast would reach."""

    promo: Promotion
    recipients: int
    opted_out: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    """A broadcast in progress (for /stats)."""

    promo_id: str
    title: str
    done: int
    total: int


@dataclass
class _Run:
    """The mutable state of one broadcast."""

    promo: Promotion
    kind: str
    total: int
    records: dict[str, DeliveryRecord]
    deliveries: Deliveries
    sent: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    variant: str = WITH_PICTURE
    since_progress: int = 0
    last_progress: float = 0.0
    writing: bool = False
    paused_by_staff: bool = False
    left: int = 0  # recipients not yet sent to or failed in this run

    def parts(self, variant: str) -> list[Part]:
        return compose(self.promo, with_picture=variant == WITH_PICTURE)

    @property
    def done(self) -> int:
        return self.sent + sum(self.reasons.values())


# -- the service -----------------------------------------------------------------------------------


class PromotionService:
    """Finds due promotions, broadcasts them exactly once per partner, and keeps Акции up to date."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        messenger: Messenger,
        *,
        rate_per_second: float = 25.0,
        max_in_flight: int = 4,
        pace_margin: float = 0.05,
        progress_every: int = 100,
        progress_interval: float = 15.0,
        max_attempts: int = 3,
        retry_backoff: float = 1.0,
        max_flood_waits: int = 10,
        tz: ZoneInfo = MOSCOW,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self._gw = gw
        self._promos = gw.table(PROMOTIONS)
        self._auth = gw.table(AUTH)
        self._messenger = messenger
        self.rate_per_second = rate_per_second
        self._pacer = Pacer(rate_per_second, margin=pace_margin, clock=monotonic)
        self._max_in_flight = max_in_flight
        self._progress_every = max(1, progress_every)
        self._progress_interval = progress_interval
        self._max_attempts = max(1, max_attempts)
        self._retry_backoff = retry_backoff
        self._max_flood_waits = max_flood_waits
        self._tz = tz
        self._clock = clock
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._stopping = False
        self._reported: dict[str, str] = {}  # promo id → the problem already written to «Ошибки»
        self._run: _Run | None = None

    # -- polling -------------------------------------------------------------------------------

    async def poll_once(self) -> list[BroadcastReport]:
        """ONE read of Акции; send every due promotion (and resume interrupted ones). Returns their reports."""
        if self._lock.locked() or self._stopping:
            return []  # a broadcast is still running (it looks again when done), or we are shutting down
        async with self._lock:
            try:
                rows = await self._promos.all()
            except GatewayError as exc:
                log.warning("promotions not polled: %s", exc)
                return []
            todo, ops = await self._select(rows)
            if ops:
                try:
                    await self._gw.write(ops)
                except GatewayError as exc:
                    log.error("could not mark promotions as SENDING: %s", exc)
                    return []
            reports = []
            for promo in todo:
                if self._stopping:
                    break
                reports.append(await self._broadcast(promo))
            return reports

    async def stop(self) -> None:
        """No new polls: a running broadcast finishes the sends in flight and leaves SENDING (resumed on the next
        start); the promotions job's own stop awaits it."""
        self._stopping = True

    @property
    def progress(self) -> Progress | None:
        """The broadcast running now, if any."""
        run = self._run
        if run is None:
            return None
        return Progress(run.promo.id, run.promo.title, run.done, run.total)

    async def _select(self, rows: list[Record]) -> tuple[list[Promotion], list[WriteOp]]:
        """Promotions to send now (resumed ones first) and the ONE write that marks them / reports problems."""
        now = self._clock()
        resume: list[Promotion] = []
        due: list[Promotion] = []
        ops: list[WriteOp] = []
        for rec in rows:
            promo = Promotion.from_record(rec)
            status = promo.status.upper()
            if status not in (PromoStatus.READY, PromoStatus.SENDING):
                continue
            if not promo.id:
                log.warning("Акции row %d is %s but has no id: skipped", promo.row, status)
                continue
            if status == PromoStatus.SENDING:
                resume.append(promo)
                continue
            problem = ""
            try:
                start = parse_start(promo.start, self._tz)
            except StartDateError as exc:
                problem, start = str(exc), None
            if not problem and promo.is_empty:
                problem = "акция пустая: заполните «Заголовок», «Текст» или «Картинка»"
            if problem:
                if self._reported.get(promo.id) != problem:
                    self._reported[promo.id] = problem
                    ops.append(self._promos.op_upsert(promo.id, {PromoCol.ERRORS: problem}, create=False))
                continue
            if start is not None and start > now:
                continue
            self._reported.pop(promo.id, None)
            # The counts start from the records: a promotion paused by staff and set READY again continues.
            sent, reasons = _counts(await recipient_records(self._gw, LEDGER_PREFIX + promo.id))
            values: dict[str, str] = {
                PromoCol.STATUS: PromoStatus.SENDING,
                PromoCol.SENT: str(sent),
                PromoCol.ERRORS: format_errors(reasons),
            }
            ops.append(self._promos.op_upsert(promo.id, values, create=False))
            due.append(promo)
        return resume + due, ops

    # -- the broadcast -------------------------------------------------------------------------

    async def audience(self, promo: Promotion) -> Audience:
        """Authorized partners (with a Telegram ID) of the promotion's audience, opted-out ones counted apart."""
        rows = await self._auth.select([AuthCol.CODE, AuthCol.STATUS, AuthCol.TELEGRAM_ID, AuthCol.PROMO_OPT_IN])
        codes = promo.audience_codes
        seen: set[int] = set()
        recipients: list[Recipient] = []
        opted_out = 0
        for row in rows:
            raw_id = normalize_key(row[AuthCol.TELEGRAM_ID])  # `100 001`, `1.00001E+5` typed by staff
            if not is_authorized_status(row[AuthCol.STATUS]) or not raw_id.isdigit():
                continue
            code = row[AuthCol.CODE].strip()
            if codes is not None and code.casefold() not in codes:
                continue
            tid = int(raw_id)
            if tid in seen:
                continue
            seen.add(tid)
            if not is_opted_in(row[AuthCol.PROMO_OPT_IN]):
                opted_out += 1
                continue
            recipients.append(Recipient(tid, code))
        return Audience(tuple(recipients), opted_out)

    async def _broadcast(self, promo: Promotion) -> BroadcastReport:
        kind = LEDGER_PREFIX + promo.id
        try:
            audience = await self.audience(promo)
        except GatewayError as exc:
            log.warning("promotion %s postponed: Auth unreadable (%s)", promo.id, exc)
            return BroadcastReport(promo.id, 0, 0, 0, "", finished=False)
        ledger = self._gw.ledgers.deliveries(kind, legacy=legacy_record)
        records = await ledger.all()
        deliveries = Deliveries(ledger)
        run = _Run(promo, kind, len(audience.recipients), records, deliveries, last_progress=self._monotonic())
        run.sent, run.reasons = _counts(records)
        broken = await self._gw.ledgers.notes(META_PREFIX + promo.id).get("picture")
        if broken is not None:
            run.variant = TEXT_ONLY
            run.notes.append(broken)
        elif promo.picture_problem:
            run.notes.append(promo.picture_problem)
        todo = [
            r
            for r in audience.recipients
            if (e := records.get(str(r.telegram_id))) is None or e.phase is DeliveryPhase.SENDING
        ]
        run.left = len(todo)
        pending = iter(todo)
        log.info("promotion %s: %d recipients, %d already done", promo.id, run.total, run.done)
        self._run = run
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._max_in_flight):
                    group.create_task(self._worker(run, pending))
        finally:
            self._run = None
        if run.left or run.paused_by_staff:  # stopped (shutdown) or paused by staff before the end
            await self._write_counts(run, final=False)
            return BroadcastReport(
                promo.id, run.sent, sum(run.reasons.values()), audience.opted_out, self._errors(run), finished=False
            )
        return await self._finish(run, audience)

    async def _worker(self, run: _Run, pending: Iterator[Recipient]) -> None:
        for recipient in pending:
            if self._stopping or run.paused_by_staff:
                return
            await self._deliver(run, recipient)
            run.left -= 1
            await self._progress(run)

    async def _deliver(self, run: _Run, recipient: Recipient) -> None:
        """Send every part to one recipient through the delivery module (see the module docstring)."""
        key = str(recipient.telegram_id)
        record = run.records.get(key)
        variant = run.variant
        if record is not None and record.phase is DeliveryPhase.SENDING and record.fingerprint in VARIANTS:
            variant = record.fingerprint  # resume the variant in flight at the crash
        photo_failure: DeliveryError | None = None
        attempts = floods = 0
        while True:
            parts = run.parts(variant)
            sends = [self._part(int(key), part) for part in parts]
            result = await run.deliveries.deliver(key, variant, sends, pace=self._pacer.wait)
            if result.outcome in (Outcome.DELIVERED, Outcome.ALREADY):
                run.sent += 1
                if photo_failure is not None:
                    await self._picture_broken(run, photo_failure)
                return
            if result.outcome is Outcome.ABANDONED:
                return  # given up before (not pending; only a race with another run gets here)
            error = _as_delivery_error(result.error)
            if error.retry_after is not None and floods < self._max_flood_waits:
                floods += 1
                self._pacer.pause(error.retry_after)
                log.info("flood control: pausing promotions %.1fs", error.retry_after)
                continue
            failed_part = parts[min(result.record.next_part, len(parts) - 1)]
            if error.permanent and variant == WITH_PICTURE and failed_part.photo_url is not None:
                # Maybe the picture is the problem (Telegram cannot fetch it): try this partner without it.
                photo_failure, variant = error, TEXT_ONLY
                continue
            attempts += 1
            if error.permanent or attempts >= self._max_attempts:
                reason = short_reason(error) if error.permanent else f"временная ошибка: {short_reason(error)}"
                await run.deliveries.give_up(key, variant, reason)
                run.reasons[reason] += 1
                log.info("promotion %s not delivered to %s: %s", run.promo.id, key, error)
                return
            await asyncio.sleep(self._retry_backoff * 2 ** (attempts - 1))

    def _part(self, chat_id: int, part: Part) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            if part.photo_url is not None:
                await self._messenger.send_photo(chat_id, part.photo_url, part.text)
            else:
                await self._messenger.send_text(chat_id, part.text)

        return send

    async def _picture_broken(self, run: _Run, error: DeliveryError) -> None:
        if run.variant == TEXT_ONLY:
            return
        run.variant = TEXT_ONLY  # the text reached a partner the picture did not: send the rest without it
        note = f"картинка не отправлена ({short_reason(error)}), акция ушла без неё"
        run.notes.append(note)
        await self._gw.ledgers.notes(META_PREFIX + run.promo.id).set("picture", "broken", note)
        log.warning("promotion %s: picture %s unusable (%s); sending text only", run.promo.id, run.promo.picture, error)

    async def _progress(self, run: _Run) -> None:
        run.since_progress += 1
        now = self._monotonic()
        if (
            run.writing
            or run.since_progress < self._progress_every
            or now - run.last_progress < self._progress_interval
        ):
            return
        run.writing, run.since_progress, run.last_progress = True, 0, now
        try:
            current = await self._promos.get(run.promo.id)
            if current is None or current[PromoCol.STATUS].strip().upper() != PromoStatus.SENDING:
                run.paused_by_staff = True  # staff changed «Статус» (or removed the row): stop here
                log.info("promotion %s paused: «Статус» is no longer SENDING", run.promo.id)
                return
            await self._write_counts(run, final=False)
        except GatewayError as exc:
            log.warning("progress of promotion %s not written: %s", run.promo.id, exc)
        finally:
            run.writing = False

    async def _finish(self, run: _Run, audience: Audience) -> BroadcastReport:
        # Count from the records, the durable truth, rather than from this run's memory.
        run.sent, run.reasons = _counts(await recipient_records(self._gw, run.kind))
        await self._write_counts(run, final=True)
        errors = self._errors(run)
        failed = sum(run.reasons.values())
        log.info("promotion %s sent: %d delivered, %d failed", run.promo.id, run.sent, failed)
        await self._notify(
            f"📣 Акция «{run.promo.title or run.promo.id}» разослана: доставлено {run.sent}, ошибок {failed}"
            + (f", отписались от акций {audience.opted_out}" if audience.opted_out else "")
            + (f".\nОшибки: {errors}" if failed or run.notes else ".")
        )
        return BroadcastReport(run.promo.id, run.sent, failed, audience.opted_out, errors, finished=True)

    async def _write_counts(self, run: _Run, *, final: bool) -> None:
        values: dict[str, str] = {PromoCol.SENT: str(run.sent), PromoCol.ERRORS: self._errors(run)}
        if final:
            values[PromoCol.STATUS] = PromoStatus.SENT
        try:
            await self._promos.write([self._promos.op_upsert(run.promo.id, values, create=False)])
        except GatewayError as exc:  # a removed row: nothing to report into
            log.error("could not write the counts of promotion %s: %s", run.promo.id, exc)

    def _errors(self, run: _Run) -> str:
        return format_errors(run.reasons, run.notes)

    async def _notify(self, text: str) -> None:
        try:
            await self._messenger.notify_staff(text)
        except Exception:
            log.exception("staff notification failed")

    # -- the admin's test and the partner's choice ---------------------------------------------

    async def send_test(self, promo_id: str, chat_id: int) -> TestSend:
        """Send a promotion to one chat only (/broadcast_test): no ledger, no sheet writes."""
        rec = await self._promos.get(promo_id.strip())
        if rec is None:
            raise PromotionNotFound(f"Акции с id «{promo_id.strip()}» нет в листе «Акции».")
        promo = Promotion.from_record(rec)
        if promo.is_empty:
            raise PromotionError("Акция пустая: заполните «Заголовок», «Текст» или «Картинка».")
        notes: list[str] = [promo.picture_problem] if promo.picture_problem else []
        parts = compose(promo)
        try:
            await self._send_all(chat_id, parts)
        except DeliveryError as exc:
            if not (exc.permanent and parts[0].photo_url is not None):
                raise
            await self._send_all(chat_id, compose(promo, with_picture=False))
            notes.append(f"картинка не отправлена ({short_reason(exc)}): при рассылке акция уйдёт без неё")
        audience = await self.audience(promo)
        return TestSend(promo, len(audience.recipients), audience.opted_out, tuple(notes))

    async def _send_all(self, chat_id: int, parts: list[Part]) -> None:
        for part in parts:
            await self._pacer.wait()
            if part.photo_url is not None:
                await self._messenger.send_photo(chat_id, part.photo_url, part.text)
            else:
                await self._messenger.send_text(chat_id, part.text)

    async def set_opt_in(self, partner: Partner, enabled: bool) -> None:
        """Write the partner's choice into Auth «Рассылка» (`да`/`нет`), where staff see and can change it."""
        values: dict[str, str] = {AuthCol.PROMO_OPT_IN: OPT_IN if enabled else OPT_OUT}
        if partner.code:
            op = self._auth.op_upsert(partner.code, values, create=False)
        else:
            op = self._auth.op_upsert(str(partner.telegram_id), values, column=AuthCol.TELEGRAM_ID, create=False)
        await self._gw.write([op])


async def recipient_records(gw: AsyncSheetsGateway, kind: str) -> dict[str, DeliveryRecord]:
    """Every recipient's delivery record of one promotion (older releases' string ledger included)."""
    return await gw.ledgers.deliveries(kind, legacy=legacy_record).all()


def _counts(records: dict[str, DeliveryRecord]) -> tuple[int, Counter[str]]:
    """How many were delivered, and the failure reasons counted."""
    sent = sum(1 for r in records.values() if r.phase in (DeliveryPhase.SENT, DeliveryPhase.SETTLED))
    return sent, Counter(r.note for r in records.values() if r.phase is DeliveryPhase.FAILED)


def legacy_record(entry: LedgerEntry) -> DeliveryRecord | None:
    """An older release's entry: 'sending' `p:3`, 'sent' with the variant, 'failed' with the reason."""
    if entry.state == SENDING:
        variant, _, index = entry.payload.partition(":")
        if variant in VARIANTS and index.isdigit():
            return DeliveryRecord(DeliveryPhase.SENDING, variant, int(index))
        return DeliveryRecord(DeliveryPhase.SENDING, WITH_PICTURE)
    if entry.state == SENT:
        return DeliveryRecord(DeliveryPhase.SENT, entry.payload if entry.payload in VARIANTS else WITH_PICTURE)
    if entry.state == FAILED:
        return DeliveryRecord(DeliveryPhase.FAILED, note=entry.payload)
    return None


def _as_delivery_error(exc: Exception | None) -> DeliveryError:
    """The failure of a part as a DeliveryError (anything unexpected counts as transient)."""
    if isinstance(exc, DeliveryError):
        return exc
    return DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False)
