"""The composition root: settings → gateway → services → Telegram application → web app.

Everything is built here and passed down through constructors; nothing else creates clients. The web
server, the Telegram bot and the periodic jobs share one event loop and start and stop together: on
SIGTERM/SIGINT the bot stops taking updates, in-flight turns finish, the jobs stop, and the gateway
flushes pending writes (to the sheet, or to the durable outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import uvicorn

from bot.ai.fallback import FallbackAI
from bot.ai.prompt import SystemPrompt
from bot.config import Settings, parse_working_hours
from bot.jobs import Periodic
from bot.log_messenger import LogMessenger
from bot.logging_setup import setup_logging
from bot.services.admin import AdminService
from bot.services.analytics import AnalyticsService
from bot.services.appeals import AppealsService, WorkingHours
from bot.services.auth import AuthService
from bot.services.knowledge import KnowledgeBase
from bot.services.operator_replies import OperatorReplyService
from bot.services.ports import Messenger
from bot.services.promotions import PromotionService
from bot.services.queue_poller import QueuePoller, make_pdf_loader
from bot.services.worker import AnalyticsWorker
from bot.staff_console import GatewayStaffConsole
from gateway import AsyncSheetsGateway
from gateway.factory import GatewayConfig, build_gateway
from gateway.schemas import ALL_SCHEMAS, normalize_header

log = logging.getLogger(__name__)

STUCK_AFTER = timedelta(minutes=20)
WORKER_POLL_SECONDS = 5.0
PROMOTIONS_POLL_SECONDS = 30.0
JOURNAL_PRUNE_SECONDS = 3600.0
TURN_WRITE_INTERVAL = 5.0  # seconds between batches of journaled chat turns written to Google Sheets


def gateway_config(settings: Settings) -> GatewayConfig:
    """The gateway's parameters from the settings."""
    return GatewayConfig(
        backend=settings.sheets_backend,
        local_db_path=settings.local_db_path,
        spreadsheet_id=settings.google_spreadsheet_id,
        credentials_file=str(settings.google_credentials_file) if settings.google_credentials_file else None,
        sheets_api_base_url=settings.sheets_api_base_url,
        reads_per_minute=settings.sheets_reads_per_minute,
        writes_per_minute=settings.sheets_writes_per_minute,
        # Google's quota makes every write batch (and its verify-read) count: batch journaled turns under load.
        turn_write_interval=TURN_WRITE_INTERVAL if settings.sheets_backend == "google" else 0.0,
    )


def reports_dir(settings: Settings) -> Path:
    """Where the Python worker writes report PDFs (next to the local store / state file)."""
    return settings.local_db_path.parent / "reports"


def public_base_url(settings: Settings) -> str:
    """The web app's external base URL (WEBAPP_URL, else the local address)."""
    if settings.webapp_url:
        return settings.webapp_url.rstrip("/")
    return f"http://{settings.web_host}:{settings.web_port}"


@contextlib.asynccontextmanager
async def open_gateway(settings: Settings) -> AsyncIterator[AsyncSheetsGateway]:
    """A started gateway, closed (outbox flushed) on exit."""
    gw = build_gateway(gateway_config(settings))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


# -- CLI helpers -------------------------------------------------------------------------------


async def init_sheets(settings: Settings) -> list[str]:
    """`marketingbot sheets init`."""
    async with open_gateway(settings) as gw:
        return await gw.ensure_sheets()


async def dump_sheet(settings: Settings, sheet: str) -> list[list[str]]:
    """`marketingbot sheets dump`: every row, header first (index i is sheet row i+1)."""
    async with open_gateway(settings) as gw:
        return await GatewayStaffConsole(gw).dump(sheet)


async def set_cell(settings: Settings, sheet: str, cell: str, value: str) -> None:
    """`marketingbot sheets set`: one cell, verbatim (RAW)."""
    async with open_gateway(settings) as gw:
        await GatewayStaffConsole(gw).set_cell(sheet, cell, value)


# -- the running application ------------------------------------------------------------------


