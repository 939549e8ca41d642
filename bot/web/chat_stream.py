"""`POST /api/chat` with `Accept: text/event-stream`: the answer as server-sent events while it is written.

Events: `delta` `{"text": "..."}` for each piece of the AI's answer, then `done` `{"reply", "status",
"escalated"}` with the final text (which replaces what the deltas built: after a broken model stream it carries
the fallback note). What fails before anything was streamed answers like the JSON route (the daily limit is
429, a sheet outage 503, JSON error bodies); a failure after the first delta ends the stream with `error`
`{"error": {"code", "message"}}`. The turn runs to the end even if the page goes away: it is logged either way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from bot.web.errors import MSG_FORBIDDEN, MSG_INTERNAL, ApiError
from bot.web.ports import ChatPort, ChatReplyView

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # a reverse proxy (nginx) must pass events on, not buffer the answer
}


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event (JSON data on one line)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def done_event(reply: ChatReplyView) -> bytes:
    """The closing event: the final reply as the JSON route would return it."""
    return sse("done", {"reply": reply.text, "status": reply.status, "escalated": reply.escalated})


class _Deltas:
    """The answer's pieces not yet sent to the page (a sink for the turn, drained by the event stream)."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self.arrived = asyncio.Event()

    def put(self, text: str) -> None:
        self._items.append(text)
        self.arrived.set()

    def take(self) -> list[str]:
        items, self._items = self._items, []
        self.arrived.clear()
        return items

    async def until_more_or(self, turn: asyncio.Task[ChatReplyView | None]) -> None:
        """Wait until a piece arrives or the turn ends."""
        waiter = asyncio.create_task(self.arrived.wait())
        try:
            await asyncio.wait({turn, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()


class ChatStreams:
    """Answers streaming chat requests; owned by the web app, it keeps the turns whose page went away."""

    def __init__(self, chat: ChatPort) -> None:
        self._chat = chat
        # Turns still running after their page went away: kept so they are not garbage-collected mid-turn.
        self._orphans: set[asyncio.Task[ChatReplyView | None]] = set()

    async def respond(
        self, telegram_id: int, text: str, authorize: Callable[[int], Awaitable[Any]]
    ) -> StreamingResponse:
        """Start the turn; once its first delta arrives (or it ends) answer with the event stream. Nothing
        streams before the sender is authorized: an unknown sender is 403 like on the JSON route."""
        deltas = _Deltas()
        turn = asyncio.create_task(self._answer(telegram_id, text, authorize, deltas.put))
        try:
            await deltas.until_more_or(turn)
        except asyncio.CancelledError:
            self._keep(turn)
            raise
        if turn.done() and not deltas.arrived.is_set():
            reply = turn.result()  # nothing streamed: a failure answers as on the JSON route
            if reply is None:
                raise ApiError(403, "forbidden", MSG_FORBIDDEN)
            if reply.kind == "limit":
                raise ApiError(429, "daily_limit", reply.text)
        return StreamingResponse(self._events(turn, deltas), media_type="text/event-stream", headers=SSE_HEADERS)

    async def _answer(
        self, telegram_id: int, text: str, authorize: Callable[[int], Awaitable[Any]], on_delta: Callable[[str], None]
    ) -> ChatReplyView | None:
        _, reply = await self._chat.handle_message(telegram_id, text, authorize, on_delta)
        return reply

    async def _events(self, turn: asyncio.Task[ChatReplyView | None], deltas: _Deltas) -> AsyncIterator[bytes]:
        try:
            while True:
                for piece in deltas.take():
                    yield sse("delta", {"text": piece})
                if turn.done():
                    break
                await deltas.until_more_or(turn)
            for piece in deltas.take():
                yield sse("delta", {"text": piece})
            try:
                reply = turn.result()
            except Exception:
                log.exception("streamed chat turn failed")
                yield sse("error", {"error": {"code": "internal", "message": MSG_INTERNAL}})
                return
            if reply is None:  # not reachable: deltas flow only for an authorized sender
                yield sse("error", {"error": {"code": "forbidden", "message": MSG_FORBIDDEN}})
                return
            yield done_event(reply)
        finally:
            if not turn.done():  # the page went away mid-answer: let the turn finish and be logged
                self._keep(turn)

    def _keep(self, turn: asyncio.Task[ChatReplyView | None]) -> None:
        self._orphans.add(turn)
        turn.add_done_callback(self._forget)

    def _forget(self, turn: asyncio.Task[ChatReplyView | None]) -> None:
        self._orphans.discard(turn)
        if not turn.cancelled() and turn.exception() is not None:
            log.error("chat turn of a page that went away failed", exc_info=turn.exception())
