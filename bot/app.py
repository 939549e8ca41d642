"""The composition root (wiring): settings → gateway → services → Telegram application → web app.

Everything is built here and passed down through constructors; nothing else creates clients. Building
starts nothing but the gateway: bot/lifecycle.py starts, serves, hands over and stops what this builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.ai.fallback import FallbackAI
from bot.ai.narrator import GeminiNarrator
from bot.ai.prompt import SystemPrompt
from bot.config import Settings, parse_working_hours
from bot.health import HealthMonitor
from bot.jobs import Periodic
from bot.leadership import Leadership
from bot.log_messenger import LogMessenger
from bot.services.admin import AdminService
from bot.services.analytics import AnalyticsService
from bot.services.appeals import AppealsService, WorkingHours
from bot.services.auth import AuthService
from bot.services.knowledge import KnowledgeBase
from bot.services.live import EventHub, LiveWatcher
from bot.services.operator_replies import OperatorReplyService
from bot.services.partner_limits import PartnerRateLimiter
from bot.services.ports import Messenger
from bot.services.promotions import PromotionService
from bot.services.queue_poller import QueuePoller, make_pdf_loader
from bot.services.retention import RetentionService
from bot.services.staff_replies import StaffDesk
from bot.services.worker import AnalyticsWorker
from bot.web.staff_console import GatewayStaffConsole
from gateway import AsyncSheetsGateway, DriveFiles, GatewayConfig, build_gateway

if TYPE_CHECKING:  # imported where used: `marketingbot check` and the CLI stay quick to start
    from fastapi import FastAPI
    from telegram.ext import Application

    from bot.telegram.inbox import InboxPoller
    from bot.web.metrics import MetricsExporter

log = logging.getLogger(__name__)

STUCK_AFTER = timedelta(minutes=20)
WORKER_POLL_SECONDS = 5.0
PROMOTIONS_POLL_SECONDS = 30.0
# The shared watcher of staff edits for open Mini Apps: one batched read per tick, only while one is open.
LIVE_POLL_SECONDS = 5.0
LOCAL_LIVE_POLL_SECONDS = 1.0  # the local store has no quota
LOCAL_OPERATOR_POLL_SECONDS = 1.0  # a reply typed in the console reaches the open Mini App within seconds
STAFF_REPLIES_RESUME_SECONDS = 2.0  # a look at the local state store only: cheap, so often
HEALTH_CHECK_SECONDS = 5.0
RETENTION_SECONDS = 3600.0
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


# -- the running application ------------------------------------------------------------------


def _ai(settings: Settings, observe_latency: Callable[[str, float], None] | None = None) -> FallbackAI:
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
        ),
        observe_latency=observe_latency,
    )


def analysis_narrator(settings: Settings) -> GeminiNarrator | None:
    """The analytics narrative from GEMINI_ANALYSIS_MODEL when a Gemini key is set and the AI is not offline."""
    if settings.gemini_api_key is None or settings.effective_ai_provider == "offline":
        return None
    return GeminiNarrator(
        api_key=settings.gemini_api_key.get_secret_value(),
        model=settings.gemini_analysis_model,
        base_url=settings.gemini_base_url,
    )


def prompt_values(settings: Settings) -> dict[str, str]:
    """What the prompt's placeholders say (bot/ai/prompt.py): facts that are settings."""
    return {"WORKING_HOURS": _working_hours(settings).describe()}


def ai_for(settings: Settings) -> FallbackAI:
    """The configured AI (the go-live checklist asks it one question)."""
    return _ai(settings)


