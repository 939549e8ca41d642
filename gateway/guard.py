"""A guarded call: one circuit breaker and tenacity retries around any async call.

Generic on purpose (nothing here knows about sheets): gateway/resilience.py guards the Sheets API with it and
bot/ai/resilience.py the model providers. It is exported from `gateway` because the gateway is the lower layer
bot/ may import; each user brings its own predicates (what is retried, what counts as an outage, the wait a
rate-limited callee asked for) and its own stop rule.

pybreaker has no asyncio support: `breaker.call(async_fn)` would count the coroutine's creation as a success.
Every attempt goes through `with breaker.calling(): await ...`, so the awaited outcome is what is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pybreaker
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter
from tenacity.stop import StopBaseT

T = TypeVar("T")


class CallGuard:
    """A named breaker, a Retry-After-aware backoff, and the retry loop that uses both."""

    def __init__(
        self,
        name: str,
        *,
        counts_as_failure: Callable[[BaseException], bool],
        retry_after: Callable[[BaseException], float | None],
        initial_backoff: float,
        max_backoff: float,
        breaker_fail_max: int,
        breaker_reset_timeout: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        # The real error surfaces from the call that trips the breaker; later calls get CircuitBreakerError.
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=breaker_fail_max,
            reset_timeout=breaker_reset_timeout,
            exclude=[lambda e: not counts_as_failure(e)],
            throw_new_error_on_trip=False,
            name=name,
        )
        self._retry_after = retry_after
        self._backoff = wait_exponential_jitter(initial=initial_backoff, max=max_backoff)
        self._sleep = sleep

    @property
    def breaker_state(self) -> str:
        """'closed', 'open' or 'half-open'."""
        return str(self.breaker.current_state)

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: what the failed call asked for (Retry-After), else jittered backoff."""
        exc = state.outcome.exception() if state.outcome else None
        hint = self._retry_after(exc) if exc is not None else None
        return float(hint) if hint is not None else float(self._backoff(state))

    async def retrying(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        retryable: Callable[[BaseException], bool],
        stop: StopBaseT,
        before_sleep: Callable[[RetryCallState], None],
    ) -> T:
        """`attempt()` again after `wait` while its error is `retryable` and `stop` allows; the last error is raised."""
        retrying = AsyncRetrying(
            stop=stop,
            wait=self.wait,
            retry=retry_if_exception(retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                return await attempt()
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def through_breaker(self, fn: Callable[[], Awaitable[T]], *, when_open: Callable[[], Exception]) -> T:
        """One attempt through the breaker; `when_open()` is raised (from pybreaker's error) while it is open."""
        try:
            with self.breaker.calling():
                return await fn()
        except pybreaker.CircuitBreakerError as exc:
            raise when_open() from exc

    def record_failure(self, exc: BaseException) -> None:
        """Count a failure that happened outside an attempt (a stream that broke once it had opened)."""
        with contextlib.suppress(BaseException), self.breaker.calling():
            raise exc
