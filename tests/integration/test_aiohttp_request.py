"""The bot's Bot API transport (bot/telegram/aiohttp_request.py) behaves as PTB's own: parameters, uploads,
Telegram's errors and flood limits, timeouts and unreachable servers, through real PTB against the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from bot.telegram.aiohttp_request import AiohttpRequest
from tests.fakes.telegram_server import FakeTelegramServer


@pytest.fixture
async def bot(telegram_server: FakeTelegramServer) -> AsyncIterator[Bot]:
    """A real PTB Bot over AiohttpRequest (short timeouts), pointed at the fake."""
    request = AiohttpRequest(8, read_timeout=0.5, connect_timeout=0.5)
    async with Bot(telegram_server.token, base_url=telegram_server.api_base_url, request=request) as bot:
        yield bot


async def test_a_message_arrives_with_its_markup_and_parse_mode(bot: Bot, telegram_server: FakeTelegramServer) -> None:
    """Form parameters (text, parse mode, JSON-encoded keyboard) reach Telegram exactly; PTB parses the answer."""
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Позвать оператора", callback_data="human")]])
    message = await bot.send_message(
        42, "Здравствуйте, *партнёр* & «друг»", parse_mode="MarkdownV2", reply_markup=keyboard
    )
    sent = await telegram_server.wait_for_sent(chat_id=42, timeout=1)
    assert (sent.text, sent.plain_text, sent.parse_mode) == (
        "Здравствуйте, *партнёр* & «друг»",
        "Здравствуйте, партнёр & «друг»",
        "MarkdownV2",
    )
    assert sent.button_data == ["human"] and sent.message_id == message.message_id


async def test_a_document_is_uploaded_byte_for_byte(bot: Bot, telegram_server: FakeTelegramServer) -> None:
    """Files go as a multipart form beside the other fields: exact bytes, the Cyrillic file name, the caption."""
    payload = b"%PDF-1.4\r\n\x00\xff binary\r\n--not-a-boundary\r\n"
    message = await bot.send_document(42, payload, filename="отчёт за май.pdf", caption="Отчёт")
    sent = telegram_server.sent_to(42)[-1]
    assert (sent.method, sent.document, sent.filename, sent.text) == (
        "sendDocument",
        payload,
        "отчёт за май.pdf",
        "Отчёт",
    )
    assert message.document is not None and message.document.file_size == len(payload)


async def test_telegrams_errors_and_flood_limits_are_ptbs(bot: Bot, telegram_server: FakeTelegramServer) -> None:
    """A 400 is BadRequest with Telegram's words, a 429 is RetryAfter (what the rate limiter waits on)."""
    telegram_server.fail_next("sendMessage", status=400)
    with pytest.raises(BadRequest, match=r"[Cc]hat not found"):
        await bot.send_message(42, "раз")
    telegram_server.flood_next(1, retry_after=4, method="sendMessage")
    with pytest.raises(RetryAfter, match="Retry in 4"):
        await bot.send_message(42, "два")
    assert await bot.send_message(42, "три")


async def test_a_slow_answer_is_timed_out(bot: Bot, telegram_server: FakeTelegramServer) -> None:
    """No answer within the read timeout: TimedOut, as PTB's own transport raises."""
    telegram_server.set_latency(2.0)
    with pytest.raises(TimedOut):
        await bot.send_message(42, "медленно")


async def test_an_unreachable_server_is_a_network_error(telegram_server: FakeTelegramServer) -> None:
    """Nothing listening: NetworkError naming the transport's error; an unopened transport refuses to send."""
    request = AiohttpRequest(2, connect_timeout=0.5)
    async with Bot(telegram_server.token, base_url=telegram_server.api_base_url, request=request) as bot:
        telegram_server.stop()
        with pytest.raises(NetworkError, match="aiohttp"):
            await bot.send_message(42, "никого")
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:9/", "POST")
