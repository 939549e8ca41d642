"""Working in-memory fakes of the web layer's ports (bot/web/ports.py), for API and browser tests.

They return the services' own value types (ChatReply, ChatEntry, Job, Partner) and raise their named
errors, so the web layer is tested against the real shapes without a spreadsheet.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.services.analytics import (
    InvalidObjectCode,
    Job,
    TooManyPendingRequests,
    UnknownObjectCode,
    normalize_code,
)
from bot.services.appeals import ChatReply, ReplyKind
from bot.services.auth import Partner
from bot.services.chatlog import Author, ChatEntry

DEMO_ID = 100001
DEMO_PARTNER = Partner(code="DEMO-001", name="Демо Партнёр", phone="+79000000001", telegram_id=DEMO_ID)
# The smallest file a PDF viewer opens: enough to prove bytes and headers travel end to end.
MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


class FakeAuth:
    """Auth: the partners listed are authorized; `error` makes every check raise it."""

    def __init__(self, partners: list[Partner] | None = None) -> None:
        self.partners = {p.telegram_id: p for p in (partners if partners is not None else [DEMO_PARTNER])}
        self.error: Exception | None = None

    async def check(self, telegram_id: int) -> Partner | None:
        """The partner, or None."""
        if self.error is not None:
            raise self.error
        return self.partners.get(telegram_id)


class FakeChat:
    """Appeals: echoes an 'AI' answer, escalates on «оператор», signals the daily limit after `limit` messages."""

    def __init__(
        self,
        *,
        limit: int | None = None,
        now: Callable[[], datetime] = datetime.now,
        answer: Callable[[str], str] | None = None,
        delta_delay: float = 0.0,
    ) -> None:
        self.limit = limit
        self.delta_delay = delta_delay  # seconds between the streamed pieces of an answer
        self.now = now
        self.answer = answer or (
            lambda text: f"Ассистент: по вопросу «{text}» — партнёр получает 50% комиссии агентства."
        )
        self.logs: dict[int, list[ChatEntry]] = {}
        self.status: dict[int, str] = {}
        self.received: list[tuple[int, str]] = []

    async def handle_message(
        self,
        telegram_id: int,
        text: str,
        authorize: Callable[[int], Awaitable[Partner | None]],
        on_delta: Callable[[str], None] | None = None,
    ) -> tuple[Partner | None, ChatReply | None]:
        """Authorize, then answer like the service would; (None, None) for a sender who is not authorized."""
        partner = await authorize(telegram_id)
        if partner is None:
            return None, None
        return partner, await self._answer(partner, text, on_delta)

    async def _answer(self, partner: Partner, text: str, on_delta: Callable[[str], None] | None) -> ChatReply:
        """The answer streams word by word to `on_delta`."""
        tid = partner.telegram_id
        self.received.append((tid, text))
        log = self.logs.setdefault(tid, [])
        answered = sum(1 for e in log if e.author == Author.AI)
        log.append(ChatEntry(self.now(), Author.USER, text))  # the service logs the message in every case
        if self.limit is not None and answered >= self.limit:
            return ChatReply("Лимит сообщений ассистенту на сегодня исчерпан.", "Ответ ИИ", kind=ReplyKind.LIMIT)
        if "оператор" in text.casefold():
            self.status[tid] = "В работе"
            reply = ChatReply("Передал ваш вопрос оператору, он ответит здесь.", "В работе", True, ReplyKind.ESCALATED)
            return reply
        if self.status.get(tid) == "В работе":
            return ChatReply("", "В работе", kind=ReplyKind.SILENT)
        answer = self.answer(text)
        if on_delta is not None:
            for i, word in enumerate(answer.split(" ")):
                if i and self.delta_delay:
                    await asyncio.sleep(self.delta_delay)
                on_delta(word if i == 0 else " " + word)
        log.append(ChatEntry(self.now(), Author.AI, answer))
        self.status[tid] = "Ответ ИИ"
        return ChatReply(answer, "Ответ ИИ")

    async def history(self, telegram_id: int) -> list[ChatEntry]:
        """The log, oldest first."""
        return list(self.logs.get(telegram_id, []))


@dataclass
class _Row:
    job: Job
    owner: int
    created: float


@dataclass
class FakeAnalytics:
    """The analytics queue: known codes, a pending cap, and a worker stand-in that finishes jobs.

    With `finish_after` set, a job reads as DONE (and its PDF appears in `reports_dir`) once that many
    seconds have passed since it was queued; `finish(id)` does it at once.
    """

    reports_dir: Path
    known_codes: set[str] = field(default_factory=lambda: {f"DEMO-{i:04d}" for i in range(1, 21)})
    max_pending: int = 3
    finish_after: float | None = None
    clock: Callable[[], float] = time.monotonic
    rows: dict[str, _Row] = field(default_factory=dict)

    async def request(self, telegram_id: int, requested_by: str, object_code: str) -> Job:
        """Queue a NEW job or refuse with the service's errors."""
        code = normalize_code(object_code)
        if not re.fullmatch(r"[A-ZА-ЯЁ0-9][A-ZА-ЯЁ0-9-]{1,30}[A-ZА-ЯЁ0-9]", code):
            raise InvalidObjectCode(f"«{object_code.strip()}» не похоже на код объекта, например DEMO-0001.")
        if code not in self.known_codes:
            raise UnknownObjectCode(f"Объект с кодом {code} не найден в базе агентства.")
        pending = [r for r in self.rows.values() if r.owner == telegram_id and r.job.pending]
        if len(pending) >= self.max_pending:
            raise TooManyPendingRequests(f"У вас уже {len(pending)} запроса в очереди — это максимум.")
        job_id = str(uuid.uuid4())
        stamp = (datetime(2026, 11, 24, 15, 0) + timedelta(minutes=len(self.rows))).strftime("%Y-%m-%d %H:%M:%S")
        job = Job(job_id, code, "NEW", stamp, "", "", "", "", "")
        self.rows[job_id] = _Row(job, telegram_id, self.clock())
        return job

    async def list_for(self, telegram_id: int) -> list[Job]:
        """The user's jobs, newest first."""
        self._advance()
        mine = [r.job for r in self.rows.values() if r.owner == telegram_id]
        return sorted(mine, key=lambda j: j.created_at, reverse=True)

    async def get(self, telegram_id: int, job_id: str) -> Job | None:
        """One of the user's jobs."""
        self._advance()
        row = self.rows.get(job_id)
        return row.job if row is not None and row.owner == telegram_id else None

    def add(self, telegram_id: int, job: Job, *, pdf: bool = False) -> None:
        """Put a job in the queue as is (and its PDF on disk)."""
        self.rows[job.id] = _Row(job, telegram_id, self.clock())
        if pdf:
            self._write_pdf(job.id)

    def finish(self, job_id: str, *, error: str = "") -> None:
        """What the worker does: DONE with a result and a PDF, or ERROR with a reason."""
        row = self.rows[job_id]
        if error:
            row.job = replace(row.job, status="ERROR", error=error, finished_at="2026-11-24 15:02:00")
            return
        self._write_pdf(job_id)
        text = (
            f"Аналитика 360 · {row.job.object_code}\n"
            "Квартира · 2-комн. · 54 м² · Центральный\n"
            "Цена: 12 400 000 ₽ — 229 630 ₽/м²\n\n"
            "Рынок: 12 сравнимых объявлений\n"
            "• Медиана: 221 000 ₽/м²\n"
            "• Объект: +3,9% к медиане; дороже 58% конкурентов\n\n"
            "Рекомендация: цена в рынке — оставить."
        )
        row.job = replace(
            row.job,
            status="DONE",
            result_text=text,
            finished_at="2026-11-24 15:01:30",
            pdf_url=f"http://127.0.0.1/reports/{job_id}.pdf",
        )

    def _advance(self) -> None:
        if self.finish_after is None:
            return
        for job_id, row in self.rows.items():
            if row.job.pending and self.clock() - row.created >= self.finish_after:
                self.finish(job_id)

    def _write_pdf(self, job_id: str) -> None:
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        (self.reports_dir / f"{job_id}.pdf").write_bytes(MINIMAL_PDF)


