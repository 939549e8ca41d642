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
from bot.leadership import Leadership
from bot.lease import LeaderLease
from bot.listen import bind_slot_socket, inherited_sockets
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
    web: Any = None
    jobs: list[Periodic] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    phase: str = "starting"  # "starting" → "running" → "stopping"
    leadership: Leadership | None = None  # who takes Telegram updates and runs the jobs (bot/leadership.py)
    updates_open: bool = False  # the leader accepts webhook updates (closed first when it steps down)

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
            "role": self.leadership.role if self.leadership is not None else "standby",
        }
        if self.settings.slot:
            body["slot"] = self.settings.slot
        if self.phase != "running":
            body["status"] = self.phase  # answered with 503: not ready for traffic (deploy.sh waits for ok)
        elif self.gateway.breaker_state != "closed" or self.gateway.outbox_depth:
            body["status"] = "degraded"
        return body


async def build_runtime(settings: Settings, *, local: bool, replay_outbox: bool = True) -> Runtime:
    """Build every part (not started except the gateway, which seeds and checks the sheets).

    `replay_outbox=False`: the outbox is replayed only once this process leads (bot/leadership.py), since a
    standby shares the state file with the leader.
    """
    gw = build_gateway(gateway_config(settings))
    if not replay_outbox:
        gw.pause_outbox_replay()
    await gw.start()
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
    )
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
    if settings.webhook_url:
        builder = builder.updater(None)  # updates arrive through our own web server (see _install_webhook)
    # PTB's rate limiter paces every call under Telegram's limits and honours RetryAfter.
    # Chats run in parallel, each chat's updates in order (a partner's two quick messages never race).
    from bot.handlers.ordering import PerChatUpdateProcessor

    builder = builder.rate_limiter(RepliesFirstRateLimiter(max_retries=3)).concurrent_updates(
        PerChatUpdateProcessor(256)
    )
    return builder.build()


WEBHOOK_PATH = "/telegram/webhook"
HANDOFF_WAIT_SECONDS = 3.0  # how long a standby holds a webhook update while no leader answers
HANDOFF_RETRY_SECONDS = 0.05


def webhook_secret(settings: Settings) -> str:
    """The secret Telegram echoes in X-Telegram-Bot-Api-Secret-Token: derived from the bot token, so the
    old and the new release of a blue-green switch accept the same webhook."""
    import hashlib

    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
    return hashlib.sha256(f"marketingbot-webhook:{token}".encode()).hexdigest()[:48]


def _install_webhook(runtime: Runtime) -> None:
    """POST /telegram/webhook: verified updates go into PTB's update queue (PTB's custom-webhook pattern)."""
    import hmac
    import json

    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from telegram import Update

    from bot.handoff import FORWARDED_HEADER, forward_to_leader

    app = runtime.telegram
    secret = webhook_secret(runtime.settings)

    async def telegram_webhook(request: Request) -> Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given, secret):
            return JSONResponse({"error": {"code": "unauthorized", "message": "bad secret"}}, status_code=401)
        body = await request.body()
        update = Update.de_json(json.loads(body), app.bot)
        # Only the leader takes updates, and only until it steps down: checked and queued with no await in
        # between, so an update is either in this leader's queue (handled before the lease moves) or not taken.
        leadership = runtime.leadership
        deadline = time.monotonic() + HANDOFF_WAIT_SECONDS
        while leadership is not None:
            if leadership.role in ("taking-over", "leader") and runtime.updates_open:
                app.update_queue.put_nowait(update)
                return Response(status_code=200)
            if leadership.role != "standby" or request.headers.get(FORWARDED_HEADER):
                break  # stepping down (its shutdown must not wait on this), or already forwarded once
            # A standby hands the update to the leader; while none answers (the old one stepping down, the
            # new one taking over: a few hundred ms), it holds it, and takes it itself once it leads.
            status = await forward_to_leader(
                leadership.lease,
                WEBHOOK_PATH,
                body,
                {"X-Telegram-Bot-Api-Secret-Token": given, "Content-Type": "application/json"},
                runtime.settings.slot_socket,
            )
            if status is not None and status < 500:
                return Response(status_code=status)
            if time.monotonic() >= deadline or runtime.phase != "running":
                break
            await asyncio.sleep(HANDOFF_RETRY_SECONDS)
        # No leader took it: Telegram delivers it again later.
        return JSONResponse(
            {"error": {"code": "not_leader", "message": "no leader: retry"}},
            status_code=503,
            headers={"Retry-After": "1"},
        )

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
    return jobs


