"""The Mini App in headless Chromium (Debian's `chromium`, driven by playwright) against create_web_app.

The page is served by uvicorn on 127.0.0.1 with working fakes of the service ports, so these tests need
nothing but the browser. Screenshots and failure artifacts go to BROWSER_ARTIFACTS_DIR (default: a
pytest tmp dir); with UPDATE_DOCS_SCREENSHOTS=1 the README's pictures in docs/img are refreshed too.
Without chromium the tests skip — unless CI is set, where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import uvicorn
from fastapi import FastAPI

from bot.services.chatlog import Author, ChatEntry
from bot.web.app import create_web_app
from bot.web.initdata import sign_init_data
from tests.e2e.browser_support import shoot
from tests.fakes.web_ports import DEMO_ID, FakeAnalytics, FakeAuth, FakeChat, FakeStaff, ok_health

pytestmark = pytest.mark.browser

TOKEN = "000000:local-dev"
SEEDED_AT = datetime(2026, 11, 24, 14, 5)


def demo_init_data(user_id: int = DEMO_ID, first_name: str = "Анна", last_name: str = "Демо") -> str:
    """Fresh initData for a user, signed with the local dev token."""
    user = {"id": user_id, "first_name": first_name, "last_name": last_name, "username": "demo"}
    return sign_init_data(TOKEN, user, datetime.now(UTC))


def consultant(text: str) -> str:
    """A plausible assistant answer for the screenshots."""
    if "задат" in text.casefold():
        return (
            "Для задатка нужны паспорта сторон, выписка из ЕГРН и предварительный договор. "
            "Шаблон договора — в разделе «Документы» у вашего менеджера."
        )
    return "Партнёр получает 50% комиссии агентства; выплата — в течение 5 рабочих дней после сделки."


@dataclass
class Site:
    """A running app and what the tests poke at."""

    url: str
    chat: FakeChat
    analytics: FakeAnalytics


@dataclass
class Browser:
    """A page in a phone-sized context, with the errors it logged."""

    page: Any
    errors: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve the app with uvicorn on a free loopback port in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest.fixture
async def make_site(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Site]]]:
    """Start the app on 127.0.0.1 (local mode by default: dev initData for the demo partner)."""
    stack = contextlib.AsyncExitStack()

    async def start(
        *, dev_user: int | None = DEMO_ID, chat: FakeChat | None = None, staff: FakeStaff | None = None
    ) -> Site:
        chat = chat or FakeChat(now=lambda: SEEDED_AT + timedelta(minutes=3), answer=consultant)
        analytics = FakeAnalytics(reports_dir=tmp_path / "reports", finish_after=1.0)
        app = create_web_app(
            chat=chat,
            analytics=analytics,
            auth=FakeAuth(),
            bot_token=TOKEN,
            health=ok_health,
            metrics_text=lambda: b"",
            reports_dir=tmp_path / "reports",
            dev_init_data=(lambda: demo_init_data(dev_user)) if dev_user is not None else None,
            staff=staff,
        )
        url = await stack.enter_async_context(serve(app))
        return Site(url, chat, analytics)

    async with stack:
        yield start


@pytest.fixture
async def browser(browser_context: Any) -> Browser:
    """A page in the phone-sized context; page errors and CSP violations are collected."""
    page = await browser_context.new_page()
    result = Browser(page)
    page.on("pageerror", lambda exc: result.errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: (
            result.errors.append(f"console: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    return result


def seed_history(chat: FakeChat) -> None:
    """A short earlier conversation, as the sheet would hold it."""
    chat.logs[DEMO_ID] = [
        ChatEntry(SEEDED_AT, Author.USER, "Добрый день! Какая комиссия партнёра по вторичке?"),
        ChatEntry(SEEDED_AT, Author.AI, consultant("комиссия")),
        ChatEntry(SEEDED_AT + timedelta(minutes=1), Author.OPERATOR, "Анна, добавлю: по акции ноября — 60%."),
    ]


async def test_chat_shows_history_and_answers(
    make_site: Callable[..., Awaitable[Site]], browser: Browser, artifacts: Path
) -> None:
    """The chat loads the history from the sheet, sends a message and shows the assistant's reply."""
    site = await make_site()
    seed_history(site.chat)
    page = browser.page
    await page.goto(site.url + "/")
    await page.locator(".bubble-operator").wait_for()
    assert await page.locator("#whoami").inner_text() == "Анна Демо"
    assert await page.locator(".bubble").count() == 3

    await page.fill("#chat-input", "Какие документы нужны для задатка?")
    await page.click("#chat-send")
    await page.locator(".bubble-bot", has_text="выписка из ЕГРН").wait_for()
    assert await page.locator(".bubble-me .bubble-text").last.inner_text() == "Какие документы нужны для задатка?"
    assert await page.locator("#chat-input").input_value() == ""
    assert site.chat.received == [(DEMO_ID, "Какие документы нужны для задатка?")]
    await shoot(page, artifacts, "miniapp-chat.png", docs=True)
    assert browser.errors == []


