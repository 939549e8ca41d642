"""The Mini App's HTTP API (create_web_app) against working fakes of the service ports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from bot.services.analytics import Job
from bot.services.auth import Partner
from bot.web.app import create_web_app
from bot.web.initdata import InitDataValidator, sign_init_data
from bot.web.reports import ReportLinks
from gateway import SheetUnavailable
from tests.fakes.web_ports import DEMO_ID, FakeAnalytics, FakeAuth, FakeChat, FakeStaff, ok_health

TOKEN = "123456:web-api-test"
STRANGER_ID = 555  # a genuine Telegram user who is not in Auth
OTHER_PARTNER = Partner(code="P-2", name="Второй Партнёр", phone="+79000000002", telegram_id=200002)


@dataclass
class Env:
    """The app under test, its fakes and a client."""

    app: FastAPI
    client: httpx.AsyncClient
    chat: FakeChat
    analytics: FakeAnalytics
    auth: FakeAuth
    reports: Path
    clock: list[float]


def init_data(user_id: int = DEMO_ID, *, token: str = TOKEN, age: timedelta = timedelta(minutes=1)) -> str:
    """initData for a user, signed `age` ago."""
    return sign_init_data(token, {"id": user_id, "first_name": "Анна", "username": "anna"}, datetime.now(UTC) - age)


def tma(user_id: int = DEMO_ID, **kw: Any) -> dict[str, str]:
    """The Authorization header for a user."""
    return {"Authorization": f"tma {init_data(user_id, **kw)}"}


@pytest.fixture
async def make_env(tmp_path: Path) -> AsyncIterator[Callable[..., Env]]:
    """Builds an app (options forwarded to create_web_app) with fresh fakes and an ASGI client."""
    clients: list[httpx.AsyncClient] = []

    def build(**options: Any) -> Env:
        reports = tmp_path / "reports"
        clock = [1_800_000_000.0]
        chat = options.pop("chat", FakeChat())
        analytics = FakeAnalytics(reports_dir=reports)
        auth = FakeAuth([Partner("DEMO-001", "Демо Партнёр", "+79000000001", DEMO_ID), OTHER_PARTNER])
        app = create_web_app(
            chat=chat,
            analytics=analytics,
            auth=auth,
            bot_token=TOKEN,
            health=options.pop("health", ok_health),
            metrics_text=options.pop("metrics_text", lambda: b"# HELP x y\nx 1\n"),
            reports_dir=reports,
            report_links=ReportLinks(TOKEN, ttl=3600, clock=lambda: clock[0]),
            **options,
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")
        clients.append(client)
        return Env(app, client, chat, analytics, auth, reports, clock)

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    """The app without local-mode extras."""
    return make_env()


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    """The response is the one JSON error shape with this status (and code)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]  # type: ignore[no-any-return]


# -- operations ------------------------------------------------------------------------------------


async def test_healthz_returns_the_health_dict(env: Env) -> None:
    """GET /healthz answers 200 with what health() returned."""
    resp = await env.client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == await ok_health()


async def test_healthz_is_503_when_health_fails(make_env: Callable[..., Env]) -> None:
    """A failing health() gives 503 {"status": "error"} instead of a crash."""

    async def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    resp = await make_env(health=broken).client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json() == {"status": "error"}


@pytest.mark.parametrize(
    ("status", "healthz", "readyz"), [("ok", 200, 200), ("degraded", 200, 503), ("starting", 503, 503)]
)
async def test_readyz_is_200_only_when_ok_with_the_healthz_body(
    make_env: Callable[..., Env], status: str, healthz: int, readyz: int
) -> None:
    """/readyz answers 200 only for ok, else 503, with the same body as /healthz (which is 200 while degraded)."""
    body = {"status": status, "problems": [] if status == "ok" else ["лист «Архив»: лист удалён"]}

    async def health() -> dict[str, Any]:
        return body

    env = make_env(health=health)
    got_health, got_ready = await env.client.get("/healthz"), await env.client.get("/readyz")
    assert (got_health.status_code, got_ready.status_code) == (healthz, readyz)
    assert got_health.json() == got_ready.json() == body


