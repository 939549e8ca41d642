"""Аналитика 360 end to end: real python-telegram-bot against the fake Bot API, the local store, the worker."""

from __future__ import annotations

import asyncio
import datetime as dtm
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from bot.analytics.seed import seed_demo_market
from bot.jobs import Periodic
from bot.services.analytics import AnalyticsService
from bot.services.auth import AuthService
from bot.services.queue_poller import QueuePoller, make_pdf_loader
from bot.services.worker import AnalyticsWorker
from bot.telegram.context import BotContext, bot_context, install_context
from bot.telegram.handlers.analytics import PROMPT, TEXT_NOT_AUTHORIZED, register_analytics_handlers
from bot.telegram.messenger import TelegramMessenger
from gateway import AsyncSheetsGateway, GatewayConfig, build_gateway
from gateway.schemas import QUEUE, QueueCol
from tests.chat_support import add_demo_partner
from tests.conftest import FAST_RETRY
from tests.fakes.sheets_server import FakeSheetsServer
from tests.fakes.telegram_server import FakeTelegramServer, SentMessage
from tests.telegram_support import fake_bot_app, long_polling
from tests.unit.analytics_support import FakeClock

PARTNER = 100001
STRANGER = 200002
BASE_URL = "http://127.0.0.1:8080"
POLL = 0.05


@pytest.fixture(params=["local", "google"])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayConfig]:
    """Where the sheets live: the local store, or the fake Sheets API through real gspread."""
    if request.param == "local":
        yield GatewayConfig(backend="local", local_db_path=tmp_path / "sheets.db", retry=FAST_RETRY)
        return
    with FakeSheetsServer(sheets=()) as server:
        yield GatewayConfig(
            backend="google",
            spreadsheet_id=server.spreadsheet_id,
            sheets_api_base_url=server.url,
            local_db_path=tmp_path / "state" / "unused.db",
            retry=FAST_RETRY,
            reads_per_minute=None,  # the fake enforces no quota here; polls run every POLL seconds
            writes_per_minute=None,
        )


@pytest.fixture
async def store(store_config: GatewayConfig) -> AsyncIterator[AsyncSheetsGateway]:
    """The sheets with the demo objects/market and one authorized partner."""
    gw = build_gateway(store_config)
    await gw.start()
    try:
        await gw.ensure_sheets()
        await seed_demo_market(gw, FakeClock().now.date())
        await add_demo_partner(gw, PARTNER)
        yield gw
    finally:
        await gw.close()