async def test_chat_empty_state_and_enter_to_send(
    make_site: Callable[..., Awaitable[Site]], browser: Browser, artifacts: Path
) -> None:
    """A new partner sees the empty state; Enter sends; after an escalation the operator's reply shows up."""
    site = await make_site()
    page = browser.page
    await page.clock.install()
    await page.goto(site.url + "/")
    await page.locator("#chat-state.state-empty").wait_for()
    await shoot(page, artifacts, "miniapp-chat-empty.png")
    await page.fill("#chat-input", "Позовите оператора, пожалуйста")
    await page.press("#chat-input", "Enter")
    await page.locator("#chat-status", has_text="оператор").wait_for()
    assert await page.locator("#chat-state").is_hidden()
    site.chat.logs[DEMO_ID].append(
        ChatEntry(SEEDED_AT + timedelta(minutes=5), Author.OPERATOR, "Здравствуйте! Это Ольга, чем помочь?")
    )
    await page.clock.fast_forward(16_000)  # the page re-reads the log every 15 s while «В работе»
    await page.locator(".bubble-operator", has_text="Ольга").wait_for()
    await shoot(page, artifacts, "miniapp-chat-escalated.png")
    assert browser.errors == []


async def test_chat_daily_limit_shows_the_message(make_site: Callable[..., Awaitable[Site]], browser: Browser) -> None:
    """A 429 from the daily limit is shown in the chat; the message stays (the service logged it)."""
    site = await make_site(chat=FakeChat(limit=0))
    page = browser.page
    await page.goto(site.url + "/")
    await page.locator("#chat-state.state-empty").wait_for()
    await page.fill("#chat-input", "ещё вопрос")
    await page.click("#chat-send")
    await page.locator("#chat-error", has_text="Лимит").wait_for()
    assert await page.locator("#chat-error").get_attribute("data-code") == "daily_limit"
    assert await page.locator(".bubble-me .bubble-text").inner_text() == "ещё вопрос"
    assert await page.locator(".bubble-bot").count() == 0
    assert await page.locator("#chat-input").input_value() == ""


async def test_failed_send_gives_the_text_back(make_site: Callable[..., Awaitable[Site]], browser: Browser) -> None:
    """When sending fails at the network level the message is not shown as sent and the text is kept."""
    site = await make_site()
    page = browser.page
    await page.goto(site.url + "/")
    await page.locator("#chat-state.state-empty").wait_for()
    await page.route("**/api/chat", lambda route: route.abort())
    await page.fill("#chat-input", "важный вопрос")
    await page.click("#chat-send")
    await page.locator("#chat-error", has_text="Нет связи").wait_for()
    assert await page.locator("#chat-input").input_value() == "важный вопрос"
    assert await page.locator(".bubble").count() == 0
    assert site.chat.received == []


async def test_network_error_state_and_retry(
    make_site: Callable[..., Awaitable[Site]], browser: Browser, artifacts: Path
) -> None:
    """When the history request fails at the network level an error state with «Повторить» appears and works."""
    site = await make_site()
    page = browser.page
    await page.route("**/api/chat/history", lambda route: route.abort())
    await page.goto(site.url + "/")
    error = page.locator("#chat-state.state-error")
    await error.wait_for()
    assert "Нет связи" in await error.inner_text()
    await shoot(page, artifacts, "miniapp-network-error.png")
    await page.unroute("**/api/chat/history")
    await error.get_by_role("button", name="Повторить").click()
    await page.locator("#chat-state.state-empty").wait_for()


async def test_analytics_order_reaches_done_with_pdf(
    make_site: Callable[..., Awaitable[Site]], browser: Browser, artifacts: Path
) -> None:
    """Ordering DEMO-0001 shows it queued, polls it to DONE, and the detail has the result and a PDF link."""
    site = await make_site()
    page = browser.page
    await page.goto(site.url + "/")
    await page.click("#tab-analytics")
    await page.locator("#jobs-state.state-empty").wait_for()
    await page.fill("#object-code", "demo-0001")
    await page.click("#order-btn")
    job = page.locator(".job", has_text="DEMO-0001")
    await job.locator('.badge[data-status="NEW"]').wait_for()
    await job.locator('.badge[data-status="DONE"]').wait_for()
    assert await job.locator(".job-summary").inner_text() == "Квартира · 2-комн. · 54 м² · Центральный"

    await page.fill("#object-code", "DEMO-0002")
    await page.click("#order-btn")
    await page.locator(".job", has_text="DEMO-0002").locator('.badge[data-status="NEW"]').wait_for()
    await shoot(page, artifacts, "miniapp-analytics.png", docs=True)

    await job.click()
    detail = page.locator("#view-job")
    await detail.wait_for()
    assert "Рекомендация: цена в рынке" in await page.locator(".result-text").inner_text()
    href = await page.locator("#job-pdf").get_attribute("href")
    assert href is not None and href.startswith("/reports/") and "sig=" in href
    pdf = await page.request.get(site.url + href)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    await shoot(page, artifacts, "miniapp-analytics-detail.png", docs=True)
    await page.click("#job-back")
    await page.locator("#view-analytics").wait_for()
    assert browser.errors == []


