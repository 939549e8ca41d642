"""`POST /api/chat` with `Accept: text/event-stream` (DESIGN §4): `delta` events, then `done` with the reply;
without that header the route stays JSON. Served through httpx's ASGI transport with the web ports' fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.web.app import create_web_app
from bot.web.initdata import sign_init_data
from tests.fakes.web_ports import DEMO_ID, FakeAnalytics, FakeAuth, FakeChat, ok_health

TOKEN = "123456:web-stream-test"
SSE = {"Accept": "text/event-stream"}


def auth() -> dict[str, str]:
    """The Authorization header of the demo partner."""
    return {"Authorization": f"tma {sign_init_data(TOKEN, {'id': DEMO_ID, 'first_name': 'Анна'}, datetime.now(UTC))}"}


def parse_sse(raw: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of a server-sent events body."""
    events = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.fixture
async def client_and_chat(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeChat]]:
    """The web app over the fakes (a chat that allows one answer a day) and an ASGI client."""
    chat = FakeChat(limit=1)
    app = create_web_app(
        chat=chat,
        analytics=FakeAnalytics(reports_dir=tmp_path),
        auth=FakeAuth(),
        bot_token=TOKEN,
        health=ok_health,
        metrics_text=lambda: b"",
        reports_dir=tmp_path,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        yield client, chat


async def test_event_stream_sends_deltas_then_done(client_and_chat: tuple[httpx.AsyncClient, FakeChat]) -> None:
    """With Accept: text/event-stream the answer comes as `delta` events adding up to the `done` reply."""
    client, _ = client_and_chat
    resp = await client.post("/api/chat", json={"text": "какая комиссия?"}, headers={**auth(), **SSE})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-cache"
    events = parse_sse(resp.text)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"delta"} and len(kinds) > 3
    done = events[-1][1]
    assert "".join(d["text"] for e, d in events if e == "delta") == done["reply"]
    assert done["status"] == "Ответ ИИ" and done["escalated"] is False


async def test_without_the_accept_header_the_route_stays_json(
    client_and_chat: tuple[httpx.AsyncClient, FakeChat],
) -> None:
    """A plain POST /api/chat still answers one JSON object {reply, status, escalated}."""
    client, _ = client_and_chat
    resp = await client.post("/api/chat", json={"text": "какая комиссия?"}, headers=auth())
    assert resp.headers["content-type"].startswith("application/json")
    assert set(resp.json()) == {"reply", "status", "escalated"}


async def test_canned_reply_is_a_lone_done_event(client_and_chat: tuple[httpx.AsyncClient, FakeChat]) -> None:
    """An escalation has no AI text to stream: the stream is just `done` with the reply and status."""
    client, _ = client_and_chat
    resp = await client.post("/api/chat", json={"text": "позовите оператора"}, headers={**auth(), **SSE})
    events = parse_sse(resp.text)
    assert [e for e, _ in events] == ["done"]
    assert events[0][1]["status"] == "В работе" and events[0][1]["escalated"] is True


async def test_daily_limit_is_429_json_before_any_stream(client_and_chat: tuple[httpx.AsyncClient, FakeChat]) -> None:
    """Errors known before anything streamed answer as on the JSON route: the daily limit is a 429 JSON error."""
    client, _ = client_and_chat
    await client.post("/api/chat", json={"text": "раз"}, headers={**auth(), **SSE})
    resp = await client.post("/api/chat", json={"text": "два"}, headers={**auth(), **SSE})
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "daily_limit"


async def test_event_stream_still_requires_init_data(client_and_chat: tuple[httpx.AsyncClient, FakeChat]) -> None:
    """The streaming variant is authorized like every /api call: no initData, 401 JSON and no turn."""
    client, chat = client_and_chat
    resp = await client.post("/api/chat", json={"text": "привет"}, headers=SSE)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthorized"
    assert chat.received == []
