"""The REAL app behind the deploy scripts, under load: shared by tests/integration/test_deploy_slots.py and
bench/deploy.py.

Each stand-in release's `marketingbot` execs the real `python -m bot run|check` of this worktree (see
app.py's "exec_python"), so deploy.sh builds, smoke-tests and hands over real processes, through the stub
service manager and the held socket, against the fake Telegram, Sheets and Gemini servers (tests/fakes).
Load: Mini App clients (GET /api/chat/history with signed initData, each request on a new connection) and
partners writing to the bot; a sampler asks both slots for their role all along.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.web.initdata import sign_init_data
from gateway import GatewayConfig, build_gateway
from gateway.schemas import APPEALS, AUTH, AppealCol, AuthCol
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.sheets_server import FakeSheetsServer
from tests.fakes.telegram_server import FakeTelegramServer

FIRST_PARTNER = 700_001
SLOTS = ("blue", "green")
LEASE_LINE = re.compile(r"^(\S+ \S+) .*leader lease (?:\S+ acquired|released)")


async def seed_sheets(sheets: FakeSheetsServer, data_dir: Path, partners: list[int]) -> None:
    """Creates every sheet with its headers and authorizes the partners, through the real gateway."""
    cfg = GatewayConfig(
        backend="google",
        local_db_path=data_dir / "seed" / "unused.db",
        spreadsheet_id=sheets.spreadsheet_id,
        sheets_api_base_url=sheets.url,
        reads_per_minute=None,
        writes_per_minute=None,
    )
    gw = build_gateway(cfg)
    await gw.start()
    try:
        await gw.ensure_sheets(fmt=False)
        auth = gw.table(AUTH)
        await gw.write(
            [
                auth.op_insert(
                    {
                        AuthCol.CODE: f"P-{tid}",
                        AuthCol.PHONE: f"+7900{tid:07d}",
                        AuthCol.NAME: f"Партнёр {tid}",
                        AuthCol.STATUS: "authorized",
                        AuthCol.TELEGRAM_ID: str(tid),
                    }
                )
                for tid in partners
            ]
        )
    finally:
        await gw.close()


def app_env(
    site: Any, tg: FakeTelegramServer, sheets: FakeSheetsServer, gemini: FakeGeminiServer, *, webhook: bool
) -> str:
    """shared/.env of the real app: the fakes, the shared data directory, the slot layout."""
    data = site.base / "shared" / "data"
    lines = {
        "DEPLOY_LAYOUT": "slots",
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(site.port),
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_BASE_URL": tg.api_base_url,
        "STAFF_CHAT_ID": "-1001234567890",  # the go-live checklist (the smoke test) needs a reachable staff chat
        "SHEETS_BACKEND": "google",
        "GOOGLE_SPREADSHEET_ID": sheets.spreadsheet_id,
        "SHEETS_API_BASE_URL": sheets.url,
        # The quota is the fake's to enforce (it does not here): the client-side limiter would only queue.
        "SHEETS_READS_PER_MINUTE": "1000000",
        "SHEETS_WRITES_PER_MINUTE": "1000000",
        "AI_PROVIDER": "gemini",
        "GEMINI_API_KEY": "fake-gemini-key",
        "GEMINI_BASE_URL": gemini.url,
        "LOCAL_DB_PATH": str(data / "marketingbot.db"),
        "DAILY_AI_LIMIT": "0",
        "WORKING_HOURS": "00:00-23:59 UTC",
        "LOG_LEVEL": "INFO",
    }
    if webhook:
        lines["WEBHOOK_URL"] = f"http://127.0.0.1:{site.port}/telegram/webhook"
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def prepare_site(
    site: Any, tg: FakeTelegramServer, sheets: FakeSheetsServer, gemini: FakeGeminiServer, *, webhook: bool
) -> None:
    """Writes shared/.env, seeds the sheets, starts the held socket (what `enable --now marketingbot.socket` does)."""
    (site.base / "shared" / "data").mkdir(parents=True, exist_ok=True)
    (site.base / "shared" / ".env").write_text(app_env(site, tg, sheets, gemini, webhook=webhook))
    asyncio.run(seed_sheets(sheets, site.base / "shared", partner_ids()))
    started = systemctl(site, "start", "marketingbot.socket")
    assert started.returncode == 0, started.stdout


def partner_ids(n: int = 20) -> list[int]:
    """Telegram IDs of the partners writing to the bot (also the Mini App users)."""
    return list(range(FIRST_PARTNER, FIRST_PARTNER + n))


def slot_health(base: Path, slot: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """GET /healthz on one slot's own socket; None when that slot does not answer."""

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(base / "shared" / "data" / f"slot-{slot}.sock"))

    conn = UnixConnection("localhost", timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        body: dict[str, Any] = json.loads(conn.getresponse().read())
        return body
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@dataclass
class Request:
    """One Mini App request: when it started, how long it took, and its failure if any."""

    start: float
    seconds: float
    error: str | None


@dataclass
class Load:
    """Mini App clients and Telegram partners running until `stop()`; everything they saw is recorded."""

    port: int
    tg: FakeTelegramServer
    token: str
    clients: int = 20
    partners: int = 20
    request_pause: float = 0.2
    message_pause: float = 2.0
    requests: list[Request] = field(default_factory=list)
    sent: dict[int, list[str]] = field(default_factory=dict)
    sent_at: dict[int, list[float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Starts every client and partner thread."""
        ids = partner_ids(max(self.clients, self.partners))
        for i in range(self.clients):
            self._threads.append(threading.Thread(target=self._client, args=(ids[i],), daemon=True))
        for i in range(self.partners):
            self.sent[ids[i]] = []
            self.sent_at[ids[i]] = []
            self._threads.append(threading.Thread(target=self._partner, args=(ids[i], i), daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops sending and waits for every thread."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self, user_id: int) -> None:
        user = {"id": user_id, "first_name": f"Партнёр {user_id}"}
        url = f"http://127.0.0.1:{self.port}/api/chat/history"
        # A fresh connection per request: a kept-alive one is closed by a stopping server between requests,
        # which clients retry (browsers do, RFC 9112 §9.3.1) and which this test does not count.
        with httpx.Client(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0), trust_env=False) as http:
            while not self._stop.is_set():
                start = time.time()
                error = None
                try:
                    auth = f"tma {sign_init_data(self.token, user)}"
                    response = http.get(url, headers={"Authorization": auth})
                    if response.status_code != 200:
                        error = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.requests.append(Request(start, time.time() - start, error))
                self._stop.wait(self.request_pause)

    def _partner(self, user_id: int, index: int) -> None:
        self._stop.wait(index * self.message_pause / max(1, self.partners))  # spread the partners out
        n = 0
        while not self._stop.is_set():
            n += 1
            text = f"вопрос {n} от {user_id}"
            at = time.time()
            self.tg.user_sends_text(user_id, text)
            with self._lock:
                self.sent[user_id].append(text)
                self.sent_at[user_id].append(at)
            self._stop.wait(self.message_pause)

    def failures(self) -> list[Request]:
        """Requests that failed (refused, reset, non-200)."""
        with self._lock:
            return [r for r in self.requests if r.error is not None]


@dataclass
class RoleSampler:
    """Asks both slots for their role every `interval` seconds; records every moment two claimed to lead."""

    base: Path
    interval: float = 0.05
    samples: int = 0
    both_leaders: list[tuple[float, Any, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Begins sampling."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            roles = [slot_health(self.base, slot) for slot in SLOTS]
            self.samples += 1
            if all(body is not None and body.get("role") == "leader" for body in roles):
                self.both_leaders.append((time.time(), roles[0], roles[1]))
            self._stop.wait(self.interval)


def wait_all_answered(tg: FakeTelegramServer, sent: dict[int, list[str]], timeout: float) -> dict[int, int]:
    """Waits until every partner got as many replies as messages sent; returns replies per partner."""
    deadline = time.monotonic() + timeout
    while True:
        replies = {uid: len(tg.sent_to(uid, methods=("sendMessage",))) for uid in sent}
        if all(replies[uid] >= len(texts) for uid, texts in sent.items()) or time.monotonic() > deadline:
            return replies
        time.sleep(0.2)


def user_entries(sheets: FakeSheetsServer, user_id: int) -> list[str]:
    """The partner's own messages, in the order their Обращения log holds them."""
    rows = sheets.values(APPEALS.title)
    header = rows[0]
    tid, log_col = header.index(AppealCol.TELEGRAM_ID), header.index(AppealCol.LOG)
    found: list[str] = []
    for row in rows[1:]:
        if len(row) > log_col and row[tid] == str(user_id):
            found += re.findall(r"Пользователь: (вопрос \d+ от \S+)", row[log_col])
    return found


def processing_gaps(tg: FakeTelegramServer, windows: list[tuple[float, float]]) -> list[float]:
    """For each (start, end) window: the longest time without any reply sent to a partner within it."""
    times = sorted(s.timestamp for s in tg.sent if s.method == "sendMessage" and int(s.chat_id or 0) >= FIRST_PARTNER)
    gaps = []
    for start, end in windows:
        inside = [start, *[t for t in times if start <= t <= end], end]
        gaps.append(max(b - a for a, b in itertools.pairwise(inside)))
    return gaps


def reply_latencies(tg: FakeTelegramServer, load: Load, window: tuple[float, float]) -> list[float]:
    """Seconds from a partner's message to its reply, for messages sent within the window (the i-th reply to a
    chat answers its i-th message: each message gets exactly one)."""
    out = []
    for user_id, times in load.sent_at.items():
        replies = sorted(s.timestamp for s in tg.sent_to(user_id, methods=("sendMessage",)))
        out += [replies[i] - at for i, at in enumerate(times) if window[0] <= at <= window[1] and i < len(replies)]
    return out


def slowest_request(requests: list[Request], window: tuple[float, float]) -> float:
    """The slowest Mini App request that overlapped the window (0 when none did)."""
    start, end = window
    overlapping = [r.seconds for r in requests if r.start <= end and r.start + r.seconds >= start]
    return max(overlapping, default=0.0)


def lease_events(state: Path) -> list[tuple[str, str, str]]:
    """(time, slot, "acquired"|"released") from the slots' journals, in time order."""
    events = []
    for slot in SLOTS:
        journal = state / f"journal-marketingbot@{slot}.log"
        if not journal.exists():
            continue
        for line in journal.read_text(errors="replace").splitlines():
            match = LEASE_LINE.match(line)
            if match:
                events.append((match.group(1), slot, "acquired" if "acquired" in line else "released"))
    return sorted(events)


@contextlib.contextmanager
def running(*threads: RoleSampler | Load) -> Iterator[None]:
    """Starts the samplers/loads and always stops them."""
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for thread in reversed(threads):
            thread.stop()


def kill_slot(state: Path, slot: str) -> int:
    """SIGKILLs the slot's process (a crash); returns its pid."""
    pid = int((state / f"marketingbot@{slot}.pid").read_text())
    os.kill(pid, 9)
    return pid


def exec_python() -> str:
    """The interpreter whose environment has the real app installed (this worktree's venv)."""
    return sys.executable


def systemctl(site: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the stub service manager with the site's environment."""
    return subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fake_systemctl.py")), *args],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
