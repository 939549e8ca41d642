"""Fuzzing the public routes with a seeded generator: malformed headers, queries and bodies never give a 5xx
or a logged traceback."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import string
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from bot.services.auth import Partner
from bot.web.app import create_web_app
from bot.web.webhook import webhook_endpoint
from tests.fakes.web_ports import DEMO_ID, MINIMAL_PDF, FakeAnalytics, FakeAuth, FakeChat, FakeStaff, ok_health

TOKEN = "123456:web-fuzz-test"
SEED = 20261206
ROUNDS = 600
WEBHOOK_SECRET = "w" * 48

ROUTES: list[tuple[str, str]] = [
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/chat/history"),
    ("POST", "/api/chat"),
    ("GET", "/api/analytics"),
    ("POST", "/api/analytics"),
    ("GET", "/api/analytics/{id}"),
    ("GET", "/reports/{id}.pdf"),
    ("POST", "/telegram/webhook"),
    ("GET", "/dev/init-data"),
    ("GET", "/staff/api/sheets/{id}"),
    ("POST", "/staff/api/sheets/{id}/cells"),
]


class Junk:
    """Generates hostile strings, headers, queries and bodies from one seeded RNG (reproducible)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def text(self, limit: int = 40) -> str:
        """A random string mixing ASCII, Cyrillic, control, combining and astral characters."""
        alphabet = string.printable + "²³¹٣߀۹\u0301\u200b\x00\x7fЖя€𝟘🙂\ud7ff"
        pick = self.rng.choice(
            [
                lambda: "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, limit))),
                lambda: "[" * self.rng.randint(100, 4000),
                lambda: "{" * self.rng.randint(100, 4000),
                lambda: "9" * self.rng.randint(20, 6000),
                lambda: "-" + "1" * self.rng.randint(1, 30),
                lambda: self.rng.choice(["", " ", "null", "NaN", "Infinity", "1e309", "%", "%zz", "%C2%B2", "\\u0000"]),
            ]
        )
        return pick()

    def latin1(self, limit: int = 60) -> str:
        """A header-safe (latin-1, no CR/LF) random string."""
        chars = [
            chr(self.rng.choice([*range(0x20, 0x7F), *range(0xA0, 0x100)])) for _ in range(self.rng.randint(0, limit))
        ]
        return "".join(chars)

    def signed_init_data(self) -> str:
        """initData with a valid signature but a hostile payload: the parser must still not crash."""
        user: Any = self.rng.choice(
            [
                {"id": self.text(), "first_name": "x"},
                {"id": 10**400, "first_name": "x"},
                {"id": DEMO_ID},
                {"first_name": "x"},
                [1, 2, 3],
                "[" * 2000,
                {"id": DEMO_ID, "first_name": {"a": 1}},
                {"id": -1.5, "first_name": None},
                {"id": True, "first_name": "x"},
            ]
        )
        raw_user = user if isinstance(user, str) else json.dumps(user)
        auth_date = self.rng.choice(["1", "-5", "9" * 30, "abc", "1e10", "", str(10**18)])
        fields = {"user": raw_user, "auth_date": auth_date, "query_id": self.text(10)}
        # Signed exactly as Telegram does, so the hash check passes and the payload is parsed.
        pairs = sorted(f"{k}={v}" for k, v in fields.items())
        secret = hmac.new(b"WebAppData", TOKEN.encode(), hashlib.sha256).digest()
        h = hmac.new(secret, "\n".join(pairs).encode(), hashlib.sha256).hexdigest()
        return "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items()) + f"&hash={h}"

    def authorization(self) -> str:
        """An Authorization header value."""
        return self.rng.choice(
            [
                lambda: "tma " + self.latin1(),
                lambda: "tma " + self.signed_init_data(),
                lambda: "tma user=" + "[" * self.rng.randint(1000, 3000) + "&auth_date=1&hash=" + "0" * 64,
                lambda: "tma hash=1&hash=2&user=%7B%7D",
                lambda: "Bearer " + self.latin1(),
                lambda: self.latin1(),
                lambda: "tma " + "%" * self.rng.randint(1, 50),
            ]
        )()

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Random request headers, sometimes with raw non-ASCII bytes."""
        names = [
            "Authorization",
            "X-Telegram-Bot-Api-Secret-Token",
            "Content-Type",
            "Accept",
            "Origin",
            "X-Forwarded-For",
            "Cookie",
            "Range",
            "If-None-Match",
            "Accept-Encoding",
        ]
        out: list[tuple[bytes, bytes]] = []
        for _ in range(self.rng.randint(0, 5)):
            name = self.rng.choice(names)
            value = self.authorization() if name == "Authorization" else self.latin1()
            if name == "X-Telegram-Bot-Api-Secret-Token" and self.rng.random() < 0.3:
                value = WEBHOOK_SECRET
            raw = value.encode("latin-1") if self.rng.random() < 0.7 else value.encode("utf-8", "replace")
            out.append((name.encode(), raw))
        return out

    def query(self) -> str:
        """A random query string (exp/sig/q and junk keys, percent-encoded or raw)."""
        keys = ["exp", "sig", "q", "id", "exp", self.text(5)]
        parts = []
        for _ in range(self.rng.randint(0, 4)):
            value = self.text(30)
            # Mostly fully encoded; sometimes with raw punctuation left in (what a hand-typed URL carries).
            encoded = quote(value, safe="" if self.rng.random() < 0.8 else "=;,:[]{}'\"!$()*")
            parts.append(f"{quote(self.rng.choice(keys), safe='')}={encoded}")
        return "&".join(parts)

    def body(self) -> bytes:
        """A random body: broken or hostile JSON, odd shapes, random bytes."""
        choice = self.rng.randint(0, 7)
        if choice == 0:
            return self.rng.randbytes(self.rng.randint(0, 300))
        if choice == 1:
            return b"[" * self.rng.randint(100, 5000)
        if choice == 2:
            return json.dumps(
                {"text": self.text(), "object_code": self.text(), "a1": self.text(8), "value": 1}
            ).encode()
        if choice == 3:
            return json.dumps(self.rng.choice([[], "x", 1, None, {"text": None}, {"text": ["a"]}])).encode()
        if choice == 4:
            return json.dumps({"update_id": self.rng.choice([1, "1", None, 10**30]), "message": self.text()}).encode()
        if choice == 5:
            return ('{"text": "' + "\\ud800" * 10 + '"}').encode()
        if choice == 6:
            return json.dumps({"text": "x" * self.rng.randint(3990, 4100)}).encode()
        return self.text().encode("utf-8", "surrogatepass")

    def path(self, template: str) -> str:
        """The route with a random id (traversal, encoded junk, long)."""
        ident = self.rng.choice(
            ["job1", "..%2F..%2Fetc%2Fpasswd", "%00", "a" * 300, quote(self.text(20), safe=""), "Auth"]
        )
        return template.replace("{id}", ident or "x")


@pytest.fixture
async def fuzz_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The full public surface (local extras and the webhook included) behind an ASGI client."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "job1.pdf").write_bytes(MINIMAL_PDF)
    app: FastAPI = create_web_app(
        chat=FakeChat(),
        analytics=FakeAnalytics(reports_dir=reports),
        auth=FakeAuth([Partner("DEMO-001", "Демо Партнёр", "+79000000001", DEMO_ID)]),
        bot_token=TOKEN,
        health=ok_health,
        metrics_text=lambda: b"x 1\n",
        reports_dir=reports,
        dev_init_data=lambda: "auth_date=1&hash=0",
        staff=FakeStaff(),
    )

    async def deliver(update: dict[str, Any]) -> None:
        if not isinstance(update.get("message", {}), dict):
            raise ValueError("not a message object")

    app.add_route("/telegram/webhook", webhook_endpoint(WEBHOOK_SECRET, deliver), methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        yield client


async def test_public_routes_never_answer_5xx_nor_log_a_traceback(
    fuzz_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """600 seeded hostile requests over every public route: each gets a status below 500, none logs an error."""
    junk = Junk(SEED)
    failures: list[str] = []
    with caplog.at_level(logging.INFO):
        for i in range(ROUNDS):
            method, template = junk.rng.choice(ROUTES)
            url = junk.path(template)
            query = junk.query()
            if query:
                url += "?" + query
            body = junk.body() if method == "POST" else b""
            headers = junk.headers()
            resp = await fuzz_client.request(method, url, content=body, headers=headers)
            if resp.status_code >= 500:
                failures.append(f"#{i} {method} {url[:120]!r} {headers!r:.200} -> {resp.status_code}")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not failures, "\n".join(failures[:10])
    assert not errors, "\n".join(f"{r.name}: {r.getMessage()[:200]}" for r in errors[:10])
