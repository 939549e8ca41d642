"""The Mini App's live and catalogue routes: `/api/events`, `/api/objects`, `/api/escalate`, `/api/promotions`.

`GET /api/events` is a server-sent event stream read with fetch (it needs the `Authorization: tma …` header,
which EventSource cannot send). Events: `ready` (first, with the appeal's status; `resumed` says whether the
events missed since `Last-Event-ID` follow, else the page reloads its lists), then the current `status`, then
`chat` (a new log entry: {at, author, text, n}), `status` ({status}) and `analytics` ({id, status,
object_code}) as they happen, and comment heartbeats so proxies keep the connection open.
"""

# No `from __future__ import annotations`: FastAPI evaluates the routes' annotations where they are defined.
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query
from fastapi.responses import StreamingResponse

from bot.services.catalogue import CatalogueObject, CatalogueQuery
from bot.services.live import EventHub, LiveEvent, LiveWatcher, TooManyStreams
from bot.web.errors import ApiError
from bot.web.ports import CallerView, CataloguePort, EscalateFn, PromotionsFn

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
RETRY_MS = 2000
MAX_QUERY = 100
MAX_PRICE = 1e12


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One server-sent event (data is one JSON line, so no escaping of newlines is needed)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _number(x: float | None) -> float | int | None:
    return int(x) if x is not None and x.is_integer() else x


def object_json(o: CatalogueObject) -> dict[str, Any]:
    """An object as the API shows it: parsed numbers (None when unreadable) plus the sheet's own text."""
    return {
        "code": o.code,
        "type": o.type,
        "district": o.district,
        "address": o.address,
        "rooms": o.rooms_n,
        "area": _number(o.area_n),
        "price": _number(o.price_n),
        "rooms_text": o.rooms,
        "area_text": o.area,
        "price_text": o.price,
    }


def install_live_routes(
    app: FastAPI,
    caller: Callable[..., Awaitable[Any]],
    *,
    hub: EventHub | None,
    watcher: LiveWatcher | None,
    catalogue: CataloguePort | None,
    escalate: EscalateFn | None,
    promotions: PromotionsFn | None,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> None:
    """Add the routes whose services are given (each route is absent when its service is None)."""
    CallerDep = Annotated[CallerView, Depends(caller)]

    if hub is not None and watcher is not None:
        live_hub, live_watcher = hub, watcher

        @app.get("/api/events")
        async def events(
            who: CallerDep,
            last_event_id: Annotated[str | None, Header(max_length=64)] = None,
            after: Annotated[str | None, Query(max_length=64)] = None,
        ) -> StreamingResponse:
            tid = who.user.id
            try:
                sub = live_hub.subscribe(tid)
            except TooManyStreams as exc:
                raise ApiError(
                    429, "too_many_streams", "Приложение открыто в слишком многих окнах: закройте лишние."
                ) from exc
            # Computed before any await: whatever is published from here on arrives through the queue.
            missed = live_hub.missed(tid, last_event_id or after)
            floor = max((e.seq for e in missed), default=0) if missed is not None else 0
            resumed = bool(last_event_id or after) and missed is not None

            async def stream() -> AsyncIterator[bytes]:
                try:
                    yield f"retry: {RETRY_MS}\n\n".encode()
                    status = await live_watcher.take_baseline(tid)
                    # Not resumed (a first connection, a restart, a gap too old): the page reloads its lists.
                    yield sse("ready", {"status": status, "resumed": resumed})
                    if status:
                        yield sse("status", {"status": status})  # the current one, for clients that only read `status`
                    for old in missed or ():
                        yield _event(live_hub, old)
                    while not sub.closed.is_set():
                        try:
                            event: LiveEvent | None = await asyncio.wait_for(sub.queue.get(), heartbeat)
                        except TimeoutError:
                            yield b": ping\n\n"
                            continue
                        if event is not None and event.seq > floor:
                            yield _event(live_hub, event)
                finally:
                    live_hub.unsubscribe(sub)

            return StreamingResponse(
                stream(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
            )

    if catalogue is not None:
        objects = catalogue

        @app.get("/api/objects")
        async def list_objects(
            who: CallerDep,
            q: Annotated[str, Query(max_length=MAX_QUERY)] = "",
            district: Annotated[str, Query(max_length=MAX_QUERY)] = "",
            rooms: Annotated[int | None, Query(ge=0, le=20)] = None,
            rooms_min: Annotated[int | None, Query(ge=0, le=20)] = None,
            price_min: Annotated[float | None, Query(ge=0, le=MAX_PRICE)] = None,
            price_max: Annotated[float | None, Query(ge=0, le=MAX_PRICE)] = None,
            # The same bounds under the names other clients tend to use.
            min_price: Annotated[float | None, Query(ge=0, le=MAX_PRICE)] = None,
            max_price: Annotated[float | None, Query(ge=0, le=MAX_PRICE)] = None,
        ) -> dict[str, Any]:
            low = price_min if price_min is not None else min_price
            high = price_max if price_max is not None else max_price
            query = CatalogueQuery(q.strip(), district.strip(), rooms, rooms_min, low, high)
            page = await objects.search(query)
            return {"items": [object_json(o) for o in page.items], "total": page.total, "districts": page.districts}

    if escalate is not None:
        call_operator = escalate

        @app.post("/api/escalate")
        async def post_escalate(who: CallerDep) -> dict[str, Any]:
            reply = await call_operator(who.partner)
            return {"reply": reply.text, "status": reply.status, "escalated": reply.escalated}

    if promotions is not None:
        sent_to = promotions

        @app.get("/api/promotions")
        async def list_promotions(who: CallerDep) -> dict[str, Any]:
            items = await sent_to(who.user.id)
            return {
                "items": [
                    {
                        "id": p.id,
                        "title": p.title,
                        "text": p.text,
                        "picture": p.picture or None,
                        "sent_at": p.sent_at.isoformat(),
                    }
                    for p in items
                ]
            }


def _event(hub: EventHub, event: LiveEvent) -> bytes:
    return sse(event.kind, event.data, hub.event_id(event))


async def close_streams(hub: EventHub) -> None:
    """End every open stream (shutdown), giving the generators a moment to finish."""
    hub.close_all()
    with contextlib.suppress(Exception):
        await asyncio.sleep(0)
