"""The live Mini App against the real `marketingbot local` in headless Chromium: an operator reply typed in the
staff console appears without reload, the in-work banner survives a reload and stays on screen, the catalogue
leads to a report, and «Позвать оператора» hands the partner to staff (through the fake Bot API).

Screenshots go to BROWSER_ARTIFACTS_DIR; with UPDATE_DOCS_SCREENSHOTS=1 the README's miniapp-* pictures in
docs/img are refreshed too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bot.web.initdata import sign_init_data
from gateway.schemas import APPEALS, AppealCol
from tests.e2e.browser_support import shoot
from tests.e2e.test_local_stack import DEMO_ID, DESKTOP, column_letter, demo_appeal_row, wait_for
from tests.fakes.telegram_server import FakeTelegramServer
from tests.local_stack import LocalStack, free_port, spawn_local_stack

STAFF_CHAT = -100777
BANNER = "С вами работает оператор"


async def open_console(browser_context: Any, stack: LocalStack) -> Any:
    """The staff console on Обращения in a desktop-sized page."""
    staff = await browser_context.new_page()
    await staff.set_viewport_size(DESKTOP)
    await staff.goto(f"{stack.url}/staff#{APPEALS.title}")
    await staff.locator("#grid td").first.wait_for()
    return staff


async def type_cell(staff: Any, a1: str, value: str) -> None:
    """Type a value into a free-text cell of the console and save it with Enter."""
    await staff.locator(f'td[data-a1="{a1}"]').click()
    await staff.fill(f'td[data-a1="{a1}"] textarea', value)
    await staff.press(f'td[data-a1="{a1}"] textarea', "Enter")
    await staff.locator("#message", has_text=f"!{a1}").wait_for()


async def test_operator_reply_typed_in_the_console_appears_in_the_open_mini_app_within_5_s(
    start_stack: Callable[..., LocalStack], browser_context: Any, artifacts: Path
) -> None:
    """With default settings, a status chosen from the console's dropdown and then an operator reply typed
    in «Ответ оператора» show up in the open Mini App within 5 s each, without reload; the reply's bubble has
    a time; after a reload the in-work banner is shown at once and stays on screen when the chat scrolls."""
    stack = start_stack()
    stack.wait_healthy()
    page = await browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    await page.goto(stack.url + "/")
    await page.fill("#chat-input", "Добрый день! Подскажите, когда выплата по сделке?")
    await page.click("#chat-send")
    await page.locator(".bubble-bot:not(.typing)").last.wait_for()
    assert await page.locator(".bubble-me .bubble-time").last.inner_text() != ""
    assert await page.locator(".bubble-bot:not(.typing) .bubble-time").last.inner_text() != ""
    assert await page.locator("#chat-status").is_hidden()

    number, header, _ = demo_appeal_row(stack)
    status_cell = f"{column_letter(header.index(AppealCol.STATUS))}{number}"
    reply_cell = f"{column_letter(header.index(AppealCol.OPERATOR_REPLY))}{number}"
    staff = await open_console(browser_context, stack)

    # Staff take the conversation: the status column is a dropdown of the sheet's allowed values.
    await staff.locator(f'td[data-a1="{status_cell}"]').click()
    options = await staff.locator(f'td[data-a1="{status_cell}"] select option').all_inner_texts()
    assert {"Новое", "Ответ ИИ", "В работе", "Решено"} <= set(options)
    started = time.monotonic()
    await staff.select_option(f'td[data-a1="{status_cell}"] select', "В работе")
    await page.locator("#chat-status", has_text=BANNER).wait_for(timeout=5_000)
    status_seconds = time.monotonic() - started

    # The operator's reply: typed in G, delivered, logged in E, and pushed to the page.
    answer = "Выплата — в течение 5 рабочих дней после подписания акта."
    started = time.monotonic()
    await type_cell(staff, reply_cell, answer)
    operator = page.locator(".bubble-operator", has_text="Выплата")
    await operator.wait_for(timeout=5_000)
    reply_seconds = time.monotonic() - started
    print(f"live: status in {status_seconds:.2f}s, operator reply in {reply_seconds:.2f}s (no reload)")
    assert await operator.locator(".bubble-time").inner_text() != ""
    await shoot(page, artifacts, "miniapp-live-operator-reply.png", docs=True)

    # After a reload the banner is there before anything is typed, and a long chat does not scroll it away.
    for i in range(8):
        await page.fill("#chat-input", f"Сообщение оператору номер {i + 1}, чтобы переписка стала длинной.")
        await page.click("#chat-send")
        await page.locator(".bubble-me", has_text=f"номер {i + 1},").wait_for()
    await page.reload()
    banner = page.locator("#chat-status", has_text=BANNER)
    await banner.wait_for(timeout=5_000)
    await page.locator(".bubble-me", has_text="номер 8,").wait_for()
    await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    box = await banner.bounding_box()
    assert box is not None and 0 <= box["y"] < 200, box
    assert await page.locator("#escalate-btn").is_hidden()  # already with an operator
    assert errors == []
    assert stack.stop() == 0
    assert "Traceback" not in stack.log()


async def test_catalogue_search_then_one_tap_to_a_report(
    start_stack: Callable[..., LocalStack], browser_context: Any, artifacts: Path
) -> None:
    """The Объекты tab lists the agency's objects; search and filters narrow them; «Аналитика 360» on one
    queues the request and opens it, and the report arrives by itself."""
    stack = start_stack()
    stack.wait_healthy()
    page = await browser_context.new_page()
    await page.goto(stack.url + "/")
    await page.click("#tab-catalogue")
    objects = page.locator("#catalogue-list .object")
    await objects.first.wait_for()
    assert await objects.count() == 20
    # DEMO-0002 is a two-room object: filter by its district and two rooms.
    district = (await objects.nth(1).locator(".muted").inner_text()).split(",")[0]
    await page.select_option("#catalogue-district", district)
    await page.select_option("#catalogue-rooms", "2")

    async def narrowed() -> list[str]:
        texts: list[str] = await objects.all_inner_texts()
        return texts if texts and all(district in t and "2-комн." in t for t in texts) else []

    await until(page, narrowed)
    assert "DEMO-0002" in "".join(await objects.all_inner_texts())
    assert await objects.count() < 20
    await page.select_option("#catalogue-district", "")
    await page.select_option("#catalogue-rooms", "")
    await page.fill("#catalogue-q", "DEMO-0007")
    await page.locator("#catalogue-count", has_text="Найдено: 1").wait_for()
    await page.fill("#catalogue-q", "")
    await page.locator("#catalogue-count", has_text="Найдено: 20").wait_for()
    await shoot(page, artifacts, "miniapp-catalogue.png", docs=True)

    first = objects.first
    code = await first.get_attribute("data-code")
    await first.locator(".object-order").click()
    await page.locator("#view-job").wait_for()
    assert code is not None and code in await page.locator("#job-code").inner_text()
    await page.locator('#job-status[data-status="DONE"]').wait_for(timeout=45_000)
    assert code in await page.locator(".result-text").inner_text()
    assert stack.stop() == 0


async def until(page: Any, check: Callable[[], Any], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until the async `check` returns something truthy."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "the page did not get there in time"
        await page.wait_for_timeout(100)


async def test_escalate_button_hands_the_partner_to_staff(
    start_stack: Callable[..., LocalStack], browser_context: Any, telegram_server: FakeTelegramServer
) -> None:
    """«Позвать оператора» in the Mini App sets «В работе», shows the banner and notifies the staff chat."""
    stack = start_stack(
        TELEGRAM_BOT_TOKEN=telegram_server.token,
        TELEGRAM_API_BASE_URL=telegram_server.api_base_url,
        STAFF_CHAT_ID=str(STAFF_CHAT),
    )
    stack.wait_healthy()
    user = {"id": int(DEMO_ID), "first_name": "Анна", "last_name": "Демо", "username": "demo"}
    init_data = sign_init_data(telegram_server.token, user, datetime.now(UTC))
    page = await browser_context.new_page()
    # How Telegram opens a Mini App: initData in the URL fragment, read by the vendored SDK.
    await page.goto(f"{stack.url}/#tgWebAppData={quote(init_data)}&tgWebAppVersion=8.0&tgWebAppPlatform=web")
    button = page.locator("#escalate-btn")
    await button.wait_for()
    await button.click()
    await page.locator("#chat-status", has_text=BANNER).wait_for(timeout=5_000)
    assert await button.is_hidden()
    notice = await telegram_server.wait_for_sent(chat_id=STAFF_CHAT, method="sendMessage", timeout=10.0)
    assert "оператор" in (notice.plain_text or "").casefold()
    await wait_for(
        lambda: demo_appeal_row(stack)[2][demo_appeal_row(stack)[1].index(AppealCol.STATUS)] == "В работе",
        5.0,
        "«В работе» in Обращения",
    )
    assert stack.stop() == 0


async def test_mini_app_reconnects_by_itself_after_a_restart(tmp_path: Path, browser_context: Any) -> None:
    """When the server restarts, the open page reconnects on its own and shows a reply delivered afterwards,
    once, without reload."""
    port = free_port()
    workdir = tmp_path / "run"
    workdir.mkdir()
    stacks = [spawn_local_stack(workdir, tmp_path / "first.log", extra={"WEB_PORT": str(port)})]
    try:
        stacks[0].wait_healthy()
        page = await browser_context.new_page()
        await page.goto(stacks[0].url + "/")
        await page.fill("#chat-input", "Здравствуйте!")
        await page.click("#chat-send")
        await page.locator(".bubble-bot:not(.typing)").last.wait_for()
        assert stacks[0].stop() == 0

        stacks.append(spawn_local_stack(workdir, tmp_path / "second.log", extra={"WEB_PORT": str(port)}))
        stack = stacks[1]
        stack.wait_healthy()
        number, header, _ = demo_appeal_row(stack)
        reply_cell = f"{column_letter(header.index(AppealCol.OPERATOR_REPLY))}{number}"
        async with httpx.AsyncClient(base_url=stack.url) as client:
            resp = await client.post(
                f"/staff/api/sheets/{APPEALS.title}/cells", json={"a1": reply_cell, "value": "Мы снова на связи."}
            )
            assert resp.status_code == 200, resp.text
        operator = page.locator(".bubble-operator", has_text="Мы снова на связи.")
        await operator.wait_for(timeout=30_000)  # the page's own retry pause grows to a few seconds
        await page.wait_for_timeout(1_500)
        assert await operator.count() == 1
        assert await page.locator(".bubble-me", has_text="Здравствуйте!").count() == 1
        assert stack.stop() == 0
    finally:
        for stack in stacks:
            stack.kill()