async def test_metrics_serves_prometheus_text(env: Env) -> None:
    """GET /metrics returns metrics_text() as Prometheus text."""
    resp = await env.client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert resp.content == b"# HELP x y\nx 1\n"


# -- the page --------------------------------------------------------------------------------------


async def test_index_serves_the_mini_app(env: Env) -> None:
    """GET / is the Mini App page: the vendored Telegram SDK, the module script, no dev mode, no promotions."""
    resp = await env.client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert 'src="static/vendor/telegram-web-app.js"' in html
    assert 'type="module" src="static/app.js"' in html
    assert 'data-dev="off"' in html and 'data-promotions="off"' in html
    assert "https://" not in html.split("<body")[0]  # nothing loaded from a CDN


async def test_index_flags_dev_mode_and_promotions(make_env: Callable[..., Env]) -> None:
    """Local mode and the promotions feature are announced to the page through data attributes."""

    async def no_promotions(telegram_id: int) -> list[Any]:
        return []

    resp = await make_env(dev_init_data=lambda: "x", promotion_feed=no_promotions).client.get("/")
    assert 'data-dev="on"' in resp.text and 'data-promotions="on"' in resp.text


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
        ("/static/vendor/telegram-web-app.js", "text/javascript"),
        ("/static/staff.js", "text/javascript"),
    ],
)
async def test_static_files_are_served(env: Env, path: str, ctype: str) -> None:
    """The page's own files (and the SDK) are served from the package with the right types."""
    resp = await env.client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(ctype)
    assert resp.headers["cache-control"] == "no-cache"


# -- security --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/chat/history", "/static/app.js", "/healthz"])
async def test_security_headers_on_every_response(env: Env, path: str) -> None:
    """CSP (self + Telegram Web as frame ancestor), nosniff, no-referrer on pages, API errors and files."""
    resp = await env.client.get(path)
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'self' https://web.telegram.org" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"


async def test_api_responses_are_not_cached(env: Env) -> None:
    """Per-user API answers carry Cache-Control: no-store."""
    resp = await env.client.get("/api/analytics", headers=tma())
    assert resp.headers["cache-control"] == "no-store"


async def test_cors_is_closed(env: Env) -> None:
    """No CORS headers: a preflight from another origin is not granted and responses do not allow it."""
    preflight = await env.client.options(
        "/api/chat",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code >= 400
    assert "access-control-allow-origin" not in preflight.headers
    resp = await env.client.get("/api/chat/history", headers={**tma(), "Origin": "https://evil.example"})
    assert resp.status_code == 200
    assert not any(h.startswith("access-control-") for h in resp.headers)


async def test_unknown_route_is_a_json_404(env: Env) -> None:
    """Even a route that does not exist answers in the error shape."""
    assert_error(await env.client.get("/nope"), 404, "not_found")


async def test_docs_are_not_exposed(env: Env) -> None:
    """The OpenAPI schema and docs pages are off."""
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert (await env.client.get(path)).status_code == 404


# -- auth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer abc"},
        {"Authorization": "tma "},
        {"Authorization": "tma garbage"},
    ],
)
async def test_missing_or_malformed_initdata_is_401(env: Env, headers: dict[str, str]) -> None:
    """No usable initData → 401 telling the user to open the app from Telegram."""
    err = assert_error(await env.client.get("/api/chat/history", headers=headers), 401, "unauthorized")
    assert "Telegram" in err["message"]


async def test_forged_initdata_is_401(env: Env) -> None:
    """initData signed with another token → 401."""
    assert_error(await env.client.get("/api/analytics", headers=tma(token="999:other")), 401, "unauthorized")


async def test_tampered_initdata_is_401(env: Env) -> None:
    """Swapping the user id inside genuine initData → 401."""
    genuine = init_data(DEMO_ID)
    tampered = genuine.replace(f"%22id%22%3A{DEMO_ID}", "%22id%22%3A200002")
    assert tampered != genuine
    assert_error(await env.client.get("/api/analytics", headers={"Authorization": f"tma {tampered}"}), 401)


