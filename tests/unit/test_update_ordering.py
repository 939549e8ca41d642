"""PerChatUpdateProcessor: different chats run concurrently, one chat's updates keep their arrival order."""

from __future__ import annotations

import asyncio
import datetime as dtm

from telegram import Chat, Message, Update

from bot.telegram.ordering import PerChatUpdateProcessor


def _update(update_id: int, chat_id: int) -> Update:
    chat = Chat(id=chat_id, type=Chat.PRIVATE)
    message = Message(message_id=update_id, date=dtm.datetime.now(dtm.UTC), chat=chat, text=f"m{update_id}")
    return Update(update_id=update_id, message=message)


async def test_same_chat_in_order_other_chats_concurrently() -> None:
    """A slow first message of chat 1 delays chat 1's second message, but not chat 2's."""
    done: list[str] = []

    async def handle(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        done.append(name)

    async with PerChatUpdateProcessor(8) as processor:
        await asyncio.gather(
            processor.process_update(_update(1, 1), handle("chat1-first", 0.05)),
            processor.process_update(_update(2, 1), handle("chat1-second", 0.0)),
            processor.process_update(_update(3, 2), handle("chat2", 0.0)),
        )
    assert done == ["chat2", "chat1-first", "chat1-second"]


async def test_updates_without_a_chat_are_not_serialized() -> None:
    """Updates with no chat (e.g. a poll answer) run straight away."""
    done: list[str] = []

    async def handle(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        done.append(name)

    async with PerChatUpdateProcessor(8) as processor:
        await asyncio.gather(
            processor.process_update(Update(update_id=1), handle("slow", 0.05)),
            processor.process_update(Update(update_id=2), handle("fast", 0.0)),
        )
    assert done == ["fast", "slow"]
