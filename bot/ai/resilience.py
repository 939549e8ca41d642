"""Retries and a circuit breaker around one AI provider's calls, shared by the Gemini and OpenAI providers.

Neither client library is trusted with retries: google-genai retries nothing unless told and never reads
Retry-After; the openai client would retry on its own schedule. Here a 429 waits what the provider asked
(when that fits the user's patience), 5xx and timeouts back off with jitter, and every attempt goes through a
pybreaker breaker as `with breaker.calling(): await ...` (pybreaker's `call()` would record the creation of
the coroutine, not its outcome).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pybreaker
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from bot.ai.base import AIBreakerOpen, AIError, AIRateLimited, AIRejected, AIUnavailable

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
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=breaker_fail_max,
            reset_timeout=breaker_reset_timeout,
            exclude=[lambda e: not _counts_as_failure(e)],
            throw_new_error_on_trip=False,
            name=f"ai-{name}",
        )
        self._sleep = sleep
        self._backoff = wait_exponential_jitter(initial=self.retry.initial_backoff, max=self.retry.max_backoff)
        self.attempts = 0  # every attempt made, for metrics and tests
        self.retries = 0

    @property
    def breaker_state(self) -> str:
        """'closed', 'open' or 'half-open'."""
        return str(self.breaker.current_state)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` until it succeeds or the policy gives up; raises an AIError."""
        started = time.monotonic()

        def _wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, AIRateLimited) and exc.retry_after is not None:
                return float(exc.retry_after)
            return float(self._backoff(state))

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
            return time.monotonic() - started + _wait(state) > self.retry.deadline

        def _before_sleep(state: RetryCallState) -> None:
            self.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            log.warning("%s call failed (%s), retry %d", self.name, exc, state.attempt_number)

        retrying = AsyncRetrying(
            stop=_stop,
            wait=_wait,
            retry=retry_if_exception(_retry),
            sleep=self._sleep,
            before_sleep=_before_sleep,
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                return await self._attempt(attempt)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def record_failure(self, exc: BaseException) -> None:
        """Count a failure that happened after `call` returned (a stream that broke once it had opened)."""
        with contextlib.suppress(BaseException), self.breaker.calling():
            raise exc

    async def _attempt(self, attempt: Callable[[], Awaitable[T]]) -> T:
        self.attempts += 1
        try:
            with self.breaker.calling():
                return await attempt()
        except pybreaker.CircuitBreakerError as exc:
            raise AIBreakerOpen(f"{self.name}: circuit breaker is open") from exc
        except AIError:
            raise
        except Exception as exc:  # a client bug or an unexpected transport error: still an outage to the user
            raise AIUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
