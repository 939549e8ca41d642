"""Answers streamed into the private chat as drafts, end to end: real python-telegram-bot against the fake Bot
API (sendMessageDraft), real google-genai / openai streaming from the fake model servers, the real gateway."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.ai.base import AIProvider
from bot.ai.fallback import OPERATOR_NOTIFIED, FallbackAI
from bot.ai.gemini import GeminiProvider
from bot.ai.offline import OfflineResponder
from bot.ai.openai_compat import OpenAICompatProvider
from bot.ai.prompt import SystemPrompt
from bot.ai.resilience import AIRetryPolicy
from bot.services.appeals import AppealsService, WorkingHours
from bot.services.auth import AuthService
from bot.services.knowledge import KnowledgeBase
from bot.services.message_parts import utf16_len
from bot.telegram.context import BotContext
from bot.telegram.drafts import DRAFT_INTERVAL
from bot.telegram.handlers.chat import register_chat_handlers
from bot.telegram.messenger import TelegramMessenger
from bot.telegram.ordering import PerChatUpdateProcessor
from bot.telegram.ratelimit import RepliesFirstRateLimiter
from gateway import AsyncSheetsGateway, GatewayConfig, build_gateway
from gateway.schemas import APPEALS, AppealCol, AppealStatus
from tests.chat_support import FAST_RETRY, PROMPT_PATH, ManualClock, add_demo_partner, moscow
from tests.fakes.gemini_server import FakeGeminiServer, last_user_text
from tests.fakes.openai_server import FakeOpenAIServer, last_user_message
from tests.fakes.telegram_server import FakeTelegramServer, SentMessage
from tests.telegram_support import fake_bot_app, long_polling

PARTNER = 100001
STAFF_CHAT = -1001234
AI_RETRY = AIRetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, max_retry_after=0.5, deadline=3.0)
SENTENCE = "Партнёр получает половину комиссии агентства, выплата после регистрации сделки. "


def gemini_answer(body: dict[str, Any]) -> str:
    """A deterministic model: a few sentences about the question."""
    return f"Ответ на «{last_user_text(body)}»: " + SENTENCE * 4


@dataclass
class Chat:
    """The running bot and the fakes a test drives."""

    tg: FakeTelegramServer
    gemini: FakeGeminiServer
    gw: AsyncSheetsGateway

    async def say(self, text: str, wait: float = 10.0) -> SentMessage:
        """The partner writes; returns the bot's next message (sendMessage) to them."""
        self.tg.user_sends_text(PARTNER, text)
        return await self.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage", timeout=wait)

    def drafts(self) -> list[SentMessage]:
        """Every draft shown to the partner so far."""
        return self.tg.drafts_to(PARTNER)


async def _start_gateway(tmp_path: Path) -> AsyncSheetsGateway:
    cfg = GatewayConfig(backend="local", local_db_path=tmp_path / "sheets.db", retry=FAST_RETRY, replay_interval=0.05)
    gw = build_gateway(cfg)
    await gw.start()
    await gw.ensure_sheets()
    await add_demo_partner(gw, PARTNER)
    return gw


@asynccontextmanager
async def running_bot(
    tmp_path: Path, tg: FakeTelegramServer, provider: AIProvider
) -> AsyncIterator[AsyncSheetsGateway]:
    """The chat handlers wired as bot/app.py wires them (RepliesFirstRateLimiter, per-chat ordering), polling."""
    gw = await _start_gateway(tmp_path)
    clock = ManualClock(moscow(2026, 11, 23, 14, 5))
    app = fake_bot_app(
        tg, rate_limiter=RepliesFirstRateLimiter(max_retries=2), concurrent_updates=PerChatUpdateProcessor(64)
    )
    messenger = TelegramMessenger(app.bot, staff_chat_id=STAFF_CHAT)
    prompt = SystemPrompt(PROMPT_PATH)
    knowledge = KnowledgeBase(gw, refresh_seconds=0.0)
    services = BotContext(
        auth=AuthService(gw, clock=clock, monotonic=clock.monotonic),
        appeals=AppealsService(
            gw,
            FallbackAI(provider),
            prompt,
            knowledge,
            messenger,
            working_hours=WorkingHours(),
            clock=clock,
            monotonic=clock.monotonic,
        ),
        messenger=messenger,
    )
    register_chat_handlers(app, services)
    try:
        async with long_polling(app):
            yield gw
    finally:
        await gw.close()