async def test_duplicated_key_initdata_is_401(env: Env) -> None:
    """A second `user` placed in front of genuine initData → 401."""
    doubled = "user=%7B%22id%22%3A200002%2C%22first_name%22%3A%22X%22%7D&" + init_data(DEMO_ID)
    assert_error(await env.client.get("/api/analytics", headers={"Authorization": f"tma {doubled}"}), 401)


async def test_expired_initdata_is_401_with_its_own_code(env: Env) -> None:
    """initData older than 24 h → 401 `init_data_expired`."""
    resp = await env.client.get("/api/analytics", headers=tma(age=timedelta(hours=24, minutes=1)))
    assert_error(resp, 401, "init_data_expired")


async def test_init_data_max_age_is_configurable(make_env: Callable[..., Env]) -> None:
    """A shorter maximum age is honoured."""
    e = make_env(init_data_max_age=30)
    assert_error(await e.client.get("/api/analytics", headers=tma(age=timedelta(minutes=1))), 401, "init_data_expired")


async def test_genuine_but_unauthorized_user_is_403(env: Env) -> None:
    """A real Telegram user who is not authorized in Auth → 403 with the way to get access."""
    for resp in (
        await env.client.get("/api/chat/history", headers=tma(STRANGER_ID)),
        await env.client.post("/api/chat", json={"text": "привет"}, headers=tma(STRANGER_ID)),
        await env.client.post("/api/analytics", json={"object_code": "DEMO-0001"}, headers=tma(STRANGER_ID)),
    ):
        err = assert_error(resp, 403, "forbidden")
        assert "/start" in err["message"]
    assert env.chat.received == []


async def test_auth_sheet_down_is_503(env: Env) -> None:
    """When Auth cannot be read the API answers 503 in the error shape, with Retry-After."""
    env.auth.error = SheetUnavailable("down")
    resp = await env.client.get("/api/chat/history", headers=tma())
    assert_error(resp, 503, "unavailable")
    assert resp.headers["retry-after"] == "30"


async def test_unexpected_error_is_a_json_500(env: Env) -> None:
    """A bug in a service gives 500 in the error shape, without details."""
    env.auth.error = RuntimeError("secret detail")
    err = assert_error(await env.client.get("/api/chat/history", headers=tma()), 500, "internal")
    assert "secret" not in err["message"]


# -- chat ------------------------------------------------------------------------------------------


async def test_chat_answers_and_history_lists_the_log(env: Env) -> None:
    """POST /api/chat returns reply and status; GET /api/chat/history then shows both entries."""
    resp = await env.client.post("/api/chat", json={"text": "  какая комиссия?  "}, headers=tma())
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "Ответ ИИ"
    assert "какая комиссия?" in body["reply"]
    assert env.chat.received == [(DEMO_ID, "какая комиссия?")]  # trimmed

    hist = (await env.client.get("/api/chat/history", headers=tma())).json()
    assert [e["author"] for e in hist["entries"]] == ["Пользователь", "ИИ"]
    assert hist["entries"][0]["text"] == "какая комиссия?"
    assert datetime.fromisoformat(hist["entries"][0]["at"])


async def test_chat_history_is_per_user(env: Env) -> None:
    """Each partner sees only their own log."""
    await env.client.post("/api/chat", json={"text": "моё"}, headers=tma())
    other = (await env.client.get("/api/chat/history", headers=tma(OTHER_PARTNER.telegram_id))).json()
    assert other == {"entries": []}


async def test_chat_escalation_reports_status(env: Env) -> None:
    """An escalation comes back with status «В работе» and escalated=true."""
    body = (await env.client.post("/api/chat", json={"text": "позовите оператора"}, headers=tma())).json()
    assert body["status"] == "В работе" and body["escalated"] is True


async def test_chat_daily_limit_is_429(make_env: Callable[..., Env]) -> None:
    """When the service says the daily limit is reached the API answers 429 with its message."""
    e = make_env(chat=FakeChat(limit=1))
    assert (await e.client.post("/api/chat", json={"text": "раз"}, headers=tma())).status_code == 200
    err = assert_error(await e.client.post("/api/chat", json={"text": "два"}, headers=tma()), 429, "daily_limit")
    assert "Лимит" in err["message"]


