"""The fake OpenAI-compatible API answers the real openai client and records what it was sent."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from tests.fakes.openai_server import FakeOpenAIServer

MODEL = "llama3.1:8b"


def make_client(server: FakeOpenAIServer, *, api_key: str = "x", timeout: float = 5.0) -> AsyncOpenAI:
    """A real AsyncOpenAI client pointed at the fake, without the client's own retries."""
    return AsyncOpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0, timeout=timeout)


MESSAGES: list[Any] = [
    {"role": "system", "content": "Ты помощник агентства."},
    {"role": "user", "content": "Какая комиссия?"},
    {"role": "assistant", "content": "3%."},
    {"role": "user", "content": "А бонусы?"},
]


async def test_chat_completion_returns_text_and_is_recorded(openai_server: FakeOpenAIServer) -> None:
    """The reply echoes the last user message; the record holds model, messages, params and key."""
    async with make_client(openai_server) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0.3)
    assert completion.choices[0].message.content == "Эхо: А бонусы?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    request = openai_server.last_request
    assert request.model == MODEL
    assert request.system_prompt == "Ты помощник агентства."
    assert request.messages[1:] == (("user", "Какая комиссия?"), ("assistant", "3%."), ("user", "А бонусы?"))
    assert request.params["temperature"] == 0.3
    assert request.api_key == "x"


async def test_custom_responder(openai_server: FakeOpenAIServer) -> None:
    """A test-provided responder receives the request JSON and decides the answer."""

    def responder(body: dict[str, Any]) -> str:
        return f"модель {body['model']}"

    openai_server.set_responder(responder)
    async with make_client(openai_server) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == f"модель {MODEL}"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (503, openai.InternalServerError)],
)
async def test_injected_errors(
    openai_server: FakeOpenAIServer, status: int, error_type: type[openai.APIStatusError]
) -> None:
    """fail_next answers in OpenAI's error shape with Retry-After; the next call succeeds."""
    openai_server.fail_next(1, status=status, retry_after=2)
    async with make_client(openai_server) as client:
        with pytest.raises(error_type) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert caught.value.status_code == status
        assert caught.value.response.headers["retry-after"] == "2"
        assert await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert [r.status for r in openai_server.requests] == [status, 200]


async def test_wrong_key_and_timeouts() -> None:
    """A configured api_key rejects others with 401; hang_next trips the client timeout."""
    with FakeOpenAIServer(api_key="secret") as server:
        async with make_client(server, api_key="wrong") as client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)
        server.hang_next(1, seconds=5)
        async with make_client(server, api_key="secret", timeout=0.2) as client:
            started = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            assert time.monotonic() - started < 5


async def test_streaming(openai_server: FakeOpenAIServer) -> None:
    """stream=True yields SSE chunks that add up to the answer."""
    async with make_client(openai_server) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(parts) == "Эхо: А бонусы?"
    assert openai_server.last_request.stream


async def test_invalid_role_is_refused(openai_server: FakeOpenAIServer) -> None:
    """A message with an unknown role is a 400 BadRequestError, as the real APIs answer."""
    async with make_client(openai_server) as client:
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model=MODEL, messages=[{"role": "model", "content": "x"}])  # type: ignore[misc,list-item]
