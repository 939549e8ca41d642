"""The durable inbox on the Telegram side: no update is acknowledged before it is journaled.

- Long polling: `InboxPoller` fetches updates itself (`getUpdates`) and moves the offset past an update —
  which is what tells Telegram it was received — only after the update is journaled in the local inbox.
- Webhook: `journal_update` journals the update before the route answers 200.
- `DurableUpdateProcessor` (chats concurrent, each chat in order) marks an update done once its handlers
  finished (the partner has the reply, the turn journal has the turn). On start, `resume_unfinished` queues the
  updates a crash (or a postponed authorization) left unfinished, before any new one; a resumed update whose
  turn was journaled gets its logged reply instead of asking the model again.

Duplicates are possible in one window only: Telegram accepted the reply but the process died before the
update was marked done; the resumed update then sends the logged reply a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from telegram import Update
from telegram.error import Conflict, InvalidToken, TelegramError

from bot.services.appeals import decode_reply
from bot.services.ports import DeliveryError, InlineButton, Messenger
from bot.services.turn_context import TurnContext, enter_turn, leave_turn, update_turn_id
from bot.telegram.ordering import PerChatUpdateProcessor
from gateway import InboxUpdate, TurnJournal, UpdateInbox

log = logging.getLogger(__name__)

POLL_TIMEOUT = 10  # seconds a getUpdates long poll waits for updates
POLL_RETRY_MAX = 30.0


def inbox_entry(update: Update) -> InboxUpdate:
    """How an update is journaled."""
    chat = update.effective_chat
    return InboxUpdate(update.update_id, chat.id if chat is not None else None, update.to_dict())


class DurableUpdateProcessor(PerChatUpdateProcessor):
    """PerChatUpdateProcessor that marks inbox updates done and answers resumed turns from the journal."""

    def __init__(self, max_concurrent_updates: int = 256) -> None:
        super().__init__(max_concurrent_updates)
        self.stopping = asyncio.Event()
        self._inbox: UpdateInbox | None = None
        self._turns: TurnJournal | None = None
        self._messenger: Messenger | None = None
        self._operator_button: InlineButton | None = None
        self._resumed: set[int] = set()

    def attach(
        self, inbox: UpdateInbox, turns: TurnJournal, messenger: Messenger, operator_button: InlineButton
    ) -> None:
        """Connect the journals (the composition root builds the processor before the gateway exists)."""
        self._inbox, self._turns, self._messenger = inbox, turns, messenger
        self._operator_button = operator_button

    def resume(self, update_ids: list[int]) -> None:
        """These updates were journaled by an earlier run: look their turn up before handling them again."""
        self._resumed.update(update_ids)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Handle the update in its chat's order; mark it done in the inbox afterwards."""
        if self._inbox is None or not isinstance(update, Update):
            await super().do_process_update(update, coroutine)
            return
        await super().do_process_update(update, self._durably(update, coroutine))

    async def _durably(self, update: Update, coroutine: Awaitable[Any]) -> None:
        assert self._inbox is not None and self._turns is not None
        turn = TurnContext(update_turn_id(update.update_id), self.stopping)
        token = enter_turn(turn)
        try:
            if update.update_id in self._resumed:
                self._resumed.discard(update.update_id)
                logged = await self._turns.reply_of(turn.turn_id)
                if logged is not None:
                    if isinstance(coroutine, Coroutine):
                        coroutine.close()  # the handlers must not run: the model was already asked
                    await self._send_logged(update, logged)
                    await self._inbox.done(update.update_id)
                    return
            await coroutine
        finally:
            leave_turn(token)
        if not turn.postponed:
            await self._inbox.done(update.update_id)

    async def _send_logged(self, update: Update, logged: str) -> None:
        reply = decode_reply(logged)
        chat = update.effective_chat
        if reply is None or not reply.text or chat is None or self._messenger is None:
            return
        log.info("update %s resumed: sending the reply its journaled turn got", update.update_id)
        buttons = [self._operator_button] if reply.offer_operator and self._operator_button else None
        try:
            await self._messenger.send_text(chat.id, reply.text, buttons=buttons)
        except DeliveryError as exc:
            log.warning("logged reply to %s not delivered: %s", chat.id, exc)


async def journal_update(app: Any, inbox: UpdateInbox, update: Update) -> None:
    """Journal one update and queue it unless an earlier delivery of it was journaled already."""
    if await inbox.put([inbox_entry(update)]):
        await app.update_queue.put(update)


async def resume_unfinished(app: Any, inbox: UpdateInbox, processor: DurableUpdateProcessor) -> int:
    """Queue the updates an earlier run left unfinished (in arrival order); returns how many."""
    unfinished = await inbox.unfinished()
    processor.resume([u.update_id for u in unfinished])
    for entry in unfinished:
        update = Update.de_json(entry.payload, app.bot)
        if update is not None:
            await app.update_queue.put(update)
    if unfinished:
        log.warning("resuming %d updates left unfinished by the previous run", len(unfinished))
    return len(unfinished)


class InboxPoller:
    """Long polling that journals every update before the next offset acknowledges it."""

    def __init__(self, app: Any, inbox: UpdateInbox, *, timeout: int = POLL_TIMEOUT) -> None:
        self._app = app
        self._inbox = inbox
        self._timeout = timeout
        self._offset: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the polling loop runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start polling after the last journaled update."""
        last = await self._inbox.last_update_id()
        self._offset = last + 1 if last is not None else None
        self._task = asyncio.create_task(self._loop(), name="telegram-inbox-poller")

    async def stop(self) -> None:
        """Stop polling (an update fetched but not yet journaled is fetched again by the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        delay = 1.0
        while True:
            try:
                updates = await self._app.bot.get_updates(
                    offset=self._offset, timeout=self._timeout, allowed_updates=Update.ALL_TYPES
                )
            except InvalidToken:
                log.critical("Telegram refused the bot token: polling stopped")
                return
            except (Conflict, TelegramError) as exc:
                log.warning("getUpdates failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_RETRY_MAX)
                continue
            delay = 1.0
            if not updates:
                continue
            # Journaled first; only then may the next getUpdates (offset past them) acknowledge them.
            try:
                fresh = {u.update_id for u in await self._inbox.put([inbox_entry(u) for u in updates])}
            except Exception:  # the local disk: keep the offset, so Telegram keeps the updates for the retry
                log.exception("could not journal %d updates; fetching them again in %.0f s", len(updates), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_RETRY_MAX)
                continue
            self._offset = updates[-1].update_id + 1
            for update in updates:
                if update.update_id in fresh:
                    await self._app.update_queue.put(update)
