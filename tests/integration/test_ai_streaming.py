"""Streaming answers through the real client libraries: google-genai against the fake Gemini's
`:streamGenerateContent?alt=sse`, openai against the fake's `stream=true` SSE, and FallbackAI on top."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bot.ai.base import AIStreamBroken, StreamingAIProvider
from bot.ai.fallback import OPERATOR_NOTIFIED, FallbackAI
from bot.ai.gemini import GeminiProvider
from bot.ai.offline import OfflineResponder
from bot.ai.openai_compat import OpenAICompatProvider
from bot.ai.resilience import AIRetryPolicy
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer

RETRY = AIRetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, deadline=5.0)
ANSWER = "Вознаграждение партнёра составляет половину комиссии агентства по каждой сделке, выплата после регистрации."


@pytest.fixture(params=["gemini", "openai"])
async def streaming(
    request: pytest.FixtureRequest, gemini_server: FakeGeminiServer, openai_server: FakeOpenAIServer
) -> AsyncIterator[tuple[StreamingAIProvider, FakeGeminiServer | FakeOpenAIServer]]:
    """A real provider client and the fake it streams from, answering ANSWER in 6 chunks."""
    provider: GeminiProvider | OpenAICompatProvider
    server: FakeGeminiServer | FakeOpenAIServer
    if request.param == "gemini":
        server = gemini_server
        provider = GeminiProvider(api_key="k", model="gemini-test", base_url=server.url, timeout=3.0, retry=RETRY)
    else:
        server = openai_server
        provider = OpenAICompatProvider(base_url=server.url + "/v1", model="m", timeout=3.0, retry=RETRY)
    server.set_responder(lambda body: ANSWER)
    server.set_streaming(chunks=6)
    try:
        yield provider, server
    finally:
        await provider.aclose()


async def test_stream_hands_out_the_answer_piece_by_piece(
    streaming: tuple[StreamingAIProvider, FakeGeminiServer | FakeOpenAIServer],
) -> None:
    """The provider yields several deltas as the chunks arrive; together they are the whole answer."""
    provider, server = streaming
    server.set_streaming(first_token=0.2, duration=0.5, chunks=6)
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    async for delta in provider.stream("system", [], "Какое вознаграждение?", []):
        arrivals.append((time.monotonic() - started, delta))
    assert len(arrivals) >= 5
    assert "".join(d for _, d in arrivals) == ANSWER
    assert arrivals[0][0] < 0.45  # the first text is seen long before the last
    assert arrivals[-1][0] - arrivals[0][0] > 0.3


async def test_broken_stream_raises_with_the_received_text(
    streaming: tuple[StreamingAIProvider, FakeGeminiServer | FakeOpenAIServer],
) -> None:
    """A stream cut mid-answer raises AIStreamBroken carrying exactly what arrived, and trips the breaker's count."""
    provider, server = streaming
    server.break_next_stream(after_chunks=2)
    received: list[str] = []
    with pytest.raises(AIStreamBroken) as caught:
        async for delta in provider.stream("system", [], "Вопрос", []):
            received.append(delta)
    assert received and caught.value.received == "".join(received)
    assert ANSWER.startswith(caught.value.received) and caught.value.received != ANSWER
    assert server.request_count == 1  # text had flowed: a retry would repeat it
    assert isinstance(provider, GeminiProvider | OpenAICompatProvider)
    assert provider.guard.breaker.fail_counter == 1  # counted as an outage by the breaker


async def test_failure_before_any_text_is_retried(
    streaming: tuple[StreamingAIProvider, FakeGeminiServer | FakeOpenAIServer],
) -> None:
    """A 503 when the stream opens is retried like a plain call; the partner then sees the whole answer."""
    provider, server = streaming
    server.fail_next(1, 503)
    deltas = [d async for d in provider.stream("system", [], "Вопрос", [])]
    assert "".join(deltas) == ANSWER
    assert server.request_count == 2


async def test_fallback_keeps_received_text_and_adds_the_note(
    streaming: tuple[StreamingAIProvider, FakeGeminiServer | FakeOpenAIServer],
) -> None:
    """FallbackAI: a broken stream ends with the received text plus the offline-fallback note, flagged failed;
    the deltas handed out carry that text and end with the note."""
    provider, server = streaming
    server.break_next_stream(after_chunks=3)
    deltas: list[str] = []
    answer = await FallbackAI(provider).answer("system", [], "Вопрос", [], deltas.append)
    assert answer.failed and not answer.from_model and "AIStreamBroken" in answer.error
    received = answer.text.split("\n\n")[0]
    assert received and ANSWER.startswith(received) and received != ANSWER
    assert answer.text.endswith(f"\n\n{OPERATOR_NOTIFIED}")
    streamed = "".join(deltas)
    assert streamed.startswith(received) and streamed.endswith(f"\n\n{OPERATOR_NOTIFIED}")