@pytest.fixture
async def chat(
    tmp_path: Path, telegram_server: FakeTelegramServer, gemini_server: FakeGeminiServer
) -> AsyncIterator[Chat]:
    """The bot answering from real google-genai streaming against the fake Gemini (0.1 s to the first chunk,
    then 1.5 s of streaming in 12 chunks)."""
    gemini_server.set_responder(gemini_answer)
    gemini_server.set_streaming(first_token=0.1, duration=1.5, chunks=12)
    gemini = GeminiProvider(
        api_key="test-key", model="gemini-test", base_url=gemini_server.url, timeout=3.0, retry=AI_RETRY
    )
    try:
        async with running_bot(tmp_path, telegram_server, gemini) as gw:
            yield Chat(telegram_server, gemini_server, gw)
    finally:
        await gemini.aclose()


def assert_grows(drafts: list[SentMessage], final: str) -> None:
    """Each draft extends the one before, and the final text extends the last draft."""
    texts = [d.plain_text or "" for d in drafts]
    for before, after in itertools.pairwise(texts):
        assert after.startswith(before.rstrip()) and len(after) > len(before), (before, after)
    assert final.startswith(texts[-1].rstrip())


async def test_answer_appears_as_growing_drafts_then_one_message(chat: Chat) -> None:
    """A private-chat answer is shown as drafts that grow while the model writes (one draft id, paced at least
    DRAFT_INTERVAL apart), then sent whole with sendMessage; no draft is left hanging."""
    final = await chat.say("Какое вознаграждение?")
    expected = gemini_answer({"contents": [{"role": "user", "parts": [{"text": "Какое вознаграждение?"}]}]}).strip()
    assert final.plain_text == expected
    drafts = chat.drafts()
    assert len(drafts) >= 3, [d.plain_text for d in drafts]
    assert_grows(drafts, expected)
    assert all(d.seq < final.seq for d in drafts)
    assert len({d.draft_id for d in drafts}) == 1 and drafts[0].draft_id != 0
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(drafts)]
    assert min(gaps) >= DRAFT_INTERVAL - 0.05
    assert drafts[0].plain_text != expected  # the first text was shown before the answer was complete
    assert chat.tg.open_draft(PARTNER) is None
    assert final.button_data == ["appeal:human"]  # the operator button sits under the final message


@pytest.mark.parametrize(("status", "description"), [(400, "Bad Request: method is not available"), (404, None)])
async def test_refused_drafts_fall_back_to_one_message_and_are_not_retried(
    chat: Chat, status: int, description: str | None
) -> None:
    """Where Telegram refuses drafts (400, or 404 from a server without the method) the partner gets the typing
    indicator and one message; the refusal is remembered, so the next turn makes no draft call."""
    chat.tg.refuse_drafts(status, description)
    first = await chat.say("Первый вопрос")
    assert first.plain_text and first.plain_text.startswith("Ответ на «Первый вопрос»")
    assert chat.tg.call_count("sendMessageDraft") == 1
    assert chat.tg.sent_to(PARTNER, ("sendChatAction",))
    second = await chat.say("Второй вопрос")
    assert second.plain_text and second.plain_text.startswith("Ответ на «Второй вопрос»")
    assert chat.tg.call_count("sendMessageDraft") == 1
    assert chat.drafts() == []


async def test_long_answer_is_split_with_a_new_draft_per_part(chat: Chat) -> None:
    """An answer longer than 4,096 UTF-16 units streams as drafts of at most 4,096 units, a new draft id per
    part; the parts reach the chat as messages that together are the whole answer, in order."""
    long_answer = "".join(f"Пункт {i}: {SENTENCE}" for i in range(80)).strip()
    assert utf16_len(long_answer) > 4096 + 1000
    chat.gemini.set_responder(lambda body: long_answer)
    chat.gemini.set_streaming(first_token=0.05, duration=2.0, chunks=40)
    first = await chat.say("Расскажите подробно")
    second = await chat.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage", timeout=10)
    messages = [first, second]
    assert all(utf16_len(m.plain_text or "") <= 4096 for m in messages)
    assert " ".join(m.plain_text or "" for m in messages).split() == long_answer.split()
    assert second.button_data == ["appeal:human"] and first.button_data == []
    drafts = chat.drafts()
    ids = list(dict.fromkeys(d.draft_id for d in drafts))
    assert len(ids) == 2, ids
    assert all(utf16_len(d.plain_text or "") <= 4096 for d in drafts)
    second_part = [d for d in drafts if d.draft_id == ids[1]]
    assert all(d.seq > first.seq for d in second_part)  # part 1 was a message before part 2 was drafted
    assert chat.tg.open_draft(PARTNER) is None


