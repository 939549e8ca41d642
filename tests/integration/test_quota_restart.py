"""The quota limiter across a restart: calls of the last minute by a previous process are not forgotten."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway import AsyncSheetsGateway, GatewayMetrics, StateStore
from gateway.backends.local import LocalSheetsBackend
from gateway.gateway import LAST_CALL_KEY
from gateway.ratelimit import QuotaLimiter
from gateway.resilience import ResilientBackend
from gateway.schemas import AUTH


class Sleeps:
    """The limiter's clock: records its waits and moves time instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _gateway(tmp: Path, sleeps: Sleeps) -> AsyncSheetsGateway:
    metrics = GatewayMetrics()
    limiter = QuotaLimiter(60, clock=sleeps.clock, sleep=sleeps)
    backend = ResilientBackend(LocalSheetsBackend(tmp / "sheets.db"), metrics=metrics, read_limiter=limiter)
    return AsyncSheetsGateway(backend, StateStore(tmp / "chat_memory.db"), metrics, heartbeat=0.05)


async def _reads(gw: AsyncSheetsGateway, n: int) -> None:
    for _ in range(n):
        await gw.read_ranges([f"'{AUTH.title}'!1:1"])


async def test_a_restart_right_after_calls_starts_with_an_empty_bucket(tmp_path: Path) -> None:
    """A process that made calls, then a new one within the minute: the new one's first call waits for a token
    instead of bursting (the dead process's calls still count at Google)."""
    first = Sleeps()
    gw = _gateway(tmp_path, first)
    await gw.start()
    await gw.ensure_sheets(fmt=False)
    await _reads(gw, 3)
    await gw.close()
    assert first.waits == []  # a fresh start with no history: the burst is available
    second = Sleeps()
    gw = _gateway(tmp_path, second)
    await gw.start()
    try:
        await _reads(gw, 1)
        assert len(second.waits) == 1 and second.waits[0] > 1.0  # ~1/rate: a token has to refill first
    finally:
        await gw.close()


async def test_a_restart_after_a_quiet_minute_starts_with_the_burst(tmp_path: Path) -> None:
    """When the last recorded call is older than the quota window, the new process may burst at once."""
    state = StateStore(tmp_path / "chat_memory.db")
    await state.open()
    await state.meta_set(LAST_CALL_KEY, repr(time.time() - 120))
    await state.close()
    sleeps = Sleeps()
    gw = _gateway(tmp_path, sleeps)
    await gw.start()
    try:
        await gw.ensure_sheets(fmt=False)
        await _reads(gw, 5)
        assert sleeps.waits == []
    finally:
        await gw.close()


async def test_the_last_call_is_recorded_while_running_not_only_on_close(tmp_path: Path) -> None:
    """The heartbeat persists the time of the last call, so a killed process leaves it behind too."""
    gw = _gateway(tmp_path, Sleeps())
    await gw.start()
    try:
        await gw.ensure_sheets(fmt=False)
        before = time.time()
        await _reads(gw, 1)
        for _ in range(100):
            saved = await gw.state.meta_get(LAST_CALL_KEY)
            if saved is not None and float(saved) >= before:
                break
            await asyncio.sleep(0.02)
        assert saved is not None and float(saved) >= before
    finally:
        await gw.close()
