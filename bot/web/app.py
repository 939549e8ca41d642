"""The Mini App's HTTP API and pages (DESIGN §4), built by `create_web_app` from the services' ports.

Routes: `/healthz`, `/readyz`, `/metrics`, `/` (the Mini App), `/api/chat`, `/api/chat/history`,
`/api/analytics`, `/api/analytics/{id}`, `/reports/{id}.pdf`, and (bot/web/live.py) `/api/events`,
`/api/objects`, `/api/escalate`, `/api/promotions`; in local mode also `/dev/init-data` and the staff console
(`/staff`, `/staff/api/...`). Every `/api/*` call carries `Authorization: tma <initData>`: a missing,
forged or expired one is 401, a genuine one from a user not authorized in Auth is 403.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the routes' annotations where they are
# defined, since they refer to dependencies that are local to create_web_app.
import ipaddress
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bot.health import HealthMonitor
from bot.services.analytics import (
    AnalyticsRequestError,
    InvalidObjectCode,
    TooManyPendingRequests,
    UnknownObjectCode,
)
from bot.services.live import EventHub, LiveWatcher
from bot.services.partner_limits import PartnerRateLimiter, rate_limited_text
from bot.web.chat_stream import ChatStreams
from bot.web.errors import (
    MSG_FORBIDDEN,
    MSG_OPEN_FROM_TELEGRAM,
    MSG_SESSION_EXPIRED,
    ApiError,
    install_error_handlers,
)
from bot.web.initdata import (
    DEFAULT_MAX_AGE,
    InitDataError,
    InitDataExpired,
    InitDataValidator,
    WebAppUser,
)
from bot.web.live import install_live_routes
from bot.web.middleware import DEFAULT_MAX_BODY, BodyLimitMiddleware, SecurityHeadersMiddleware
from bot.web.ports import (
    AnalyticsPort,
    AuthPort,
    CataloguePort,
    ChatEntryView,
    ChatPort,
    EscalateFn,
    JobView,
    PartnerView,
    PromotionsFn,
    StaffPort,
)
from bot.web.reports import DEFAULT_LINK_TTL, ReportLinks, report_path, report_stem, valid_job_id
from bot.web.staff_console import dropdowns
from gateway import drive_file_id, drive_report_stem

log = logging.getLogger(__name__)

MAX_CHAT_CHARS = 4000
MAX_CELL_CHARS = 50_000
# Loopback names only: the staff console and dev initData must not answer a DNS-rebound page.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def static_dir() -> Path:
    """The packaged static files (index.html, app.js, vendor/…)."""
    return Path(str(resources.files("bot.web").joinpath("static")))


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated Telegram user and their Auth record."""

    user: WebAppUser
    partner: PartnerView


class ChatIn(BaseModel):
    """Body of POST /api/chat."""

    model_config = ConfigDict(extra="ignore")
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CHAT_CHARS)]


class AnalyticsIn(BaseModel):
    """Body of POST /api/analytics."""

    model_config = ConfigDict(extra="ignore")
    object_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class CellIn(BaseModel):
    """Body of POST /staff/api/sheets/{sheet}/cells."""

    a1: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{1,3}[1-9][0-9]{0,6}$")]
    value: str = Field(max_length=MAX_CELL_CHARS)


def _requested_by(who: Caller) -> str:
    # The partner's code links the request to Auth; the Telegram name is only a fallback.
    if who.partner.code:
        return who.partner.code
    return f"@{who.user.username}" if who.user.username else who.user.first_name


def _entry_json(entry: ChatEntryView) -> dict[str, Any]:
    at = entry.at
    return {"at": at.isoformat() if isinstance(at, datetime) else at, "author": entry.author, "text": entry.text}


def _analytics_error(exc: AnalyticsRequestError) -> ApiError:
    if isinstance(exc, TooManyPendingRequests):
        return ApiError(429, "too_many_pending", exc.message)
    if isinstance(exc, UnknownObjectCode):
        return ApiError(422, "unknown_object_code", exc.message)
    if isinstance(exc, InvalidObjectCode):
        return ApiError(422, "invalid_object_code", exc.message)
    return ApiError(422, "analytics_refused", exc.message)


