"""`marketingbot check`, the go-live checklist: each item against the fake Sheets, Telegram and Gemini servers.

The real client libraries (gspread + google-auth with a service-account key, PTB, google-genai, httpx) talk to
the local fakes; the Mini App is served over https with a certificate made for the test.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bot.config import Settings, load_settings_lenient
from bot.ops.checklist import Item, run_checklist, structure_refusal
from gateway.schemas import ALL_SCHEMAS, QUEUE
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.sheets_server import TOKEN_PATH, FakeSheetsServer
from tests.fakes.telegram_server import FakeTelegramServer

TOKEN = "7012345678:AAH1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvWx"  # BotFather's shape: digits, 35 characters
SECRET_PART = TOKEN.split(":", 1)[1]
STAFF_CHAT = -1001234567890
SERVICE_ACCOUNT = "marketingbot@agency-bot.iam.gserviceaccount.com"
GEMINI_KEY = "AIzaFakeKeyForTheChecklist0123456789"
INDEX_HTML = (Path(__file__).resolve().parents[2] / "bot" / "web" / "static" / "index.html").read_bytes()


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def service_account_key(path: Path, token_uri: str) -> Path:
    """A service-account JSON key like the one Google Cloud downloads, its token_uri on the fake."""
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "agency-bot",
                "private_key_id": "0123456789abcdef",
                "private_key": _pem(_key()),
                "client_email": SERVICE_ACCOUNT,
                "client_id": "100000000000000000001",
                "token_uri": token_uri,
                # Outside googleapis.com google-auth makes no Regional Access Boundary lookup (an internet call).
                "universe_domain": "sheets.fake.invalid",
            }
        )
    )
    return path


class _MiniAppHandler(BaseHTTPRequestHandler):
    """Serves the real index.html at / (what the reverse proxy passes to the bot)."""

    def do_GET(self) -> None:
        """The Mini App page, or 404."""
        body = INDEX_HTML if self.path == "/" else b"not found"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""


@pytest.fixture(scope="module")
def mini_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    """An https server on 127.0.0.1 with a self-signed certificate; yields its URL and a context trusting it."""
    folder = tmp_path_factory.mktemp("tls")
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_text(_pem(key))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MiniAppHandler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/", ssl.create_default_context(cafile=folder / "cert.pem")
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Stack:
    """The fakes of one healthy production setup and the settings pointing at them."""

    sheets: FakeSheetsServer
    telegram: FakeTelegramServer
    gemini: FakeGeminiServer
    webapp_url: str
    verify: ssl.SSLContext
    tmp: Path

    def env(self, **overrides: Any) -> dict[str, Any]:
        """Settings keyword arguments for this stack (no .env file read)."""
        values: dict[str, Any] = {
            "_env_file": None,
            "telegram_bot_token": TOKEN,
            "telegram_api_base_url": self.telegram.api_base_url,
            "staff_chat_id": STAFF_CHAT,
            "sheets_backend": "google",
            "google_spreadsheet_id": self.sheets.spreadsheet_id,
            "google_credentials_file": service_account_key(self.tmp / "credentials.json", self.sheets.url + TOKEN_PATH),
            "sheets_api_base_url": self.sheets.url,
            "data_dir": self.tmp / "data",
            "ai_provider": "gemini",
            "gemini_api_key": GEMINI_KEY,
            "gemini_base_url": self.gemini.url,
            "webapp_url": self.webapp_url,
        }
        values.update(overrides)
        return values

    async def check(self, **overrides: Any) -> list[Item]:
        """Runs the checklist over this stack with `overrides` applied to the settings."""
        settings, problems = load_settings_lenient(**self.env(**overrides))
        assert settings is not None
        return await run_checklist(settings, problems, verify=self.verify)


@pytest.fixture
def stack(tmp_path: Path, mini_app: tuple[str, ssl.SSLContext]) -> Iterator[Stack]:
    """A healthy setup: every sheet and header, the bot in the staff group, Gemini answering, the Mini App up."""
    with (
        FakeSheetsServer(sheets=()) as sheets,
        FakeTelegramServer(token=TOKEN) as telegram,
        FakeGeminiServer(api_key=GEMINI_KEY) as gemini,
    ):
        for schema in ALL_SCHEMAS:
            sheets.add_sheet(schema.title, schema.headers)
        yield Stack(sheets, telegram, gemini, mini_app[0], mini_app[1], tmp_path)


def _by_name(items: list[Item]) -> dict[str, Item]:
    return {i.name.split(" ")[0] if i.name.startswith(("WEBAPP_URL", "AI")) else i.name: i for i in items}


def _item(items: list[Item], starts: str) -> Item:
    found = [i for i in items if i.name.startswith(starts)]
    assert len(found) == 1, [i.name for i in items]
    return found[0]


def _text(items: list[Item]) -> str:
    return "\n".join(i.line() for i in items)


async def test_healthy_configuration_passes_every_item(stack: Stack) -> None:
    """Every item holds on a complete setup; each line starts with ✔ and nothing secret is printed."""
    items = await stack.check()
    print(_text(items))
    assert [i for i in items if not i.ok] == []
    assert len(items) >= 10 and all(i.line().startswith("✔ ") for i in items)
    assert SECRET_PART not in _text(items) and GEMINI_KEY not in _text(items)
    assert "7012345678:****" in _item(items, "bot token").detail
    # the staff chat was probed with a typing indicator, not a message
    assert [m.method for m in stack.telegram.sent_to(STAFF_CHAT, None)] == ["sendChatAction"]


async def test_wrong_token_fails_with_the_token_masked(stack: Stack) -> None:
    """Telegram's 401 for the token → ✖ bot token naming the masked token; the other items are still checked."""
    wrong = "7012345678:AAWrongWrongWrongWrongWrongWrongWrong1"
    items = await stack.check(telegram_bot_token=wrong)
    item = _item(items, "bot token")
    assert not item.ok and "7012345678:****" in item.detail and "@BotFather" in item.detail
    assert "AAWrong" not in _text(items)
    assert _item(items, "the bot can post").detail.startswith("not checked: TELEGRAM_BOT_TOKEN")
    assert _item(items, "spreadsheet reachable").ok and _item(items, "AI provider").ok


