"""Working fakes of OUR interfaces for the chat tests: a recording Messenger, a scripted AIProvider, a sheet
that can go down, and a builder of the whole chat service graph on a local gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.ai.base import AIError, DeltaSink, Turn
from bot.ai.fallback import FallbackAI
from bot.ai.prompt import SystemPrompt
from bot.services.appeals import AppealsService, ChatReply, WorkingHours
from bot.services.auth import AuthService, Partner
from bot.services.knowledge import KnowledgeBase
from bot.services.operator_replies import OperatorReplyService
from bot.services.ports import DeliveryError, InlineButton
from gateway import (
    AsyncSheetsGateway,
    GatewayConfig,
    RetryPolicy,
    Rows,
    SheetsBackend,
    TransientBackendError,
    build_gateway,
)
from gateway.schemas import AUTH, KNOWLEDGE, AuthCol

PROMPT_PATH = Path(__file__).resolve().parents[1] / "prompts" / "system_prompt.txt"
FAST_RETRY = RetryPolicy(max_attempts=2, max_delay=0.5, initial_backoff=0.005, max_backoff=0.01)


class Crash(BaseException):
    """Simulates the process being killed at a chosen point (not an Exception, so no handler swallows it)."""


# -- Messenger ---------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One message the fake messenger delivered."""

    chat_id: int
    text: str
    buttons: list[str] = field(default_factory=list)


class FakeMessenger:
    """Records what would be sent; `before_send` can fail, crash or act (e.g. staff editing the sheet)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.staff: list[str] = []
        self.documents: list[tuple[int, bytes, str, str]] = []
        self.photos: list[tuple[int, str, str]] = []
        self.before_send: Callable[[int, str], Awaitable[None]] | None = None
        self.after_send: Callable[[int, str], Awaitable[None]] | None = None

    async def send_text(
        self, chat_id: int, text: str, *, buttons: Sequence[str] | Sequence[InlineButton] | None = None
    ) -> None:
        if self.before_send is not None:
            await self.before_send(chat_id, text)
        labels = [b.text if isinstance(b, InlineButton) else b for b in buttons or ()]
        self.sent.append(Sent(chat_id, text, labels))
        if self.after_send is not None:
            await self.after_send(chat_id, text)

    async def send_document(self, chat_id: int, data: bytes, filename: str, caption: str) -> None:
        self.documents.append((chat_id, data, filename, caption))

    async def send_photo(self, chat_id: int, photo_url: str, caption: str) -> None:
        self.photos.append((chat_id, photo_url, caption))

    async def notify_staff(self, text: str) -> None:
        self.staff.append(text)

    def texts_to(self, chat_id: int) -> list[str]:
        """Texts sent to one chat, oldest first."""
        return [s.text for s in self.sent if s.chat_id == chat_id]


def failing_send(error: DeliveryError, times: int = 1) -> Callable[[int, str], Awaitable[None]]:
    """A before_send hook raising `error` for the first `times` sends."""
    left = [times]

    async def hook(chat_id: int, text: str) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise error

    return hook


# -- AI ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AICall:
    """What reached the model."""

    system: str
    history: list[Turn]
    user_text: str
    context: list[str]


class ScriptedAI:
    """AIProvider answering from a script (or `Ответ N: <text>`), recording every call; can fail or be slow."""

    name = "scripted"

    def __init__(self, answers: Sequence[str] = ()) -> None:
        self.answers = list(answers)
        self.calls: list[AICall] = []
        self.fail_with: AIError | None = None
        self.delay = 0.0
        self.during: Callable[[], Awaitable[None]] | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    async def generate(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> str:
        self.calls.append(AICall(system, list(history), user_text, list(context)))
        if self.during is not None:
            await self.during()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.fail_with is not None:
            raise self.fail_with
        if self.answers:
            return self.answers.pop(0)
        return f"Ответ {len(self.calls)}: {user_text}"


# -- a sheet that can go down ------------------------------------------------------------------------


class FlakyBackend:
    """Wraps a SheetsBackend; while `down` every call fails like a 5xx (`writes_down`: only writes fail)."""

    def __init__(self, inner: SheetsBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.down = False
        self.writes_down = False

    def _check(self, write: bool) -> None:
        if self.down or (write and self.writes_down):
            raise TransientBackendError("the sheet is down (test)")

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def sheet_titles(self) -> list[str]:
        self._check(False)
        return await self.inner.sheet_titles()

    async def add_sheet(self, title: str, headers: Sequence[str]) -> None:
        self._check(True)
        await self.inner.add_sheet(title, headers)

    async def batch_get(self, ranges: Sequence[str]) -> list[Rows]:
        self._check(False)
        return await self.inner.batch_get(ranges)

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None:
        self._check(True)
        await self.inner.batch_update(data)

    async def append(self, sheet: str, rows: Rows) -> int:
        self._check(True)
        return await self.inner.append(sheet, rows)

    async def format_sheet(self, sheet: str, headers: Sequence[str], dropdowns: Mapping[str, Sequence[str]]) -> None:
        await self.inner.format_sheet(sheet, headers, dropdowns)


def chat_gateway_config(tmp_path: Path, *, replay_interval: float = 0.05) -> GatewayConfig:
    """A local gateway config with test-speed retries and a breaker that recovers in 0.1 s."""
    return GatewayConfig(
        backend="local",
        local_db_path=tmp_path / "sheets.db",
        retry=FAST_RETRY,
        replay_interval=replay_interval,
        breaker_fail_max=50,
        breaker_reset_timeout=0.1,
    )


async def start_flaky_gateway(cfg: GatewayConfig) -> tuple[AsyncSheetsGateway, FlakyBackend]:
    """A started gateway (sheets created) whose backend can be switched off."""
    gw = build_gateway(cfg)
    flaky = FlakyBackend(gw.backend.inner)
    gw.backend.inner = flaky
    await gw.start()
    await gw.ensure_sheets()
    return gw, flaky


@asynccontextmanager
async def flaky_gateway(cfg: GatewayConfig) -> AsyncIterator[tuple[AsyncSheetsGateway, FlakyBackend]]:
    """`start_flaky_gateway` for a with-block: on exit the sheet is back up and the gateway closed."""
    gw, flaky = await start_flaky_gateway(cfg)
    try:
        yield gw, flaky
    finally:
        flaky.down = False
        await gw.close()


# -- time ----------------------------------------------------------------------------------------------


class ManualClock:
    """A settable aware clock (UTC) plus a monotonic twin."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, **kw: float) -> None:
        delta = timedelta(**kw)
        self.now += delta
        self.mono += delta.total_seconds()


