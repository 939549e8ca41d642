"""Client-side limiter sized to the Sheets quota (per user: 60 reads and 60 writes per minute).

A sliding log rather than a refilling bucket: it guarantees that no 60-second window ever holds
more than `per_minute` calls, whatever window Google measures, so a 429 is rare by design.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class SlidingWindowLimiter:
    """At most `limit` acquisitions in any `window` seconds; waiters are served in order."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for a slot; returns how long the caller waited."""
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock()
                while self._stamps and self._stamps[0] <= now - self.window:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return waited
                delay = self._stamps[0] + self.window - now
                waited += delay
                await self._sleep(delay)

    def penalize(self, seconds: float) -> None:
        """After a 429, treat the window as full for `seconds` so others back off too."""
        until = self._clock() + seconds - self.window
        self._stamps.extend([until] * max(0, self.limit - len(self._stamps)))
        self._stamps = deque(sorted(self._stamps))
