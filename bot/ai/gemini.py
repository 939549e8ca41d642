"""Gemini through google-genai's async client, with our own retries and circuit breaker.

google-genai 3.3.0 talks to `/v1/models/{model}:generateContent` by default; `api_version` is pinned here so
a library upgrade cannot silently move us to another API surface. `HttpRetryOptions(attempts=1)` switches off
the library's implicit retries (it would otherwise sleep 1-10 s on a connection error).

The transport is our own aiohttp session (aiohttp is a pinned dependency, not left to chance). google-genai can
also speak through httpx, but httpcore's pool looks at every pooled connection, with system calls, each time a
request starts or ends: with the 50 answers a burst of partners streams at once that cost 7.6 ms of event-loop
CPU per answer against 1.5 ms through aiohttp, time every other partner's turn waits for. The session keeps its
connections warm (bot/warm_pools.py) and honours HTTPS_PROXY like httpx did. Timeouts
are ours, not the transport's: the stream must open (first text) within `timeout`, and each later piece must
follow the previous one within `timeout`, however long the whole answer takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

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
from bot.warm_pools import api_session

log = logging.getLogger(__name__)

GEMINI_API_VERSION = "v1"  # what google-genai 3.3.0 uses for the Gemini Developer API
GEMINI_URL = "https://generativelanguage.googleapis.com/"  # google-genai's default endpoint
MAX_STREAMS = 100  # answers in flight at once
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class GeminiProvider:
    """AIProvider over the Gemini API (or any endpoint speaking it, via `base_url`)."""

    name = "gemini"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        temperature: float = 0.3,
        max_output_tokens: int = 1024,
        retry: AIRetryPolicy | None = None,
        breaker_fail_max: int = 5,
        breaker_reset_timeout: float = 60.0,
    ) -> None:
        self.model = model
        self._timeout = timeout
        self._api_key = api_key
        self._url = base_url or GEMINI_URL
        self._options = types.HttpOptions(
            base_url=base_url, api_version=GEMINI_API_VERSION, retry_options=types.HttpRetryOptions(attempts=1)
        )
        self._session: aiohttp.ClientSession | None = None
        self._genai: genai.Client | None = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no running loop: made on the first call instead
        else:
            self._client()  # now, not in the middle of the first burst (making one costs ~0.1 s of CPU)
        self._config = types.GenerateContentConfig(temperature=temperature, max_output_tokens=max_output_tokens)
        self.guard = GuardedCaller(
            "gemini", retry=retry, breaker_fail_max=breaker_fail_max, breaker_reset_timeout=breaker_reset_timeout
        )

    def _client(self) -> genai.Client:
        """The google-genai client over our session (aiohttp wants a running event loop to make one)."""
        if self._genai is None or self._session is None or self._session.closed:
            self._session = api_session(MAX_STREAMS, self._url)
            options = self._options.model_copy(update={"aiohttp_client": self._session})
            self._genai = genai.Client(api_key=self._api_key, http_options=options)
        return self._genai

    @property
    def breaker_state(self) -> str:
        """The provider's breaker: 'closed', 'open' or 'half-open'."""
        return self.guard.breaker_state

    async def generate(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> str:
        """The model's reply; raises an AIError subclass when it cannot be had."""
        contents, config = self._request(system, history, user_text, context)

        async def attempt() -> str:
            return await self._once(contents, config)

        return await self.guard.call(attempt)

    async def stream(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> AsyncIterator[str]:
        """The reply as `streamGenerateContent` delivers it. Opening the stream (up to the first text) is
        retried like `generate`; once text has flowed a failure is AIStreamBroken (a retry would repeat it)."""
        contents, config = self._request(system, history, user_text, context)

        async def opening() -> tuple[AsyncIterator[types.GenerateContentResponse], str, bool]:
            return await self._open_stream(contents, config)

        chunks, first, finished = await self.guard.call(opening)
        received = first
        try:
            yield first
            while not finished:
                try:
                    async with asyncio.timeout(self._timeout):
                        response = await anext(chunks)
                except StopAsyncIteration:
                    # The real API ends every complete answer with a finishReason; without one it was cut.
                    raise AIStreamBroken("gemini: the stream ended without a finish reason", received) from None
                except genai_errors.APIError as exc:
                    raise AIStreamBroken(f"gemini: stream broke: {_classify(exc)}", received) from exc
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise AIStreamBroken(f"gemini: stream broke: {_describe(exc, self._timeout)}", received) from exc
                text, finished = _chunk(response)
                if text:
                    received += text
                    yield text
            await _drain(chunks)
        except AIStreamBroken as exc:
            self.guard.record_failure(exc)  # a broken stream is an outage like a failed call, for the breaker
            raise
        finally:
            await _close(chunks)

    def _request(
        self, system: str, history: list[Turn], user_text: str, context: list[str]
    ) -> tuple[list[types.Content], types.GenerateContentConfig]:
        turns = merge_turns([*history, Turn("user", user_text)])
        while turns and turns[0].role != "user":
            turns.pop(0)  # Gemini wants the conversation to open with the user
        contents = [types.Content(role=t.role, parts=[types.Part(text=t.text)]) for t in turns]
        config = self._config.model_copy(update={"system_instruction": compose_system(system, context)})
        return contents, config

    async def _open_stream(
        self, contents: list[types.Content], config: types.GenerateContentConfig
    ) -> tuple[AsyncIterator[types.GenerateContentResponse], str, bool]:
        """The open stream, its first text (left-stripped) and whether that chunk already finished it."""
        opened: list[AsyncIterator[types.GenerateContentResponse]] = []
        try:
            return await self._first_text(contents, config, opened)
        except BaseException:
            for chunks in opened:  # a failed attempt must not leave its response open until GC
                await _close(chunks)
            raise

    async def _first_text(
        self,
        contents: list[types.Content],
        config: types.GenerateContentConfig,
        opened: list[AsyncIterator[types.GenerateContentResponse]],
    ) -> tuple[AsyncIterator[types.GenerateContentResponse], str, bool]:
        try:
            async with asyncio.timeout(self._timeout):
                chunks = await self._client().aio.models.generate_content_stream(
                    model=self.model, contents=contents, config=config
                )
                opened.append(chunks)
                async for response in chunks:
                    text, finished = _chunk(response)
                    text = text.lstrip()
                    if text:
                        return chunks, text, finished
                    if finished:
                        break
        except genai_errors.APIError as exc:
            raise _classify(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AIUnavailable(f"gemini: {_describe(exc, self._timeout)}") from exc
        raise AIEmptyAnswer("gemini streamed no text")

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
        self._session = self._genai = None

    async def _once(self, contents: list[types.Content], config: types.GenerateContentConfig) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client().aio.models.generate_content(
                    model=self.model,
                    contents=contents,
                    config=config,
                )
        except genai_errors.APIError as exc:
            raise _classify(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AIUnavailable(f"gemini: {_describe(exc, self._timeout)}") from exc
        text = response.text
        if not text or not text.strip():
            reason = ""
            if response.candidates:
                reason = str(response.candidates[0].finish_reason or "")
            raise AIEmptyAnswer(f"gemini returned no text {reason}".strip())
        return text.strip()


async def _drain(chunks: AsyncIterator[object]) -> None:
    """Read what follows the finishing chunk (the body's end) so the connection can be reused, not reset."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            async for _ in chunks:
                pass


async def _close(chunks: AsyncIterator[object]) -> None:
    """Release the HTTP response behind a stream we stop reading (an async generator's aclose)."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def _describe(exc: BaseException, timeout: float) -> str:
    """A transport failure in a line of the log (a timeout of ours carries no message of its own)."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"


def _chunk(response: types.GenerateContentResponse) -> tuple[str, bool]:
    """A stream chunk's text (empty when it has none) and whether it carries the finish reason."""
    candidates = response.candidates or []
    finished = bool(candidates and candidates[0].finish_reason)
    parts = (candidates[0].content.parts or []) if candidates and candidates[0].content else []
    # Not `response.text`: it warns on chunks without text and joins thought parts, which are not the answer.
    return "".join(p.text for p in parts if p.text and not p.thought), finished


def _classify(exc: genai_errors.APIError) -> AIError:
    code = int(exc.code or 0)
    message = f"gemini {code} {exc.status or ''}: {exc.message or ''}".strip()
    if code == 429:
        return AIRateLimited(message, retry_after_hint(exc.details, _headers(exc)))
    if code >= 500 or code in (408, 499):
        return AIUnavailable(message)
    return AIRejected(message)


def _headers(exc: genai_errors.APIError) -> Mapping[str, str]:
    response: Any = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def retry_after_hint(details: Any, headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from Google's RetryInfo (`retryDelay: "7s"`) or a Retry-After header, if any."""
    error = details.get("error", details) if isinstance(details, Mapping) else {}
    for item in error.get("details", []) if isinstance(error, Mapping) else []:
        if isinstance(item, Mapping) and "retryDelay" in item:
            m = _DELAY.match(str(item["retryDelay"]))
            if m:
                return float(m.group(1))
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None