def _working_hours(settings: Settings) -> WorkingHours:
    from zoneinfo import ZoneInfo

    start, end, tz = parse_working_hours(settings.working_hours)
    return WorkingHours(start=start, end=end, tz=ZoneInfo(tz))


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
    events: EventHub = field(default_factory=EventHub)
    live_watcher: LiveWatcher | None = None
    narrator: GeminiNarrator | None = None  # the worker's AI narrative (closed at shutdown)
    promotions: PromotionService | None = None
    admin: AdminService | None = None
    staff_desk: StaffDesk | None = None  # staff answer from the staff chat (Telegram and STAFF_CHAT_ID set)
    telegram: Application[Any, Any, Any, Any, Any, Any] | None = None  # when a bot token is configured
    rate_limiter: PartnerRateLimiter | None = None  # one budget per partner for Telegram and the API alike
    inbox_poller: InboxPoller | None = None  # while long polling
    web: FastAPI | None = None
    jobs: list[Periodic] = field(default_factory=list)  # the leader's: pollers, worker, promotions, health
    http_jobs: list[Periodic] = field(default_factory=list)  # every process serving the Mini App: the live watcher
    started_at: float = field(default_factory=time.monotonic)
    phase: str = "starting"  # "starting" → "running" → "stopping"
    leadership: Leadership | None = None  # who takes Telegram updates and runs the jobs (bot/leadership.py)
    updates_open: bool = False  # the leader accepts webhook updates (closed first when it steps down)

    monitor: HealthMonitor | None = None
    metrics: MetricsExporter | None = None  # /metrics (the AI observes its latency into it)

    async def health(self) -> dict[str, Any]:
        """The /healthz and /readyz body (bot/health.py): ok, or degraded with the problems named; with the
        process's role (leader or standby) and slot."""
        if self.monitor is None:
            body: dict[str, Any] = {"status": self.phase, "problems": []}
        else:
            self.monitor.phase = self.phase
            body = await self.monitor.body()
        body["role"] = self.leadership.role if self.leadership is not None else "standby"
        if self.settings.slot:
            body["slot"] = self.settings.slot
        return body


