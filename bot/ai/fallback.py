"""Never silence, never a stack trace: the configured provider, else the offline answer plus a flag for staff."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.ai.base import AIError, AIProvider, Turn
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

    def __init__(self, primary: AIProvider, offline: OfflineResponder | None = None) -> None:
        self.primary = primary
        self.offline = offline or OfflineResponder()
        # For the health monitor: consecutive provider failures (0 after any success) and the last error.
        self.failures_in_row = 0
        self.last_error = ""

    @property
    def is_offline(self) -> bool:
        """Whether the configured provider is the offline responder itself."""
        return self.primary.name == OfflineResponder.name

    async def answer(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> AIAnswer:
        """The reply to `user_text`; never raises for a provider failure."""
        if self.is_offline:
            text = await self.offline.generate(system, history, user_text, context)
            return AIAnswer(text, self.offline.name, from_model=False)
        try:
            text = await self.primary.generate(system, history, user_text, context)
            self.failures_in_row = 0
            return AIAnswer(text, self.primary.name, from_model=True)
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