@pytest.mark.parametrize(
    "payload",
    [{}, {"text": ""}, {"text": "   "}, {"text": 5}, {"text": "x" * 4001}, {"message": "привет"}, [], "text"],
)
async def test_chat_validation_is_422(env: Env, payload: Any) -> None:
    """Missing, empty, non-string or over-long text → 422 with a Russian hint."""
    err = assert_error(await env.client.post("/api/chat", json=payload, headers=tma()), 422, "validation_error")
    assert err["message"] != ""
    assert env.chat.received == []


async def test_chat_rejects_non_json_bodies(env: Env) -> None:
    """A form-encoded or broken JSON body is 422, never parsed as JSON (no CSRF via simple requests)."""
    form = await env.client.post("/api/chat", content=b'{"text":"hi"}', headers={**tma(), "Content-Type": "text/plain"})
    assert_error(form, 422)
    broken = await env.client.post(
        "/api/chat", content=b'{"text":', headers={**tma(), "Content-Type": "application/json"}
    )
    assert_error(broken, 422)
    assert env.chat.received == []


async def test_one_megabyte_body_is_413(env: Env) -> None:
    """A 1 MB body is refused with 413 before reaching the service (declared length)."""
    big = json.dumps({"text": "я" * 500_000}).encode()
    assert len(big) > 1_000_000
    resp = await env.client.post("/api/chat", content=big, headers={**tma(), "Content-Type": "application/json"})
    assert_error(resp, 413, "payload_too_large")
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert env.chat.received == []


async def test_streamed_body_over_the_limit_is_413(env: Env) -> None:
    """A chunked body without Content-Length is cut off at the limit too."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(64):
            yield b"x" * 16384
        yield b'"}'

    resp = await env.client.post("/api/chat", content=chunks(), headers={**tma(), "Content-Type": "application/json"})
    assert_error(resp, 413, "payload_too_large")
    assert env.chat.received == []


async def test_body_just_under_the_limit_is_accepted(make_env: Callable[..., Env]) -> None:
    """The limit is configurable and a body below it passes (then fails validation on length, not size)."""
    e = make_env(max_body_bytes=2048)
    ok = await e.client.post("/api/chat", json={"text": "x" * 1000}, headers=tma())
    assert ok.status_code == 200
    assert_error(await e.client.post("/api/chat", json={"text": "x" * 3000}, headers=tma()), 413)


# -- analytics -------------------------------------------------------------------------------------


async def test_order_analytics_returns_id_and_status(env: Env) -> None:
    """POST /api/analytics queues a request: 201 {"id","status"} and it shows in the user's list."""
    resp = await env.client.post("/api/analytics", json={"object_code": "demo-0001"}, headers=tma())
    assert resp.status_code == 201
    body = resp.json()
    assert body["status"] == "NEW" and body["object_code"] == "DEMO-0001"
    listed = (await env.client.get("/api/analytics", headers=tma())).json()["items"]
    assert [j["id"] for j in listed] == [body["id"]]
    assert listed[0]["pdf_url"] is None


@pytest.mark.parametrize(
    ("code", "status", "err"),
    [("НЕТ ТАКОГО", 422, "invalid_object_code"), ("DEMO-9999", 422, "unknown_object_code")],
)
async def test_bad_codes_are_refused(env: Env, code: str, status: int, err: str) -> None:
    """A malformed code and an unknown object are 422 with the service's Russian message."""
    body = assert_error(await env.client.post("/api/analytics", json={"object_code": code}, headers=tma()), status, err)
    assert "DEMO-" in body["message"]


async def test_too_many_pending_is_429(env: Env) -> None:
    """Past the pending cap the API answers 429 `too_many_pending`."""
    for i in range(1, 4):
        ok = await env.client.post("/api/analytics", json={"object_code": f"DEMO-000{i}"}, headers=tma())
        assert ok.status_code == 201
    resp = await env.client.post("/api/analytics", json={"object_code": "DEMO-0004"}, headers=tma())
    assert_error(resp, 429, "too_many_pending")


@pytest.mark.parametrize("payload", [{}, {"object_code": ""}, {"object_code": "  "}, {"object_code": ["x"]}])
async def test_analytics_validation_is_422(env: Env, payload: Any) -> None:
    """A missing or empty object_code → 422 asking for a code."""
    err = assert_error(await env.client.post("/api/analytics", json=payload, headers=tma()), 422, "validation_error")
    assert "код объекта" in err["message"]


