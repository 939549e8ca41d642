"""Concurrent across chats, in order within a chat: the update processor the composition root should use.

PTB's default processes every update one after another, so one partner waiting 2 s for the model makes
everybody wait. `concurrent_updates(True)` fixes that but lets two messages of the same partner race (the
second could be answered before the first). This processor keeps each chat's updates in arrival order and
runs different chats concurrently:

    ApplicationBuilder()....concurrent_updates(PerChatUpdateProcessor(256)).build()
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

from bot.services.locks import KeyedLock


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Processes up to `max_concurrent_updates` updates at once, but one at a time per chat."""

    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self._locks = KeyedLock()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Run the update's handlers after the earlier updates of the same chat."""
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        # Tasks start in arrival order and reach this lock without yielding first, so the lock's FIFO
        # queue is the arrival order.
        async with self._locks(chat.id):
            await coroutine

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""
