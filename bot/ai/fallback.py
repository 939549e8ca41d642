"""Never silence, never a stack trace: the configured provider, else the offline answer plus a flag for staff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.ai.base import AIEmptyAnswer, AIError, AIProvider, AIStreamBroken, DeltaSink, StreamingAIProvider, Turn
from bot.ai.offline import OfflineResponder

log = logging.getLogger(__name__)

OPERATOR_NOTIFIED = "Оператор уведомлён и ответит вам здесь, в этом чате."


@dataclass(frozen=True)
class AIAnswer:
    """What the partner gets, and how it was produced."""

    text: str
    provider: str  # the provider that produced `text`
    from_model: bool  # a model answered (counts towards the daily limit)
    failed: bool = False  # the configured provider failed: `text` is the offline answer, staff must be told
    error: str = ""


class FallbackAI:
    """Wraps the configured provider; on any failure answers offline and reports `failed=True`."""

    def __init__(
        self,
        primary: AIProvider,
        offline: OfflineResponder | None = None,
        *,
        observe_latency: Callable[[str, float], None] | None = None,
    ) -> None:
        self.primary = primary
        self.offline = offline or OfflineResponder()
        # (provider, seconds) of each answer the provider gave: /metrics' AI latency histogram.
        self._observe_latency = observe_latency
        # For the health monitor: consecutive provider failures (0 after any success) and the last error.
        self.failures_in_row = 0
        self.last_error = ""

    @property
    def is_offline(self) -> bool:
        """Whether the configured provider is the offline responder itself."""
        return self.primary.name == OfflineResponder.name

    @property
    def can_stream(self) -> bool:
        """Whether answers arrive piece by piece (the offline responder hands out the whole answer at once)."""
        return not self.is_offline and isinstance(self.primary, StreamingAIProvider)

    async def answer(
        self,
        system: str,
        history: list[Turn],
        user_text: str,
        context: list[str],
        on_delta: DeltaSink | None = None,
    ) -> AIAnswer:
        """The reply to `user_text`; never raises for a provider failure. With `on_delta`, the text is also
        handed out as it is written (all of it at once when the provider cannot stream); the deltas then add
        up to the answer, except that a fallback answered before any text had flowed is not handed out."""
        if self.is_offline:
            text = await self.offline.generate(system, history, user_text, context)
            if on_delta is not None:
                on_delta(text)
            return AIAnswer(text, self.offline.name, from_model=False)
        started = time.monotonic()
        try:
            if on_delta is not None and isinstance(self.primary, StreamingAIProvider):
                text = await self._streamed(self.primary, system, history, user_text, context, on_delta)
            else:
                text = await self.primary.generate(system, history, user_text, context)
                if on_delta is not None:
                    on_delta(text)
            self.failures_in_row = 0
            if self._observe_latency is not None:
                self._observe_latency(self.primary.name, time.monotonic() - started)
            return AIAnswer(text, self.primary.name, from_model=True)
        except AIStreamBroken as exc:
            log.warning("%s stream broke after %d chars (%s)", self.primary.name, len(exc.received), exc)
            note = f"\n\n{OPERATOR_NOTIFIED}"  # the usual fallback note, after what the partner already saw
            if on_delta is not None:
                on_delta(note)
            text = exc.received.strip() + note
            return AIAnswer(text, self.primary.name, from_model=False, failed=True, error=f"AIStreamBroken: {exc}")
        except AIError as exc:
            log.warning("%s failed (%s: %s); answering offline", self.primary.name, type(exc).__name__, exc)
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug in a provider must still leave the partner with an answer
            log.exception("%s crashed; answering offline", self.primary.name)
            error = f"{type(exc).__name__}: {exc}"
        self.failures_in_row += 1
        self.last_error = error
        text = await self.offline.generate(system, history, user_text, context)
        return AIAnswer(f"{text}\n\n{OPERATOR_NOTIFIED}", self.offline.name, from_model=False, failed=True, error=error)

    @staticmethod
    async def _streamed(
        provider: StreamingAIProvider,
        system: str,
        history: list[Turn],
        user_text: str,
        context: list[str],
        on_delta: DeltaSink,
    ) -> str:
        received: list[str] = []
        try:
            async for delta in provider.stream(system, history, user_text, context):
                received.append(delta)
                on_delta(delta)
        except AIStreamBroken:
            raise
        except Exception as exc:
            if not received:
                raise
            # Text has reached the partner already: whatever broke, this is a broken stream, not a fresh failure.
            raise AIStreamBroken(f"{type(exc).__name__}: {exc}", "".join(received)) from exc
        text = "".join(received).strip()
        if not text:
            raise AIEmptyAnswer(f"{provider.name} streamed no text")
        return text