@asynccontextmanager
async def running_bot(
    server: FakeTelegramServer, gw: AsyncSheetsGateway, reports: Path, poll_interval: float | None = POLL
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """The bot's analytics part, long-polling the fake, with the queue poll every `poll_interval` seconds
    (a Periodic job, as the composition root runs it); the poller is in `app.bot_data["poller"]`."""
    app = fake_bot_app(server)
    clock = FakeClock()
    poller = QueuePoller(
        gw,
        TelegramMessenger(app.bot),
        stuck_after=dtm.timedelta(minutes=10),
        pdf_loader=make_pdf_loader(reports, BASE_URL),
        clock=clock,
    )
    install_context(app, BotContext(auth=AuthService(gw), analytics=AnalyticsService(gw, clock=clock)))
    app.bot_data["poller"] = poller
    register_analytics_handlers(app)
    job = Periodic("queue-poll", poll_interval, poller.poll_once, first=poll_interval) if poll_interval else None
    async with long_polling(app):
        if job is not None:
            job.start()
        try:
            yield app
        finally:
            if job is not None:
                await job.stop()


def worker(gw: AsyncSheetsGateway, reports: Path) -> AnalyticsWorker:
    """The Python worker writing PDFs into `reports`."""
    return AnalyticsWorker(gw, reports, BASE_URL, clock=FakeClock(), settle=0.01)


async def settle_polls(server: FakeTelegramServer, n: int = 6) -> None:
    """Let the poll job run several more times."""
    await asyncio.sleep(POLL * n)
    await server.wait_for_delivery()


def documents(server: FakeTelegramServer, chat: int) -> list[SentMessage]:
    """PDFs sent to a chat."""
    return [s for s in server.sent_to(chat) if s.method == "sendDocument"]


def texts(server: FakeTelegramServer, chat: int) -> list[str]:
    """Plain texts sent to a chat."""
    return [s.plain_text or s.text or "" for s in server.sent_to(chat) if s.method == "sendMessage"]


async def test_request_to_delivered_report_exactly_once(
    telegram_server: FakeTelegramServer, store: AsyncSheetsGateway, tmp_path: Path
) -> None:
    """/analytics DEMO-0001 → worker → DONE → the partner gets the summary and the PDF once."""
    reports = tmp_path / "reports"
    async with running_bot(telegram_server, store, reports):
        telegram_server.user_sends_command(PARTNER, "/analytics demo-0001")
        accepted = await telegram_server.wait_for_sent(chat_id=PARTNER)
        assert "Запрос принят" in (accepted.plain_text or "") and "DEMO-0001" in (accepted.plain_text or "")
        run = await worker(store, reports).run_once()
        assert len(run.done) == 1
        summary = await telegram_server.wait_for_sent(chat_id=PARTNER, method="sendMessage")
        pdf = await telegram_server.wait_for_sent(chat_id=PARTNER, method="sendDocument")
        await settle_polls(telegram_server)
    assert (summary.plain_text or "").startswith("📊 Аналитика 360 · DEMO-0001")
    assert pdf.document is not None and pdf.document.startswith(b"%PDF") and pdf.filename == "analytics_DEMO-0001.pdf"
    assert len(documents(telegram_server, PARTNER)) == 1
    assert sum(t.startswith("📊 Аналитика 360") for t in texts(telegram_server, PARTNER)) == 1
    [row] = await store.table(QUEUE).all()
    assert row[QueueCol.STATUS] == "DONE" and row[QueueCol.DELIVERED_AT]


async def test_restart_between_done_and_delivery(
    telegram_server: FakeTelegramServer,
    store: AsyncSheetsGateway,
    store_config: GatewayConfig,
    tmp_path: Path,
) -> None:
    """The bot stops after queueing; the worker finishes; a restarted bot delivers the report once."""
    reports = tmp_path / "reports"
    async with running_bot(telegram_server, store, reports):
        telegram_server.user_sends_command(PARTNER, "/analytics DEMO-0002")
        await telegram_server.wait_for_sent(chat_id=PARTNER)
    await worker(store, reports).run_once()
    gw2 = build_gateway(store_config)  # a new process: fresh gateway over the same files
    await gw2.start()
    try:
        async with running_bot(telegram_server, gw2, reports):
            await telegram_server.wait_for_sent(chat_id=PARTNER, method="sendDocument")
            await settle_polls(telegram_server)
        async with running_bot(telegram_server, gw2, reports):  # one more restart: still nothing twice
            await settle_polls(telegram_server)
    finally:
        await gw2.close()
    assert len(documents(telegram_server, PARTNER)) == 1
    assert sum(t.startswith("📊 Аналитика 360 · DEMO-0002") for t in texts(telegram_server, PARTNER)) == 1


async def test_unknown_code_gets_a_clear_error(
    telegram_server: FakeTelegramServer, store: AsyncSheetsGateway, tmp_path: Path
) -> None:
    """An unknown code is answered at once with where to find the code; nothing is queued."""
    async with running_bot(telegram_server, store, tmp_path / "reports"):
        telegram_server.user_sends_command(PARTNER, "/analytics NOPE-0404")
        reply = await telegram_server.wait_for_sent(chat_id=PARTNER)
        telegram_server.user_sends_command(PARTNER, "/analytics ??")
        bad = await telegram_server.wait_for_sent(chat_id=PARTNER)
    assert "NOPE-0404 не найден" in (reply.plain_text or "") and "карточке объекта" in (reply.plain_text or "")
    assert "не похоже на код объекта" in (bad.plain_text or "")
    assert await store.table(QUEUE).all() == []


async def test_analytics_requests_over_the_partner_rate_are_refused_and_not_queued(
    telegram_server: FakeTelegramServer, store: AsyncSheetsGateway, tmp_path: Path
) -> None:
    """/analytics past the per-partner burst gets the polite refusal and writes no «Очередь» row."""
    from bot.services.partner_limits import PartnerRateLimiter

    async with running_bot(telegram_server, store, tmp_path / "reports", poll_interval=None) as app:
        bot_context(app).rate_limiter = PartnerRateLimiter(per_minute=1, burst=1)
        telegram_server.user_sends_command(PARTNER, "/analytics DEMO-0001")
        await telegram_server.wait_for_sent(chat_id=PARTNER)
        telegram_server.user_sends_command(PARTNER, "/analytics DEMO-0002")
        refused = await telegram_server.wait_for_sent(chat_id=PARTNER)
    assert "слишком часто" in (refused.plain_text or "") and "не сохранено" in (refused.plain_text or "")
    assert [r[QueueCol.OBJECT_CODE] for r in await store.table(QUEUE).all()] == ["DEMO-0001"]


async def test_worker_error_is_delivered_once(
    telegram_server: FakeTelegramServer, store: AsyncSheetsGateway, tmp_path: Path
) -> None:
    """A request whose object vanished before the worker ran ends ERROR, told to the partner once."""
    reports = tmp_path / "reports"
    async with running_bot(telegram_server, store, reports):
        telegram_server.user_sends_command(PARTNER, "/analytics DEMO-0003")
        await telegram_server.wait_for_sent(chat_id=PARTNER)
        [row] = await store.table(QUEUE).all()
        await store.table(QUEUE).write(
            [store.table(QUEUE).op_upsert(row[QueueCol.ID], {QueueCol.OBJECT_CODE: "GONE-0003"})]
        )
        await worker(store, reports).run_once()
        error = await telegram_server.wait_for_sent(chat_id=PARTNER)
        await settle_polls(telegram_server)
    assert "Не удалось подготовить" in (error.plain_text or "") and "GONE-0003 не найден" in (error.plain_text or "")
    assert sum("Не удалось подготовить" in t for t in texts(telegram_server, PARTNER)) == 1
    assert documents(telegram_server, PARTNER) == []


async def test_button_prompt_and_reply_queue_a_request(
    telegram_server: FakeTelegramServer, store: AsyncSheetsGateway, tmp_path: Path
) -> None:
    """«Аналитика 360» asks for the code with ForceReply; the reply with a code queues the request."""
    async with running_bot(telegram_server, store, tmp_path / "reports"):
        telegram_server.user_sends_text(PARTNER, "Аналитика 360")
        prompt = await telegram_server.wait_for_sent(chat_id=PARTNER)
        assert (prompt.plain_text or "").startswith(PROMPT)
        assert (prompt.reply_markup or {}).get("force_reply") is True
        assert prompt.message_id is not None
        asked = telegram_server.message(PARTNER, prompt.message_id)
        telegram_server.user_sends_message(PARTNER, {"text": "DEMO-0004", "reply_to_message": asked})
        accepted = await telegram_server.wait_for_sent(chat_id=PARTNER)
    assert "Запрос принят" in (accepted.plain_text or "")
    [row] = await store.table(QUEUE).all()
    assert (row[QueueCol.OBJECT_CODE], row[QueueCol.REQUESTED_BY]) == ("DEMO-0004", "DEMO-001")


async def test_unauthorized_user_is_refused(
    telegram_server: FakeTelegramServer, store: AsyncSheetsGateway, tmp_path: Path
) -> None:
    """Someone not authorized in Auth cannot queue analytics."""
    async with running_bot(telegram_server, store, tmp_path / "reports"):
        telegram_server.user_sends_command(STRANGER, "/analytics DEMO-0001")
        reply = await telegram_server.wait_for_sent(chat_id=STRANGER)
    assert reply.plain_text == TEXT_NOT_AUTHORIZED
    assert await store.table(QUEUE).all() == []


async def test_two_hundred_pending_cost_one_read_per_poll(
    telegram_server: FakeTelegramServer, store: AsyncSheetsGateway, tmp_path: Path
) -> None:
    """With 200 requests waiting for the worker, every poll is one batchGet on either backend."""
    queue = store.table(QUEUE)
    rows = [
        {
            "id": f"job-{i:03d}",
            "created_at": "2026-11-24 11:59:00",
            "object_code": "DEMO-0001",
            "telegram_id": str(PARTNER + i),
            "status": "NEW",
            "attempts": "0",
        }
        for i in range(200)
    ]
    await store.write([queue.op_insert(r) for r in rows])
    async with running_bot(telegram_server, store, tmp_path / "reports", poll_interval=None) as app:
        poller = app.bot_data["poller"]  # polled by hand: no job adds reads meanwhile
        for _ in range(3):
            before = store.metrics.calls["batch_get"]
            stats = await poller.poll_once()
            assert store.metrics.calls["batch_get"] - before == 1
            assert stats.pending == 200
