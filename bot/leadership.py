"""Leader or standby: when this process takes Telegram updates and runs the periodic jobs.

Every process serves HTTP from the start (a standby is ready for Mini App traffic); it keeps trying the
leader lease and, once it holds it, takes updates and starts the jobs. At shutdown the leader gives them
up, finishes what is in flight and only then lets the lease go, so the next leader starts where it ended:
no update handled twice, none skipped, each chat's order kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from bot.lease import DEFAULT_RETRY_SECONDS, LeaderLease

log = logging.getLogger(__name__)

TAKE_RETRY_SECONDS = 1.0  # after taking the leadership failed (e.g. Telegram unreachable)

Role = Literal["standby", "taking-over", "leader", "stepping-down", "stopped"]


class Leadership:
    """Runs `take` when the lease is won and `give` before it is released."""

    def __init__(
        self,
        lease: LeaderLease,
        take: Callable[[], Awaitable[None]],
        give: Callable[[], Awaitable[None]],
        *,
        retry: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.lease = lease
        self._take = take
        self._give = give
        self._retry = retry
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.role: Role = "standby"
        self._drain_started: float | None = None

    async def start(self) -> None:
        """Leads at once when the lease is free (returning once updates are taken), else waits in the background."""
        holder = self.lease.read_holder()
        if self.lease.try_acquire():
            await self._lead()
            return
        log.info("standby: serving HTTP; %s holds the leader lease %s", _who(holder), self.lease.path)
        self._task = asyncio.create_task(self._wait_and_lead(), name="leadership")

    async def _wait_and_lead(self) -> None:
        while await self.lease.acquire(self._stop, self._retry):
            try:
                await self._lead()
                return
            except Exception:  # logged by _lead; the lease is free again: the other process may do better
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), TAKE_RETRY_SECONDS)

    async def _lead(self) -> None:
        waited_from = time.monotonic()
        log.info("leader lease %s acquired: taking Telegram updates and starting the periodic jobs", self.lease.path)
        self.role = "taking-over"
        try:
            await self._take()
        except Exception:
            # A leader that cannot take updates must not keep the lease: the other slot may manage.
            log.exception("taking the leadership failed; giving the lease up")
            await self._step_down()
            self.release()
            self.role = "standby"
            raise
        self.role = "leader"
        log.info("leader: ready (took over in %.0f ms)", (time.monotonic() - waited_from) * 1000)

    async def stop(self) -> None:
        """Stops competing; a leader stops taking updates and drains, but keeps the lease until `release`."""
        self._stop.set()
        if self._task is not None and not self._task.done():
            # Still waiting for the lease, or in the middle of taking it: let `take` finish first, so
            # `give` undoes a complete take (never a half-started poller).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._step_down()

    async def _step_down(self) -> None:
        if not self.lease.held:
            return
        self.role = "stepping-down"
        started = time.monotonic()
        log.info("leader stepping down: no new Telegram updates, finishing in-flight turns and jobs")
        self._drain_started = started
        await self._give()
        took = (time.monotonic() - started) * 1000
        log.info("leader: updates and jobs stopped, in-flight turns done in %.0f ms", took)

    def release(self) -> None:
        """Lets the lease go (after the gateway is flushed): the standby takes it on its next try."""
        held = self.lease.held
        self.lease.release()
        self.role = "stopped"
        if held:
            took = time.monotonic() - (self._drain_started or time.monotonic())
            log.info("leader lease released %.0f ms after stepping down began", took * 1000)


def _who(holder: dict[str, object]) -> str:
    if not holder:
        return "another process"
    slot = f" (slot {holder['slot']})" if holder.get("slot") else ""
    return f"pid {holder.get('pid', '?')}{slot}"