async def test_done_job_has_result_and_a_working_signed_pdf_link(env: Env) -> None:
    """A DONE job shows its result text and a signed /reports link that downloads the PDF without a header."""
    job_id = (await env.client.post("/api/analytics", json={"object_code": "DEMO-0002"}, headers=tma())).json()["id"]
    env.analytics.finish(job_id)
    job = (await env.client.get(f"/api/analytics/{job_id}", headers=tma())).json()
    assert job["status"] == "DONE"
    assert "Аналитика 360" in job["result_text"]
    link = urlsplit(job["pdf_url"])
    assert link.path == f"/reports/{job_id}.pdf"
    assert set(parse_qs(link.query)) == {"exp", "sig"}
    pdf = await env.client.get(job["pdf_url"])
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert "content-security-policy" not in pdf.headers  # the browser's PDF viewer must not be blocked
    assert pdf.headers["referrer-policy"] == "no-referrer"


async def test_report_link_is_bound_to_its_report_and_expires(env: Env) -> None:
    """A link's signature does not open another report, a tampered one fails, and it expires."""
    first = (await env.client.post("/api/analytics", json={"object_code": "DEMO-0003"}, headers=tma())).json()["id"]
    second = (await env.client.post("/api/analytics", json={"object_code": "DEMO-0004"}, headers=tma())).json()["id"]
    env.analytics.finish(first)
    env.analytics.finish(second)
    url = (await env.client.get(f"/api/analytics/{first}", headers=tma())).json()["pdf_url"]
    assert (await env.client.get(url)).status_code == 200
    assert_error(await env.client.get(url.replace(first, second)), 404, "not_found")
    assert_error(await env.client.get(url[:-1] + ("0" if url[-1] != "0" else "1")), 404)
    assert_error(await env.client.get(f"/reports/{first}.pdf?exp=9999999999&sig=abc"), 404)
    env.clock[0] += 3601
    assert_error(await env.client.get(url), 404)


async def test_report_with_init_data_only_for_its_owner(env: Env) -> None:
    """/reports/{id}.pdf with initData opens the owner's report; another partner gets 404, nobody gets 401."""
    job_id = (await env.client.post("/api/analytics", json={"object_code": "DEMO-0005"}, headers=tma())).json()["id"]
    env.analytics.finish(job_id)
    assert (await env.client.get(f"/reports/{job_id}.pdf", headers=tma())).status_code == 200
    assert_error(await env.client.get(f"/reports/{job_id}.pdf", headers=tma(OTHER_PARTNER.telegram_id)), 404)
    assert_error(await env.client.get(f"/reports/{job_id}.pdf"), 401)


async def test_report_paths_cannot_escape_the_reports_dir(env: Env) -> None:
    """Ids with path characters never reach the file system."""
    env.reports.mkdir(parents=True, exist_ok=True)
    (env.reports.parent / "secret.pdf").write_bytes(b"%PDF secret")
    for path in ("/reports/..%2Fsecret.pdf", "/reports/%2E%2E/secret.pdf", "/reports/a.b.pdf"):
        resp = await env.client.get(path, headers=tma())
        assert resp.status_code == 404
        assert b"secret" not in resp.content


async def test_someone_elses_analytics_id_is_404(env: Env) -> None:
    """GET /api/analytics/{id} of another partner's request is 404, exactly like an unknown id."""
    theirs = (
        await env.client.post(
            "/api/analytics", json={"object_code": "DEMO-0001"}, headers=tma(OTHER_PARTNER.telegram_id)
        )
    ).json()["id"]
    assert_error(await env.client.get(f"/api/analytics/{theirs}", headers=tma()), 404, "not_found")
    assert_error(await env.client.get("/api/analytics/00000000-0000-0000-0000-000000000000", headers=tma()), 404)
    assert_error(await env.client.get("/api/analytics/bad%20id", headers=tma()), 404)
    mine = (await env.client.get("/api/analytics", headers=tma())).json()["items"]
    assert mine == []