async def test_spreadsheet_403_names_the_service_account(stack: Stack) -> None:
    """Access denied to the spreadsheet → ✖ naming the service-account e-mail to share it with as Editor."""
    stack.sheets.deny_access()
    items = await stack.check()
    item = _item(items, "spreadsheet reachable")
    assert not item.ok and SERVICE_ACCOUNT in item.detail and "Editor" in item.detail
    sheets = _item(items, "every sheet")
    assert not sheets.ok and sheets.detail == "not checked: the spreadsheet is not reachable"
    assert _item(items, "bot token").ok  # checked even after the failure


async def test_missing_queue_sheet_is_named(stack: Stack) -> None:
    """A spreadsheet without «Очередь» → ✖ naming it and `marketingbot sheets init`."""
    stack.sheets.delete_sheet(QUEUE.title)
    items = await stack.check()
    item = _item(items, "every sheet")
    assert not item.ok and "«Очередь»" in item.detail and "marketingbot sheets init" in item.detail
    assert not _item(items, "analytics worker").ok


async def test_missing_header_is_named(stack: Stack) -> None:
    """A sheet lacking a header → ✖ naming the sheet and the header."""
    stack.sheets.set_cell("Auth", "G1", "")
    item = _item(await stack.check(), "every sheet")
    assert not item.ok and "«Auth»" in item.detail and "«Рассылка»" in item.detail


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://example.com/", "not https"),
        ("not-a-url", "not a URL"),
        (None, "not set"),
    ],
)
async def test_webapp_url_must_be_https(stack: Stack, url: str | None, words: str) -> None:
    """An http, malformed or missing WEBAPP_URL → ✖ (Telegram opens Mini Apps only over https)."""
    item = _item(await stack.check(webapp_url=url), "WEBAPP_URL")
    assert not item.ok and words in item.detail


async def test_webapp_url_that_serves_something_else_fails(stack: Stack) -> None:
    """An https URL that answers 404 is not the Mini App."""
    item = _item(await stack.check(webapp_url=stack.webapp_url + "elsewhere"), "WEBAPP_URL")
    assert not item.ok and "HTTP 404" in item.detail


