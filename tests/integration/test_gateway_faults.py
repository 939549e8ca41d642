"""Faults on the Google backend (real gspread against the fake Sheets server): quota storms, 5xx bursts,
outages, lost answers and a killed process. Every acknowledged write ends up in the sheet exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import AsyncSheetsGateway, GatewayMetrics, SheetUnavailable, StateStore
from gateway.backends.google import GoogleSheetsBackend
from gateway.resilience import ResilientBackend, RetryPolicy
from gateway.schemas import APPEALS, AppealCol
from tests.fakes.sheets_server import FakeSheetsServer

ROOT = Path(__file__).resolve().parents[2]


class Sleeps:
    """Records backoff sleeps and yields without waiting (Retry-After honoured in value, not in wall time)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, s: float) -> None:
        self.seconds.append(s)
        await asyncio.sleep(0)


def _gateway(
    server: FakeSheetsServer,
    state: Path,
    *,
    timeout: float = 5.0,
    sleeps: Sleeps | None = None,
    fail_max: int = 5,
    reset: float = 0.2,
    attempts: int = 5,
) -> AsyncSheetsGateway:
    metrics = GatewayMetrics()
    backend = ResilientBackend(
        GoogleSheetsBackend(server.spreadsheet_id, None, base_url=server.url, timeout=timeout),
        metrics=metrics,
        retry=RetryPolicy(max_attempts=attempts, max_delay=600, initial_backoff=0.01, max_backoff=0.05),
        breaker_fail_max=fail_max,
        breaker_reset_timeout=reset,
        sleep=sleeps or Sleeps(),
    )
    return AsyncSheetsGateway(backend, StateStore(state), metrics, replay_interval=0.05)


@pytest.fixture
def server() -> AsyncIterator[FakeSheetsServer]:
    with FakeSheetsServer(sheets=()) as srv:
        yield srv


def _logs(server: FakeSheetsServer) -> dict[str, str]:
    rows = server.values(APPEALS.title)
    return {r[3]: (r[4] if len(r) > 4 else "") for r in rows[1:] if len(r) > 3}


async def _started(gw: AsyncSheetsGateway) -> AsyncSheetsGateway:
    await gw.start()
    await gw.ensure_sheets([APPEALS], fmt=False)
    return gw


async def test_429_storm_honours_retry_after_and_loses_nothing(server: FakeSheetsServer, tmp_path: Path) -> None:
    """A storm of 429s with Retry-After: calls wait what Google asks, and all 20 users' writes land once."""
    sleeps = Sleeps()
    gw = await _started(_gateway(server, tmp_path / "s.db", sleeps=sleeps))
    try:
        server.fail_next(12, status=429, retry_after=3)
        await asyncio.gather(
            *(
                gw.table(APPEALS).write([gw.table(APPEALS).op_append_text(str(i), AppealCol.LOG, f"m{i}")])
                for i in range(20)
            )
        )
        assert await gw.writer.wait_empty(10)
        assert 3.0 in sleeps.seconds
        assert gw.metrics.quota_errors >= 1
        assert gw.breaker_state == "closed"  # a 429 proves Google is up
        logs = _logs(server)
        assert all(logs[str(i)] == f"m{i}" for i in range(20))
    finally:
        await gw.close()


async def test_5xx_burst_is_retried_and_every_write_lands_once(server: FakeSheetsServer, tmp_path: Path) -> None:
    """A burst of 503s: retries with backoff; 30 concurrent writes all land exactly once."""
    gw = await _started(_gateway(server, tmp_path / "s.db"))
    try:
        server.fail_next(4, status=503)
        await asyncio.gather(
            *(
                gw.table(APPEALS).write([gw.table(APPEALS).op_append_text(str(i), AppealCol.LOG, f"x{i}")])
                for i in range(30)
            )
        )
        assert await gw.writer.wait_empty(10)
        logs = _logs(server)
        assert sorted(logs) == sorted(str(i) for i in range(30))
        assert all(logs[str(i)] == f"x{i}" for i in range(30))
        assert gw.metrics.retries >= 1
    finally:
        await gw.close()