def moscow(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Moscow wall-clock time as an aware UTC datetime (Moscow is UTC+3 all year)."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC) - timedelta(hours=3)


# -- the service graph -------------------------------------------------------------------------------


@dataclass
class ChatKit:
    """Everything a chat test needs, wired like the composition root does."""

    gw: AsyncSheetsGateway
    ai: ScriptedAI
    messenger: FakeMessenger
    clock: ManualClock
    prompt: SystemPrompt
    knowledge: KnowledgeBase
    auth: AuthService
    appeals: AppealsService
    replies: OperatorReplyService


def build_kit(
    gw: AsyncSheetsGateway,
    *,
    prompt_path: Path = PROMPT_PATH,
    clock: ManualClock | None = None,
    ai: ScriptedAI | None = None,
    messenger: FakeMessenger | None = None,
    daily_limit: int = 30,
    staff_notice_interval: float = 0.0,
    reply_first: bool = False,
) -> ChatKit:
    """The chat services over `gw` with fakes for the model and Telegram."""
    clock = clock or ManualClock(moscow(2026, 11, 23, 14, 5))
    ai = ai or ScriptedAI()
    messenger = messenger or FakeMessenger()
    prompt = SystemPrompt(prompt_path)
    knowledge = KnowledgeBase(gw, refresh_seconds=0.0)
    auth = AuthService(gw, clock=clock, monotonic=clock.monotonic)
    appeals = AppealsService(
        gw,
        FallbackAI(ai),
        prompt,
        knowledge,
        messenger,
        daily_limit=daily_limit,
        working_hours=WorkingHours(),
        clock=clock,
        monotonic=clock.monotonic,
        staff_notice_interval=staff_notice_interval,
        reply_first=reply_first,
    )
    replies = OperatorReplyService(gw, messenger, clock=clock)
    return ChatKit(gw, ai, messenger, clock, prompt, knowledge, auth, appeals, replies)


async def add_partner(
    gw: AsyncSheetsGateway,
    code: str,
    phone: str,
    *,
    name: str = "",
    status: str = "",
    telegram_id: int | None = None,
) -> None:
    """An Auth row as staff would type it."""
    values: dict[str, str] = {AuthCol.PHONE: phone, AuthCol.NAME: name, AuthCol.STATUS: status}
    if telegram_id is not None:
        values[AuthCol.TELEGRAM_ID] = str(telegram_id)
    await gw.table(AUTH).write([gw.table(AUTH).op_upsert(code, values)])


async def add_demo_partner(gw: AsyncSheetsGateway, telegram_id: int) -> None:
    """The demo partner (DEMO-001, «Демо Партнёр»), authorized with `telegram_id` bound: the e2e tests' partner."""
    await gw.table(AUTH).write(
        [
            gw.table(AUTH).op_insert(
                {
                    AuthCol.CODE: "DEMO-001",
                    AuthCol.PHONE: "+79000000001",
                    AuthCol.NAME: "Демо Партнёр",
                    AuthCol.STATUS: "authorized",
                    AuthCol.TELEGRAM_ID: str(telegram_id),
                }
            )
        ]
    )


async def add_fact(gw: AsyncSheetsGateway, question: str, answer: str, tags: str = "", active: str = "да") -> None:
    """A knowledge-base row as staff would type it."""
    await gw.table(KNOWLEDGE).write(
        [gw.table(KNOWLEDGE).op_insert({"Вопрос": question, "Ответ": answer, "Теги": tags, "Активно": active})]
    )


def known(*partners: Partner) -> Callable[[int], Awaitable[Partner | None]]:
    """An `authorize` for AppealsService.handle_message that knows exactly these partners (AuthService.check's
    stand-in, with no sheet read of its own)."""
    by_id = {p.telegram_id: p for p in partners}

    async def authorize(telegram_id: int) -> Partner | None:
        return by_id.get(telegram_id)

    return authorize


async def say(appeals: AppealsService, partner: Partner, text: str, on_delta: DeltaSink | None = None) -> ChatReply:
    """One message from an authorized partner, through the chat turn's one entry point."""
    who, reply = await appeals.handle_message(partner.telegram_id, text, known(partner), on_delta)
    assert who == partner and reply is not None
    return reply
