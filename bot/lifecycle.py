"""The lifecycle of a built runtime: start, serve, hand over, stop.

bot/app.py builds the parts (the composition root); this module runs them. The web server, the Telegram bot
and the periodic jobs share one event loop and start and stop together: on SIGTERM/SIGINT the bot stops taking
updates, in-flight turns finish, the jobs stop, and the gateway flushes pending writes (to the sheet, or to the
durable outbox). Which process takes Telegram updates and runs the jobs is the leader lease's (bot/leadership.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Any

import uvicorn

from bot.app import Runtime, analysis_narrator, build_runtime, open_gateway, public_base_url, reports_dir, secrets_of
from bot.config import Settings
from bot.leadership import Leadership
from bot.lease import LeaderLease
from bot.listen import bind_slot_socket, inherited_sockets
from bot.logging_setup import setup_logging
from bot.services.worker import AnalyticsWorker
from bot.web.server import ServerLimits, server_config
from bot.web.webhook import webhook_secret

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the composition root owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def run_application(settings: Settings, *, local: bool) -> None:
    """`marketingbot local|run`: start everything, serve until SIGTERM/SIGINT, stop cleanly."""
    setup_logging(settings.log_level, settings.log_format, secrets_of(settings))
    runtime = await build_runtime(settings, local=local, replay_outbox=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = server_config(
        runtime.web,
        host=settings.web_host,
        port=settings.web_port,
        limits=ServerLimits(settings.web_header_timeout, settings.web_keep_alive_timeout, settings.web_max_concurrency),
        log_config=None,  # no handlers of uvicorn's own: its lines go through the root's, masked
    )
    server = _Server(config)
    serve = asyncio.create_task(_serve(server, _listen_sockets(settings, config)), name="web")
    runtime.leadership = _leadership(runtime)
    try:
        await prepare_telegram(runtime)
        if runtime.monitor is not None:
            await runtime.monitor.start()  # after Telegram: a crash notice is sent through the bot
        for job in runtime.http_jobs:
            job.start()  # what every process serving the Mini App needs (the live watcher)
        while not server.started and not serve.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
        if serve.done():
            serve.result()  # the port was taken after the CLI's preflight: PortUnavailable, after a clean stop
        # HTTP is served from here on; Telegram updates and the jobs wait for the leader lease (a free lease is
        # taken before /healthz says ok, so "ok" means "doing its job": leading, or standing by).
        await runtime.leadership.start()
        runtime.phase = "running"
        settle_heap()
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


def settle_heap() -> None:
    """Once started: collect start-up's garbage, then exempt what start-up built (modules, clients, schemas) from
    the garbage collector's later passes. A full pass otherwise walks all of it with the event loop stopped —
    145 ms in bench/chat.py's burst of 50 partners, every turn in flight waiting."""
    gc.collect()
    gc.freeze()


class PortUnavailable(RuntimeError):
    """The web server could not listen on WEB_HOST:WEB_PORT (taken by another process)."""


async def _serve(server: _Server, sockets: list[Any] | None) -> None:
    # uvicorn answers a bind error with sys.exit(1) inside this task; a SystemExit escaping a task skips our
    # shutdown and leaves the store's threads running (the process hung). Turn it into an ordinary error.
    try:
        await server.serve(sockets=sockets)
    except SystemExit:
        cfg = server.config
        raise PortUnavailable(
            f"WEB_PORT: cannot listen on {cfg.host}:{cfg.port} (is another marketingbot running?)"
        ) from None


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
        # Turns a crashed leader journaled but never confirmed written go to the outbox; then the outbox replays
        # (also what a crashed leader left there).
        await runtime.gateway.turns.recover()
        await runtime.gateway.resume_outbox_replay()
        await take_updates(runtime)
        for job in runtime.jobs:
            job.start()

    return Leadership(lease, take, lambda: give_updates(runtime), retry=settings.leader_retry_seconds)


async def prepare_telegram(runtime: Runtime) -> None:
    """Initializes and starts the bot so it can send (Mini App replies), without taking updates yet."""
    app = runtime.telegram
    if app is None:
        return
    await app.initialize()
    await app.start()


