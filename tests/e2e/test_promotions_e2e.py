"""Promotions and the admin console end to end: real python-telegram-bot against the fake Bot API, the real
gateway on the local store; one broadcaster runs in a child process that is SIGKILLed mid-broadcast."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
from telegram.ext import AIORateLimiter, Application

from bot.ai.fallback import FallbackAI
from bot.ai.offline import OfflineResponder
from bot.ai.prompt import SystemPrompt
from bot.jobs import Periodic
from bot.services.admin import ADMIN_COMMANDS, AdminService
from bot.services.appeals import AppealsService
from bot.services.auth import AuthService
from bot.services.chatlog import Author, format_entry
from bot.services.knowledge import KnowledgeBase
from bot.services.promotions import LEDGER_PREFIX, PromotionService, recipient_records
from bot.telegram.context import BotContext, install_context
from bot.telegram.handlers.admin import register_admin_handlers
from bot.telegram.handlers.chat import TEXT_UNAUTHORIZED, register_chat_handlers
from bot.telegram.handlers.commands import PARTNER_COMMANDS, help_text, publish_commands, register_help_handler
from bot.telegram.handlers.promotions import TEXT_RESUMED, TEXT_STOPPED, register_promotion_handlers
from bot.telegram.messenger import TelegramMessenger
from gateway import AsyncSheetsGateway, DeliveryPhase, build_gateway
from gateway.schemas import APPEALS, AUTH, PROMOTIONS, AppealCol, AuthCol, PromoCol
from tests.chat_support import PROMPT_PATH, moscow
from tests.fakes.telegram_server import FakeTelegramServer, SentMessage
from tests.promo_support import add_promo, partner_ids, promo_row, seed_partners, store_config
from tests.telegram_support import fake_bot_app, long_polling

ADMIN = 4242
REPO = Path(__file__).resolve().parents[2]
FAST_RATE = 500.0


def build_app(tg: FakeTelegramServer, *, rate_limiter: bool = False) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB application pointed at the fake Bot API (optionally with PTB's AIORateLimiter, as in production)."""
    return fake_bot_app(tg, rate_limiter=AIORateLimiter(max_retries=0) if rate_limiter else None)


def sends(tg: FakeTelegramServer, method: str = "sendMessage") -> list[SentMessage]:
    """Successful sends of one method."""
    return [s for s in tg.sent if s.method == method]


def per_chat(tg: FakeTelegramServer, method: str = "sendMessage") -> Counter[int]:
    """Successful sends per chat."""
    return Counter(int(s.chat_id or 0) for s in sends(tg, method))


async def wait_for_sends(tg: FakeTelegramServer, count: int, within: float = 20.0) -> None:
    """Until the fake server recorded `count` messages in total."""
    await tg.wait_for_sent(lambda s: s.seq >= count, timeout=within, method=None)


@dataclass
class World:
    """The bot running against the fake Bot API."""

    tg: FakeTelegramServer
    gw: AsyncSheetsGateway
    app: Application[Any, Any, Any, Any, Any, Any]
    messenger: TelegramMessenger

    def promotions(self, **kw: Any) -> PromotionService:
        """A PromotionService sending through PTB (fast unless told otherwise)."""
        return PromotionService(self.gw, self.messenger, **{"rate_per_second": FAST_RATE, **kw})


@pytest.fixture
async def world(telegram_server: FakeTelegramServer, local_gateway: AsyncSheetsGateway) -> AsyncIterator[World]:
    """PTB initialized against the fake server (not polling: broadcasts only need the Bot)."""
    app = build_app(telegram_server)
    async with app:
        yield World(telegram_server, local_gateway, app, TelegramMessenger(app.bot))


# -- broadcasts ------------------------------------------------------------------------------------