async def test_outage_opens_breaker_then_half_opens_and_replays(server: FakeSheetsServer, tmp_path: Path) -> None:
    """During an outage writes are acknowledged into the outbox and the breaker opens; when the sheet is back
    the breaker half-opens, closes, and the outbox replays everything once, in order."""
    gw = await _started(_gateway(server, tmp_path / "s.db", fail_max=3, reset=0.3, attempts=2))
    appeals = gw.table(APPEALS)
    try:
        await appeals.write([appeals.op_append_text("1", AppealCol.LOG, "before")])
        server.set_outage(True)
        for i in range(6):
            await appeals.write([appeals.op_append_text("1", AppealCol.LOG, f"during {i}")])
        await appeals.write([appeals.op_append_text("2", AppealCol.LOG, "new user during outage")])
        assert gw.outbox_depth == 7
        with pytest.raises(SheetUnavailable):
            await appeals.get("1")
        assert gw.breaker_state == "open"
        server.set_outage(False)
        assert await gw.writer.wait_empty(10)
        assert gw.breaker_state == "closed"
        logs = _logs(server)
        assert logs["1"] == "before\n" + "\n".join(f"during {i}" for i in range(6))
        assert logs["2"] == "new user during outage"
    finally:
        await gw.close()


async def test_timeout_after_write_applied_is_not_doubled(server: FakeSheetsServer, tmp_path: Path) -> None:
    """The sheet applies a write but the answer never comes (client timeout): the replay does not apply it twice."""
    gw = await _started(_gateway(server, tmp_path / "s.db", timeout=0.5, attempts=1))
    try:
        await gw.table(APPEALS).write(
            [gw.table(APPEALS).op_append_text("9", AppealCol.LOG, "[2026-11-24 10:00] Пользователь: раз")]
        )
        server.hang_next(1, seconds=2.0, applied=True)
        await gw.table(APPEALS).write(
            [gw.table(APPEALS).op_append_text("9", AppealCol.LOG, "[2026-11-24 10:01] Пользователь: два")]
        )
        assert await gw.writer.wait_empty(10)
        assert _logs(server)["9"] == "[2026-11-24 10:00] Пользователь: раз\n[2026-11-24 10:01] Пользователь: два"
    finally:
        await gw.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway.backends.google import GoogleSheetsBackend
    from gateway import AsyncSheetsGateway
    from gateway import GatewayMetrics
    from gateway.resilience import ResilientBackend, RetryPolicy
    from gateway.schemas import APPEALS, AppealCol
    from gateway import StateStore

    async def main() -> None:
        url, sid, state = sys.argv[1:4]
        m = GatewayMetrics()
        b = ResilientBackend(GoogleSheetsBackend(sid, None, base_url=url, timeout=2), metrics=m,
                             retry=RetryPolicy(max_attempts=1), breaker_fail_max=2)
        gw = AsyncSheetsGateway(b, StateStore(Path(state)), m, replay_interval=3600)
        await gw.start()
        for i in range(3):
            t = gw.table(APPEALS)
            await t.write([t.op_append_text("42", AppealCol.LOG, f"entry {i}")])
        print("ACKED", gw.outbox_depth, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_killed_process_replays_outbox_once_after_restart(server: FakeSheetsServer, tmp_path: Path) -> None:
    """A process killed (SIGKILL) with acknowledged writes in its outbox: the next process replays them once."""
    state = tmp_path / "chat_memory.db"
    gw = await _started(_gateway(server, state))
    await gw.close()
    server.set_outage(True)
    child = subprocess.Popen(  # noqa: ASYNC220 - a real child process is the point of this test
        [sys.executable, "-c", _CHILD, server.url, server.spreadsheet_id, str(state)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert line.strip() == "ACKED 3"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    server.set_outage(False)
    gw2 = await _started(_gateway(server, state))
    try:
        assert await gw2.writer.wait_empty(10)
        assert _logs(server)["42"] == "entry 0\nentry 1\nentry 2"
    finally:
        await gw2.close()
