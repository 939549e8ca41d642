"""Breaker, retries and rate limiting around any backend, so Google and the local store behave alike.

The breaker and the retry loop are the generic `CallGuard` (gateway/guard.py, shared with bot/ai); what is
sheet-specific stays here: which errors are retried or trip the breaker, the quota limiters, the metrics and
the reachability the health check reads, and a stop rule of attempts or total delay (a background write
may wait a minute, unlike a partner waiting for an answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, stop_after_attempt, stop_after_delay

from gateway.backend import Rows, SheetsBackend
from gateway.errors import BadRequest, QuotaExceeded, SheetUnavailable, StructureFault, TransientBackendError
from gateway.guard import CallGuard
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import QuotaLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")


class BreakerOpen(SheetUnavailable):
    """The circuit breaker is open: the sheet failed repeatedly, calls are refused until it half-opens."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one logical call tries before it is declared unavailable."""

    max_attempts: int = 5
    max_delay: float = 60.0
    initial_backoff: float = 0.5
    max_backoff: float = 20.0


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, QuotaExceeded | TransientBackendError) and not isinstance(exc, BreakerOpen)


def _is_retryable_append(exc: BaseException) -> bool:
    # An append is not idempotent: after a timeout it may have landed. Only a 429 (refused, not
    # applied) is retried here; anything else goes to the outbox, whose replay checks keys first.
    return isinstance(exc, QuotaExceeded)


def _counts_as_failure(exc: BaseException) -> bool:
    # A 429, a malformed request or a structural refusal (missing sheet, protected range) proves Google
    # is up: none should open the breaker.
    return not isinstance(exc, QuotaExceeded | BadRequest | StructureFault)


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, QuotaExceeded) else None


class ResilientBackend:
    """A SheetsBackend wrapper adding the breaker, tenacity retries and the quota limiter."""

    def __init__(
        self,
        inner: SheetsBackend,
        *,
        metrics: GatewayMetrics,
        breaker_fail_max: int = 5,
        breaker_reset_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        read_limiter: QuotaLimiter | None = None,
        write_limiter: QuotaLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.metrics = metrics
        self.retry = retry or RetryPolicy()
        # The real error surfaces from the call that trips the breaker; later calls get BreakerOpen.
        self._guard = CallGuard(
            f"sheets-{inner.name}",
            counts_as_failure=_counts_as_failure,
            retry_after=_retry_after,
            initial_backoff=self.retry.initial_backoff,
            max_backoff=self.retry.max_backoff,
            breaker_fail_max=breaker_fail_max,
            breaker_reset_timeout=breaker_reset_timeout,
            sleep=sleep,
        )
        self.breaker = self._guard.breaker
        self._read_limiter = read_limiter
        self._write_limiter = write_limiter
        self.last_call_at: float | None = None  # wall-clock time of the last call sent (persisted by the gateway)
        # Why the last logical call could not reach the sheet (None once a call succeeds again), for health.
        self.unreachable: str | None = None

    def drain_limiters(self) -> None:
        """Start both quota limiters empty (a restart within a quota window of the last process's calls)."""
        for limiter in (self._read_limiter, self._write_limiter):
            if limiter is not None:
                limiter.drain()

    async def read_ready(self) -> None:
        """Return once a read may go out without waiting for the quota limiter."""
        if self._read_limiter is not None:
            await self._read_limiter.wait_ready()

    @property
    def breaker_state(self) -> str:
        """'closed', 'open' or 'half-open'."""
        return self._guard.breaker_state

    async def open(self) -> None:
        """Open the wrapped backend."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the wrapped backend."""
        await self.inner.close()

    async def sheet_titles(self) -> list[str]:
        """See SheetsBackend."""
        return await self._call("metadata", self.inner.sheet_titles, write=False)

    async def add_sheet(self, title: str, headers: Sequence[str]) -> None:
        """See SheetsBackend."""
        await self._call("add_sheet", lambda: self.inner.add_sheet(title, headers), write=True)

    async def batch_get(self, ranges: Sequence[str]) -> list[Rows]:
        """See SheetsBackend."""
        return await self._call("batch_get", lambda: self.inner.batch_get(ranges), write=False)

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None:
        """See SheetsBackend."""
        await self._call("batch_update", lambda: self.inner.batch_update(data), write=True)

    async def append(self, sheet: str, rows: Rows) -> int:
        """See SheetsBackend."""
        return await self._call(
            "append", lambda: self.inner.append(sheet, rows), write=True, retryable=_is_retryable_append
        )

    async def format_sheet(self, sheet: str, headers: Sequence[str], dropdowns: Mapping[str, Sequence[str]]) -> None:
        """See SheetsBackend."""
        await self._call("format", lambda: self.inner.format_sheet(sheet, headers, dropdowns), write=True)

    async def delete_rows(self, sheet: str, rows: Sequence[int]) -> None:
        """See SheetsBackend (not retried: a lost answer may hide a deletion that happened)."""
        await self._call(
            "delete_rows", lambda: self.inner.delete_rows(sheet, rows), write=True, retryable=_is_retryable_append
        )

    # -- the one code path every call takes ----------------------------------------------------

    async def _call(
        self,
        kind: str,
        fn: Callable[[], Awaitable[T]],
        *,
        write: bool,
        retryable: Callable[[BaseException], bool] = _is_retryable,
    ) -> T:
        limiter = self._write_limiter if write else self._read_limiter

        async def attempt() -> T:
            if limiter is not None:
                await limiter.acquire()
            return await self._attempt(kind, fn, limiter)

        try:
            result = await self._guard.retrying(
                attempt,
                retryable=retryable,
                stop=stop_after_attempt(self.retry.max_attempts) | stop_after_delay(self.retry.max_delay),
                before_sleep=self._before_sleep,
            )
        except SheetUnavailable as exc:
            self.metrics.record_failure()
            # A structural refusal or a 429 is an answer: the sheet is reachable.
            reachable = isinstance(exc, StructureFault | QuotaExceeded)
            self.unreachable = None if reachable else f"{type(exc).__name__}: {exc}"
            raise
        except BadRequest:
            self.unreachable = None  # an answer, even a refusal, means the sheet is reachable
            raise
        self.unreachable = None
        return result

    async def _attempt(self, kind: str, fn: Callable[[], Awaitable[T]], limiter: QuotaLimiter | None) -> T:
        self.metrics.record_call(kind)
        self.last_call_at = time.time()
        try:
            return await self._guard.through_breaker(
                fn, when_open=lambda: BreakerOpen(f"sheet breaker is open ({kind} refused)")
            )
        except QuotaExceeded as exc:
            self.metrics.record_quota_error()
            if limiter is not None and exc.retry_after:
                limiter.penalize(exc.retry_after)
            raise

    def _before_sleep(self, state: RetryCallState) -> None:
        self.metrics.record_retry()
        exc = state.outcome.exception() if state.outcome else None
        log.warning("sheet call failed (%s), retry %d", type(exc).__name__, state.attempt_number)
