"""The health monitor: degraded conditions, one staff note per incident and per recovery, crash detection."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.health import RUN_MARKER_PREFIX, HealthMonitor, HealthThresholds
from bot.services.queue_poller import PollStats
from gateway import AsyncSheetsGateway, GatewayError
from gateway.ops import upsert
from tests.chat_support import FakeMessenger, chat_gateway_config, start_flaky_gateway
from tests.conftest import local_config, started_gateway

# A process that has exited: its pid names no live process.
DEAD_PID = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class AIState:
    """What the monitor reads of FallbackAI."""

    def __init__(self) -> None:
        self.failures_in_row = 0
        self.last_error = ""


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[AsyncSheetsGateway]:
    async with started_gateway(local_config(tmp_path)) as gateway:
        yield gateway


def _monitor(gw: AsyncSheetsGateway, **kw: object) -> tuple[HealthMonitor, FakeMessenger, Clock]:
    messenger, clock = FakeMessenger(), Clock()
    thresholds = HealthThresholds(recover_after=30.0, structure_every=0.0, structure_every_degraded=0.0)
    monitor = HealthMonitor(gw, messenger, thresholds=thresholds, clock=clock, phase="running", **kw)  # type: ignore[arg-type]
    return monitor, messenger, clock


async def test_healthy_body_names_no_problem_and_carries_the_figures(gw: AsyncSheetsGateway) -> None:
    """All well: status ok, no problems, breaker closed, empty outbox, no dead letters."""
    monitor, messenger, _ = _monitor(gw)
    await monitor.check_once()
    body = await monitor.body()
    assert body["status"] == "ok" and body["problems"] == []
    assert (body["sheet_breaker"], body["outbox_depth"], body["outbox_oldest_seconds"], body["dead_letters"]) == (
        "closed",
        0,
        None,
        0,
    )
    assert messenger.staff == []


@pytest.mark.parametrize("phase", ["starting", "stopping"])
async def test_starting_and_stopping_are_neither_alive_nor_ready(gw: AsyncSheetsGateway, phase: str) -> None:
    """While starting or stopping the body says so (both /healthz and /readyz answer 503, as deploy.sh expects)."""
    monitor, _, _ = _monitor(gw)
    monitor.phase = phase
    body = await monitor.body()
    assert body["status"] == phase and not HealthMonitor.alive(body) and not HealthMonitor.ready(body)


async def test_a_worker_idle_for_five_minutes_is_one_note_then_one_recovery(gw: AsyncSheetsGateway) -> None:
    """A NEW row untaken for more than 5 minutes is one staff note however many checks see it, and one recovery
    once it has been taken for `recover_after`; /readyz stays ready (the bot serves)."""
    stats: list[PollStats | None] = [PollStats(oldest_new_seconds=200.0)]
    monitor, messenger, clock = _monitor(gw, queue_stats=lambda: stats[0])
    await monitor.check_once()
    assert messenger.staff == []
    stats[0] = PollStats(oldest_new_seconds=301.0)
    for _ in range(5):
        await monitor.check_once()
        clock.now += 10
    assert len(messenger.staff) == 1 and "marketingbot worker" in messenger.staff[0]
    assert HealthMonitor.ready(await monitor.body())
    stats[0] = PollStats(oldest_new_seconds=None)
    await monitor.check_once()
    stats[0] = PollStats(oldest_new_seconds=400.0)  # flaps back within recover_after: still the same incident
    await monitor.check_once()
    stats[0] = PollStats(oldest_new_seconds=None)
    await monitor.check_once()
    clock.now += 31
    await monitor.check_once()
    await monitor.check_once()
    assert len(messenger.staff) == 2 and messenger.staff[1].startswith("✅")


async def test_a_failing_ai_provider_is_reported_once(gw: AsyncSheetsGateway) -> None:
    """Three failed answers in a row are one note naming the provider's error; a success later is one recovery."""
    ai = AIState()
    monitor, messenger, clock = _monitor(gw, ai=ai, ai_name="gemini")
    ai.failures_in_row, ai.last_error = 3, "AIUnavailable: 503"
    await monitor.check_once()
    ai.failures_in_row = 7
    await monitor.check_once()
    assert len(messenger.staff) == 1 and "gemini" in messenger.staff[0] and "503" in messenger.staff[0]
    assert (await monitor.body())["ai_failing"] is True
    ai.failures_in_row = 0
    await monitor.check_once()
    clock.now += 31
    await monitor.check_once()
    assert len(messenger.staff) == 2


