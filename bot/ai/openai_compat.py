"""Any OpenAI-compatible chat completions endpoint (OpenRouter, a local Ollama or vLLM) via the openai package.

The client's own retries are off (`max_retries=0`): retries and the breaker are ours, as for Gemini.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import httpx
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from bot.ai.base import (
    AIEmptyAnswer,
    AIError,
    AIRateLimited,
    AIRejected,
    AIStreamBroken,
    AIUnavailable,
    Turn,
    compose_system,
    merge_turns,
)
from bot.ai.resilience import AIRetryPolicy, GuardedCaller

log = logging.getLogger(__name__)

#: An open stream and the one iterator its chunks are read through.
_Open = tuple[AsyncStream[ChatCompletionChunk], AsyncIterator[ChatCompletionChunk]]

# Local servers (Ollama, vLLM) accept any key, but the client insists on one.
PLACEHOLDER_KEY = "not-needed"


class OpenAICompatProvider:
    """AIProvider over `/v1/chat/completions`."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        temperature: float = 0.3,
        max_tokens: int = 1024,
        retry: AIRetryPolicy | None = None,
        breaker_fail_max: int = 5,
        breaker_reset_timeout: float = 60.0,
    ) -> None:
        self.model = model
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or PLACEHOLDER_KEY, timeout=timeout, max_retries=0
        )
        self._temperature = temperature
        self._max_tokens = max_tokens
        self.guard = GuardedCaller(
            "openai", retry=retry, breaker_fail_max=breaker_fail_max, breaker_reset_timeout=breaker_reset_timeout
        )

    @property
    def breaker_state(self) -> str:
        """The provider's breaker: 'closed', 'open' or 'half-open'."""
        return self.guard.breaker_state

    async def generate(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> str:
        """The model's reply; raises an AIError subclass when it cannot be had."""
        messages = self._messages(system, history, user_text, context)

        async def attempt() -> str:
            return await self._once(messages)

        return await self.guard.call(attempt)

    async def stream(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> AsyncIterator[str]:
        """The reply as `stream=true` delivers it. Opening the stream (up to the first text) is retried like
        `generate`; once text has flowed a failure is AIStreamBroken (a retry would repeat it)."""
        messages = self._messages(system, history, user_text, context)

        async def opening() -> tuple[_Open, str, bool]:
            return await self._open_stream(messages)

        (chunks, items), first, finished = await self.guard.call(opening)
        received = first
        try:
            yield first
            while not finished:
                try:
                    chunk = await anext(items)
                except StopAsyncIteration:
                    # A complete answer ends with a finish_reason (then [DONE]); without one it was cut.
                    raise AIStreamBroken("openai: the stream ended without a finish reason", received) from None
                except (openai.APIError, httpx.TransportError) as exc:
                    raise AIStreamBroken(f"openai: stream broke: {type(exc).__name__}: {exc}", received) from exc
                text, finished = _delta(chunk)
                if text:
                    received += text
                    yield text
            # Read on to [DONE] and the body's end so the connection is reused, not reset.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    async for _ in items:
                        pass
        except AIStreamBroken as exc:
            self.guard.record_failure(exc)  # a broken stream is an outage like a failed call, for the breaker
            raise
        finally:
            with contextlib.suppress(Exception):
                await chunks.close()

    def _messages(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = [{"role": "system", "content": compose_system(system, context)}]
        for turn in merge_turns([*history, Turn("user", user_text)]):
            messages.append({"role": "user" if turn.role == "user" else "assistant", "content": turn.text})
        return messages

    async def _open_stream(self, messages: list[dict[str, str]]) -> tuple[_Open, str, bool]:
        """The open stream, its first text (left-stripped) and whether that chunk already finished it."""
        opened: list[AsyncStream[ChatCompletionChunk]] = []
        try:
            return await self._first_text(messages, opened)
        except BaseException:
            for chunks in opened:  # a failed attempt must not leave its response open until GC
                with contextlib.suppress(Exception):
                    await chunks.close()
            raise

    async def _first_text(
        self, messages: list[dict[str, str]], opened: list[AsyncStream[ChatCompletionChunk]]
    ) -> tuple[_Open, str, bool]:
        try:
            chunks = await self._client.chat.completions.create(
                model=self.model,
                messages=cast(list[ChatCompletionMessageParam], messages),
                temperature=self._temperature,
                max_tokens=self._max_tokens,
                stream=True,
            )
            opened.append(chunks)
            items = aiter(chunks)  # one iterator for the whole stream: each aiter() of AsyncStream is a new one
            async for chunk in items:
                text, finished = _delta(chunk)
                text = text.lstrip()
                if text:
                    return (chunks, items), text, finished
                if finished:
                    break
        except openai.APIStatusError as exc:
            raise _classify(exc) from exc
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise AIUnavailable(f"openai: {type(exc).__name__}: {exc}") from exc
        except (openai.APIError, httpx.TransportError) as exc:  # an error event or a cut before any text
            raise AIUnavailable(f"openai: {type(exc).__name__}: {exc}") from exc
        raise AIEmptyAnswer("openai streamed no text")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    async def _once(self, messages: list[dict[str, str]]) -> str:
        try:
            completion = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=self._temperature,
                max_tokens=self._max_tokens,
            )
        except openai.APIStatusError as exc:
            raise _classify(exc) from exc
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise AIUnavailable(f"openai: {type(exc).__name__}: {exc}") from exc
        if not completion.choices:
            raise AIEmptyAnswer("openai returned no choices")
        text = completion.choices[0].message.content
        if not text or not text.strip():
            raise AIEmptyAnswer(f"openai returned no text ({completion.choices[0].finish_reason})")
        return text.strip()


def _delta(chunk: ChatCompletionChunk) -> tuple[str, bool]:
    """A stream chunk's text (empty when it has none) and whether it carries the finish reason."""
    if not chunk.choices:
        return "", False  # e.g. the usage chunk
    choice = chunk.choices[0]
    return choice.delta.content or "", choice.finish_reason is not None


def _classify(exc: openai.APIStatusError) -> AIError:
    code = exc.status_code
    message = f"openai {code}: {exc.message}"
    if code == 429:
        return AIRateLimited(message, _retry_after(exc.response.headers))
    if code >= 500 or code == 408:
        return AIUnavailable(message)
    return AIRejected(message)


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        return seconds / 1000 if name.endswith("-ms") else seconds
    return None