def _ai(settings: Settings) -> FallbackAI:
    from bot.ai.factory import AIConfig, build_ai

    def secret(v: Any) -> str | None:
        return v.get_secret_value() if v is not None else None

    return build_ai(
        AIConfig(
            provider=settings.effective_ai_provider,
            gemini_api_key=secret(settings.gemini_api_key),
            gemini_model=settings.gemini_model,
            gemini_base_url=settings.gemini_base_url,
            openai_base_url=settings.openai_base_url,
            openai_api_key=secret(settings.openai_api_key),
            openai_model=settings.openai_model,
        )
    )


def _working_hours(settings: Settings) -> WorkingHours:
    from zoneinfo import ZoneInfo

    start, end, tz = parse_working_hours(settings.working_hours)
    return WorkingHours(start=start, end=end, tz=ZoneInfo(tz))


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the composition root owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@dataclass
class Runtime:
    """Everything `marketingbot local|run` runs, built by `build_runtime`."""

    settings: Settings
    local: bool
    gateway: AsyncSheetsGateway
    prompt: SystemPrompt
    knowledge: KnowledgeBase
    ai: FallbackAI
    auth: AuthService
    appeals: AppealsService
    operator_replies: OperatorReplyService
    analytics: AnalyticsService
    poller: QueuePoller
    messenger: Messenger
    worker: AnalyticsWorker | None = None
    promotions: PromotionService | None = None
    admin: AdminService | None = None
    telegram: Any = None  # telegram.ext.Application when a bot token is configured
    inbox_poller: Any = None  # bot.telegram_inbox.InboxPoller while long polling
    web: Any = None
    jobs: list[Periodic] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    phase: str = "starting"  # "starting" → "running" → "stopping"

    async def health(self) -> dict[str, Any]:
        """The /healthz body: ok, or degraded with the reason visible."""
        stats = self.poller.last_stats
        lag = stats.oldest_pending_seconds if stats else None
        body: dict[str, Any] = {
            "status": "ok",
            "sheet_backend": self.gateway.backend.name,
            "sheet_breaker": self.gateway.breaker_state,
            "outbox_depth": self.gateway.outbox_depth,
            "queue_lag_seconds": lag,
            "ai": "offline" if self.ai.is_offline else self.ai.primary.name,
            "telegram": "on" if self.telegram is not None else "off",
            "uptime_seconds": round(time.monotonic() - self.started_at, 1),
        }
        if self.phase != "running":
            body["status"] = self.phase  # answered with 503: not ready for traffic (deploy.sh waits for ok)
        elif self.gateway.breaker_state != "closed" or self.gateway.outbox_depth:
            body["status"] = "degraded"
        return body


async def build_runtime(settings: Settings, *, local: bool) -> Runtime:
    """Build every part (not started except the gateway, which seeds and checks the sheets)."""
    gw = build_gateway(gateway_config(settings))
    await gw.start(recover_turns=True)  # this process answers the partners: it replays their unconfirmed turns
    if local:
        await gw.ensure_sheets(fmt=False)
        await _seed_demo(gw)
    prompt = SystemPrompt(settings.prompt_path)
    knowledge = KnowledgeBase(gw)
    ai = _ai(settings)
    telegram_app = _telegram_application(settings) if settings.telegram_bot_token else None
    messenger: Messenger
    if telegram_app is not None:
        from bot.telegram_messenger import TelegramMessenger

        messenger = TelegramMessenger(telegram_app.bot, settings.staff_chat_id)
    else:
        messenger = LogMessenger()
    auth = AuthService(gw)
    appeals = AppealsService(
        gw,
        ai,
        prompt,
        knowledge,
        messenger,
        daily_limit=settings.daily_ai_limit,
        escalation_keywords=settings.escalation_keywords,
        working_hours=_working_hours(settings),
        reply_first=True,
    )
    if telegram_app is not None:
        from bot.handlers.chat import OPERATOR_BUTTON

        telegram_app.update_processor.attach(gw.inbox, gw.turns, messenger, OPERATOR_BUTTON)
    rdir = reports_dir(settings)
    base = public_base_url(settings)
    runtime = Runtime(
        settings=settings,
        local=local,
        gateway=gw,
        prompt=prompt,
        knowledge=knowledge,
        ai=ai,
        auth=auth,
        appeals=appeals,
        operator_replies=OperatorReplyService(gw, messenger),
        analytics=AnalyticsService(gw),
        poller=QueuePoller(gw, messenger, stuck_after=STUCK_AFTER, pdf_loader=make_pdf_loader(rdir, base)),
        messenger=messenger,
        worker=AnalyticsWorker(gw, rdir, base, settle=0.0) if local else None,  # the only worker: no race
        telegram=telegram_app,
    )
    if telegram_app is not None:
        # Broadcasts and the admin console only make sense with a Telegram bot to send through.
        runtime.promotions = PromotionService(gw, messenger)
        runtime.admin = AdminService(gw, messenger, prompt, promotions=runtime.promotions, ai=ai)
        _register_telegram(runtime)
    runtime.web = _web_app(runtime)
    if telegram_app is not None and settings.webhook_url:
        _install_webhook(runtime)
    runtime.jobs = _jobs(runtime)
    return runtime