async def take_updates(runtime: Runtime) -> None:
    """The leader's half of the start: take Telegram updates (webhook or long polling), publish the menus."""
    from bot.telegram.handlers.webapp import set_menu_button
    from bot.telegram.inbox import DurableUpdateProcessor, InboxPoller, resume_unfinished

    app = runtime.telegram
    if app is None:
        return
    settings = runtime.settings
    from telegram.error import TelegramError

    from bot.telegram.handlers.commands import publish_commands

    # Updates an earlier leader left unfinished go first, before any new one (per-chat order).
    processor = app.update_processor
    assert isinstance(processor, DurableUpdateProcessor)  # what bot/app.py builds the application with
    await resume_unfinished(app, runtime.gateway.inbox, processor)
    if settings.webhook_url:
        # Webhook mode: Telegram POSTs to WEBHOOK_URL (a reverse proxy in front of /telegram/webhook, or the
        # held socket). Registration is idempotent and stepping down never deletes it: the next leader, on
        # the same socket, accepts from the moment it holds the lease.
        runtime.updates_open = True
        await app.bot.set_webhook(url=settings.webhook_url, secret_token=webhook_secret(settings))
    else:
        # Long polling: only one process may poll a token (Telegram answers 409 to the second); the lease
        # makes this the only one. The offset moves past an update only once it is journaled (the inbox).
        await app.bot.delete_webhook()
        runtime.inbox_poller = InboxPoller(app, runtime.gateway.inbox)
        await runtime.inbox_poller.start()
    try:
        await publish_commands(app.bot, settings.admin_telegram_ids)
    except TelegramError as exc:  # the menu is a convenience: never a reason not to start
        log.warning("could not publish the command menu: %s", exc)
    await set_menu_button(app.bot, settings.webapp_url)  # the Mini App in every chat's menu (when https)


async def give_updates(runtime: Runtime) -> None:
    """The leader's half of the stop: no new updates, the jobs and in-flight turns finish."""
    runtime.updates_open = False
    app = runtime.telegram
    if runtime.inbox_poller is not None:
        with contextlib.suppress(Exception):
            await runtime.inbox_poller.stop()  # no new updates; in-flight handlers keep running
        runtime.inbox_poller = None
    from bot.telegram.inbox import DurableUpdateProcessor

    if app is not None and isinstance(app.update_processor, DurableUpdateProcessor):
        app.update_processor.stopping.set()  # a message waiting for Auth stays in the inbox for the next start
    # Everything that sends through the bot stops while the bot can still send: a send after app.shutdown()
    # fails, and a broadcast would record those partners as failed and never reach them.
    if runtime.promotions is not None:
        await runtime.promotions.stop()  # finishes the sends in flight; the broadcast resumes on next start
    for job in runtime.jobs:
        await job.stop()
    await runtime.appeals.aclose()  # staff notices still gathered go out while the bot can send
    if app is not None and app.running:
        with contextlib.suppress(Exception):
            await app.stop()  # handles every update already taken, waits for in-flight handlers


async def _drain_http(runtime: Runtime, server: _Server, serve: asyncio.Task[None]) -> None:
    for job in runtime.http_jobs:
        await job.stop()
    runtime.events.close_all()  # open Mini App streams end (the pages reconnect to the other slot / next start)
    server.should_exit = True  # stops accepting; a connection still queued on a shared socket goes to the peer
    with contextlib.suppress(Exception):
        await asyncio.wait_for(serve, 10)


async def close_runtime(runtime: Runtime) -> None:
    """After give_updates: shut the bot down, close the AI clients and the health monitor, and close the gateway
    (in-flight writes flushed to the sheet or the outbox)."""
    app = runtime.telegram
    if app is not None:
        with contextlib.suppress(Exception):
            if app.running:
                await app.stop()
            await app.shutdown()
    from bot.ai.factory import close_ai

    await close_ai(runtime.ai)
    narrator = getattr(runtime, "narrator", None)  # stand-in runtimes of tests may not carry one
    if narrator is not None:
        await narrator.aclose()
    if runtime.monitor is not None:
        await runtime.monitor.stop()  # a clean stop: the next start will not report a crash
    await runtime.gateway.close()


async def _shutdown(runtime: Runtime, server: _Server, serve: asyncio.Task[None]) -> None:
    runtime.phase = "stopping"
    leadership = getattr(runtime, "leadership", None)
    if leadership is not None:
        # Telegram and HTTP drain side by side: the lease moves only after both, and the gateway's flush.
        await asyncio.gather(leadership.stop(), _drain_http(runtime, server, serve))
    else:
        await give_updates(runtime)
        await _drain_http(runtime, server, serve)
    await close_runtime(runtime)
    if leadership is not None:
        leadership.release()  # after the flush: the next leader reads what this one wrote
    log.info("MarketingBot stopped")


# -- worker -------------------------------------------------------------------------------------


async def run_worker(settings: Settings, *, once: bool, interval: float) -> None:
    """`marketingbot worker`: the Python twin of the Apps Script worker against the configured backend."""
    setup_logging(settings.log_level, settings.log_format, secrets_of(settings))
    narrator = analysis_narrator(settings)
    try:
        async with open_gateway(settings) as gw:
            worker = AnalyticsWorker(gw, reports_dir(settings), public_base_url(settings), ai_narrator=narrator)
            if once:
                run = await worker.run_once()
                print(run)
                return
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await worker.run_forever(interval, stop)
    finally:
        if narrator is not None:
            await narrator.aclose()