async def test_fallback_streams_a_complete_answer(
    streaming: tuple[StreamingAIProvider, FakeGeminiServer | FakeOpenAIServer],
) -> None:
    """FallbackAI with a sink: the deltas arrive one by one and the answer is the model's, not failed."""
    provider, _ = streaming
    deltas: list[str] = []
    answer = await FallbackAI(provider).answer("system", [], "Вопрос", [], deltas.append)
    assert not answer.failed and answer.from_model
    assert answer.text == ANSWER and len(deltas) >= 5


async def test_offline_cannot_stream_and_hands_out_the_whole_answer_at_once() -> None:
    """The offline responder is not worth drafting: can_stream is False and the sink gets one delta, the answer."""
    ai = FallbackAI(OfflineResponder())
    deltas: list[str] = []
    answer = await ai.answer("system", [], "Вопрос", [], deltas.append)
    assert not ai.can_stream
    assert deltas == [answer.text]


async def test_gemini_stream_ending_without_a_finish_reason_is_broken(gemini_server: FakeGeminiServer) -> None:
    """A stream that ends cleanly but never says it finished (no finishReason) was cut: AIStreamBroken."""
    gemini_server.set_responder(
        lambda body: {"candidates": [{"content": {"parts": [{"text": "Половина комиссии"}], "role": "model"}}]}
    )
    provider = GeminiProvider(api_key="k", model="m", base_url=gemini_server.url, timeout=3.0, retry=RETRY)
    received: list[str] = []
    try:
        with pytest.raises(AIStreamBroken, match="finish reason") as caught:
            async for delta in provider.stream("system", [], "Вопрос", []):
                received.append(delta)
    finally:
        await provider.aclose()
    assert received == ["Половина комиссии"] and caught.value.received == "Половина комиссии"


async def test_stream_without_any_text_falls_back_offline(gemini_server: FakeGeminiServer) -> None:
    """A stream that finishes with no text (a safety block) is an empty answer: the offline answer, no deltas."""
    gemini_server.set_responder(
        lambda body: {"candidates": [{"content": {"parts": [], "role": "model"}, "finishReason": "SAFETY"}]}
    )
    provider = GeminiProvider(api_key="k", model="m", base_url=gemini_server.url, timeout=3.0, retry=RETRY)
    deltas: list[str] = []
    try:
        answer = await FallbackAI(provider).answer("system", [], "Вопрос", [], deltas.append)
    finally:
        await provider.aclose()
    assert answer.failed and "AIEmptyAnswer" in answer.error
    assert answer.text.endswith(OPERATOR_NOTIFIED) and deltas == []
    assert gemini_server.request_count == 1  # an empty answer is not retried


async def test_gemini_answer_streaming_longer_than_the_timeout_is_not_cut(gemini_server: FakeGeminiServer) -> None:
    """The timeout bounds each wait for the next piece, not the whole answer: a long answer whose pieces keep
    coming (1.2 s in all, a piece every ~0.25 s) arrives whole with a 0.5 s timeout."""
    gemini_server.set_responder(lambda body: ANSWER)
    gemini_server.set_streaming(first_token=0.1, duration=1.2, chunks=6)
    provider = GeminiProvider(api_key="k", model="m", base_url=gemini_server.url, timeout=0.5, retry=RETRY)
    try:
        received = [delta async for delta in provider.stream("system", [], "Вопрос", [])]
    finally:
        await provider.aclose()
    assert "".join(received) == ANSWER and len(received) >= 5


async def test_gemini_stream_stalling_mid_answer_is_broken_with_what_arrived(gemini_server: FakeGeminiServer) -> None:
    """A stream that goes quiet for longer than the timeout after its first piece is cut: AIStreamBroken carrying
    the text received, raised about a timeout after the stall began (not when the model finally resumes)."""
    gemini_server.set_responder(lambda body: ANSWER)
    gemini_server.set_streaming(first_token=0.05, duration=3.0, chunks=2)  # the second piece 3 s after the first
    provider = GeminiProvider(api_key="k", model="m", base_url=gemini_server.url, timeout=0.4, retry=RETRY)
    received: list[str] = []
    started = time.monotonic()
    try:
        with pytest.raises(AIStreamBroken, match=r"no answer within 0\.4 s") as caught:
            async for delta in provider.stream("system", [], "Вопрос", []):
                received.append(delta)
    finally:
        await provider.aclose()
    assert len(received) == 1 and caught.value.received == received[0] and ANSWER.startswith(received[0])
    assert time.monotonic() - started < 2.0