async def test_broadcast_to_500_partners_exactly_once(world: World) -> None:
    """500 partners: each authorized, opted-in one gets the promotion once; blocked ones are counted in
    «Ошибки», opted-out ones are skipped, the row ends SENT."""
    tg, gw = world.tg, world.gw
    ids = partner_ids(500)
    opted_out, blocked = set(ids[10:25]), set(ids[100:107])
    await seed_partners(gw, 500, opted_out=opted_out)
    for tid in blocked:
        tg.block_chat(tid)
    await add_promo(gw, title="Бонус за сделку", text="Двойной бонус до 30 ноября.")
    (report,) = await world.promotions().poll_once()
    expected = set(ids) - opted_out - blocked
    assert per_chat(tg) == dict.fromkeys(expected, 1)
    first = sends(tg)[0]
    assert first.parse_mode is None and (first.plain_text or "").startswith("Бонус за сделку\n\nДвойной бонус")
    assert (report.sent, report.failed, report.opted_out) == (478, 7, 15)
    row = await promo_row(gw)
    assert (row[PromoCol.STATUS], row[PromoCol.SENT], row[PromoCol.ERRORS]) == (
        "SENT",
        "478",
        "7: заблокировали бота — 7",
    )
    assert await world.promotions().poll_once() == []
    assert len(sends(tg)) == 478


@pytest.mark.parametrize("seed", [11, 12, 13])
async def test_cancelled_mid_broadcast_and_restarted_exactly_once(world: World, seed: int) -> None:
    """The broadcast task cancelled at a random point and a new service started: everyone exactly once."""
    tg, gw = world.tg, world.gw
    ids = await seed_partners(gw, 500)
    await add_promo(gw)
    tg.set_latency(0.002)  # answers take a moment, so the cancellation lands on sends in flight
    task = asyncio.create_task(world.promotions(max_in_flight=4).poll_once())
    await wait_for_sends(tg, random.Random(seed).randrange(20, 450))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await promo_row(gw))[PromoCol.STATUS] == "SENDING"
    sent_before = len(sends(tg))
    assert 20 <= sent_before < 500
    tg.set_latency(0.0)
    (report,) = await world.promotions().poll_once()
    assert per_chat(tg) == dict.fromkeys(ids, 1)
    assert report.sent == 500 and (await promo_row(gw))[PromoCol.SENT] == "500"


async def test_killed_process_resumes_outside_the_window(telegram_server: FakeTelegramServer, tmp_path: Path) -> None:
    """A broadcaster process SIGKILLed mid-broadcast, restarted in-process: everyone gets the promotion, and
    only the one partner in flight at the kill (record SENDING) may get it twice — exactly when Telegram
    had already accepted their message."""
    tg = telegram_server
    db = tmp_path / "store" / "sheets.db"
    gw = build_gateway(store_config(db))
    await gw.start()
    await gw.ensure_sheets()
    ids = await seed_partners(gw, 500)
    await add_promo(gw)
    await gw.close()

    kill_at = random.Random(os.getpid()).randrange(50, 400)
    cmd = [sys.executable, "-m", "tests.promo_support", "--db", str(db), "--api-url", tg.api_base_url]
    cmd += ["--token", tg.token, "--rate", "400", "--max-in-flight", "1"]
    child = await asyncio.create_subprocess_exec(*cmd, cwd=REPO, stdout=PIPE, stderr=PIPE)
    try:
        await wait_for_sends(tg, kill_at, within=60)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.returncode is None:
            child.kill()
        _, err = await child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode(errors="replace")[-2000:]
    await asyncio.sleep(0.3)  # let the server finish a request that was already on the wire
    before = per_chat(tg)
    assert kill_at <= sum(before.values()) < 500

    gw = build_gateway(store_config(db))
    await gw.start()
    try:
        records = await recipient_records(gw, LEDGER_PREFIX + "A1")
        in_flight = {int(k) for k, r in records.items() if r.phase is DeliveryPhase.SENDING}
        assert len(in_flight) <= 1  # one send in flight at a time
        app = build_app(tg)
        async with app:
            (report,) = await PromotionService(gw, TelegramMessenger(app.bot), rate_per_second=FAST_RATE).poll_once()
        assert report.finished and report.sent == 500
        row = await gw.table(PROMOTIONS).get("A1")
        assert row is not None and row[PromoCol.STATUS] == "SENT"
    finally:
        await gw.close()
    after = per_chat(tg)
    # THE WINDOW: the in-flight partner is doubled exactly when Telegram had their message before the kill.
    expected = {tid: 2 if tid in in_flight and before[tid] else 1 for tid in ids}
    assert after == expected


