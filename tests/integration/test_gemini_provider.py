"""GeminiProvider with the real google-genai client against the fake Gemini server (and the OpenAI twin)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.ai.base import AIBreakerOpen, AIRateLimited, AIRejected, AIUnavailable, Turn, compose_system, render_fact
from bot.ai.gemini import GEMINI_API_VERSION, GeminiProvider, retry_after_hint
from bot.ai.openai_compat import OpenAICompatProvider
from bot.ai.resilience import AIRetryPolicy
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer

FAST = AIRetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, max_retry_after=1.0, deadline=5.0)
HISTORY = [Turn("user", "Какая комиссия?"), Turn("model", "50% от комиссии агентства."), Turn("model", "Оператор: да")]


@pytest.fixture
async def gemini(gemini_server: FakeGeminiServer) -> AsyncIterator[GeminiProvider]:
    """A provider pointed at the fake server with fast retries and a 3-failure breaker."""
    provider = GeminiProvider(
        api_key="test-key",
        model="gemini-test",
        base_url=gemini_server.url,
        timeout=1.0,
        retry=FAST,
        breaker_fail_max=3,
        breaker_reset_timeout=0.3,
    )
    try:
        yield provider
    finally:
        await provider.aclose()


async def test_system_instruction_and_history_are_sent_exactly(
    gemini: GeminiProvider, gemini_server: FakeGeminiServer
) -> None:
    """The request carries the system prompt + facts as systemInstruction and the history turn by turn."""
    facts = [render_fact("Когда выплата?", "Через 10 рабочих дней.")]
    answer = await gemini.generate("Ты ассистент.", HISTORY, "А когда выплата?", facts)
    assert answer == "Эхо: А когда выплата?"
    req = gemini_server.last_request
    assert req.model == "gemini-test" and req.api_version == GEMINI_API_VERSION == "v1"
    assert req.method == "generateContent" and req.api_key == "test-key"
    assert req.system_instruction == compose_system("Ты ассистент.", facts)
    assert "[1] Вопрос: Когда выплата?\nОтвет: Через 10 рабочих дней." in (req.system_instruction or "")
    assert req.contents == (
        ("user", "Какая комиссия?"),
        ("model", "50% от комиссии агентства.\n\nОператор: да"),
        ("user", "А когда выплата?"),
    )


async def test_history_is_normalized_for_gemini(gemini: GeminiProvider, gemini_server: FakeGeminiServer) -> None:
    """Leading model turns are dropped and a trailing unanswered user turn merges with the new message."""
    history = [
        Turn("model", "Оператор: здравствуйте"),
        Turn("user", "первое"),
        Turn("model", "ответ"),
        Turn("user", "x"),
    ]
    await gemini.generate("s", history, "y", [])
    assert gemini_server.last_request.contents == (("user", "первое"), ("model", "ответ"), ("user", "x\n\ny"))


async def test_429_waits_the_hinted_delay_then_succeeds(
    gemini: GeminiProvider, gemini_server: FakeGeminiServer
) -> None:
    """A 429 with RetryInfo is retried after the hinted delay, and the answer arrives."""
    gemini_server.fail_next(1, 429, retry_after=0.2)
    started = asyncio.get_running_loop().time()
    assert await gemini.generate("s", [], "привет", []) == "Эхо: привет"
    assert asyncio.get_running_loop().time() - started >= 0.2
    assert [r.status for r in gemini_server.requests] == [429, 200]


async def test_429_asking_too_long_is_not_waited_for(gemini: GeminiProvider, gemini_server: FakeGeminiServer) -> None:
    """A 429 asking for more than max_retry_after fails at once with its hint (the user is waiting)."""
    gemini_server.fail_next(1, 429, retry_after=30)
    with pytest.raises(AIRateLimited) as info:
        await gemini.generate("s", [], "привет", [])
    assert info.value.retry_after == 30 and gemini_server.request_count == 1


async def test_500s_are_retried_then_raise(gemini: GeminiProvider, gemini_server: FakeGeminiServer) -> None:
    """Persistent 500s are tried max_attempts times, then AIUnavailable."""
    gemini_server.fail_next(3, 500)
    with pytest.raises(AIUnavailable):
        await gemini.generate("s", [], "привет", [])
    assert gemini_server.request_count == 3


async def test_one_503_is_absorbed_by_a_retry(gemini: GeminiProvider, gemini_server: FakeGeminiServer) -> None:
    """A single 503 costs one retry, not an answer."""
    gemini_server.fail_next(1, 503)
    assert await gemini.generate("s", [], "ok", []) == "Эхо: ok"
    assert gemini_server.request_count == 2


async def test_bad_request_is_not_retried_and_does_not_trip_the_breaker(
    gemini: GeminiProvider, gemini_server: FakeGeminiServer
) -> None:
    """A 400 (our mistake, not an outage) raises AIRejected at once and leaves the breaker closed."""
    gemini_server.fail_next(4, 400)
    for _ in range(4):
        with pytest.raises(AIRejected):
            await gemini.generate("s", [], "x", [])
    assert gemini_server.request_count == 4 and gemini.breaker_state == "closed"


async def test_a_hung_model_times_out(gemini_server: FakeGeminiServer) -> None:
    """A model that does not answer within the timeout is an outage, retried, then AIUnavailable."""
    provider = GeminiProvider(
        api_key="k", model="m", base_url=gemini_server.url, timeout=0.3, retry=AIRetryPolicy(2, 0.01, 0.02)
    )
    gemini_server.hang_next(2, seconds=5)
    try:
        with pytest.raises(AIUnavailable):
            await provider.generate("s", [], "x", [])
    finally:
        await provider.aclose()
    assert gemini_server.request_count == 2


async def test_breaker_opens_fails_fast_and_recovers(gemini: GeminiProvider, gemini_server: FakeGeminiServer) -> None:
    """After 3 failed attempts the breaker opens: calls fail without a request; after the timeout it recovers."""
    gemini_server.fail_next(3, 500)
    with pytest.raises(AIUnavailable):
        await gemini.generate("s", [], "x", [])
    assert gemini.breaker_state == "open"
    with pytest.raises(AIBreakerOpen):
        await gemini.generate("s", [], "x", [])
    assert gemini_server.request_count == 3
    await asyncio.sleep(0.35)
    assert await gemini.generate("s", [], "снова", []) == "Эхо: снова"
    assert gemini.breaker_state == "closed"


def test_retry_after_hint_sources() -> None:
    """Google's RetryInfo wins; a Retry-After header is the fallback; neither gives None."""
    details = {"error": {"details": [{"@type": "x.RetryInfo", "retryDelay": "7s"}]}}
    assert retry_after_hint(details, {}) == 7.0
    assert retry_after_hint({}, {"Retry-After": "3"}) == 3.0
    assert retry_after_hint({}, {}) is None


