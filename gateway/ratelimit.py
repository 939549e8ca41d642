"""Client-side limiter sized to the Sheets quota (per user: 60 reads and 60 writes per minute).

A token bucket with a small burst, refilled at (limit − burst − margin) per minute, so that no 60-second
window — however Google measures it — ever holds more than `limit − margin` calls. A sliding log of 60
calls per 60 s would let a whole minute's quota go in one burst and then stall every caller for up to a
minute (bench/chat.py measured 51 s p95 under sustained load); smooth pacing lets coalescing pack what
arrives meanwhile into the next call instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

_EPSILON = 1e-6


class QuotaLimiter:
    """At most `limit - margin` acquisitions in any `window` seconds; bursts up to `burst`; FIFO waiters."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        burst: int = 15,
        margin: int = 2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.window = window
        self.burst = max(1, min(burst, limit // 2 or 1))
        sustained = max(1, limit - self.burst - max(0, margin))
        self._rate = sustained / window  # tokens per second
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._updated = clock()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def acquire(self) -> float:
        """Wait for a token; returns how long the caller waited."""
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock()
                self._refill(now)
                if now < self._blocked_until:
                    delay = self._blocked_until - now
                elif self._tokens >= 1.0 - _EPSILON:  # float refills may land a hair below 1
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return waited
                else:
                    delay = max((1.0 - self._tokens) / self._rate, _EPSILON)
                waited += delay
                await self._sleep(delay)

    def drain(self) -> None:
        """Start from an empty bucket: a previous process may have spent this window's quota just before.

        From empty, the calls of any window spanning the restart stay within `burst + rate × window`, the
        same bound one process keeps, however the dead process spent its last minute."""
        now = self._clock()
        self._tokens = 0.0
        self._updated = now

    async def wait_ready(self) -> None:
        """Wait until a token is available, without taking it (a batcher waits here, so everything that
        arrives meanwhile rides in the call that then takes the token)."""
        while True:
            now = self._clock()
            self._refill(now)
            if now < self._blocked_until:
                delay = self._blocked_until - now
            elif self._tokens >= 1.0 - _EPSILON and not self._lock.locked():
                return
            else:
                delay = max((1.0 - self._tokens) / self._rate, 0.01)
            await self._sleep(delay)

    def penalize(self, seconds: float) -> None:
        """After a 429 with Retry-After, hold every caller for `seconds` and restart from an empty bucket."""
        now = self._clock()
        self._refill(now)
        self._tokens = 0.0
        self._blocked_until = max(self._blocked_until, now + seconds)