async def test_pace_never_above_the_limit(world: World) -> None:
    """At 10 messages/s no one-second window at the server holds more than 10 sends, and the fake server's own
    flood control (10/s overall) never has to refuse one."""
    tg, gw = world.tg, world.gw
    ids = await seed_partners(gw, 30)
    await add_promo(gw)
    tg.set_flood_limits(global_per_second=10)
    app = build_app(tg, rate_limiter=True)
    async with app:
        service = PromotionService(gw, TelegramMessenger(app.bot), rate_per_second=10, max_in_flight=4)
        (report,) = await service.poll_once()
    assert report.sent == 30 and per_chat(tg) == dict.fromkeys(ids, 1)
    assert [c for c in tg.calls if c.status == 429] == []
    stamps = sorted(s.timestamp for s in sends(tg))
    assert all(stamps[i + 10] - stamps[i] >= 1.0 for i in range(len(stamps) - 10))
    assert stamps[-1] - stamps[0] >= 2.9 * 0.95  # paced, not bunched


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # raised inside PTB's RetryAfter
async def test_retry_after_is_honoured(world: World) -> None:
    """Telegram's 429 RetryAfter (through PTB's AIORateLimiter) pauses the broadcast for the time asked;
    the refused message is sent again, once."""
    tg, gw = world.tg, world.gw
    ids = await seed_partners(gw, 8)
    await add_promo(gw)
    tg.flood_next(n=1, retry_after=1, method="sendMessage", chat_id=ids[3])
    app = build_app(tg, rate_limiter=True)
    async with app:
        service = PromotionService(gw, TelegramMessenger(app.bot), rate_per_second=50, max_in_flight=1)
        (report,) = await service.poll_once()
    assert report.sent == 8 and report.failed == 0 and per_chat(tg) == dict.fromkeys(ids, 1)
    (refused,) = [c for c in tg.calls if c.status == 429]
    retried = next(s for s in sends(tg) if s.chat_id == ids[3])
    assert retried.timestamp - refused.timestamp >= 1.0


async def test_picture_from_a_drive_link(world: World) -> None:
    """A Drive share link in «Картинка» is sent as a photo by its direct download URL, the text as caption."""
    tg, gw = world.tg, world.gw
    ids = await seed_partners(gw, 3)
    await add_promo(gw, picture="https://drive.google.com/file/d/1AbCdEfGhIjKlMnOpQr/view?usp=sharing")
    (report,) = await world.promotions().poll_once()
    photos = sends(tg, "sendPhoto")
    assert report.sent == 3 and sorted(int(p.chat_id or 0) for p in photos) == ids
    assert photos[0].params["photo"] == "https://drive.google.com/uc?export=download&id=1AbCdEfGhIjKlMnOpQr"
    assert (photos[0].plain_text or "").startswith("Скидка 10% на комиссию\n\nТолько до конца месяца.")
    assert sends(tg) == []


# -- the bot polling: opt-out, admin commands, menus -----------------------------------------------


@dataclass
class Bot:
    """The whole bot polling the fake server, with a partner and an admin."""

    tg: FakeTelegramServer
    gw: AsyncSheetsGateway
    services: BotContext

    async def command(self, user: int, text: str) -> SentMessage:
        """A user sends a command; the bot's next message to them."""
        self.tg.user_sends_command(user, text)
        return await self.tg.wait_for_sent(chat_id=user)

    async def outputs_before_marker(self, user: int, command: str) -> list[tuple[str, str]]:
        """Everything the bot sends in answer to `command`: updates are handled in order, so it is what comes
        before the answer to a plain message sent right after it."""
        start = len(self.tg.sent_to(user, None))
        self.tg.user_sends_command(user, command)
        self.tg.user_sends_text(user, "маркер")
        await self.tg.wait_for_sent(answers_marker, chat_id=user, timeout=10)
        out = self.tg.sent_to(user, None)[start:]
        marker = next(i for i, s in enumerate(out) if answers_marker(s))
        return [(s.method, s.plain_text or "") for s in out[:marker] if s.method != "sendChatAction"]