async def _seed_demo(gw: AsyncSheetsGateway) -> None:
    from bot.analytics.seed import seed_demo_market
    from bot.services.demo import seed_demo_partner

    await seed_demo_partner(gw)
    await seed_demo_market(gw, date.today())


def _telegram_application(settings: Settings) -> Any:
    from telegram.ext import Application

    from bot.telegram_ratelimit import RepliesFirstRateLimiter

    assert settings.telegram_bot_token is not None
    builder: Any = Application.builder().token(settings.telegram_bot_token.get_secret_value())
    if settings.telegram_api_base_url:
        base = settings.telegram_api_base_url.rstrip("/")
        builder = builder.base_url(base).base_file_url(base.removesuffix("/bot") + "/file/bot")
    # Updates arrive through the durable inbox: our own long polling (bot.telegram_inbox.InboxPoller) or
    # our own web server (see _install_webhook), each journaling an update before Telegram learns it arrived.
    builder = builder.updater(None)
    # PTB's rate limiter paces every call under Telegram's limits and honours RetryAfter.
    # Chats run in parallel, each chat's updates in order (a partner's two quick messages never race).
    from bot.telegram_inbox import DurableUpdateProcessor

    builder = builder.rate_limiter(RepliesFirstRateLimiter(max_retries=3)).concurrent_updates(
        DurableUpdateProcessor(256)
    )
    return builder.build()


WEBHOOK_PATH = "/telegram/webhook"


def webhook_secret(settings: Settings) -> str:
    """The secret Telegram echoes in X-Telegram-Bot-Api-Secret-Token: derived from the bot token, so the
    old and the new release of a blue-green switch accept the same webhook."""
    import hashlib

    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
    return hashlib.sha256(f"marketingbot-webhook:{token}".encode()).hexdigest()[:48]


def _install_webhook(runtime: Runtime) -> None:
    """POST /telegram/webhook: verified updates go into PTB's update queue (PTB's custom-webhook pattern)."""
    import hmac

    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from telegram import Update

    from bot.telegram_inbox import journal_update

    app = runtime.telegram
    secret = webhook_secret(runtime.settings)

    async def telegram_webhook(request: Request) -> Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given, secret):
            return JSONResponse({"error": {"code": "unauthorized", "message": "bad secret"}}, status_code=401)
        update = Update.de_json(await request.json(), app.bot)
        if update is not None:
            # Journaled before the 200: an update Telegram considers delivered is never lost.
            await journal_update(app, runtime.gateway.inbox, update)
        return Response(status_code=200)

    # A plain Starlette route: the handler takes the raw request, no FastAPI parameter parsing.
    runtime.web.add_route(WEBHOOK_PATH, telegram_webhook, methods=["POST"], include_in_schema=False)


def _register_telegram(runtime: Runtime) -> None:
    from bot.handlers.admin import register_admin_handlers
    from bot.handlers.analytics import BOT_DATA_KEY as ANALYTICS_KEY
    from bot.handlers.analytics import AnalyticsHandlerServices, register_analytics_handlers
    from bot.handlers.chat import register_chat_handlers
    from bot.handlers.commands import register_help_handler
    from bot.handlers.errors import on_error
    from bot.handlers.promotions import register_promotion_handlers
    from bot.handlers.webapp import register_webapp_handlers
    from bot.services.container import Services

    app = runtime.telegram
    admins = runtime.settings.admin_telegram_ids
    services = Services(
        gateway=runtime.gateway,
        auth=runtime.auth,
        appeals=runtime.appeals,
        operator_replies=runtime.operator_replies,
        knowledge=runtime.knowledge,
        prompt=runtime.prompt,
        messenger=runtime.messenger,
        promotions=runtime.promotions,
        admin=runtime.admin,
    )
    app.bot_data[ANALYTICS_KEY] = AnalyticsHandlerServices(runtime.analytics, runtime.auth)
    # Order matters: admin (group -20), analytics (-10), promotions (-5) and help answer before the chat,
    # which treats any other text as a question for the assistant.
    register_admin_handlers(app, admins)
    register_analytics_handlers(app)
    register_promotion_handlers(app)
    register_help_handler(app, admins)
    register_webapp_handlers(app, runtime.settings.webapp_url)
    register_chat_handlers(app, services)
    app.add_error_handler(on_error)