async def build_runtime(settings: Settings, *, local: bool, replay_outbox: bool = True) -> Runtime:
    """Build every part (not started except the gateway, which seeds and checks the sheets).

    `replay_outbox=False`: the outbox is replayed only once this process leads (bot/leadership.py), since a
    standby shares the state file with the leader.
    """
    gw = build_gateway(gateway_config(settings))
    if not replay_outbox:
        gw.pause_outbox_replay()  # a standby journals but never replays: the leader does (see _leadership)
    # The process that answers the partners replays their unconfirmed turns; under a lease, the leader on taking it.
    await gw.start(recover_turns=replay_outbox)
    if local:
        await gw.ensure_sheets(fmt=False)
        await _seed_demo(gw, _working_hours(settings).describe())
    prompt = SystemPrompt(settings.prompt_path, prompt_values(settings))
    knowledge = KnowledgeBase(gw)
    from bot.web.metrics import MetricsExporter

    def queue_lag() -> float | None:
        stats = runtime.poller.last_stats
        return stats.oldest_pending_seconds if stats else None

    metrics = MetricsExporter(gw, queue_lag=queue_lag)
    ai = _ai(settings, metrics.observe_ai_latency)
    telegram_app = _telegram_application(settings) if settings.telegram_bot_token else None
    messenger: Messenger
    staff_desk: StaffDesk | None = None
    if telegram_app is not None:
        from bot.telegram.messenger import TelegramMessenger
        from bot.telegram.staff_chat import TelegramStaffChat

        messenger = TelegramMessenger(telegram_app.bot, settings.staff_chat_id)
        if settings.staff_chat_id is not None:
            staff_desk = StaffDesk(gw, messenger, TelegramStaffChat(telegram_app.bot, settings.staff_chat_id))
    else:
        messenger = LogMessenger()
    auth = AuthService(gw)
    events = EventHub()
    appeals = AppealsService(
        gw,
        ai,
        prompt,
        knowledge,
        messenger,
        daily_limit=settings.daily_ai_limit,
        escalation_keywords=settings.escalation_keywords,
        working_hours=_working_hours(settings),
        staff_notice_interval=settings.staff_notice_interval,
        live=events,
        staff_notices=staff_desk,
        reply_first=True,
    )
    if telegram_app is not None:
        from bot.telegram.handlers.chat import OPERATOR_BUTTON

        telegram_app.update_processor.attach(gw.inbox, gw.turns, messenger, OPERATOR_BUTTON)
    rdir = reports_dir(settings)
    base = public_base_url(settings)
    narrator = analysis_narrator(settings) if local else None
    runtime = Runtime(
        settings=settings,
        local=local,
        gateway=gw,
        prompt=prompt,
        knowledge=knowledge,
        ai=ai,
        auth=auth,
        appeals=appeals,
        operator_replies=OperatorReplyService(gw, messenger, live=events),
        analytics=AnalyticsService(gw),
        poller=QueuePoller(
            gw, messenger, stuck_after=STUCK_AFTER, pdf_loader=make_pdf_loader(rdir, base, drive=_drive(settings))
        ),
        messenger=messenger,
        # the only worker: no race
        worker=AnalyticsWorker(gw, rdir, base, settle=0.0, ai_narrator=narrator) if local else None,
        narrator=narrator,
        telegram=telegram_app,
        rate_limiter=PartnerRateLimiter(settings.partner_rate_per_minute, settings.partner_rate_burst),
        events=events,
        live_watcher=LiveWatcher(gw, events, interval=LOCAL_LIVE_POLL_SECONDS if local else LIVE_POLL_SECONDS),
        staff_desk=staff_desk,
        metrics=metrics,
    )
    runtime.monitor = HealthMonitor(
        gw,
        messenger,
        queue_stats=lambda: runtime.poller.last_stats,
        ai=ai,
        ai_name="offline" if ai.is_offline else ai.primary.name,
        telegram_probe=telegram_app.bot.get_me if telegram_app is not None else None,
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
    if runtime.live_watcher is not None:
        live = Periodic("live-events", runtime.live_watcher.interval, runtime.live_watcher.poll_once)
        runtime.http_jobs = [_yielding(runtime.gateway, live)]
    return runtime


def _drive(settings: Settings) -> DriveFiles | None:
    """Downloads of the private report PDFs Apps Script writes to Drive (google backend only)."""
    if settings.sheets_backend != "google":
        return None
    credentials = str(settings.google_credentials_file) if settings.google_credentials_file else None
    return DriveFiles(credentials, base_url=settings.drive_api_base_url)


async def _seed_demo(gw: AsyncSheetsGateway, working_hours: str) -> None:
    from bot.analytics.seed import seed_demo_market
    from bot.services.demo import seed_demo_partner

    await seed_demo_partner(gw, working_hours=working_hours)
    await seed_demo_market(gw, date.today())


def _telegram_application(settings: Settings) -> Any:
    from telegram.ext import Application

    from bot.telegram.aiohttp_request import TELEGRAM_URL, AiohttpRequest
    from bot.telegram.ratelimit import RepliesFirstRateLimiter

    assert settings.telegram_bot_token is not None
    builder: Any = Application.builder().token(settings.telegram_bot_token.get_secret_value())
    if settings.telegram_api_base_url:
        base = settings.telegram_api_base_url.rstrip("/")
        builder = builder.base_url(base).base_file_url(base.removesuffix("/bot") + "/file/bot")
    # Updates arrive through the durable inbox: our own long polling (bot.telegram.inbox.InboxPoller) or
    # our own web server (see _install_webhook), each journaling an update before Telegram learns it arrived.
    builder = builder.updater(None)
    # Bot API calls through aiohttp (bot/telegram/aiohttp_request.py says why); getUpdates keeps PTB's own
    # one-connection request (one long poll at a time).
    builder = builder.request(AiohttpRequest(api_url=settings.telegram_api_base_url or TELEGRAM_URL))
    # PTB's rate limiter paces every call under Telegram's limits and honours RetryAfter.
    # Chats run in parallel, each chat's updates in order (a partner's two quick messages never race).
    from bot.telegram.inbox import DurableUpdateProcessor

    builder = builder.rate_limiter(RepliesFirstRateLimiter(max_retries=3)).concurrent_updates(
        DurableUpdateProcessor(256)
    )
    return builder.build()


def _install_webhook(runtime: Runtime) -> None:
    """POST /telegram/webhook on the web app: verified updates go into the durable inbox (bot/web/webhook.py)."""
    from telegram import Update

    from bot.telegram.inbox import journal_update
    from bot.web.webhook import WEBHOOK_PATH, leader_deliver, webhook_endpoint, webhook_secret

    app, web = runtime.telegram, runtime.web
    assert app is not None and web is not None  # built before the webhook is installed
    secret = webhook_secret(runtime.settings)

    def parse(data: dict[str, Any]) -> Update | None:
        try:
            return Update.de_json(data, app.bot)
        except (TypeError, KeyError, AttributeError, ValueError) as exc:  # a malformed object: 400, not 500
            raise ValueError(f"unusable update: {type(exc).__name__}") from None

    async def journal(update: Update) -> None:
        await journal_update(app, runtime.gateway.inbox, update)

    deliver = leader_deliver(runtime, parse, journal, secret=secret, slot_socket=runtime.settings.slot_socket)
    # A plain Starlette route: the handler takes the raw request, no FastAPI parameter parsing.
    web.add_route(WEBHOOK_PATH, webhook_endpoint(secret, deliver), methods=["POST"], include_in_schema=False)


def _register_telegram(runtime: Runtime) -> None:
    from bot.telegram.context import BotContext, install_context
    from bot.telegram.handlers.admin import register_admin_handlers
    from bot.telegram.handlers.analytics import register_analytics_handlers
    from bot.telegram.handlers.chat import register_chat_handlers
    from bot.telegram.handlers.commands import register_help_handler
    from bot.telegram.handlers.errors import on_error
    from bot.telegram.handlers.promotions import register_promotion_handlers
    from bot.telegram.handlers.webapp import register_webapp_handlers, usable_webapp_url

    app = runtime.telegram
    assert app is not None
    admins = runtime.settings.admin_telegram_ids
    # The one typed context every handler reads (bot/telegram/context.py).
    install_context(
        app,
        BotContext(
            auth=runtime.auth,
            appeals=runtime.appeals,
            messenger=runtime.messenger,
            analytics=runtime.analytics,
            promotions=runtime.promotions,
            admin=runtime.admin,
            staff_desk=runtime.staff_desk,
            rate_limiter=runtime.rate_limiter,
            webapp_url=usable_webapp_url(runtime.settings.webapp_url),
            staff_chat_id=runtime.settings.staff_chat_id,
        ),
    )
    # Order matters: admin (group -20), analytics (-10), promotions (-5) and help answer before the chat,
    # which treats any other text as a question for the assistant.
    register_admin_handlers(app, admins)
    register_analytics_handlers(app)
    register_promotion_handlers(app)
    register_help_handler(app, admins)
    register_webapp_handlers(app, runtime.settings.webapp_url)
    if runtime.staff_desk is not None and runtime.settings.staff_chat_id is not None:
        from bot.telegram.handlers.staff import register_staff_handlers

        register_staff_handlers(app, runtime.settings.staff_chat_id)
    register_chat_handlers(app)
    app.add_error_handler(on_error)


def _web_app(runtime: Runtime) -> FastAPI:
    from bot.services.catalogue import CatalogueService
    from bot.services.promo_history import sent_to
    from bot.web.app import create_web_app
    from bot.web.initdata import dev_init_data_factory

    settings = runtime.settings
    token = web_signing_token(settings, local=runtime.local)
    metrics = runtime.metrics
    assert metrics is not None  # built with the runtime
    dev = runtime.local and settings.telegram_bot_token is None and token is not None
    gw = runtime.gateway
    assert runtime.live_watcher is not None

    async def promotions_sent(telegram_id: int) -> Any:
        return await sent_to(gw, telegram_id)

    return create_web_app(
        chat=runtime.appeals,
        analytics=runtime.analytics,
        auth=runtime.auth,
        bot_token=token,
        health=runtime.health,
        metrics_text=metrics.render,
        reports_dir=reports_dir(settings),
        dev_init_data=dev_init_data_factory(token) if dev and token else None,
        rate_limiter=runtime.rate_limiter,
        staff=_LiveStaffConsole(runtime) if runtime.local else None,
        live=(runtime.events, runtime.live_watcher),
        catalogue=CatalogueService(gw),
        escalate=runtime.appeals.request_human,
        promotion_feed=promotions_sent,
    )


def web_signing_token(settings: Settings, *, local: bool) -> str | None:
    """The token initData and report links are checked with. Outside `local` only a real bot token: the dev
    token is public, so without a real one nothing authenticates (every /api call is 401)."""
    from bot.config import DEFAULT_LOCAL_DEV_BOT_TOKEN

    if local:
        return settings.webapp_signing_token
    if settings.telegram_bot_token is None:
        return None
    token = settings.telegram_bot_token.get_secret_value()
    dev_tokens = {DEFAULT_LOCAL_DEV_BOT_TOKEN, settings.local_dev_bot_token.get_secret_value()}
    return None if token in dev_tokens else token


class _LiveStaffConsole(GatewayStaffConsole):
    """The local console, which also starts the operator-reply poll and the live watcher after an edit, so
    what staff type reaches an open Mini App at once instead of at the next tick."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime.gateway)
        self._runtime = runtime
        self._tasks: set[asyncio.Task[Any]] = set()

    async def set_cell(self, sheet: str, a1: str, value: str) -> None:
        """Write the cell, then poll what depends on it."""
        await super().set_cell(sheet, a1, value)
        task = asyncio.create_task(self._after_edit(), name="staff-edit-followup")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_edit(self) -> None:
        try:
            await self._runtime.operator_replies.poll_once()
        except Exception:
            log.exception("operator replies after a staff edit")
        if self._runtime.live_watcher is not None:
            self._runtime.live_watcher.kick()


def _jobs(runtime: Runtime) -> list[Periodic]:
    s = runtime.settings
    operator_poll = s.operator_poll_seconds
    if runtime.local and "operator_poll_seconds" not in s.model_fields_set:
        operator_poll = min(operator_poll, LOCAL_OPERATOR_POLL_SECONDS)  # `marketingbot sheets set` from a shell
    jobs = [
        Periodic("queue-poll", s.queue_poll_seconds, runtime.poller.poll_once),
        Periodic("operator-replies", operator_poll, runtime.operator_replies.poll_once),
    ]
    watcher = runtime.live_watcher
    if runtime.staff_desk is not None:
        jobs.append(Periodic("staff-replies", STAFF_REPLIES_RESUME_SECONDS, runtime.staff_desk.resume_pending))
    if runtime.worker is not None:
        worker = runtime.worker

        async def work() -> None:
            run = await worker.run_once()
            if watcher is not None and run.processed:
                watcher.kick()  # a finished report shows in an open Mini App at once

        jobs.append(Periodic("analytics-worker", WORKER_POLL_SECONDS, work, first=0.5))
    if runtime.promotions is not None:
        jobs.append(Periodic("promotions", PROMOTIONS_POLL_SECONDS, runtime.promotions.poll_once))
    if runtime.monitor is not None:
        jobs.append(Periodic("health", HEALTH_CHECK_SECONDS, runtime.monitor.check_once))
    retention = RetentionService(runtime.gateway, queue_retention_days=s.queue_retention_days)
    jobs.append(Periodic("retention", RETENTION_SECONDS, retention.run_once, first=60.0))
    jobs.append(Periodic("journal-prune", JOURNAL_PRUNE_SECONDS, runtime.gateway.prune_journals))
    return [_yielding(runtime.gateway, job) for job in jobs]


def _yielding(gw: AsyncSheetsGateway, job: Periodic) -> Periodic:
    """The job with its sheet reads yielding to partners' turns (they ride along with a turn's read)."""
    fn = job.fn

    async def run() -> object:
        with gw.background_reads():
            return await fn()

    return Periodic(job.name, job.interval, run, first=job.first)


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value (for masking)."""
    values = [settings.telegram_bot_token, settings.gemini_api_key, settings.openai_api_key]
    return [v.get_secret_value() for v in values if v is not None]