async def test_stream_broken_midway_ends_with_received_text_note_and_staff_ping(chat: Chat) -> None:
    """A model stream cut mid-answer: the partner gets what was received plus the fallback note (as a message,
    no draft left hanging) and the staff chat is told."""
    chat.gemini.break_next_stream(after_chunks=5)
    final = await chat.say("Вопрос")
    text = final.plain_text or ""
    received, _, note = text.partition("\n\n")
    full = gemini_answer({"contents": [{"role": "user", "parts": [{"text": "Вопрос"}]}]})
    assert received and full.startswith(received) and len(received) < len(full.strip())
    assert note == OPERATOR_NOTIFIED
    drafts = chat.drafts()
    assert drafts and all(d.seq < final.seq for d in drafts)
    assert all(
        received.startswith((d.plain_text or "").rstrip()) or (d.plain_text or "").startswith(received) for d in drafts
    )
    await asyncio.sleep(DRAFT_INTERVAL * 2)
    assert chat.tg.open_draft(PARTNER) is None
    assert [d.seq for d in chat.drafts()] == [d.seq for d in drafts]  # nothing drafted after the final message
    staff = await chat.tg.wait_for_sent(chat_id=STAFF_CHAT, timeout=5)
    assert "ИИ недоступен" in (staff.plain_text or "")


async def test_second_message_while_the_first_streams_gets_both_answers_in_order(chat: Chat) -> None:
    """A partner who writes again while the first answer is still streaming gets both answers, in order, and
    the second answer's drafts start only after the first answer was sent."""
    chat.tg.user_sends_text(PARTNER, "Первое")
    await asyncio.sleep(0.4)  # the first answer is streaming now
    chat.tg.user_sends_text(PARTNER, "Второе")
    first = await chat.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage", timeout=10)
    second = await chat.tg.wait_for_sent(chat_id=PARTNER, method="sendMessage", timeout=10)
    assert (first.plain_text or "").startswith("Ответ на «Первое»")
    assert (second.plain_text or "").startswith("Ответ на «Второе»")
    later = [d for d in chat.drafts() if "Второе" in (d.plain_text or "")]
    assert later and all(d.seq > first.seq for d in later)


async def test_staff_taking_the_conversation_between_messages_leaves_no_draft_of_an_early_answer(chat: Chat) -> None:
    """The second message's model call starts before its row is read; staff set «В работе» after the first answer,
    so the fresh row silences the turn: no draft and no message of that early answer reach the partner, the
    message is logged and the staff chat hears of it."""
    await chat.say("Первое")
    messages, drafts = len(chat.tg.sent_to(PARTNER)), len(chat.drafts())
    table = chat.gw.table(APPEALS)
    await table.write([table.op_upsert(str(PARTNER), {AppealCol.STATUS: AppealStatus.IN_WORK})])
    chat.tg.user_sends_text(PARTNER, "Второе")
    notice = await chat.tg.wait_for_sent(chat_id=STAFF_CHAT, timeout=10)
    assert "Второе" in (notice.plain_text or "")
    await asyncio.sleep(2.0)  # the model (0.1 s to its first chunk) would have streamed by now
    assert chat.tg.sent_to(PARTNER)[messages:] == [] and chat.drafts()[drafts:] == []
    row = await table.get(str(PARTNER))
    assert row is not None and row[AppealCol.LOG].endswith("Пользователь: Второе")


async def test_openai_compatible_provider_streams_drafts_too(
    tmp_path: Path, telegram_server: FakeTelegramServer, openai_server: FakeOpenAIServer
) -> None:
    """An OpenAI-compatible endpoint (stream=true SSE) is drafted the same way through the real openai client."""
    openai_server.set_responder(lambda body: f"Ответ на «{last_user_message(body)}»: " + SENTENCE * 3)
    openai_server.set_streaming(first_token=0.1, duration=1.2, chunks=10)
    provider = OpenAICompatProvider(base_url=openai_server.url + "/v1", model="m", timeout=3.0, retry=AI_RETRY)
    try:
        async with running_bot(tmp_path, telegram_server, provider):
            telegram_server.user_sends_text(PARTNER, "Вопрос")
            final = await telegram_server.wait_for_sent(chat_id=PARTNER, method="sendMessage", timeout=10)
    finally:
        await provider.aclose()
    assert final.plain_text == ("Ответ на «Вопрос»: " + SENTENCE * 3).strip()
    drafts = telegram_server.drafts_to(PARTNER)
    assert len(drafts) >= 2
    assert_grows(drafts, final.plain_text or "")
    assert openai_server.last_request.stream


async def test_offline_provider_sends_at_once_without_drafts(
    tmp_path: Path, telegram_server: FakeTelegramServer
) -> None:
    """The offline responder cannot stream: its answer is sent as one message and no draft is attempted."""
    async with running_bot(tmp_path, telegram_server, OfflineResponder()):
        telegram_server.user_sends_text(PARTNER, "Какое вознаграждение?")
        final = await telegram_server.wait_for_sent(chat_id=PARTNER, method="sendMessage", timeout=10)
    assert final.plain_text
    assert telegram_server.call_count("sendMessageDraft") == 0
