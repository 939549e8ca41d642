"""The Mini App's live and catalogue routes (/api/events, /api/objects, /api/escalate, /api/promotions) over the
real services and a local store, served by uvicorn on 127.0.0.1 (the event stream needs a real server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bot.ai.fallback import FallbackAI
from bot.ai.prompt import SystemPrompt
from bot.services.analytics import AnalyticsService
from bot.services.appeals import AppealsService, WorkingHours
from bot.services.auth import AuthService
from bot.services.catalogue import CatalogueService
from bot.services.knowledge import KnowledgeBase
from bot.services.live import EventHub, LiveWatcher
from bot.services.operator_replies import OperatorReplyService
from bot.services.promo_history import sent_to
from bot.services.promotions import LEDGER_PREFIX, PromotionService
from bot.web.app import create_web_app
from bot.web.initdata import sign_init_data
from bot.web.live import install_live_routes
from gateway import AsyncSheetsGateway
from gateway.schemas import APPEALS, OBJECTS, PROMOTIONS, AppealCol, ObjectCol
from tests.chat_support import PROMPT_PATH, FakeMessenger, ScriptedAI, add_partner
from tests.e2e.test_browser import serve
from tests.fakes.web_ports import ok_health
from tests.promo_support import add_promo

TOKEN = "123456:live-api-test"
DEMO_ID, OTHER_ID, STRANGER_ID = 100001, 200002, 555
NEW_ROUTES = [("GET", "/api/events"), ("GET", "/api/objects"), ("POST", "/api/escalate"), ("GET", "/api/promotions")]


def tma(user_id: int = DEMO_ID, token: str = TOKEN) -> dict[str, str]:
    """The Authorization header of a Telegram user, freshly signed."""
    user = {"id": user_id, "first_name": "Анна", "username": "anna"}
    return {"Authorization": f"tma {sign_init_data(token, user, datetime.now(UTC))}"}


@dataclass
class Live:
    """The running app, its services and an HTTP client."""

    url: str
    client: httpx.AsyncClient
    gw: AsyncSheetsGateway
    hub: EventHub
    watcher: LiveWatcher
    appeals: AppealsService
    replies: OperatorReplyService
    messenger: FakeMessenger


OBJECT_ROWS = [
    ("OBJ-1", "квартира", "Хамовники", "ул. Льва Толстого, 1", "1", "40", "20 000 000", "в продаже"),
    ("OBJ-2", "квартира", "Хамовники", "ул. Льва Толстого, 2", "2", "60,5", "31000000", "в продаже"),
    ("OBJ-3", "апартаменты", "Марьино", "ул. Перерва, 3", "2", "55", "15 500 000 ₽", ""),
    ("OBJ-4", "квартира", "Марьино", "ул. Перерва, 4", "5", "120", "45000000", "в продаже"),
    ("OBJ-5", "квартира", "Басманный", "Спартаковская ул., 5", "студия", "25", "12000000", "в продаже"),
    ("OBJ-6", "квартира", "Басманный", "Спартаковская ул., 6", "3", "80", "38000000", "продано"),
]


@pytest.fixture
async def live(local_gateway: AsyncSheetsGateway, tmp_path: Path) -> AsyncIterator[Live]:
    """The web app with the live routes over real services on a local store with two partners and objects."""
    gw = local_gateway
    await add_partner(gw, "DEMO-001", "+79000000001", name="Демо", status="authorized", telegram_id=DEMO_ID)
    await add_partner(gw, "P-2", "+79000000002", name="Второй", status="authorized", telegram_id=OTHER_ID)
    objects = gw.table(OBJECTS)
    for row in OBJECT_ROWS:
        cols = (ObjectCol.CODE, ObjectCol.TYPE, ObjectCol.DISTRICT, ObjectCol.ADDRESS, ObjectCol.ROOMS)
        cols += (ObjectCol.AREA, ObjectCol.PRICE, ObjectCol.STATUS)
        await objects.write([objects.op_insert(dict(zip(cols, row, strict=True)))])
    hub = EventHub(max_per_user=2)
    watcher = LiveWatcher(gw, hub, interval=0.2)
    messenger = FakeMessenger()
    appeals = AppealsService(
        gw,
        FallbackAI(ScriptedAI(["Ответ ассистента."] * 20)),
        SystemPrompt(PROMPT_PATH),
        KnowledgeBase(gw, refresh_seconds=0.0),
        messenger,
        working_hours=WorkingHours(),
        live=hub,
    )
    replies = OperatorReplyService(gw, messenger, live=hub)

    async def promotions(telegram_id: int) -> Any:
        return await sent_to(gw, telegram_id)

    app = create_web_app(
        chat=appeals,
        analytics=AnalyticsService(gw),
        auth=AuthService(gw),
        bot_token=TOKEN,
        health=ok_health,
        metrics_text=lambda: b"",
        reports_dir=tmp_path / "reports",
        live=(hub, watcher),
        catalogue=CatalogueService(gw),
        escalate=appeals.request_human,
        promotion_feed=promotions,
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        try:
            yield Live(url, client, gw, hub, watcher, appeals, replies, messenger)
        finally:
            hub.close_all()  # open streams end, so the server can stop


@dataclass
class Stream:
    """An open /api/events stream and the events read so far."""

    response: httpx.Response
    lines: AsyncIterator[str]
    events: list[dict[str, Any]]

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next event (comments and `retry:` skipped): {"event", "data", "id"}."""
        event: dict[str, Any] = {"event": "message", "data": None, "id": None}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if not line:
                    if event["data"] is not None:
                        self.events.append(event)
                        return event
                    continue
                if line.startswith(":") or line.startswith("retry:"):
                    continue
                field, _, value = line.partition(": ")
                if field == "data":
                    event["data"] = json.loads(value)
                else:
                    event[field] = value
        raise AssertionError("the stream ended")

    async def until(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Read events until one of `kind`."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                if event["event"] == kind:
                    return event

    async def nothing_for(self, seconds: float) -> None:
        """No event arrives within `seconds`."""
        with contextlib.suppress(TimeoutError):
            event = await self.next(seconds)
            raise AssertionError(f"unexpected event {event}")


@contextlib.asynccontextmanager
async def stream(live: Live, user_id: int = DEMO_ID, last_event_id: str | None = None) -> AsyncIterator[Stream]:
    """Open /api/events as the page does (fetch with the tma header, optionally Last-Event-ID)."""
    headers = tma(user_id)
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with live.client.stream("GET", "/api/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response, response.aiter_lines(), [])


# -- authorization -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), NEW_ROUTES)
async def test_new_routes_answer_401_without_or_with_forged_init_data(live: Live, method: str, path: str) -> None:
    """Without initData, or with initData signed by another token, every new route is 401 with a JSON error."""
    for headers in ({}, tma(DEMO_ID, token="999:forged")):
        resp = await live.client.request(method, path, headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] in ("unauthorized", "init_data_expired")


@pytest.mark.parametrize(("method", "path"), NEW_ROUTES)
async def test_new_routes_answer_403_to_a_user_not_authorized_in_auth(live: Live, method: str, path: str) -> None:
    """A genuine Telegram user who is not an authorized partner gets 403 from every new route."""
    resp = await live.client.request(method, path, headers=tma(STRANGER_ID))
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["code"] == "forbidden"


# -- catalogue ---------------------------------------------------------------------------------------------


async def codes(live: Live, **params: Any) -> list[str]:
    """Codes GET /api/objects returns for these query parameters."""
    resp = await live.client.get("/api/objects", params=params, headers=tma())
    assert resp.status_code == 200, resp.text
    return [o["code"] for o in resp.json()["items"]]


async def test_objects_lists_the_agency_objects_on_offer_with_parsed_numbers(live: Live) -> None:
    """Every object not marked sold is listed in sheet order, with code, type, district, rooms, area and price."""
    resp = await live.client.get("/api/objects", headers=tma())
    body = resp.json()
    assert [o["code"] for o in body["items"]] == ["OBJ-1", "OBJ-2", "OBJ-3", "OBJ-4", "OBJ-5"]
    assert body["total"] == 5
    assert body["districts"] == ["Басманный", "Марьино", "Хамовники"]
    two = body["items"][1]
    assert (two["type"], two["district"], two["rooms"], two["area"], two["price"]) == (
        "квартира",
        "Хамовники",
        2,
        60.5,
        31_000_000,
    )
    assert body["items"][4]["rooms"] == 0  # «студия»


async def test_objects_search_and_filters(live: Live) -> None:
    """q matches code/district/address words (any case, ё as е); district, rooms (exact; rooms_min for «4 и
    более») and the price bounds filter; the filters combine."""
    assert await codes(live, q="obj-3") == ["OBJ-3"]
    assert await codes(live, q="марьино") == ["OBJ-3", "OBJ-4"]
    assert await codes(live, q="толстого 2") == ["OBJ-2"]
    assert await codes(live, district="хамовники") == ["OBJ-1", "OBJ-2"]
    assert await codes(live, rooms=2) == ["OBJ-2", "OBJ-3"]
    assert await codes(live, rooms=4) == []
    assert await codes(live, rooms=5) == ["OBJ-4"]
    assert await codes(live, rooms_min=3) == ["OBJ-4"]
    assert await codes(live, rooms=0) == ["OBJ-5"]
    assert await codes(live, price_min=20_000_000, price_max=31_000_000) == ["OBJ-1", "OBJ-2"]
    assert await codes(live, min_price=20_000_000, max_price=31_000_000) == ["OBJ-1", "OBJ-2"]
    assert await codes(live, district="Марьино", rooms=2, price_max=16_000_000) == ["OBJ-3"]
    assert await codes(live, q="нет такого") == []


@pytest.mark.parametrize("params", [{"rooms": "-1"}, {"rooms": "два"}, {"price_min": "abc"}, {"q": "x" * 101}])
async def test_objects_refuses_malformed_filters(live: Live, params: dict[str, str]) -> None:
    """A filter that is not a number in range (or an overlong query) is a 422 JSON error, not a crash."""
    resp = await live.client.get("/api/objects", params=params, headers=tma())
    assert resp.status_code == 422, resp.text
    assert "error" in resp.json()


# -- escalation --------------------------------------------------------------------------------------------


async def test_escalate_hands_the_partner_to_staff_once(live: Live) -> None:
    """POST /api/escalate sets «В работе» and notifies the staff chat; a second press says an operator is
    already on it and does not notify again."""
    resp = await live.client.post("/api/escalate", headers=tma())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["status"], body["escalated"]) == ("В работе", True)
    assert body["reply"]
    row = await live.gw.table(APPEALS).get(str(DEMO_ID))
    assert row is not None and row[AppealCol.STATUS] == "В работе"
    assert len(live.messenger.staff) == 1 and "оператор" in live.messenger.staff[0].casefold()
    again = (await live.client.post("/api/escalate", headers=tma())).json()
    assert again["status"] == "В работе" and "уже" in again["reply"]
    assert len(live.messenger.staff) == 1
    other = await live.gw.table(APPEALS).get(str(OTHER_ID))
    assert other is None  # nobody else's conversation is touched


# -- promotions --------------------------------------------------------------------------------------------


async def test_promotions_lists_only_what_was_sent_to_this_partner(live: Live) -> None:
    """GET /api/promotions lists the promotions the ledger records as sent to the caller, newest first, with
    title, text, picture and time; one in flight or sent to someone else is not listed."""
    promos = live.gw.table(PROMOTIONS)
    rows = [
        ("A-1", "Скидка", "Текст A", "https://example.test/a.jpg"),
        ("B-2", "Только второму", "Текст B", ""),
        ("C-3", "В пути", "Текст C", ""),
        ("D-4", "Вторая акция", "Текст D", "не ссылка"),
    ]
    for pid, title, text, picture in rows:
        await promos.write(
            [promos.op_insert({"id": pid, "Заголовок": title, "Текст": text, "Картинка": picture, "Статус": "SENT"})]
        )
    state = live.gw.state
    await state.ledger_set(LEDGER_PREFIX + "A-1", str(DEMO_ID), "sent", "p")
    await state.ledger_set(LEDGER_PREFIX + "B-2", str(OTHER_ID), "sent", "t")
    await state.ledger_set(LEDGER_PREFIX + "C-3", str(DEMO_ID), "sending", "t:0")
    await asyncio.sleep(0.01)  # a later send time
    await state.ledger_set(LEDGER_PREFIX + "D-4", str(DEMO_ID), "sent", "t")
    mine = (await live.client.get("/api/promotions", headers=tma())).json()["items"]
    assert [p["id"] for p in mine] == ["D-4", "A-1"]
    assert mine[1] | {"sent_at": None} == {
        "id": "A-1",
        "title": "Скидка",
        "text": "Текст A",
        "picture": "https://example.test/a.jpg",
        "sent_at": None,
    }
    assert mine[0]["picture"] is None  # «Картинка» that is not a link is not shown
    assert datetime.fromisoformat(mine[0]["sent_at"]).tzinfo is not None
    theirs = (await live.client.get("/api/promotions", headers=tma(OTHER_ID))).json()["items"]
    assert [p["id"] for p in theirs] == ["B-2"]


async def test_promotions_shows_a_promotion_after_a_real_broadcast(live: Live) -> None:
    """A READY promotion broadcast by the PromotionService to partner DEMO-001 only is then listed for that
    partner (title, text, time sent) and not for the other one."""
    await add_promo(live.gw, "P-10", title="Осенняя акция", text="Комиссия 60% до 30 ноября.", audience="DEMO-001")
    reports = await PromotionService(live.gw, live.messenger, rate_per_second=100.0).poll_once()
    assert [r.sent for r in reports] == [1]
    mine = (await live.client.get("/api/promotions", headers=tma())).json()["items"]
    assert [(p["id"], p["title"], p["text"]) for p in mine] == [("P-10", "Осенняя акция", "Комиссия 60% до 30 ноября.")]
    assert (await live.client.get("/api/promotions", headers=tma(OTHER_ID))).json()["items"] == []


# -- the event stream --------------------------------------------------------------------------------------


async def test_events_bring_turns_operator_replies_and_status_to_the_partner_only(live: Live) -> None:
    """The stream opens with `ready` (the status), then carries the partner's turn (their message, the answer,
    «Ответ ИИ»), a delivered operator reply with «В работе» — and nothing of another partner's chat."""
    async with stream(live) as events:
        ready = await events.next()
        assert ready["event"] == "ready" and ready["data"] == {"status": "", "resumed": False}
        resp = await live.client.post("/api/chat", json={"text": "Какая комиссия?"}, headers=tma())
        assert resp.status_code == 200
        mine = await events.until("chat")
        assert (mine["data"]["author"], mine["data"]["text"]) == ("Пользователь", "Какая комиссия?")
        assert datetime.fromisoformat(mine["data"]["at"]).tzinfo is not None
        answer = await events.until("chat")
        assert (answer["data"]["author"], answer["data"]["text"]) == ("ИИ", "Ответ ассистента.")
        assert (await events.until("status"))["data"] == {"status": "Ответ ИИ"}

        await live.client.post("/api/chat", json={"text": "вопрос второго"}, headers=tma(OTHER_ID))
        await live.gw.table(APPEALS).write(
            [live.gw.table(APPEALS).op_upsert(str(DEMO_ID), {AppealCol.OPERATOR_REPLY: "Здравствуйте, это Мария."})]
        )
        assert await live.replies.poll_once() == 1
        reply = await events.until("chat")
        assert (reply["data"]["author"], reply["data"]["text"]) == ("Оператор", "Здравствуйте, это Мария.")
        assert (await events.until("status"))["data"] == {"status": "В работе"}
        await events.nothing_for(0.3)
        seen = json.dumps([e["data"] for e in events.events], ensure_ascii=False)
        assert "вопрос второго" not in seen


async def test_events_show_staff_edits_made_in_the_sheet(live: Live) -> None:
    """A status staff type into the sheet and a log entry added by hand reach the open stream through the
    shared watcher's poll, each once."""
    await live.client.post("/api/chat", json={"text": "привет"}, headers=tma())
    async with stream(live) as events:
        assert (await events.next())["data"]["status"] == "Ответ ИИ"  # ready
        assert (await events.next())["data"] == {"status": "Ответ ИИ"}  # the current status
        table = live.gw.table(APPEALS)
        row = await table.get(str(DEMO_ID))
        assert row is not None
        log = row[AppealCol.LOG] + "\n[2026-12-01 10:00] Оператор: Дописано в таблице."
        await table.write(
            [table.op_upsert(str(DEMO_ID), {AppealCol.STATUS: "в работе", AppealCol.LOG: log, AppealCol.UPDATED: "x"})]
        )
        await live.watcher.poll_once()
        assert (await events.until("status"))["data"] == {"status": "В работе"}
        entry = await events.until("chat")
        assert entry["data"]["text"] == "Дописано в таблице."
        await live.watcher.poll_once()
        await events.nothing_for(0.3)


async def test_events_resume_after_last_event_id_without_duplicates(live: Live) -> None:
    """A reconnect with Last-Event-ID gets exactly the events it missed (resumed); an unknown id gets
    `resumed: false` so the page reloads its lists."""
    async with stream(live) as first:
        await first.next()
        await live.client.post("/api/chat", json={"text": "первый"}, headers=tma())
        last = await first.until("status")
    await live.client.post("/api/chat", json={"text": "второй"}, headers=tma())
    async with stream(live, last_event_id=last["id"]) as second:
        ready = await second.next()
        assert ready["data"]["resumed"] is True
        assert (await second.next())["event"] == "status"  # the current one, without an id
        missed = [await second.next(), await second.next()]
        assert [e["data"]["text"] for e in missed] == ["второй", "Ответ ассистента."]
        await second.nothing_for(0.3)
        ids = [e["id"] for e in missed]
        assert len(set(ids)) == 2 and last["id"] not in ids
    async with stream(live, last_event_id="0000-12") as third:
        assert (await third.next())["data"]["resumed"] is False


async def test_events_limit_open_streams_per_partner(live: Live) -> None:
    """Beyond the per-partner limit a new stream is refused with 429; another partner is unaffected, and a
    closed stream frees its place."""
    async with stream(live) as one, stream(live) as two:
        await one.next()
        await two.next()
        resp = await live.client.get("/api/events", headers=tma())
        assert resp.status_code == 429
        assert resp.json()["error"]["code"] == "too_many_streams"
        async with stream(live, OTHER_ID) as other:
            assert (await other.next())["event"] == "ready"
    for _ in range(50):
        if not live.hub.connected_users():
            break
        await asyncio.sleep(0.02)
    assert live.hub.connected_users() == set()
    async with stream(live) as again:
        assert (await again.next())["event"] == "ready"


async def test_events_stream_sends_heartbeats_and_no_cache_headers(live: Live) -> None:
    """An idle stream carries comment heartbeats (so proxies keep it open) and tells proxies not to buffer."""
    app = FastAPI()
    caller = SimpleNamespace(user=SimpleNamespace(id=DEMO_ID), partner=None)

    async def who() -> Any:
        return caller

    install_live_routes(
        app, who, hub=live.hub, watcher=live.watcher, catalogue=None, escalate=None, promotions=None, heartbeat=0.1
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream("GET", "/api/events") as response:
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["x-accel-buffering"] == "no"
            lines = response.aiter_lines()
            pings = 0
            async with asyncio.timeout(5):
                async for line in lines:
                    pings += line == ": ping"
                    if pings == 2:
                        break
            assert pings == 2
        live.hub.close_all()