def _web_app(runtime: Runtime) -> Any:
    from bot.web.app import create_web_app
    from bot.web.initdata import dev_init_data_factory
    from bot.web.metrics import MetricsExporter

    settings = runtime.settings
    token = settings.webapp_signing_token

    def queue_lag() -> float | None:
        stats = runtime.poller.last_stats
        return stats.oldest_pending_seconds if stats else None

    exporter = MetricsExporter(runtime.gateway, queue_lag=queue_lag)
    dev = runtime.local and settings.telegram_bot_token is None
    return create_web_app(
        chat=runtime.appeals,
        analytics=runtime.analytics,
        auth=runtime.auth,
        bot_token=token,
        health=runtime.health,
        metrics_text=exporter.render,
        reports_dir=reports_dir(settings),
        dev_init_data=dev_init_data_factory(token) if dev else None,
        staff=GatewayStaffConsole(runtime.gateway) if runtime.local else None,
    )


def _jobs(runtime: Runtime) -> list[Periodic]:
    s = runtime.settings
    jobs = [
        Periodic("queue-poll", s.queue_poll_seconds, runtime.poller.poll_once),
        Periodic("operator-replies", s.operator_poll_seconds, runtime.operator_replies.poll_once),
    ]
    if runtime.worker is not None:
        jobs.append(Periodic("analytics-worker", WORKER_POLL_SECONDS, runtime.worker.run_once, first=0.5))
    if runtime.promotions is not None:
        jobs.append(Periodic("promotions", PROMOTIONS_POLL_SECONDS, runtime.promotions.poll_once))
    jobs.append(Periodic("journal-prune", JOURNAL_PRUNE_SECONDS, runtime.gateway.prune_journals))
    return jobs


async def run_application(settings: Settings, *, local: bool) -> None:
    """`marketingbot local|run`: start everything, serve until SIGTERM/SIGINT, stop cleanly."""
    setup_logging(settings.log_level, settings.log_format, _secrets(settings))
    runtime = await build_runtime(settings, local=local)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = _Server(
        uvicorn.Config(runtime.web, host=settings.web_host, port=settings.web_port, log_level="warning", lifespan="off")
    )
    serve = asyncio.create_task(server.serve(), name="web")
    try:
        await _start_telegram(runtime)
        for job in runtime.jobs:
            job.start()
        while not server.started and not serve.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
        if serve.done():
            serve.result()  # the port was taken, say so
        runtime.phase = "running"
        log.info(
            "MarketingBot is up: %s (Mini App), %s/staff", public_base_url(settings), public_base_url(settings)
        ) if local else log.info("MarketingBot is up")
        if local:
            print(
                f"MarketingBot local is running: open {public_base_url(settings)}/  (staff console: "
                f"{public_base_url(settings)}/staff). Ctrl+C stops it.",
                flush=True,
            )
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, serve}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        await _shutdown(runtime, server, serve)


async def _start_telegram(runtime: Runtime) -> None:
    from bot.handlers.webapp import set_menu_button
    from bot.telegram_inbox import InboxPoller, resume_unfinished

    app = runtime.telegram
    if app is None:
        return
    await app.initialize()
    # Updates an earlier run left unfinished go first, before any new one (per-chat order).
    await resume_unfinished(app, runtime.gateway.inbox, app.update_processor)
    await app.start()
    settings = runtime.settings
    from telegram.error import TelegramError

    from bot.handlers.commands import publish_commands

    try:
        await publish_commands(app.bot, settings.admin_telegram_ids)
    except TelegramError as exc:  # the menu is a convenience: never a reason not to start
        log.warning("could not publish the command menu: %s", exc)
    await set_menu_button(app.bot, settings.webapp_url)  # the Mini App in every chat's menu (when https)
    if settings.webhook_url:
        # Webhook mode: Telegram POSTs to WEBHOOK_URL (a reverse proxy in front of /telegram/webhook). Both
        # releases of a blue-green switch accept it, so the proxy can move over with zero downtime.
        await app.bot.set_webhook(url=settings.webhook_url, secret_token=webhook_secret(settings))
        return
    # Long polling: only one process may poll a token (Telegram answers 409 to the second), so the old
    # release is stopped before this one starts polling; the downtime is the restart time.
    await app.bot.delete_webhook()
    runtime.inbox_poller = InboxPoller(app, runtime.gateway.inbox)
    await runtime.inbox_poller.start()