async def test_error_job_shows_the_reason(env: Env) -> None:
    """An ERROR job carries its error text and no PDF link."""
    job_id = (await env.client.post("/api/analytics", json={"object_code": "DEMO-0006"}, headers=tma())).json()["id"]
    env.analytics.finish(job_id, error="Нет сопоставимых объектов на рынке.")
    job = (await env.client.get(f"/api/analytics/{job_id}", headers=tma())).json()
    assert job["status"] == "ERROR" and job["error"] == "Нет сопоставимых объектов на рынке."
    assert job["pdf_url"] is None


async def test_external_pdf_url_is_passed_through(env: Env) -> None:
    """A report stored elsewhere by its own https link is linked as is (a private Drive link is not: see
    test_drive_reports)."""
    drive = "https://reports.example/abc.pdf"
    env.analytics.add(DEMO_ID, Job("j-ext", "DEMO-0007", "DONE", "2026-11-24 10:00:00", "", "Готово", drive, "", ""))
    job = (await env.client.get("/api/analytics/j-ext", headers=tma())).json()
    assert job["pdf_url"] == drive


# -- local mode --------------------------------------------------------------------------------------


async def test_dev_init_data_only_in_local_mode(make_env: Callable[..., Env]) -> None:
    """/dev/init-data does not exist without dev_init_data; with it, it returns initData the API accepts."""
    assert_error(await make_env().client.get("/dev/init-data"), 404)
    e = make_env(dev_init_data=lambda: init_data(DEMO_ID))
    token = (await e.client.get("/dev/init-data")).json()["init_data"]
    assert InitDataValidator(TOKEN).validate(token).user.id == DEMO_ID
    assert (await e.client.get("/api/chat/history", headers={"Authorization": f"tma {token}"})).status_code == 200


async def test_dev_init_data_refuses_non_loopback_hosts(make_env: Callable[..., Env]) -> None:
    """A DNS-rebound page (Host: evil.example) cannot fetch dev initData: there is no such route for it."""
    e = make_env(dev_init_data=lambda: init_data(DEMO_ID))
    assert_error(await e.client.get("/dev/init-data", headers={"Host": "evil.example:8080"}), 404, "not_found")


async def test_staff_console_absent_unless_given(env: Env) -> None:
    """Without a StaffPort there is no /staff."""
    assert_error(await env.client.get("/staff"), 404)
    assert_error(await env.client.get("/staff/api/sheets"), 404)


async def test_staff_console_reads_and_writes_cells(make_env: Callable[..., Env]) -> None:
    """The staff console lists sheets, dumps one and writes a cell through the StaffPort."""
    staff = FakeStaff()
    e = make_env(staff=staff)
    page = await e.client.get("/staff")
    assert page.status_code == 200 and 'src="static/staff.js"' in page.text
    assert (await e.client.get("/staff/api/sheets")).json() == {"sheets": ["Обращения", "Auth"]}
    dump = (await e.client.get("/staff/api/sheets/Обращения")).json()
    assert dump["rows"][0][5] == "Статус"
    resp = await e.client.post("/staff/api/sheets/Обращения/cells", json={"a1": "f2", "value": "В работе"})
    assert resp.status_code == 200 and resp.json()["a1"] == "F2"
    assert staff.data["Обращения"][1][5] == "В работе"


async def test_staff_console_errors(make_env: Callable[..., Env]) -> None:
    """Unknown sheet → 404, bad cell → 422, another origin → 403, a non-loopback Host → 404."""
    e = make_env(staff=FakeStaff())
    assert_error(await e.client.get("/staff/api/sheets/Нет"), 404, "no_such_sheet")
    assert_error(await e.client.post("/staff/api/sheets/Auth/cells", json={"a1": "1A", "value": "x"}), 422)
    assert_error(await e.client.post("/staff/api/sheets/Нет/cells", json={"a1": "A1", "value": "x"}), 404)
    cross = await e.client.post(
        "/staff/api/sheets/Auth/cells", json={"a1": "A2", "value": "x"}, headers={"Origin": "https://evil.example"}
    )
    assert_error(cross, 403, "cross_origin")
    assert_error(await e.client.get("/staff/api/sheets", headers={"Host": "evil.example"}), 404, "not_found")