async def test_staff_chat_unreachable_fails(stack: Stack) -> None:
    """The bot not in the staff group → ✖ telling to add it; nothing is posted there."""
    stack.telegram.remove_bot_from_chat(STAFF_CHAT)
    item = _item(await stack.check(), "the bot can post")
    assert not item.ok and "add the bot @marketing_test_bot" in item.detail
    assert stack.telegram.sent_to(STAFF_CHAT, None) == []


async def test_staff_chat_not_set_fails(stack: Stack) -> None:
    """No STAFF_CHAT_ID → ✖ saying how to get one."""
    item = _item(await stack.check(staff_chat_id=None), "the bot can post")
    assert not item.ok and "STAFF_CHAT_ID is not set" in item.detail


async def test_ai_provider_that_refuses_fails(stack: Stack) -> None:
    """Gemini refusing the key → ✖ AI provider, the key never printed."""
    items = await stack.check(gemini_api_key="AIzaWrongKey000000000000000000000000")
    item = _item(items, "AI provider")
    assert not item.ok and "gemini" in item.detail and "AIzaWrongKey" not in _text(items)


async def test_stale_new_request_means_the_worker_is_dead(stack: Stack) -> None:
    """A NEW row in «Очередь» older than 5 minutes → ✖ worker; a fresh one is fine."""
    from bot.services.sheet_time import stamp

    now = dt.datetime.now(dt.UTC)
    stack.sheets.set_values(QUEUE.title, [list(QUEUE.headers), ["a1", stamp(now), "DEMO-0001", "1", "", "NEW"]])
    assert _item(await stack.check(), "analytics worker").ok
    old = stamp(now - dt.timedelta(minutes=6))
    stack.sheets.set_values(QUEUE.title, [list(QUEUE.headers), ["a2", old, "DEMO-0001", "1", "", "NEW"]])
    item = _item(await stack.check(), "analytics worker")
    assert not item.ok and "a2" in item.detail and "worker" in item.detail


async def test_bad_settings_are_one_item_and_the_rest_still_run(stack: Stack) -> None:
    """Bad variables → ✖ settings listing each; the other items are still checked."""
    items = await stack.check(admin_telegram_ids="abc", web_port="x")
    item = _item(items, "settings")
    assert not item.ok and "ADMIN_TELEGRAM_IDS" in item.detail and "WEB_PORT" in item.detail
    assert _item(items, "bot token").ok


async def test_run_refusal_names_the_missing_sheet_only_when_the_sheet_answers(stack: Stack) -> None:
    """`run`'s sheet check: a missing sheet → one line naming it and sheets init; an unreachable sheet → nothing."""
    settings = Settings(**stack.env())
    assert await structure_refusal(settings) == []
    stack.sheets.delete_sheet(QUEUE.title)
    (line,) = await structure_refusal(settings)
    assert "«Очередь»" in line and "marketingbot sheets init" in line and "GOOGLE_SPREADSHEET_ID" in line
    stack.sheets.set_outage(True)
    assert await structure_refusal(settings, within=10) == []


def test_cli_check_prints_every_line_and_never_the_secret(stack: Stack) -> None:
    """`marketingbot check` as a process against the fakes: one ✔/✖ line per item, exit 1 with a wrong token,
    and the token's secret part nowhere in stdout or stderr."""
    import os
    import subprocess
    import sys

    wrong = "7012345678:AAWrongWrongWrongWrongWrongWrongWrong1"
    values = stack.env(telegram_bot_token=wrong, webapp_url="http://bot.example.ru/")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "GEMINI_", "SHEETS_", "GOOGLE_"))}
    env.update({k.upper(): str(v) for k, v in values.items() if not k.startswith("_")})
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    res = subprocess.run(
        [sys.executable, "-m", "bot", "check"], cwd=stack.tmp, env=env, capture_output=True, text=True, timeout=120
    )
    lines = res.stdout.splitlines()
    assert res.returncode == 1, res.stdout + res.stderr
    assert all(line[:2] in ("✔ ", "✖ ") for line in lines[:-1]) and lines[-1].endswith("hold")
    assert any(line.startswith("✖ bot token") and "7012345678:****" in line for line in lines)
    assert any(line.startswith("✖ WEBAPP_URL") and "not https" in line for line in lines)
    assert any(line.startswith("✔ spreadsheet reachable") for line in lines)
    assert "AAWrong" not in res.stdout + res.stderr
