"""Any OpenAI-compatible chat completions endpoint (OpenRouter, a local Ollama or vLLM) via the openai package.

The client's own retries are off (`max_retries=0`): retries and the breaker are ours, as for Gemini.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import openai
from openai import AsyncOpenAI

from bot.ai.base import (
    AIEmptyAnswer,
    AIError,
    AIRateLimited,
    AIRejected,
    AIUnavailable,
    Turn,
    compose_system,
    merge_turns,
)
from bot.ai.resilience import AIRetryPolicy, GuardedCaller

log = logging.getLogger(__name__)

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
        messages: list[dict[str, str]] = [{"role": "system", "content": compose_system(system, context)}]
        for turn in merge_turns([*history, Turn("user", user_text)]):
            messages.append({"role": "user" if turn.role == "user" else "assistant", "content": turn.text})

        async def attempt() -> str:
            return await self._once(messages)

        return await self.guard.call(attempt)

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