async def run_application(settings: Settings, *, local: bool) -> None:
    """`marketingbot local|run`: start everything, serve until SIGTERM/SIGINT, stop cleanly."""
    setup_logging(settings.log_level, settings.log_format, _secrets(settings))
    runtime = await build_runtime(settings, local=local, replay_outbox=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = uvicorn.Config(
        runtime.web, host=settings.web_host, port=settings.web_port, log_level="warning", lifespan="off"
    )
    server = _Server(config)
    serve = asyncio.create_task(server.serve(sockets=_listen_sockets(settings, config)), name="web")
    runtime.leadership = _leadership(runtime)
    try:
        await _prepare_telegram(runtime)
        while not server.started and not serve.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
        if serve.done():
            serve.result()  # the port was taken, say so
        # HTTP is served from here on; Telegram updates and the jobs wait for the leader lease (a free lease is
        # taken before /healthz says ok, so "ok" means "doing its job": leading, or standing by).
        await runtime.leadership.start()
        runtime.phase = "running"
        log.info(
            "MarketingBot is up: %s (Mini App), %s/staff", public_base_url(settings), public_base_url(settings)
        ) if local else log.info("MarketingBot is up%s", f" in slot {settings.slot}" if settings.slot else "")
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


def _listen_sockets(settings: Settings, config: uvicorn.Config) -> list[Any] | None:
    """The sockets to serve on: systemd's (socket activation) or our own port, plus the slot's probe socket.

    None lets uvicorn bind WEB_HOST:WEB_PORT itself (no socket unit, no slot: the single-unit layout).
    """
    inherited = inherited_sockets()
    if inherited:
        log.info("serving on %d socket(s) inherited from the service manager", len(inherited))
    if not inherited and settings.slot_socket is None:
        return None
    sockets = inherited or [config.bind_socket()]
    if settings.slot_socket is not None:
        sockets.append(bind_slot_socket(settings.slot_socket))
    return sockets


def _leadership(runtime: Runtime) -> Leadership:
    settings = runtime.settings
    holder = {"slot": settings.slot, "socket": str(settings.slot_socket or "")}
    lease = LeaderLease(settings.leader_lock_path, holder=holder)

    async def take() -> None:
        await runtime.gateway.resume_outbox_replay()  # also what a crashed leader left journaled
        await _take_updates(runtime)
        for job in runtime.jobs:
            job.start()

    return Leadership(lease, take, lambda: _give_updates(runtime), retry=settings.leader_retry_seconds)


async def _prepare_telegram(runtime: Runtime) -> None:
    """Initializes and starts the bot so it can send (Mini App replies), without taking updates yet."""
    app = runtime.telegram
    if app is None:
        return
    await app.initialize()
    await app.start()


async def _take_updates(runtime: Runtime) -> None:
    """The leader's half of the start: take Telegram updates (webhook or long polling), publish the menus."""
    from bot.handlers.webapp import set_menu_button

    app = runtime.telegram
    if app is None:
        return
    settings = runtime.settings
    from telegram.error import TelegramError

    from bot.handlers.commands import publish_commands

    if settings.webhook_url:
        # Webhook mode: Telegram POSTs to WEBHOOK_URL (a reverse proxy in front of /telegram/webhook, or the
        # held socket). Registration is idempotent and stepping down never deletes it: the next leader, on
        # the same socket, accepts from the moment it holds the lease.
        runtime.updates_open = True
        await app.bot.set_webhook(url=settings.webhook_url, secret_token=webhook_secret(settings))
    else:
        assert app.updater is not None
        # Long polling: only one process may poll a token (Telegram answers 409 to the second); the lease
        # makes this the only one. Updates the previous leader did not confirm are fetched again here.
        await app.bot.delete_webhook()
        await app.updater.start_polling(drop_pending_updates=False)
    try:
        await publish_commands(app.bot, settings.admin_telegram_ids)
    except TelegramError as exc:  # the menu is a convenience: never a reason not to start
        log.warning("could not publish the command menu: %s", exc)
    await set_menu_button(app.bot, settings.webapp_url)  # the Mini App in every chat's menu (when https)


async def _give_updates(runtime: Runtime) -> None:
    """The leader's half of the stop: no new updates, the jobs and in-flight turns finish."""
    runtime.updates_open = False
    app = runtime.telegram
    if app is not None and app.updater is not None and app.updater.running:
        with contextlib.suppress(Exception):
            await app.updater.stop()  # no new updates (confirms the fetched ones); in-flight handlers keep running
    # Everything that sends through the bot stops while the bot can still send: a send after app.shutdown()
    # fails, and a broadcast would record those partners as failed and never reach them.
    if runtime.promotions is not None:
        await runtime.promotions.stop()  # finishes the sends in flight; the broadcast resumes on next start
    for job in runtime.jobs:
        await job.stop()
    if app is not None and app.running:
        with contextlib.suppress(Exception):
            await app.stop()  # handles every update already taken, waits for in-flight handlers


async def _drain_http(server: _Server, serve: asyncio.Task[None]) -> None:
    server.should_exit = True  # stops accepting; a connection still queued on a shared socket goes to the peer
    with contextlib.suppress(Exception):
        await asyncio.wait_for(serve, 10)


async def _shutdown(runtime: Runtime, server: _Server, serve: asyncio.Task[None]) -> None:
    runtime.phase = "stopping"
    leadership = getattr(runtime, "leadership", None)
    if leadership is not None:
        # Telegram and HTTP drain side by side: the lease moves only after both, and the gateway's flush.
        await asyncio.gather(leadership.stop(), _drain_http(server, serve))
    else:
        await _give_updates(runtime)
        await _drain_http(server, serve)
    app = runtime.telegram
    if app is not None:
        with contextlib.suppress(Exception):
            if app.running:
                await app.stop()
            await app.shutdown()
    from bot.ai.factory import close_ai

    await close_ai(runtime.ai)
    await runtime.gateway.close()  # flushes in-flight writes to the sheet or the outbox
    if leadership is not None:
        leadership.release()  # after the flush: the next leader reads what this one wrote
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