async def test_an_outbox_entry_older_than_five_minutes_degrades_and_alerts_once(gw: AsyncSheetsGateway) -> None:
    """The oldest outbox entry past 5 minutes makes /readyz 503 naming it, and one staff note."""
    await gw.state.outbox_put([upsert("Auth", "Код партнера", "P-1", {"ФИО": "x"})], maybe_applied=False)
    await gw.state.file.write("UPDATE outbox SET created = created - 400")
    monitor, messenger, _ = _monitor(gw)
    await monitor.check_once()
    await monitor.check_once()
    body = await monitor.body()
    assert body["status"] == "degraded" and any("ждут таблицу" in p for p in body["problems"])
    assert body["outbox_oldest_seconds"] >= 400
    assert len(messenger.staff) == 1 and "marketingbot outbox list" in messenger.staff[0]


async def test_a_missing_sheet_found_by_the_probe_is_named_with_its_fix(gw: AsyncSheetsGateway) -> None:
    """A sheet deleted with no write pending is still found (the structure probe): /readyz names it and the fix."""
    db = gw.backend.inner.db  # type: ignore[attr-defined]
    await db.execute("DELETE FROM sheets WHERE title = 'Очередь'")
    monitor, messenger, _ = _monitor(gw)
    await monitor.check_once()
    body = await monitor.body()
    assert body["status"] == "degraded"
    assert any("Очередь" in p and "верните лист «Очередь»" in p for p in body["problems"])
    assert len(messenger.staff) == 1 and "Очередь" in messenger.staff[0]


async def test_a_marker_left_by_a_dead_process_is_one_crash_note(gw: AsyncSheetsGateway) -> None:
    """A run marker whose process is gone means the last run crashed: one note; a clean stop leaves none."""
    await gw.state.meta_set(f"{RUN_MARKER_PREFIX}{DEAD_PID}", "1")
    monitor, messenger, _ = _monitor(gw)
    await monitor.start()
    assert len(messenger.staff) == 1 and "аварийной" in messenger.staff[0]
    assert await gw.state.meta_keys(RUN_MARKER_PREFIX) == [f"{RUN_MARKER_PREFIX}{os.getpid()}"]
    await monitor.stop()
    again, messenger2, _ = _monitor(gw)
    await again.start()
    assert messenger2.staff == []


async def test_a_marker_of_a_live_process_is_not_a_crash(gw: AsyncSheetsGateway) -> None:
    """Another live process (the other deploy slot) holding a marker is no crash."""
    await gw.state.meta_set(f"{RUN_MARKER_PREFIX}{os.getppid()}", "1")
    monitor, messenger, _ = _monitor(gw)
    await monitor.start()
    assert messenger.staff == []


async def test_an_unreachable_sheet_degrades_at_once_and_alerts_after_two_minutes(tmp_path: Path) -> None:
    """A failed sheet call makes /readyz 503 naming the outage at once; staff hear of it after 2 minutes, once, and
    of the recovery once after the sheet answers again."""
    gw, flaky = await start_flaky_gateway(chat_gateway_config(tmp_path))
    try:
        monitor, messenger, clock = _monitor(gw)
        monitor.thresholds = HealthThresholds(recover_after=30.0, structure_every=3600.0)
        await monitor.check_once()
        flaky.down = True
        with contextlib.suppress(GatewayError):
            await gw.read_ranges(["'Auth'!1:1"])
        await monitor.check_once()
        body = await monitor.body()
        assert body["status"] == "degraded" and any("Google-таблица недоступна" in p for p in body["problems"])
        assert messenger.staff == []
        for _ in range(3):
            clock.now += 61
            await monitor.check_once()
        assert len(messenger.staff) == 1 and "больше 2 минут" in messenger.staff[0]
        flaky.down = False
        await gw.read_ranges(["'Auth'!1:1"])
        await monitor.check_once()
        assert (await monitor.body())["status"] == "ok"
        clock.now += 31
        await monitor.check_once()
        assert len(messenger.staff) == 2 and messenger.staff[1].startswith("✅")
    finally:
        flaky.down = False
        await gw.close()