@pytest.fixture
async def openai_provider(openai_server: FakeOpenAIServer) -> AsyncIterator[OpenAICompatProvider]:
    """An OpenAI-compatible provider pointed at the fake server."""
    provider = OpenAICompatProvider(base_url=openai_server.url + "/v1", model="local-model", timeout=1.0, retry=FAST)
    try:
        yield provider
    finally:
        await provider.aclose()


async def test_openai_messages_are_sent_exactly(
    openai_provider: OpenAICompatProvider, openai_server: FakeOpenAIServer
) -> None:
    """System, history and the new message reach the OpenAI-compatible endpoint as chat messages."""
    answer = await openai_provider.generate("Ты ассистент.", HISTORY, "А когда выплата?", [])
    assert answer == "Эхо: А когда выплата?"
    req = openai_server.last_request
    assert req.model == "local-model"
    assert req.messages == (
        ("system", "Ты ассистент."),
        ("user", "Какая комиссия?"),
        ("assistant", "50% от комиссии агентства.\n\nОператор: да"),
        ("user", "А когда выплата?"),
    )


async def test_openai_errors_are_retried_and_classified(
    openai_provider: OpenAICompatProvider, openai_server: FakeOpenAIServer
) -> None:
    """A 503 is retried by us (the client's own retries are off); a 401 is rejected at once."""
    openai_server.fail_next(1, 503)
    assert await openai_provider.generate("s", [], "ok", []) == "Эхо: ok"
    assert openai_server.request_count == 2
    openai_server.fail_next(1, 401)
    with pytest.raises(AIRejected):
        await openai_provider.generate("s", [], "x", [])
    assert openai_server.request_count == 3