class FakeStaff:
    """The staff console's store: sheets as lists of rows, header first."""

    def __init__(self, sheets: dict[str, list[list[str]]] | None = None) -> None:
        self.data: dict[str, list[list[str]]] = sheets or {
            "Обращения": [
                ["Дата", "Код партнера", "ФИО", "Telegram ID", "текст_обращений", "Статус", "Ответ оператора"],
                [
                    "2026-11-24",
                    "DEMO-001",
                    "Демо Партнёр",
                    "100001",
                    "[2026-11-24 15:00] Пользователь: привет",
                    "Новое",
                    "",
                ],
            ],
            "Auth": [["Код партнера", "Телефон", "ФИО", "STATUS", "Telegram ID"]],
        }

    async def sheets(self) -> list[str]:
        """Sheet titles."""
        return list(self.data)

    async def dump(self, sheet: str) -> list[list[str]]:
        """Rows of one sheet."""
        if sheet not in self.data:
            raise LookupError(sheet)
        return [list(r) for r in self.data[sheet]]

    async def set_cell(self, sheet: str, a1: str, value: str) -> None:
        """Write one cell, growing the sheet as needed."""
        if sheet not in self.data:
            raise LookupError(sheet)
        m = re.fullmatch(r"([A-Z]{1,3})([1-9][0-9]*)", a1)
        if m is None:
            raise ValueError("expected a cell like G2")
        col = 0
        for ch in m.group(1):
            col = col * 26 + ord(ch) - 64
        row = int(m.group(2))
        rows = self.data[sheet]
        while len(rows) < row:
            rows.append([])
        cells = rows[row - 1]
        while len(cells) < col:
            cells.append("")
        cells[col - 1] = value


async def ok_health() -> dict[str, Any]:
    """A healthy /healthz body."""
    return {"status": "ok", "breaker": "closed", "outbox_depth": 0, "queue_lag_seconds": 0}
