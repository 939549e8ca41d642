"""Security review findings (issue 12) against the web layer: each test failed before its fix."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bot.services.auth import Partner
from bot.web.app import create_web_app
from bot.web.initdata import InitDataValidator, sign_init_data
from bot.web.reports import ReportLinks
from bot.web.webhook import webhook_endpoint
from tests.fakes.web_ports import DEMO_ID, MINIMAL_PDF, FakeAnalytics, FakeAuth, FakeChat, FakeStaff, ok_health

TOKEN = "123456:web-security-test"
DEV_TOKEN = "000000:local-dev"
LOOPBACK_PEER = ("127.0.0.1", 50000)
REMOTE_PEER = ("10.0.0.5", 1234)


def init_data(user_id: int = DEMO_ID, *, token: str = TOKEN, when: datetime | None = None) -> str:
    """initData for a user signed with `token` at `when` (default: a minute ago)."""
    moment = when or datetime.now(UTC) - timedelta(minutes=1)
    return sign_init_data(token, {"id": user_id, "first_name": "Анна"}, moment)


def build_app(reports: Path, *, bot_token: str | None = TOKEN, **options: Any) -> FastAPI:
    """create_web_app with working fakes of the ports."""
    return create_web_app(
        chat=options.pop("chat", FakeChat()),
        analytics=options.pop("analytics", FakeAnalytics(reports_dir=reports)),
        auth=FakeAuth([Partner("DEMO-001", "Демо Партнёр", "+79000000001", DEMO_ID)]),
        bot_token=bot_token,
        health=ok_health,
        metrics_text=lambda: b"x 1\n",
        reports_dir=reports,
        **options,
    )


@pytest.fixture
async def client_for(tmp_path: Path) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """Makes an ASGI client for an app as seen from a given TCP peer."""
    clients: list[httpx.AsyncClient] = []

    def make(app: FastAPI, peer: tuple[str, int] = LOOPBACK_PEER, base: str = "http://127.0.0.1:8080") -> Any:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=peer)
        client = httpx.AsyncClient(transport=transport, base_url=base)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


def local_app(tmp_path: Path) -> FastAPI:
    """The app as `marketingbot local` builds it: dev initData and the staff console."""
    return build_app(tmp_path / "reports", dev_init_data=lambda: init_data(token=TOKEN), staff=FakeStaff())


LOCAL_ROUTES = [
    ("GET", "/staff", None),
    ("GET", "/staff/api/sheets", None),
    ("GET", "/staff/api/sheets/Auth", None),
    ("POST", "/staff/api/sheets/Auth/cells", {"a1": "D2", "value": "authorized"}),
    ("GET", "/dev/init-data", None),
]


# -- 1. loopback-only routes decide by the TCP peer, not the Host header -------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), LOCAL_ROUTES)
async def test_local_routes_are_404_for_a_remote_peer_claiming_loopback_host(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient], method: str, path: str, body: Any
) -> None:
    """A request from another machine with `Host: 127.0.0.1` gets 404 from /staff* and /dev/init-data."""
    client = client_for(local_app(tmp_path), REMOTE_PEER)
    resp = await client.request(method, path, json=body, headers={"Host": "127.0.0.1"})
    assert resp.status_code == 404, resp.text


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Forwarded-Host": "127.0.0.1"},
        {"x-forwarded-proto": "http"},
        {"X-Forwarded-Anything": "1"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
    ],
)
@pytest.mark.parametrize(("method", "path", "body"), LOCAL_ROUTES)
async def test_local_routes_are_404_behind_a_proxy(
    tmp_path: Path,
    client_for: Callable[..., httpx.AsyncClient],
    header: dict[str, str],
    method: str,
    path: str,
    body: Any,
) -> None:
    """A loopback peer that carries any proxy header (a reverse proxy on the same host) gets 404."""
    client = client_for(local_app(tmp_path), LOOPBACK_PEER)
    resp = await client.request(method, path, json=body, headers=header)
    assert resp.status_code == 404, resp.text


@pytest.mark.parametrize("peer", [LOOPBACK_PEER, ("::1", 50000), ("127.8.9.10", 1)])
async def test_local_routes_answer_a_direct_loopback_peer(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient], peer: tuple[str, int]
) -> None:
    """A direct request from this machine still reaches the staff console and dev initData."""
    client = client_for(local_app(tmp_path), peer)
    assert (await client.get("/staff")).status_code == 200
    assert (await client.get("/staff/api/sheets")).status_code == 200
    assert (await client.get("/dev/init-data")).status_code == 200


async def test_local_routes_are_404_for_a_foreign_host_even_from_loopback(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    """A DNS-rebound page (loopback peer, Host: evil.example) is refused too."""
    client = client_for(local_app(tmp_path), LOOPBACK_PEER)
    assert (await client.get("/dev/init-data", headers={"Host": "evil.example:8080"})).status_code == 404
    assert (await client.get("/staff/api/sheets", headers={"Host": "evil.example"})).status_code == 404


async def test_local_routes_do_not_exist_outside_local(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    """Without local mode's extras, even a loopback peer gets 404 for /staff and /dev/init-data."""
    app = build_app(tmp_path / "reports")
    client = client_for(app, LOOPBACK_PEER)
    for _, path, _ in LOCAL_ROUTES:
        assert (await client.get(path)).status_code == 404


