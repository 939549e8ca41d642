"""SIGTERM while a broadcast runs: the composition root's shutdown, with real python-telegram-bot against the
fake Bot API and the real gateway on the local store."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest
from telegram.ext import Application

from bot.ai.fallback import FallbackAI
from bot.ai.offline import OfflineResponder
from bot.app import Runtime
from bot.jobs import Periodic
from bot.lifecycle import _shutdown
from bot.services.live import EventHub
from bot.services.promotions import PromotionService
from bot.telegram.messenger import TelegramMessenger
from gateway import AsyncSheetsGateway
from tests.fakes.telegram_server import FakeTelegramServer
from tests.promo_support import add_promo, promo_row, seed_partners
from tests.telegram_support import fake_bot_app

PARTNERS = 120


def _app(tg: FakeTelegramServer) -> Application[Any, Any, Any, Any, Any, Any]:
    return fake_bot_app(tg, updater=False)


class _Appeals:
    """The appeals service's shutdown hook (posts gathered staff notices): nothing gathered here."""

    async def aclose(self) -> None:
        """Nothing to post."""


class _Gateway:
    """Stands in for the runtime's gateway at shutdown: the test keeps using the real one afterwards."""

    async def close(self) -> None:
        return None


async def test_sigterm_mid_broadcast_neither_fails_nor_doubles_a_send(
    telegram_server: FakeTelegramServer, local_gateway: AsyncSheetsGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Shutdown stops the broadcast while the bot can still send: no send fails, and after the restart every
    partner has the promotion exactly once."""
    tg, gw = telegram_server, local_gateway
    await seed_partners(gw, PARTNERS)
    await add_promo(gw)
    tg.set_latency(0.02)
    app = _app(tg)
    await app.initialize()
    await app.start()
    promotions = PromotionService(gw, TelegramMessenger(app.bot), rate_per_second=200.0, max_in_flight=4)
    job = Periodic("promotions", 30.0, promotions.poll_once, first=0.0)  # as the composition root runs it
    job.start()
    await tg.wait_for_sent(lambda s: s.seq >= 20, timeout=20.0, method=None)
    runtime = SimpleNamespace(
        phase="running",
        monitor=None,
        telegram=app,
        inbox_poller=None,
        promotions=promotions,
        jobs=[job],
        ai=FallbackAI(OfflineResponder()),
        gateway=_Gateway(),
        appeals=_Appeals(),
        events=EventHub(),
        http_jobs=[],
    )
    server = SimpleNamespace(should_exit=False)
    serve: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    serve.set_result(None)
    with caplog.at_level(logging.WARNING):
        await _shutdown(cast(Runtime, runtime), cast(Any, server), cast(Any, serve))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert (await promo_row(gw))["Статус"] == "SENDING"  # interrupted, to be resumed

    tg.set_latency(0.0)
    restarted = _app(tg)
    async with restarted:
        (report,) = await PromotionService(gw, TelegramMessenger(restarted.bot), rate_per_second=500.0).poll_once()
    assert report.finished and report.sent == PARTNERS
    counts: dict[int, int] = {}
    for s in tg.sent:
        if s.method == "sendMessage":
            counts[int(s.chat_id or 0)] = counts.get(int(s.chat_id or 0), 0) + 1
    assert len(counts) == PARTNERS and set(counts.values()) == {1}
