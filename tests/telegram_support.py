"""A real PTB Application run against the fake Bot API (tests/fakes/telegram_server.py) in long-polling mode."""

from __future__ import annotations

import datetime as dtm
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from telegram.ext import Application, ApplicationBuilder, BaseRateLimiter, BaseUpdateProcessor

if TYPE_CHECKING:
    from tests.fakes.telegram_server import FakeTelegramServer

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def fake_bot_app(
    tg: FakeTelegramServer,
    *,
    rate_limiter: BaseRateLimiter[Any] | None = None,
    concurrent_updates: BaseUpdateProcessor | None = None,
    updater: bool = True,
) -> AnyApplication:
    """A PTB Application pointed at the fake Bot API (its token, API and file URLs), as the e2e tests build one:
    optionally with a rate limiter and an update processor (bot/app.py uses both), or without an updater."""
    builder = ApplicationBuilder().token(tg.token).base_url(tg.api_base_url).base_file_url(tg.file_base_url)
    if rate_limiter is not None:
        builder = builder.rate_limiter(rate_limiter)
    if concurrent_updates is not None:
        builder = builder.concurrent_updates(concurrent_updates)
    if not updater:
        builder = builder.updater(None)
    app: AnyApplication = builder.build()
    return app


@asynccontextmanager
async def long_polling(app: AnyApplication) -> AsyncIterator[None]:
    """Initialize and start `app`, poll getUpdates for the block, then stop the updater and the app."""
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=dtm.timedelta(seconds=1))
        try:
            yield
        finally:
            await app.updater.stop()
            await app.stop()
