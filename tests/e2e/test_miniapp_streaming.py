"""The Mini App's streamed answer end to end: uvicorn serving create_web_app over the real AppealsService, real
google-genai streaming from the fake Gemini, the local gateway; read by httpx and by headless Chromium."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.ai.fallback import OPERATOR_NOTIFIED, FallbackAI
from bot.ai.gemini import GeminiProvider
from bot.ai.prompt import SystemPrompt
from bot.ai.resilience import AIRetryPolicy
from bot.services.appeals import AppealsService, WorkingHours
from bot.services.auth import AuthService
from bot.services.knowledge import KnowledgeBase
from bot.web.app import create_web_app
from gateway import GatewayConfig, build_gateway
from gateway.schemas import AUTH, AuthCol
from tests.chat_support import FAST_RETRY, PROMPT_PATH, FakeMessenger
from tests.e2e.browser_support import shoot
from tests.e2e.test_browser import TOKEN, demo_init_data, serve
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.web_ports import DEMO_ID, FakeAnalytics, ok_health

ANSWER = (
    "Партнёр получает 50% комиссии агентства по сделке. Выплата приходит в течение пяти рабочих дней после "
    "регистрации договора. Чтобы закрепить клиента, передайте его контакты менеджеру до первого показа."
)
AI_RETRY = AIRetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02, deadline=5.0)


@dataclass
class Site:
    """The running Mini App and the fake model behind it."""

    url: str
    gemini: FakeGeminiServer

    def headers(self) -> dict[str, str]:
        """A streaming chat request of the demo partner."""
        return {"Authorization": f"tma {demo_init_data(DEMO_ID)}", "Accept": "text/event-stream"}


@pytest.fixture
async def site(tmp_path: Path, gemini_server: FakeGeminiServer) -> AsyncIterator[Site]:
    """The web app on 127.0.0.1 answering from Gemini: 0.3 s to the first chunk, then 1.5 s of streaming."""
    gemini_server.set_responder(lambda body: ANSWER)
    gemini_server.set_streaming(first_token=0.3, duration=1.5, chunks=12)
    gw = build_gateway(GatewayConfig(backend="local", local_db_path=tmp_path / "sheets.db", retry=FAST_RETRY))
    await gw.start()
    await gw.ensure_sheets()
    await gw.table(AUTH).write(
        [
            gw.table(AUTH).op_insert(
                {
                    AuthCol.CODE: "DEMO-001",
                    AuthCol.PHONE: "+79000000001",
                    AuthCol.NAME: "Анна Демо",
                    AuthCol.STATUS: "authorized",
                    AuthCol.TELEGRAM_ID: str(DEMO_ID),
                }
            )
        ]
    )
    gemini = GeminiProvider(api_key="k", model="gemini-test", base_url=gemini_server.url, timeout=3.0, retry=AI_RETRY)
    auth = AuthService(gw)
    appeals = AppealsService(
        gw,
        FallbackAI(gemini),
        SystemPrompt(PROMPT_PATH),
        KnowledgeBase(gw, refresh_seconds=0.0),
        FakeMessenger(),
        working_hours=WorkingHours(),
    )
    app = create_web_app(
        chat=appeals,
        analytics=FakeAnalytics(reports_dir=tmp_path / "reports"),
        auth=auth,
        bot_token=TOKEN,
        health=ok_health,
        metrics_text=lambda: b"",
        reports_dir=tmp_path / "reports",
        dev_init_data=lambda: demo_init_data(DEMO_ID),
    )
    try:
        async with serve(app) as url:
            yield Site(url, gemini_server)
    finally:
        await gemini.aclose()
        await gw.close()


async def read_events(site: Site, text: str) -> list[tuple[float, str, Any]]:
    """POST a streaming chat message; (seconds since the request, event, data) as each event arrives."""
    events: list[tuple[float, str, Any]] = []
    started = time.monotonic()
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", site.url + "/api/chat", json={"text": text}, headers=site.headers()) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((time.monotonic() - started, event, json.loads(line.removeprefix("data: "))))
    return events


async def test_sse_deltas_arrive_while_the_model_writes(site: Site) -> None:
    """Over a real socket the `delta` events arrive spread over the model's writing time, well before `done`;
    together they are the reply, which is also what the log keeps."""
    events = await read_events(site, "Какая комиссия?")
    deltas = [(at, data["text"]) for at, event, data in events if event == "delta"]
    done_at, done_event, done = events[-1]
    assert done_event == "done" and len(deltas) >= 6
    assert "".join(text for _, text in deltas) == done["reply"] == ANSWER
    assert done_at - deltas[0][0] > 1.0  # the first text was shown over a second before the last
    assert deltas[0][0] < 1.0
    async with httpx.AsyncClient(timeout=10) as client:
        history = (await client.get(site.url + "/api/chat/history", headers=site.headers())).json()["entries"]
    assert history[-1]["text"] == ANSWER


async def test_sse_broken_model_stream_ends_with_the_note(site: Site) -> None:
    """A model stream that breaks mid-answer: the page got the received text, and `done` carries it plus the
    fallback note."""
    site.gemini.break_next_stream(after_chunks=4)
    events = await read_events(site, "Какая комиссия?")
    streamed = "".join(data["text"] for _, event, data in events if event == "delta")
    done = events[-1][2]
    assert events[-1][1] == "done"
    received = done["reply"].split("\n\n")[0]
    assert received and ANSWER.startswith(received) and received != ANSWER
    assert streamed.startswith(received) and done["reply"].endswith(OPERATOR_NOTIFIED)


async def test_page_leaving_mid_answer_still_logs_the_turn(site: Site) -> None:
    """A page that goes away after the first delta does not cut the turn: the whole answer lands in the log."""
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", site.url + "/api/chat", json={"text": "Уйду"}, headers=site.headers()) as resp,
    ):
        async for line in resp.aiter_lines():
            if line.startswith("event: delta"):
                break  # the page closes here
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(50):
            entries = (await client.get(site.url + "/api/chat/history", headers=site.headers())).json()["entries"]
            if entries and entries[-1]["text"] == ANSWER:
                break
            await asyncio.sleep(0.1)
    assert [e["text"] for e in entries[-2:]] == ["Уйду", ANSWER]


@pytest.mark.browser
async def test_page_renders_the_answer_progressively(site: Site, browser_context: Any, artifacts: Path) -> None:
    """In the Mini App the assistant's bubble fills in while the answer streams (several growing states seen),
    then holds the whole answer."""
    site.gemini.set_streaming(first_token=0.3, duration=3.0, chunks=15)
    page = await browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(site.url + "/")
    await page.get_by_text("Задайте вопрос ассистенту").wait_for()  # the (empty) history has loaded
    # The page records every text its streaming bubble shows (a MutationObserver), so no state is missed.
    await page.evaluate(
        """() => {
            window.__shown = [];
            new MutationObserver(() => {
                const live = document.querySelector('.bubble-bot.streaming .bubble-text');
                if (live && live.textContent !== window.__shown.at(-1)) window.__shown.push(live.textContent);
            }).observe(document.getElementById('chat-log'), {subtree: true, childList: true, characterData: true});
        }"""
    )
    await page.fill("#chat-input", "Какая комиссия партнёра?")
    await page.click("#chat-send")
    await page.wait_for_function(
        "n => { const b = document.querySelector('.bubble-bot.streaming .bubble-text');"
        " return b && b.textContent.length > n; }",
        arg=len(ANSWER) // 2,
        polling="raf",
    )
    await shoot(page, artifacts, "miniapp-streaming.png", docs=True)
    await page.locator(".bubble-bot.streaming").wait_for(state="detached")
    final = page.locator(".bubble-bot").last.locator(".bubble-text")
    assert await final.inner_text() == ANSWER
    assert await page.locator(".bubble-me .bubble-text").last.inner_text() == "Какая комиссия партнёра?"
    seen: list[str] = [t for t in await page.evaluate("() => window.__shown") if t]
    lengths = [len(t) for t in seen]
    assert len(seen) >= 3 and lengths == sorted(lengths) and lengths[0] < len(ANSWER)
    assert all(ANSWER.startswith(t) for t in seen)
    assert errors == []
