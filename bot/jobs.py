"""Periodic background jobs (queue poll, operator replies, promotions, the in-process worker).

They run as plain asyncio tasks rather than PTB's JobQueue because they must also run when there is
no Telegram bot at all (`marketingbot local` without a token serves the Mini App alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Periodic:
    """Calls `fn` every `interval` seconds (first after `first`); an error is logged, never fatal."""

    name: str
    interval: float
    fn: Callable[[], Awaitable[object]]
    first: float = 1.0
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    runs: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)

    def start(self) -> None:
        """Begin the loop."""
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name=f"job:{self.name}")

    async def stop(self, grace: float = 10.0) -> None:
        """Let the current run finish (up to `grace` seconds), then end the loop."""
        self._stop.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        delay = self.first
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return
            delay = self.interval
            try:
                await self.fn()
                self.runs += 1
            except Exception:
                self.failures += 1
                log.exception("job %s failed", self.name)