PARTNER = 500_000


def answers_marker(message: SentMessage) -> bool:
    """The bot's answer to the plain message «маркер»: the echo for a partner, the access note for a stranger."""
    text = message.plain_text or ""
    return "маркер" in text or text == TEXT_UNAUTHORIZED


class EchoAI:
    """A model that repeats the question (so a marker message is recognisable in the answer)."""

    name = "echo"

    async def generate(self, system: str, history: list[Any], user_text: str, context: list[str]) -> str:
        return f"Ответ: {user_text}"


def make_services(gw: AsyncSheetsGateway, messenger: TelegramMessenger) -> BotContext:
    """The handlers' context as the composition root wires it, promotions and admin included."""
    prompt = SystemPrompt(PROMPT_PATH)
    knowledge = KnowledgeBase(gw, refresh_seconds=0.0)
    promotions = PromotionService(gw, messenger, rate_per_second=FAST_RATE)
    return BotContext(
        auth=AuthService(gw),
        appeals=AppealsService(gw, FallbackAI(EchoAI(), OfflineResponder()), prompt, knowledge, messenger),
        messenger=messenger,
        promotions=promotions,
        admin=AdminService(gw, messenger, prompt, promotions=promotions),
    )


@pytest.fixture
async def bot(telegram_server: FakeTelegramServer, local_gateway: AsyncSheetsGateway) -> AsyncIterator[Bot]:
    """Chat, promotions, admin and help handlers polling the fake server; partner 500000 is authorized."""
    gw = local_gateway
    await seed_partners(gw, 2)
    app = build_app(telegram_server)
    services = make_services(gw, TelegramMessenger(app.bot))
    register_admin_handlers(app, [ADMIN])
    register_promotion_handlers(app)
    register_help_handler(app, [ADMIN])
    register_chat_handlers(app, services)
    async with long_polling(app):
        yield Bot(telegram_server, gw, services)


async def test_stop_promo_and_promo(bot: Bot) -> None:
    """/stop_promo writes «Рассылка» = нет and the next broadcast skips the partner; /promo turns it back on."""
    reply = await bot.command(PARTNER, "/stop_promo")
    assert reply.plain_text == TEXT_STOPPED
    row = await bot.gw.table(AUTH).get(f"P-{PARTNER}")
    assert row is not None and row[AuthCol.PROMO_OPT_IN] == "нет"
    await add_promo(bot.gw)
    assert bot.services.promotions is not None
    (report,) = await bot.services.promotions.poll_once()
    assert (report.sent, report.opted_out) == (1, 1)
    assert bot.tg.sent_to(PARTNER) == [reply]
    assert (await bot.command(PARTNER, "/promo")).plain_text == TEXT_RESUMED
    row = await bot.gw.table(AUTH).get(f"P-{PARTNER}")
    assert row is not None and row[AuthCol.PROMO_OPT_IN] == "да"
    stranger = await bot.command(777, "/stop_promo")
    assert "подтвердите номер телефона" in (stranger.plain_text or "")


