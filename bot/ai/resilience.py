"""Retries and a circuit breaker around one AI provider's calls, shared by the Gemini and OpenAI providers.

Neither client library is trusted with retries: google-genai retries nothing unless told and never reads
Retry-After; the openai client would retry on its own schedule. Here a 429 waits what the provider asked
(when that fits the user's patience), 5xx and timeouts back off with jitter, and every attempt goes through a
circuit breaker. The breaker and the retry loop are the generic `CallGuard` the gateway uses too (it knows
nothing about sheets); what differs stays here because a partner is waiting: one deadline for the whole
answer, no wait for a 429 that asks for too long, and any unexpected client error counts as an outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, stop_after_attempt

from bot.ai.base import AIBreakerOpen, AIError, AIRateLimited, AIRejected, AIUnavailable
from gateway import CallGuard

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class AIRetryPolicy:
    """How hard one answer is tried before the user gets the offline answer instead."""

    max_attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 4.0
    # A 429 asking us to wait longer than this is not retried: the partner is waiting for an answer.
    max_retry_after: float = 10.0
    # The whole answer (all attempts and waits) must fit in this many seconds.
    deadline: float = 45.0


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, AIBreakerOpen):
        return False
    return isinstance(exc, AIUnavailable)


def _counts_as_failure(exc: BaseException) -> bool:
    # A rejected request (bad key, bad model) is our configuration, not an outage: it must not trip the breaker;
    # nor a call we cancelled ourselves (an answer no longer wanted, a shutdown).
    return not isinstance(exc, AIRejected | asyncio.CancelledError)


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, AIRateLimited) else None


class GuardedCaller:
    """Runs provider calls with tenacity retries, honouring Retry-After hints, through a pybreaker breaker."""

    def __init__(
        self,
        name: str,
        *,
        retry: AIRetryPolicy | None = None,
        breaker_fail_max: int = 5,
        breaker_reset_timeout: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.retry = retry or AIRetryPolicy()
        self._guard = CallGuard(
            f"ai-{name}",
            counts_as_failure=_counts_as_failure,
            retry_after=_retry_after,
            initial_backoff=self.retry.initial_backoff,
            max_backoff=self.retry.max_backoff,
            breaker_fail_max=breaker_fail_max,
            breaker_reset_timeout=breaker_reset_timeout,
            sleep=sleep,
        )
        self.breaker = self._guard.breaker
        self.attempts = 0  # every attempt made, for metrics and tests
        self.retries = 0

    @property
    def breaker_state(self) -> str:
        """'closed', 'open' or 'half-open'."""
        return self._guard.breaker_state

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` until it succeeds or the policy gives up; raises an AIError."""
        started = time.monotonic()

        def _retry(exc: BaseException) -> bool:
            if not _retryable(exc):
                return False
            # A 429 asking for a longer wait than the partner will sit through is not worth waiting for.
            too_long = isinstance(exc, AIRateLimited) and (exc.retry_after or 0.0) > self.retry.max_retry_after
            return not too_long

        def _stop(state: RetryCallState) -> bool:
            if stop_after_attempt(self.retry.max_attempts)(state):
                return True
            # Do not start a wait that would end past the deadline.
            return time.monotonic() - started + self._guard.wait(state) > self.retry.deadline

        def _before_sleep(state: RetryCallState) -> None:
            self.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s call failed (%s), retry %d", self.name, exc, state.attempt_number)

        return await self._guard.retrying(
            lambda: self._attempt(attempt), retryable=_retry, stop=_stop, before_sleep=_before_sleep
        )

    def record_failure(self, exc: BaseException) -> None:
        """Count a failure that happened after `call` returned (a stream that broke once it had opened)."""
        self._guard.record_failure(exc)

    async def _attempt(self, attempt: Callable[[], Awaitable[T]]) -> T:
        self.attempts += 1
        try:
            return await self._guard.through_breaker(
                attempt, when_open=lambda: AIBreakerOpen(f"{self.name}: circuit breaker is open")
            )
        except AIError:
            raise
        except Exception as exc:  # a client bug or an unexpected transport error: still an outage to the user
            raise AIUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