async def test_unknown_code_shows_the_error(
    make_site: Callable[..., Awaitable[Site]], browser: Browser, artifacts: Path
) -> None:
    """An unknown object code shows the service's message under the field and queues nothing."""
    site = await make_site()
    page = browser.page
    await page.goto(site.url + "/")
    await page.click("#tab-analytics")
    await page.fill("#object-code", "DEMO-9999")
    await page.click("#order-btn")
    error = page.locator("#order-error")
    await error.wait_for()
    assert "не найден" in await error.inner_text()
    assert await error.get_attribute("data-code") == "unknown_object_code"
    assert site.analytics.rows == {}
    await shoot(page, artifacts, "miniapp-analytics-unknown-code.png")


async def test_outside_telegram_without_dev_mode_asks_to_open_from_telegram(
    make_site: Callable[..., Awaitable[Site]], browser: Browser, artifacts: Path
) -> None:
    """Opened in a plain browser in production (no initData) the page says to open it from Telegram."""
    site = await make_site(dev_user=None)
    page = browser.page
    await page.goto(site.url + "/")
    await page.locator("#fatal").wait_for()
    assert await page.locator("#fatal-title").inner_text() == "Откройте приложение из Telegram"
    assert await page.locator("main").is_hidden()
    await shoot(page, artifacts, "miniapp-open-from-telegram.png")


async def test_unauthorized_user_sees_no_access(make_site: Callable[..., Awaitable[Site]], browser: Browser) -> None:
    """A genuine user who is not in Auth gets the «Нет доступа» screen with how to authorize."""
    site = await make_site(dev_user=777)
    page = browser.page
    await page.goto(site.url + "/")
    await page.locator("#fatal").wait_for()
    assert await page.locator("#fatal-title").inner_text() == "Нет доступа"
    assert "/start" in await page.locator("#fatal-text").inner_text()


TG_PROXY = """
window.__tg = [];
window.TelegramWebviewProxy = {
  postEvent(type, data) { window.__tg.push([type, data ? JSON.parse(data) : null]); },
};
"""
DARK_THEME = {
    "bg_color": "#17212b",
    "secondary_bg_color": "#0e1621",
    "text_color": "#f5f5f5",
    "hint_color": "#708499",
    "link_color": "#6ab3f3",
    "button_color": "#5288c1",
    "button_text_color": "#ffffff",
    "section_bg_color": "#17212b",
}


async def last_event(page: Any, name: str) -> Any:
    """The data of the last event of that name the page sent to the (fake) Telegram client."""
    return await page.evaluate(f"(window.__tg.filter(e => e[0] === {json.dumps(name)}).pop() || [null, null])[1]")


async def test_inside_telegram_uses_main_button_theme_and_back_button(
    make_site: Callable[..., Awaitable[Site]], browser: Browser, artifacts: Path
) -> None:
    """Launched by Telegram (initData in the URL), the page uses the theme, MainButton, BackButton and haptics."""
    site = await make_site(dev_user=None)  # no dev initData: only Telegram's counts
    page = browser.page
    await page.add_init_script(TG_PROXY)
    fragment = "&".join(
        [
            f"tgWebAppData={quote(demo_init_data(), safe='')}",
            "tgWebAppVersion=8.0",
            "tgWebAppPlatform=android",
            f"tgWebAppThemeParams={quote(json.dumps(DARK_THEME), safe='')}",
        ]
    )
    await page.goto(f"{site.url}/#{fragment}")
    await page.locator("#chat-state.state-empty").wait_for()
    assert await page.locator("#chat-send").is_hidden()  # the MainButton replaces it
    bg = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(14, 22, 33)"  # secondary_bg_color from themeParams

    await page.fill("#chat-input", "Какая комиссия?")
    button = await last_event(page, "web_app_setup_main_button")
    assert button["is_visible"] is True and button["text"] == "Отправить"
    await page.evaluate("Telegram.WebView.receiveEvent('main_button_pressed')")
    await page.locator(".bubble-bot", has_text="50%").wait_for()
    assert site.chat.received == [(DEMO_ID, "Какая комиссия?")]
    assert (await last_event(page, "web_app_trigger_haptic_feedback"))["notification_type"] == "success"
    assert (await last_event(page, "web_app_setup_main_button"))["is_visible"] is False
    await shoot(page, artifacts, "miniapp-telegram-dark-chat.png")

    await page.click("#tab-analytics")
    await page.fill("#object-code", "DEMO-0003")
    assert (await last_event(page, "web_app_setup_main_button"))["text"] == "Заказать анализ"
    await page.evaluate("Telegram.WebView.receiveEvent('main_button_pressed')")
    job = page.locator(".job", has_text="DEMO-0003")
    await job.locator('.badge[data-status="DONE"]').wait_for()
    await job.click()
    assert (await last_event(page, "web_app_setup_back_button"))["is_visible"] is True
    assert (await last_event(page, "web_app_setup_main_button"))["text"] == "Открыть PDF-отчёт"
    await page.evaluate("Telegram.WebView.receiveEvent('main_button_pressed')")
    opened = await last_event(page, "web_app_open_link")
    assert opened["url"].startswith(f"{site.url}/reports/")
    await page.evaluate("Telegram.WebView.receiveEvent('back_button_pressed')")
    await page.locator("#view-analytics").wait_for()
    assert (await last_event(page, "web_app_setup_back_button"))["is_visible"] is False
    assert browser.errors == []


