"""The real `marketingbot local`: a subprocess started in an empty directory, probed over HTTP, driven in
headless Chromium (Mini App and staff console) and through the fake Bot API, then stopped with SIGTERM.

Screenshots go to BROWSER_ARTIFACTS_DIR (default: a pytest tmp dir); with UPDATE_DOCS_SCREENSHOTS=1 the
README's local-* pictures in docs/img are refreshed too. Without chromium the browser test skips — unless CI
is set, where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from gateway.schemas import APPEALS, AppealCol
from tests.e2e.browser_support import shoot
from tests.fakes.telegram_server import FakeTelegramServer
from tests.local_stack import LocalStack

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

DESKTOP: ViewportSize = {"width": 1280, "height": 720}
DEMO_ID = "100001"
WEBAPP_URL = "https://miniapp.example.test/"


def test_local_starts_in_an_empty_directory_and_stops_cleanly(
    start_stack: Callable[..., LocalStack], record_property: Callable[[str, object], None]
) -> None:
    """From an empty directory /healthz answers ok with the local store and offline AI; SIGTERM exits 0."""
    stack = start_stack()
    body = stack.wait_healthy()
    record_property("healthz_seconds", round(stack.healthy_after, 2))
    print(f"/healthz answered {stack.healthy_after:.2f}s after start (empty directory)")
    assert body["status"] == "ok"
    assert (body["sheet_backend"], body["ai"], body["telegram"]) == ("local", "offline", "off")
    assert (stack.workdir / "data" / "marketingbot.db").is_file()
    auth = stack.sheet("Auth")
    assert any(row[:2] == ["DEMO-001", "+79000000001"] and DEMO_ID in row for row in auth[1:])
    objects = stack.sheet("Объекты")
    assert {"DEMO-0001", "DEMO-0020"} <= {row[0] for row in objects[1:]}
    assert f"{stack.url}/" in stack.log()  # the URL a newcomer opens
    assert stack.stop() == 0
    assert "Traceback" not in stack.log()


# -- the browser --------------------------------------------------------------------------------------------


def demo_appeal_row(stack: LocalStack) -> tuple[int, list[str], list[str]]:
    """The demo partner's Обращения row: (sheet row number, header, values)."""
    rows = stack.sheet(APPEALS.title)
    header = rows[0]
    tid = header.index(AppealCol.TELEGRAM_ID)
    for number, row in enumerate(rows[1:], start=2):
        if len(row) > tid and row[tid] == DEMO_ID:
            return number, header, row + [""] * (len(header) - len(row))
    raise AssertionError(f"no Обращения row for {DEMO_ID}: {rows}")


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    name = ""
    n = index + 1
    while n:
        n, r = divmod(n - 1, 26)
        name = chr(65 + r) + name
    return name


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
    """Poll a condition (about 5 times a second) until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


async def test_mini_app_and_staff_console_against_the_real_process(
    start_stack: Callable[..., LocalStack], browser_context: Any, artifacts: Path
) -> None:
    """Chat with the offline AI, Analytics 360 to DONE with a PDF, an unknown code's error, and an operator
    reply typed in /staff reaching the Mini App — all against `marketingbot local`, which then exits 0."""
    stack = start_stack(OPERATOR_POLL_SECONDS="1")
    stack.wait_healthy()
    page = await browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    await page.clock.install()  # real time flows; the chat's 15 s refresh can be fast-forwarded
    await page.goto(stack.url + "/")  # dev mode: the page fetches initData for the demo partner

    # Chat: the offline responder answers from the demo knowledge base.
    await page.locator("#chat-state.state-empty").wait_for()
    assert await page.locator("#whoami").inner_text() != ""
    await page.fill("#chat-input", "Какая комиссия партнёра?")
    await page.click("#chat-send")
    reply = page.locator(".bubble-bot:not(.typing)").last  # the dots while waiting are a .bubble-bot too
    await reply.wait_for()
    assert len(await reply.inner_text()) > 20
    assert await page.locator(".bubble-me .bubble-text").last.inner_text() == "Какая комиссия партнёра?"

    # Analytics 360: DEMO-0001 goes through the in-process worker to DONE with a PDF.
    await page.click("#tab-analytics")
    await page.fill("#object-code", "DEMO-0001")
    await page.click("#order-btn")
    job = page.locator(".job", has_text="DEMO-0001")
    await job.wait_for()
    await job.locator('.badge[data-status="DONE"]').wait_for(timeout=45_000)
    await page.fill("#object-code", "DEMO-0002")  # a second one, still queued in the picture
    await page.click("#order-btn")
    await page.locator(".job", has_text="DEMO-0002").wait_for()
    await shoot(page, artifacts, "local-miniapp-analytics.png", docs=True)
    await job.click()
    await page.locator("#view-job").wait_for()
    assert "DEMO-0001" in await page.locator("#view-job").inner_text()
    assert await page.locator(".result-text").inner_text() != ""
    href = await page.locator("#job-pdf").get_attribute("href")
    assert href is not None and href.startswith("/reports/")
    pdf = await page.request.get(stack.url + href)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert (await pdf.body()).startswith(b"%PDF")
    await shoot(page, artifacts, "local-miniapp-analytics-detail.png")
    await page.click("#job-back")

    # An unknown object code: the service's message under the field, nothing queued.
    await page.fill("#object-code", "NOPE-9999")
    await page.click("#order-btn")
    error = page.locator("#order-error")
    await error.wait_for()
    assert await error.get_attribute("data-code") == "unknown_object_code"
    assert "NOPE-9999" not in await page.locator("#jobs").inner_text()
    await shoot(page, artifacts, "local-miniapp-unknown-code.png")

    # Staff take the conversation over in /staff: «Статус» = «В работе».
    number, header, _ = demo_appeal_row(stack)
    status_cell = f"{column_letter(header.index(AppealCol.STATUS))}{number}"
    reply_cell = f"{column_letter(header.index(AppealCol.OPERATOR_REPLY))}{number}"
    staff = await browser_context.new_page()
    await staff.set_viewport_size(DESKTOP)
    await staff.goto(f"{stack.url}/staff#{APPEALS.title}")
    await staff.locator(f'td[data-a1="{status_cell}"]').click()
    await staff.select_option(f'td[data-a1="{status_cell}"] select', "В работе")  # a dropdown, as in Sheets
    await staff.locator("#message", has_text=f"Сохранено: {APPEALS.title}!{status_cell}").wait_for()
    assert demo_appeal_row(stack)[2][header.index(AppealCol.STATUS)] == "В работе"

    # The partner writes again: the AI stays silent while an operator has the conversation.
    await page.click("#tab-chat")
    answers = page.locator(".bubble-bot:not(.typing)")
    bot_bubbles = await answers.count()
    await page.fill("#chat-input", "Подскажите, когда выплата по сделке?")
    await page.click("#chat-send")
    await page.locator("#chat-status", has_text="оператор").wait_for()
    assert await answers.count() == bot_bubbles

    # The operator types a reply; the app delivers it and moves it into the log.
    answer = "Добрый день! Выплата — в течение 5 рабочих дней после подписания акта."
    await staff.locator(f'td[data-a1="{reply_cell}"]').click()
    await staff.fill(f'td[data-a1="{reply_cell}"] textarea', answer)
    await staff.press(f'td[data-a1="{reply_cell}"] textarea', "Enter")
    await staff.locator("#message", has_text=f"Сохранено: {APPEALS.title}!{reply_cell}").wait_for()
    await shoot(staff, artifacts, "local-staff-console.png", docs=True)
    log_col, reply_col = header.index(AppealCol.LOG), header.index(AppealCol.OPERATOR_REPLY)

    def delivered() -> bool:
        row = demo_appeal_row(stack)[2]
        return f"Оператор: {answer}" in row[log_col] and row[reply_col] == ""

    await wait_for(delivered, 20.0, "the operator reply to be delivered and «Ответ оператора» cleared")

    # The Mini App re-reads the conversation while «В работе»: the operator's reply shows up.
    await page.clock.fast_forward(16_000)
    await page.locator(".bubble-operator", has_text="Выплата").wait_for()
    await shoot(page, artifacts, "local-miniapp-chat.png", docs=True)
    assert errors == []

    assert stack.stop() == 0
    assert "Traceback" not in stack.log()


# -- Telegram -------------------------------------------------------------------------------------------------


async def test_telegram_menu_button_and_app_command_in_the_real_process(
    start_stack: Callable[..., LocalStack], telegram_server: FakeTelegramServer
) -> None:
    """With a bot token and an https WEBAPP_URL the process sets the web_app menu button and answers /app."""
    stack = start_stack(
        TELEGRAM_BOT_TOKEN=telegram_server.token,
        TELEGRAM_API_BASE_URL=telegram_server.api_base_url,
        WEBAPP_URL=WEBAPP_URL,
    )
    assert stack.wait_healthy()["telegram"] == "on"
    expected = {"type": "web_app", "text": "Приложение", "web_app": {"url": WEBAPP_URL}}
    await wait_for(lambda: telegram_server.menu_button() == expected, 10.0, "the web_app menu button")
    telegram_server.user_sends_command(int(DEMO_ID), "/app")
    answer = await telegram_server.wait_for_sent(chat_id=int(DEMO_ID), method="sendMessage", timeout=10.0)
    assert answer.inline_keyboard == [[{"text": "Открыть приложение", "web_app": {"url": WEBAPP_URL}}]]
    assert stack.stop() == 0
    assert "Traceback" not in stack.log()


# -- health -------------------------------------------------------------------------------------------------


def test_readyz_and_a_restart_after_a_crash_in_the_real_process(tmp_path: Path) -> None:
    """/readyz is 200 with the /healthz body when all is well; after a SIGKILL the next start reports the crash
    once (through the staff channel: the log without a bot), and a clean stop leaves nothing to report."""
    from tests.local_stack import spawn_local_stack

    workdir = tmp_path / "run"
    workdir.mkdir()
    first = spawn_local_stack(workdir, tmp_path / "first.log")
    try:
        body = first.wait_healthy()
        ready = httpx.get(first.url + "/readyz", timeout=5.0)
        assert ready.status_code == 200 and ready.json()["status"] == "ok" and ready.json()["problems"] == []
        assert body["dead_letters"] == 0 and body["outbox_depth"] == 0
    finally:
        first.kill()  # SIGKILL: no clean stop
    second = spawn_local_stack(workdir, tmp_path / "second.log")
    try:
        second.wait_healthy()
        deadline = time.monotonic() + 20
        while "аварийной остановки" not in second.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.log().count("staff alert: ⚠️ Бот перезапущен после аварийной остановки") == 1
        assert second.stop() == 0
    finally:
        second.kill()
    third = spawn_local_stack(workdir, tmp_path / "third.log")
    try:
        third.wait_healthy()
        time.sleep(0.5)
        assert "аварийной остановки" not in third.log()
        assert third.stop() == 0
    finally:
        third.kill()