async def _shutdown(runtime: Runtime, server: _Server, serve: asyncio.Task[None]) -> None:
    runtime.phase = "stopping"
    app = runtime.telegram
    if runtime.inbox_poller is not None:
        with contextlib.suppress(Exception):
            await runtime.inbox_poller.stop()  # no new updates; in-flight handlers keep running
    from bot.telegram_inbox import DurableUpdateProcessor

    if app is not None and isinstance(app.update_processor, DurableUpdateProcessor):
        app.update_processor.stopping.set()  # a message waiting for Auth stays in the inbox for the next start
    # Everything that sends through the bot stops while the bot can still send: a send after app.shutdown()
    # fails, and a broadcast would record those partners as failed and never reach them.
    if runtime.promotions is not None:
        await runtime.promotions.stop()  # finishes the sends in flight; the broadcast resumes on next start
    for job in runtime.jobs:
        await job.stop()
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(serve, 10)
    if app is not None:
        with contextlib.suppress(Exception):
            if app.running:
                await app.stop()  # waits for in-flight handlers
            await app.shutdown()
    from bot.ai.factory import close_ai

    await close_ai(runtime.ai)
    await runtime.gateway.close()  # flushes in-flight writes to the sheet or the outbox
    log.info("MarketingBot stopped")


def _secrets(settings: Settings) -> list[str]:
    values = [settings.telegram_bot_token, settings.gemini_api_key, settings.openai_api_key]
    return [v.get_secret_value() for v in values if v is not None]


# -- worker and check ---------------------------------------------------------------------------


async def run_worker(settings: Settings, *, once: bool, interval: float) -> None:
    """`marketingbot worker`: the Python twin of the Apps Script worker against the configured backend."""
    setup_logging(settings.log_level, settings.log_format, _secrets(settings))
    async with open_gateway(settings) as gw:
        worker = AnalyticsWorker(gw, reports_dir(settings), public_base_url(settings))
        if once:
            run = await worker.run_once()
            print(run)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await worker.run_forever(interval, stop)


async def check_dependencies(settings: Settings) -> list[str]:
    """Reach every configured dependency; returns the problems found (empty: all good)."""
    problems: list[str] = []
    checks: list[tuple[str, Callable[[], Awaitable[None]]]] = [("sheets", lambda: _check_sheets(settings))]
    if settings.telegram_bot_token is not None:
        checks.append(("telegram", lambda: _check_telegram(settings)))
    checks.append(("prompt", lambda: _check_prompt(settings)))
    for name, fn in checks:
        try:
            await asyncio.wait_for(fn(), 30)
        except Exception as exc:  # every failure becomes one readable line
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return problems


async def _check_sheets(settings: Settings) -> None:
    async with open_gateway(settings) as gw:
        titles = {normalize_header(t) for t in await gw.backend.sheet_titles()}
        missing = [s.title for s in ALL_SCHEMAS if normalize_header(s.title) not in titles]
        if missing:
            raise LookupError(f"missing sheets {missing}: run `marketingbot sheets init`")
        for schema in ALL_SCHEMAS:
            hm = await gw.table(schema).header()
            lacking = [h for h in schema.headers if not hm.has(h)]
            if lacking:
                raise LookupError(f"sheet {schema.title!r} lacks columns {lacking}: run `marketingbot sheets init`")


async def _check_telegram(settings: Settings) -> None:
    app = _telegram_application(settings)
    async with app.bot:
        await app.bot.get_me()


async def _check_prompt(settings: Settings) -> None:
    SystemPrompt(settings.prompt_path)