async def test_staff_console_edits_a_cell(
    make_site: Callable[..., Awaitable[Site]], browser: Browser, artifacts: Path
) -> None:
    """The local staff console shows a sheet as a table; editing a cell writes it through the StaffPort; the
    status column is a dropdown."""
    staff = FakeStaff()
    site = await make_site(staff=staff)
    page = browser.page
    await page.set_viewport_size({"width": 1280, "height": 640})
    await page.goto(site.url + "/staff")
    cell = page.locator('td[data-a1="F2"]')
    await cell.wait_for()
    assert await cell.inner_text() == "Новое"
    await cell.click()
    # «Статус» has data validation in the real sheet: here too it is a dropdown of the same values.
    options = await page.locator('td[data-a1="F2"] select option').all_inner_texts()
    assert options == ["—", "Новое", "Ответ ИИ", "В работе", "Решено"]
    await page.select_option('td[data-a1="F2"] select', "В работе")
    await page.locator("#message", has_text="Сохранено").wait_for()
    assert staff.data["Обращения"][1][5] == "В работе"
    await page.locator('td[data-a1="G2"]').click()
    await page.fill('td[data-a1="G2"] textarea', "Добрый день! Комиссия по акции — 60%.")
    await page.press('td[data-a1="G2"] textarea', "Enter")
    await page.locator('td[data-a1="G2"]', has_text="Комиссия по акции").wait_for()
    assert staff.data["Обращения"][1][6] == "Добрый день! Комиссия по акции — 60%."
    await page.get_by_role("button", name="Auth").click()
    await page.locator('td[data-a1="D1"]', has_text="STATUS").wait_for()
    await page.get_by_role("button", name="Обращения").click()
    await page.locator('td[data-a1="F2"]', has_text="В работе").wait_for()
    await shoot(page, artifacts, "staff-console.png", docs=True)
    assert browser.errors == []


async def test_staff_console_shows_the_newest_entries_of_a_long_log(
    make_site: Callable[..., Awaitable[Site]], browser: Browser
) -> None:
    """A log cell longer than its box shows its last entries (the ones staff act on); its button expands it."""
    staff = FakeStaff()
    lines = [f"[2026-11-24 15:{i:02d}] Пользователь: вопрос номер {i}" for i in range(40)]
    staff.data["Обращения"][1][4] = "\n".join(lines)
    site = await make_site(staff=staff)
    page = browser.page
    await page.set_viewport_size({"width": 1280, "height": 640})
    await page.goto(site.url + "/staff")
    cell = page.locator('td[data-a1="E2"] .cell')
    await cell.wait_for()
    assert "long" in (await cell.get_attribute("class") or "")

    def visible(text: str) -> str:
        return f"""(el) => {{
            const r = document.createRange();
            const node = [...el.childNodes][0];
            const at = node.textContent.indexOf({text!r});
            r.setStart(node, at); r.setEnd(node, at + {len(text)});
            const a = r.getBoundingClientRect(), b = el.getBoundingClientRect();
            return a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
        }}"""

    assert await cell.evaluate(visible("вопрос номер 39"))
    assert not await cell.evaluate(visible("вопрос номер 0\n"))
    await page.locator('td[data-a1="E2"] .expand').click()
    assert "expanded" in (await cell.get_attribute("class") or "")
    assert await cell.evaluate(visible("вопрос номер 0\n"))
    assert browser.errors == []
