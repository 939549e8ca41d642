"""The fakes' streaming surface, driven by the real clients: sendMessageDraft in the fake Bot API (PTB), and
the shaped / broken SSE streams of the fake Gemini (google-genai) and OpenAI-compatible (openai) servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from google import genai
from google.genai import types
from openai import APIConnectionError, AsyncOpenAI
from telegram import Bot
from telegram.error import BadRequest, InvalidToken

from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_server import FakeTelegramServer


def genai_client(server: FakeGeminiServer) -> genai.Client:
    """A real google-genai client on httpx (as the provider builds it) pointed at the fake."""
    options = types.HttpOptions(base_url=server.url, api_version="v1", httpx_async_client=httpx.AsyncClient())
    return genai.Client(api_key="k", http_options=options)


@pytest.fixture
async def bot(telegram_server: FakeTelegramServer) -> AsyncIterator[Bot]:
    """A real PTB Bot pointed at the fake."""
    async with Bot(telegram_server.token, base_url=telegram_server.api_base_url) as b:
        yield b


async def test_drafts_are_recorded_and_cleared_by_the_message(telegram_server: FakeTelegramServer, bot: Bot) -> None:
    """Every draft is recorded with its draft_id; the open draft is the newest until a message replaces it."""
    assert await bot.send_message_draft(7, 11, "Пол")
    assert await bot.send_message_draft(7, 11, "Половина")
    drafts = telegram_server.drafts_to(7)
    assert [d.plain_text for d in drafts] == ["Пол", "Половина"]
    assert {d.draft_id for d in drafts} == {11}
    open_draft = telegram_server.open_draft(7)
    assert open_draft is not None and open_draft.plain_text == "Половина"
    await bot.send_message(7, "Половина комиссии.")
    assert telegram_server.open_draft(7) is None


async def test_drafts_are_validated_like_telegram(telegram_server: FakeTelegramServer, bot: Bot) -> None:
    """Drafts only go to private chats, with a non-zero draft_id and at most 4,096 characters."""
    with pytest.raises(BadRequest, match=r"(?i)private"):
        await bot.send_message_draft(-100123, 1, "текст")
    with pytest.raises(BadRequest, match=r"(?i)draft_id"):
        await bot.send_message_draft(7, 0, "текст")
    with pytest.raises(BadRequest, match=r"(?i)too long"):
        await bot.send_message_draft(7, 1, "я" * 4097)
    assert telegram_server.drafts_to(7) == []


async def test_refused_drafts(telegram_server: FakeTelegramServer, bot: Bot) -> None:
    """refuse_drafts answers 400 (method not available) or 404 (no such method) until accept_drafts."""
    telegram_server.refuse_drafts()
    with pytest.raises(BadRequest, match=r"(?i)not available"):
        await bot.send_message_draft(7, 1, "текст")
    telegram_server.refuse_drafts(404)
    with pytest.raises(InvalidToken):  # PTB's reading of a 404
        await bot.send_message_draft(7, 1, "текст")
    telegram_server.accept_drafts()
    assert await bot.send_message_draft(7, 1, "текст")
    assert telegram_server.call_count("sendMessageDraft") == 3


async def test_gemini_stream_has_the_configured_shape(gemini_server: FakeGeminiServer) -> None:
    """streamGenerateContent: the first chunk after first_token, the rest spread over duration, finishReason last."""
    gemini_server.set_responder(lambda body: "раз два три четыре пять шесть")
    gemini_server.set_streaming(first_token=0.3, duration=0.4, chunks=6)
    client = genai_client(gemini_server)
    started = time.monotonic()
    arrivals = []
    async for chunk in await client.aio.models.generate_content_stream(model="m", contents="вопрос"):
        arrivals.append((time.monotonic() - started, chunk))
    assert len(arrivals) == 6
    assert 0.25 < arrivals[0][0] < 0.6 and arrivals[-1][0] - arrivals[0][0] > 0.3
    assert "".join(c.text or "" for _, c in arrivals) == "раз два три четыре пять шесть"
    assert arrivals[-1][1].candidates[0].finish_reason == "STOP"
    assert all(c.candidates[0].finish_reason is None for _, c in arrivals[:-1])


async def test_gemini_stream_breaks_without_a_finish_reason(gemini_server: FakeGeminiServer) -> None:
    """break_next_stream drops the next stream after N chunks (an incomplete body, no finishReason); the next
    stream is whole."""
    gemini_server.set_responder(lambda body: "раз два три четыре пять шесть")
    gemini_server.set_streaming(chunks=6)
    gemini_server.break_next_stream(after_chunks=2)
    client = genai_client(gemini_server)
    cut = []
    with pytest.raises(httpx.RemoteProtocolError):
        async for chunk in await client.aio.models.generate_content_stream(model="m", contents="вопрос"):
            cut.append(chunk)
    assert len(cut) == 2 and all(c.candidates[0].finish_reason is None for c in cut)
    whole = [c async for c in await client.aio.models.generate_content_stream(model="m", contents="вопрос")]
    assert len(whole) == 6


async def test_openai_stream_chunks_and_done(openai_server: FakeOpenAIServer) -> None:
    """stream=true: chunk objects with content deltas, a finish_reason, then [DONE]; a break drops the body
    before both."""
    openai_server.set_responder(lambda body: "раз два три четыре")
    openai_server.set_streaming(chunks=4)
    client = AsyncOpenAI(base_url=openai_server.url + "/v1", api_key="k", max_retries=0)
    try:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "?"}], stream=True
            )
        ]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "раз два три четыре"
        assert chunks[-1].choices[0].finish_reason == "stop"
        openai_server.break_next_stream(after_chunks=1)
        cut = []
        with pytest.raises(APIConnectionError):  # openai's wrapping of the broken body
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "?"}], stream=True
            )
            async for chunk in stream:
                cut.append(chunk)
        assert cut and all(c.choices[0].finish_reason is None for c in cut)
    finally:
        await client.close()
