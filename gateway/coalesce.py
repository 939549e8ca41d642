"""Coalescing: concurrent requests issued close together share one backend call.

At most one flush runs at a time. Requests that arrive while a flush is in flight wait for the
next one, so nobody ever receives data fetched before they asked: batching, never caching.

A request may be patient (background polls): it then waits up to its patience for an urgent request
(a partner's turn) to ride along with, so under load the background costs no call of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# A flush returns one result (or the exception for that item) per item, in order.
FlushFn = Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]]


class Batcher(Generic[Item, Result]):
    """Collects items for `window` seconds (or while a flush is in flight) and flushes them together."""

    def __init__(
        self,
        flush: FlushFn[Item, Result],
        *,
        window: float = 0.005,
        max_items: int = 200,
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._flush = flush
        # Awaited before a batch is closed (e.g. until the quota allows the call): what arrives meanwhile
        # joins this batch instead of waiting for the next one.
        self._gate = gate
        self._window = window
        self._max_items = max_items
        # (item, its future, the loop time a patient item stops waiting for company; None: urgent)
        self._pending: list[tuple[Item, asyncio.Future[Result], float | None]] = []
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()

    async def submit(self, item: Item, *, patience: float = 0.0) -> Result:
        """Queue one item and wait for its own result. With `patience` > 0 the item waits up to that many
        seconds for an urgent one to share the call with, before it goes on its own."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, fut, loop.time() + patience if patience > 0 else None))
        if patience <= 0:
            self._urgent.set()
        if len(self._pending) >= self._max_items:
            self._wake.set()
        if self._runner is None or self._runner.done():
            # A fresh context: the runner serves every caller, so it must not carry the first one's (e.g. a
            # background job's) context variables into the calls it makes for the others.
            self._runner = asyncio.create_task(self._run(), context=contextvars.Context())
        return await fut

    async def _while_only_patient(self) -> None:
        """While every item waiting is patient, wait for an urgent one (or the earliest patience to run out)."""
        loop = asyncio.get_running_loop()
        while True:
            deadlines = [d for _, fut, d in self._pending if not fut.done()]
            if not deadlines or any(d is None for d in deadlines) or len(self._pending) >= self._max_items:
                return
            delay = min(d for d in deadlines if d is not None) - loop.time()
            if delay <= 0:
                return
            self._urgent.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), delay)

    async def _run(self) -> None:
        while self._pending:
            await self._while_only_patient()
            if self._window > 0 and len(self._pending) < self._max_items:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._window)
            if self._gate is not None:
                await self._gate()
            batch, self._pending = self._pending[: self._max_items], self._pending[self._max_items :]
            live = [(item, fut) for item, fut, _ in batch if not fut.done()]
            if not live:
                continue
            try:
                results = await self._flush([item for item, _ in live])
            except BaseException as exc:  # one failure fails the whole batch, never silently
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, fut), res in zip(live, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    async def drain(self) -> None:
        """Wait until everything submitted so far has been flushed."""
        while self._runner is not None and not self._runner.done():
            await asyncio.shield(self._runner)