def _is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _proxied(request: Request) -> bool:
    # A reverse proxy on this host connects from loopback: its headers betray that the caller is elsewhere.
    return any(name in ("forwarded", "x-real-ip") or name.startswith("x-forwarded-") for name in request.headers)


def _require_local(request: Request) -> None:
    """Local-only routes answer a direct request from this machine; anyone else sees no such route (DESIGN §4).
    The TCP peer decides (the Host header is the caller's to choose); the Host check stops DNS rebinding."""
    peer = request.client.host if request.client else None
    host = (request.url.hostname or "").lower()
    if not _is_loopback(peer) or _proxied(request) or host not in LOCAL_HOSTS:
        raise ApiError(404, "not_found", "Не найдено.")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
        raise ApiError(403, "cross_origin", "Запрос с чужого сайта отклонён.")


def create_web_app(
    *,
    chat: ChatPort,
    analytics: AnalyticsPort,
    auth: AuthPort,
    bot_token: str | None,
    health: Callable[[], Awaitable[dict[str, Any]]],
    metrics_text: Callable[[], bytes],
    reports_dir: Path,
    dev_init_data: Callable[[], str] | None = None,
    staff: StaffPort | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    init_data_max_age: float = DEFAULT_MAX_AGE.total_seconds(),
    validator: InitDataValidator | None = None,
    report_links: ReportLinks | None = None,
    rate_limiter: PartnerRateLimiter | None = None,
    live: tuple[EventHub, LiveWatcher] | None = None,
    catalogue: CataloguePort | None = None,
    escalate: EscalateFn | None = None,
    promotion_feed: PromotionsFn | None = None,
) -> FastAPI:
    """Build the web app. `dev_init_data` and `staff` are for `marketingbot local` only (loopback).

    `bot_token` None (no real bot token outside `local`): nothing can be authenticated, so every /api call is
    401 and no report link opens; the public dev token is never a fallback."""
    if validator is None and bot_token:
        validator = InitDataValidator(bot_token, max_age=timedelta(seconds=init_data_max_age))
    if report_links is None and bot_token:
        report_links = ReportLinks(bot_token, ttl=DEFAULT_LINK_TTL)
    links = report_links
    static = static_dir()
    index_html = (static / "index.html").read_text(encoding="utf-8")
    promotions = promotion_feed is not None
    index_html = index_html.replace('data-promotions="off"', f'data-promotions="{"on" if promotions else "off"}"')
    index_html = index_html.replace('data-dev="off"', f'data-dev="{"on" if dev_init_data else "off"}"')
    for feature, on in (("live", live), ("catalogue", catalogue), ("escalate", escalate)):
        index_html = index_html.replace(f'data-{feature}="off"', f'data-{feature}="{"on" if on else "off"}"')

    app = FastAPI(title="MarketingBot", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    # Added innermost first: the security headers then also decorate the body limit's 413.
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=static), name="static")

    async def signed(request: Request, authorization: Annotated[str | None, Header()] = None) -> WebAppUser:
        """The Telegram user whose genuine initData signs the request (not yet checked against Auth)."""
        if validator is None:
            raise ApiError(401, "unauthorized", MSG_OPEN_FROM_TELEGRAM)
        try:
            data = validator.validate_header(authorization)
        except InitDataExpired as exc:
            log.info("initData rejected: %s", exc)
            raise ApiError(401, "init_data_expired", MSG_SESSION_EXPIRED) from exc
        except InitDataError as exc:
            log.info("initData rejected: %s", type(exc).__name__)
            raise ApiError(401, "unauthorized", MSG_OPEN_FROM_TELEGRAM) from exc
        # Every POST costs sheet reads/writes (or the model): one partner's budget, shared with their Telegram
        # chat, is checked before any of it. A refused request is not processed, so nothing of it is stored.
        if rate_limiter is not None and request.method == "POST":
            retry = rate_limiter.acquire(data.user.id)
            if retry is not None:
                seconds = str(max(1, math.ceil(retry)))
                raise ApiError(429, "rate_limited", rate_limited_text(retry), headers={"Retry-After": seconds})
        return data.user

    SignedDep = Annotated[WebAppUser, Depends(signed)]

    async def caller(user: SignedDep) -> Caller:
        partner = await auth.check(user.id)
        if partner is None:
            raise ApiError(403, "forbidden", MSG_FORBIDDEN)
        return Caller(user=user, partner=partner)

    CallerDep = Annotated[Caller, Depends(caller)]

    def job_json(request: Request, job: JobView) -> dict[str, Any]:
        pdf: str | None = None
        stem = report_stem(job.id)
        if job.status == "DONE" and links is not None and report_path(reports_dir, stem) is not None:
            root = request.scope.get("root_path", "").rstrip("/")
            pdf = f"{root}/reports/{stem}.pdf?{links.query(stem)}"
        elif (drive_id := drive_file_id(job.pdf_url)) is not None:
            # Apps Script keeps the report private in Drive; the bot downloads it on delivery and this links
            # to that copy (no link until then: the Drive URL opens nothing for a partner).
            drive_stem = drive_report_stem(drive_id)
            if links is not None and report_path(reports_dir, drive_stem) is not None:
                root = request.scope.get("root_path", "").rstrip("/")
                pdf = f"{root}/reports/{drive_stem}.pdf?{links.query(drive_stem)}"
        elif job.pdf_url.startswith("https://"):
            pdf = job.pdf_url  # a report stored elsewhere, by its own link
        return {
            "id": job.id,
            "object_code": job.object_code,
            "status": job.status,
            "created_at": job.created_at,
            "finished_at": job.finished_at,
            "result_text": job.result_text,
            "error": job.error,
            "pdf_url": pdf,
        }

    # -- operations --------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            body = await health()
            # 200 for ok/degraded (DESIGN §4); 503 while the process is still starting or stopping.
            return JSONResponse(body, status_code=200 if HealthMonitor.alive(body) else 503)
        except Exception:
            log.exception("health check failed")
            return JSONResponse({"status": "error"}, status_code=503)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            body = await health()
            # 200 only when ok; degraded, starting and stopping are 503 with the same body (DESIGN §4).
            return JSONResponse(body, status_code=200 if HealthMonitor.ready(body) else 503)
        except Exception:
            log.exception("readiness check failed")
            return JSONResponse({"status": "error", "problems": ["health check failed"]}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(metrics_text(), media_type=PROMETHEUS_CONTENT_TYPE)

    # -- the Mini App ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(index_html)

    chat_streams = ChatStreams(chat)

    @app.post("/api/chat", response_model=None)
    async def post_chat(
        body: ChatIn, user: SignedDep, accept: Annotated[str, Header()] = ""
    ) -> dict[str, Any] | StreamingResponse:
        # The chat turn authorizes the sender itself, so Auth and Обращения are read in one batched call.
        if "text/event-stream" in accept.lower():
            return await chat_streams.respond(user.id, body.text, auth.check)
        _, reply = await chat.handle_message(user.id, body.text, auth.check)
        if reply is None:
            raise ApiError(403, "forbidden", MSG_FORBIDDEN)
        if reply.kind == "limit":
            raise ApiError(429, "daily_limit", reply.text)
        return {"reply": reply.text, "status": reply.status, "escalated": reply.escalated}

    @app.get("/api/chat/history")
    async def chat_history(who: CallerDep) -> dict[str, Any]:
        entries: Sequence[ChatEntryView] = await chat.history(who.user.id)
        return {"entries": [_entry_json(e) for e in entries]}

    @app.post("/api/analytics", status_code=201)
    async def order_analytics(body: AnalyticsIn, who: CallerDep) -> dict[str, Any]:
        try:
            job = await analytics.request(who.user.id, _requested_by(who), body.object_code)
        except AnalyticsRequestError as exc:
            raise _analytics_error(exc) from exc
        return {"id": job.id, "status": job.status, "object_code": job.object_code}

    @app.get("/api/analytics")
    async def list_analytics(request: Request, who: CallerDep) -> dict[str, Any]:
        jobs = await analytics.list_for(who.user.id)
        return {"items": [job_json(request, j) for j in jobs]}

    @app.get("/api/analytics/{job_id}")
    async def get_analytics(job_id: str, request: Request, who: CallerDep) -> dict[str, Any]:
        job = await analytics.get(who.user.id, job_id) if valid_job_id(job_id) else None
        if job is None:
            raise ApiError(404, "not_found", "Запрос не найден.")
        return job_json(request, job)

    @app.get("/reports/{stem}.pdf")
    async def report_pdf(
        request: Request,
        stem: str,
        exp: str | None = None,
        sig: str | None = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> FileResponse:
        # The same answer for "no such report", "not yours" and "bad or expired link": nothing to probe.
        not_found = ApiError(404, "not_found", "Отчёт не найден или ссылка устарела: откройте его заново в приложении.")
        if not valid_job_id(stem):
            raise not_found
        if exp is not None or sig is not None:
            if links is None or not links.check(stem, exp, sig):
                raise not_found
        else:
            who = await caller(await signed(request, authorization))
            if await analytics.get(who.user.id, stem) is None:
                raise not_found
        path = report_path(reports_dir, stem)
        if path is None:
            raise not_found
        return FileResponse(
            path, media_type="application/pdf", filename=f"analytics-{stem}.pdf", content_disposition_type="inline"
        )

    install_live_routes(
        app,
        caller,
        hub=live[0] if live else None,
        watcher=live[1] if live else None,
        catalogue=catalogue,
        escalate=escalate,
        promotions=promotion_feed,
    )

    # -- local mode only ---------------------------------------------------------------------------

    if dev_init_data is not None:
        make_init_data = dev_init_data

        @app.get("/dev/init-data")
        async def dev_init(request: Request) -> dict[str, str]:
            _require_local(request)
            return {"init_data": make_init_data()}

    if staff is not None:
        _install_staff(app, staff, static)

    return app


def _install_staff(app: FastAPI, staff: StaffPort, static: Path) -> None:
    staff_html = (static / "staff.html").read_text(encoding="utf-8")

    async def local_only(request: Request) -> None:
        _require_local(request)

    Local = Depends(local_only)

    @app.get("/staff", response_class=HTMLResponse, dependencies=[Local])
    async def staff_page() -> HTMLResponse:
        return HTMLResponse(staff_html)

    @app.get("/staff/api/sheets", dependencies=[Local])
    async def staff_sheets() -> dict[str, Any]:
        return {"sheets": await staff.sheets()}

    @app.get("/staff/api/sheets/{sheet}", dependencies=[Local])
    async def staff_dump(sheet: str) -> dict[str, Any]:
        try:
            rows = await staff.dump(sheet)
        except LookupError as exc:
            raise ApiError(404, "no_such_sheet", f"Лист «{sheet}» не найден.") from exc
        return {"sheet": sheet, "rows": rows, "dropdowns": dropdowns(sheet)}

    @app.post("/staff/api/sheets/{sheet}/cells", dependencies=[Local])
    async def staff_set(sheet: str, body: CellIn) -> dict[str, Any]:
        a1 = body.a1.upper()
        try:
            await staff.set_cell(sheet, a1, body.value)
        except LookupError as exc:
            raise ApiError(404, "no_such_sheet", f"Лист «{sheet}» не найден.") from exc
        except ValueError as exc:
            raise ApiError(422, "bad_cell", f"Ячейка {a1} не подходит: {exc}") from exc
        return {"sheet": sheet, "a1": a1, "value": body.value}
