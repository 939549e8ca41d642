"""A real PTB Application run against the fake Bot API (tests/fakes/telegram_server.py) in long-polling mode."""

from __future__ import annotations

import datetime as dtm
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from telegram.ext import Application


@asynccontextmanager
async def long_polling(app: Application[Any, Any, Any, Any, Any, Any]) -> AsyncIterator[None]:
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