# -- 2. no signing token: the API refuses everything -----------------------------------------------------------


async def test_without_a_signing_token_dev_signed_init_data_is_401(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    """With no real bot token (`run` without TELEGRAM_BOT_TOKEN), initData signed with the dev token is 401."""
    client = client_for(build_app(tmp_path / "reports", bot_token=None))
    headers = {"Authorization": f"tma {init_data(token=DEV_TOKEN)}"}
    assert (await client.get("/api/chat/history", headers=headers)).status_code == 401
    assert (await client.post("/api/chat", json={"text": "привет"}, headers=headers)).status_code == 401


async def test_without_a_signing_token_report_links_are_refused(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    """A report link signed with the dev token does not open a PDF when no real token is configured."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "job1.pdf").write_bytes(MINIMAL_PDF)
    client = client_for(build_app(reports, bot_token=None))
    query = ReportLinks(DEV_TOKEN).query("job1")
    assert (await client.get(f"/reports/job1.pdf?{query}")).status_code == 404


# -- 4. malformed unauthenticated input is a 4xx without a traceback ----------------------------------------


async def test_deeply_nested_init_data_user_is_401(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    """initData `user=[[[…` ×3000 (RecursionError in a JSON parser) is 401, and nothing is logged as an error."""
    client = client_for(build_app(tmp_path / "reports"))
    nested = "user=" + "[" * 3000 + "&auth_date=1&hash=" + "0" * 64
    with caplog.at_level(logging.INFO):
        resp = await client.get("/api/chat/history", headers={"Authorization": f"tma {nested}"})
    assert resp.status_code == 401
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("exp", ["%C2%B2", "1" * 5000, "-5", "1e9", "%EF%BC%91"])
async def test_malformed_report_expiry_is_404(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient], caplog: pytest.LogCaptureFixture, exp: str
) -> None:
    """`exp=²`, a 5000-digit or other non-decimal expiry is a plain 404, no 500 and no traceback."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "x.pdf").write_bytes(MINIMAL_PDF)
    client = client_for(build_app(reports))
    with caplog.at_level(logging.INFO):
        resp = await client.get(f"/reports/x.pdf?exp={exp}&sig=" + "0" * 64)
    assert resp.status_code == 404
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("given", ["пароль", "sécret", "\u00ff" * 48, "", "x" * 10_000])
async def test_webhook_refuses_bad_secrets_with_401(caplog: pytest.LogCaptureFixture, given: str) -> None:
    """A webhook secret header with non-ASCII characters (or otherwise wrong) is 401, not a TypeError 500."""
    received: list[dict[str, Any]] = []

    async def deliver(update: dict[str, Any], headers: Mapping[str, str]) -> None:
        received.append(update)

    app = FastAPI()
    app.add_route("/telegram/webhook", webhook_endpoint("s" * 48, deliver), methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with caplog.at_level(logging.INFO):
            resp = await client.post(
                "/telegram/webhook",
                content=b'{"update_id": 1}',
                headers=[(b"X-Telegram-Bot-Api-Secret-Token", given.encode())],
            )
    assert resp.status_code == 401
    assert received == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'"x"', b"{", b'{"update_id": "x"}'])
async def test_webhook_with_the_secret_but_a_malformed_body_is_400(body: bytes) -> None:
    """A POST with the right secret and a body that is not an update object is 400, not 500."""

    async def deliver(update: dict[str, Any], headers: Mapping[str, str]) -> None:
        raise AssertionError("nothing to deliver")

    app = FastAPI()
    app.add_route("/telegram/webhook", webhook_endpoint("s" * 48, deliver), methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.post(
            "/telegram/webhook", content=body, headers={"X-Telegram-Bot-Api-Secret-Token": "s" * 48}
        )
    assert resp.status_code == 400


async def test_webhook_delivers_a_genuine_update() -> None:
    """The right secret and a JSON object deliver the update and answer 200."""
    received: list[dict[str, Any]] = []

    async def deliver(update: dict[str, Any], headers: Mapping[str, str]) -> None:
        received.append(update)

    app = FastAPI()
    app.add_route("/telegram/webhook", webhook_endpoint("s" * 48, deliver), methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.post(
            "/telegram/webhook", json={"update_id": 7}, headers={"X-Telegram-Bot-Api-Secret-Token": "s" * 48}
        )
    assert resp.status_code == 200
    assert received == [{"update_id": 7}]


# -- 10. initData from the future --------------------------------------------------------------------------


def test_init_data_from_the_future_beyond_the_skew_is_refused() -> None:
    """auth_date more than 60 s ahead of the server clock is rejected; within the skew it is accepted."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    validator = InitDataValidator(TOKEN, clock=lambda: now)
    from bot.web.initdata import InitDataInvalid

    with pytest.raises(InitDataInvalid):
        validator.validate(init_data(when=now + timedelta(minutes=10)))
    with pytest.raises(InitDataInvalid):
        validator.validate(init_data(when=now + timedelta(days=3650)))
    assert validator.validate(init_data(when=now + timedelta(seconds=30))).user.id == DEMO_ID


async def test_future_init_data_is_401_over_http(tmp_path: Path, client_for: Callable[..., httpx.AsyncClient]) -> None:
    """The API answers 401 to initData dated an hour ahead."""
    client = client_for(build_app(tmp_path / "reports"))
    future = init_data(when=datetime.now(UTC) + timedelta(hours=1))
    assert (await client.get("/api/chat/history", headers={"Authorization": f"tma {future}"})).status_code == 401


# -- 2. the composition root never hands the dev token to the web layer outside `local` ----------------------


@pytest.mark.parametrize("env_token", [None, DEV_TOKEN, "111:custom-dev"])
def test_run_mode_without_a_real_token_signs_nothing(env_token: str | None) -> None:
    """`run` with no bot token, or with a dev token as the bot token, gives the web layer no signing token."""
    from bot.app import web_signing_token
    from bot.config import load_settings

    settings = load_settings(
        _env_file=None, telegram_bot_token=env_token, local_dev_bot_token="111:custom-dev", sheets_backend="local"
    )
    assert web_signing_token(settings, local=False) is None
    assert web_signing_token(settings, local=True) == (env_token or "111:custom-dev")


def test_run_mode_with_a_real_token_signs_with_it() -> None:
    """With a real TELEGRAM_BOT_TOKEN, `run` checks initData against that token."""
    from bot.app import web_signing_token
    from bot.config import load_settings

    settings = load_settings(_env_file=None, telegram_bot_token=TOKEN, sheets_backend="local")
    assert web_signing_token(settings, local=False) == TOKEN


# -- 3. per-partner request rate on the API -------------------------------------------------------------------


async def test_api_posts_over_the_partner_rate_are_429_and_not_processed(
    tmp_path: Path, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    """Past the burst, POST /api/chat and /api/analytics get 429 with Retry-After and a JSON error saying the
    message was not saved; the refused messages never reach the chat service (nothing stored)."""
    from bot.services.partner_limits import PartnerRateLimiter

    chat = FakeChat()
    analytics = FakeAnalytics(reports_dir=tmp_path / "reports")
    limiter = PartnerRateLimiter(per_minute=1, burst=3)
    client = client_for(build_app(tmp_path / "reports", chat=chat, analytics=analytics, rate_limiter=limiter))
    headers = {"Authorization": f"tma {init_data()}"}
    statuses = [
        (await client.post("/api/chat", json={"text": f"вопрос {i}"}, headers=headers)).status_code for i in range(3)
    ]
    assert statuses == [200, 200, 200]
    refused = await client.post("/api/chat", json={"text": "вопрос лишний"}, headers=headers)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "не сохранено" in error["message"]
    stored = [e.text for e in await chat.history(DEMO_ID)]
    assert "вопрос 0" in stored and "вопрос лишний" not in stored
    assert (await client.post("/api/analytics", json={"object_code": "DEMO-0001"}, headers=headers)).status_code == 429
    assert await analytics.list_for(DEMO_ID) == []
    # Reading stays possible: only the costly POSTs are limited.
    assert (await client.get("/api/chat/history", headers=headers)).status_code == 200