async def test_admin_commands_for_the_admin(bot: Bot) -> None:
    """The admin's /list, /view, /stats, /reload, /broadcast_test and /export answer in the chat."""
    gw = bot.gw
    blocks = [
        format_entry(moscow(2026, 11, 2, 9, i), Author.USER if i % 2 == 0 else Author.AI, f"Реплика {i}. " + "ж" * 3000)
        for i in range(40)
    ]
    for block in blocks:
        await gw.table(APPEALS).write(
            [
                gw.table(APPEALS).op_append_text(
                    str(PARTNER),
                    AppealCol.LOG,
                    block,
                    values={AppealCol.STATUS: "В работе", AppealCol.UPDATED: "2026-11-02 09:40:00"},
                    insert_defaults={AppealCol.NAME: "Партнёр 500000", AppealCol.CODE: f"P-{PARTNER}"},
                    archive_overflow=True,
                )
            ]
        )
    listing = await bot.command(ADMIN, "/list")
    assert (listing.plain_text or "").startswith("Открытые обращения: 1 (В работе — 1, Новое — 0)")
    assert f"Партнёр 500000 (P-{PARTNER}) — В работе" in (listing.plain_text or "")
    view = await bot.command(ADMIN, f"/view {PARTNER}")
    assert "Реплика 39." in (view.plain_text or "") and "Реплика 0." not in (view.plain_text or "")
    stats = await bot.command(ADMIN, "/stats")
    assert "Партнёры: авторизовано 2 (отписались от акций: 0)" in (stats.plain_text or "")
    reload = await bot.command(ADMIN, "/reload")
    assert (reload.plain_text or "").startswith("Системный промпт без изменений: версия ")
    await add_promo(gw, "T1", status="DRAFT")
    test_message = await bot.command(ADMIN, "/broadcast_test T1")
    assert (test_message.plain_text or "").startswith("Скидка 10% на комиссию")
    summary = await bot.tg.wait_for_sent(chat_id=ADMIN)
    assert "При рассылке получат: 2" in (summary.plain_text or "")
    export = await bot.command(ADMIN, f"/export {PARTNER}")
    assert export.method == "sendDocument" and export.filename == f"conversation_{PARTNER}.txt"
    assert export.document is not None
    assert export.document.decode("utf-8").split("\n\n", 1)[1] == "\n".join(blocks) + "\n"
    zipped = await bot.command(ADMIN, "/export_all")
    assert zipped.method == "sendDocument" and (zipped.filename or "").endswith(".zip")


async def test_admin_commands_are_unknown_commands_for_others(bot: Bot) -> None:
    """For a partner (and a stranger) every admin command does exactly what an unknown command does."""
    for user in (PARTNER, 777):
        unknown = await bot.outputs_before_marker(user, "/no_such_command")
        for command, _ in ADMIN_COMMANDS:
            assert await bot.outputs_before_marker(user, f"/{command} {PARTNER}") == unknown, command
    assert [s for s in bot.tg.sent if s.method == "sendDocument"] == []


async def test_help_and_command_menus(bot: Bot) -> None:
    """/help lists the partner commands (and the admin's for the admin); setMyCommands publishes the partner
    menu for everyone and the admin menu only in the admin's chat."""
    assert (await bot.command(PARTNER, "/help")).plain_text == help_text()
    assert (await bot.command(ADMIN, "/help")).plain_text == help_text(PARTNER_COMMANDS, ADMIN_COMMANDS)
    app = build_app(bot.tg)
    async with app:
        await publish_commands(app.bot, [ADMIN])
    partner_menu = [{"command": c, "description": d} for c, d in PARTNER_COMMANDS]
    assert bot.tg.commands() == partner_menu
    admin_menu = partner_menu + [{"command": c, "description": d} for c, d in ADMIN_COMMANDS]
    assert bot.tg.commands({"type": "chat", "chat_id": ADMIN}) == admin_menu
    assert bot.tg.commands({"type": "chat", "chat_id": PARTNER}) == []


async def test_periodic_job_polls_promotions(world: World) -> None:
    """The promotions job (a Periodic, as the composition root runs it) broadcasts a READY promotion."""
    ids = await seed_partners(world.gw, 5)
    await add_promo(world.gw)
    app = build_app(world.tg)
    services = make_services(world.gw, TelegramMessenger(app.bot))
    install_context(app, services)
    register_promotion_handlers(app)
    assert services.promotions is not None
    job = Periodic("promotions", 0.05, services.promotions.poll_once, first=0.0)
    async with app:
        await app.start()
        job.start()
        try:
            await wait_for_sends(world.tg, 5)
            await services.promotions.stop()
        finally:
            await job.stop()
            await app.stop()
    assert per_chat(world.tg) == dict.fromkeys(ids, 1)
    assert (await promo_row(world.gw))[PromoCol.STATUS] == "SENT"
