"""SIGKILL under load: a real `marketingbot run` process, killed again and again at random moments, loses nothing.

The process runs against the fake Telegram, Sheets (google backend through gspread) and Gemini servers, which
live in this test process and outlive every kill. Partners keep talking (each sends the next message as soon
as the previous one is answered); the process is SIGKILLed at seeded random moments — mid-turn, mid-delivery,
mid-replay (some rounds run during a sheet outage, so the outbox and the turn journal hold writes when the kill
lands) — and restarted at once. At the end every message must be answered and be in Обращения.E exactly once,
in order. A message answered twice is counted, and each second copy must come from the one window the design
allows: Telegram accepted the reply right before a kill, before the update was marked done, and the restarted
process resent the logged reply (it does not ask the model again). How many land in that window is chance —
partners answered in the same few milliseconds are caught together — so the test checks where every copy
came from, not a count.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.schemas import ALL_SCHEMAS, APPEALS, AUTH, AppealCol, AuthCol
from tests.fakes.gemini_server import FakeGeminiServer, last_user_text
from tests.fakes.sheets_server import FakeSheetsServer
from tests.fakes.telegram_server import FakeTelegramServer
from tests.local_stack import CONFIG_VARS, ROOT, free_port

PARTNERS = 8
# A reply accepted this long before the SIGKILL still counts as "right before the kill": the bot marks the
# update done a few milliseconds after Telegram accepts the reply (measured: 1–53 ms here, with 8 replies
# landing together); the margin covers a loaded CI machine. A resend of a reply accepted earlier than this
# (an update never marked done, a resumed turn answered anew) fails the test.
KILL_WINDOW = 1.0
# Each kill lands at an independent seeded-random moment with 8 partners mid-conversation, so every round hits
# turns in several phases at once (model call, reply send, journal/outbox write); 12 rounds keep three kills
# inside a sheet outage (rounds 4, 8, 12) and, with this seed, both boot variants after them (the outage still
# on at the restart in rounds 4 and 12, over in round 8). 20 rounds (the old figure; its seed reached the
# "still on" variant only once, in round 16) added no phase these do not reach and cost ~35 s of the suite.
KILLS = 12
FIRST_TID = 610_001
SEED = 20261208


def answer(text: str) -> str:
    """The fake model's deterministic answer to one message."""
    return f"Ответ на «{text}»"


@dataclass
class Partner:
    """One simulated partner: the messages sent so far and the replies each got."""

    tid: int
    sent: list[str] = field(default_factory=list)
    replies: dict[str, list[float]] = field(default_factory=dict)  # when Telegram accepted each copy

    def next_text(self) -> str:
        """The next message (numbered, so E's order can be checked)."""
        return f"Сообщение {len(self.sent) + 1} от {self.tid}"

    @property
    def waiting(self) -> bool:
        """Whether the last message is not answered yet."""
        return bool(self.sent) and not self.replies.get(self.sent[-1])


class Load:
    """Partners talking through the fake Telegram server, each sending again once answered."""

    def __init__(self, tg: FakeTelegramServer, tids: list[int]) -> None:
        self.tg = tg
        self.partners = {tid: Partner(tid) for tid in tids}
        self._seen = 0
        self.sending = True

    def pump(self) -> None:
        """Record new replies; let every answered partner send the next message."""
        sent = self.tg.sent
        for msg in sent[self._seen :]:
            partner = self.partners.get(int(msg.chat_id or 0))
            if partner is None or msg.method != "sendMessage":
                continue
            text = msg.plain_text or msg.text or ""
            for question in partner.sent:
                if text == answer(question):
                    partner.replies.setdefault(question, []).append(msg.timestamp)
        self._seen = len(sent)
        if not self.sending:
            return
        for partner in self.partners.values():
            if not partner.waiting:
                text = partner.next_text()
                partner.sent.append(text)
                self.tg.user_sends_text(partner.tid, text)

    def outstanding(self) -> int:
        """Messages not answered yet."""
        return sum(1 for p in self.partners.values() for q in p.sent if not p.replies.get(q))


def seed(server: FakeSheetsServer, tids: list[int]) -> None:
    """Every sheet with its headers; the partners in Auth, authorized with their Telegram IDs bound."""
    for schema in ALL_SCHEMAS:
        server.add_sheet(schema.title, schema.headers, rows=200)
    auth = [list(AUTH.headers)]
    for i, tid in enumerate(tids, start=1):
        values = {
            AuthCol.CODE: f"K-{i:03d}",
            AuthCol.PHONE: f"+7900{i:07d}",
            AuthCol.NAME: f"Партнёр {i}",
            AuthCol.STATUS: "authorized",
            AuthCol.TELEGRAM_ID: str(tid),
        }
        auth.append([values.get(h, "") for h in AUTH.headers])
    server.set_values(AUTH.title, auth)


class Bot:
    """`python -m bot run` against the fakes; killed and restarted on demand."""

    def __init__(self, tmp: Path, tg: FakeTelegramServer, sheets: FakeSheetsServer, gemini: FakeGeminiServer) -> None:
        self.port = free_port()
        self.log = (tmp / "bot.log").open("ab")
        self.env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
        self.env.update(
            TELEGRAM_BOT_TOKEN=tg.token,
            TELEGRAM_API_BASE_URL=tg.api_base_url,
            SHEETS_BACKEND="google",
            GOOGLE_SPREADSHEET_ID=sheets.spreadsheet_id,
            SHEETS_API_BASE_URL=sheets.url,
            AI_PROVIDER="gemini",
            GEMINI_API_KEY="crash-test-key",
            GEMINI_BASE_URL=gemini.url,
            LOCAL_DB_PATH=str(tmp / "data" / "sheets.db"),
            WEB_PORT=str(self.port),
            DAILY_AI_LIMIT="0",
            PARTNER_RATE_PER_MINUTE="0",  # the load sends faster than a person types: durability, not the rate limit
            SHEETS_READS_PER_MINUTE="6000",
            SHEETS_WRITES_PER_MINUTE="6000",
            LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process (its data directory survives every kill)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], cwd=self.tmp, env=self.env, stdout=self.log, stderr=self.log
        )

    def serving(self) -> bool:
        """Whether /healthz answers (the process took its first updates' path: Telegram polling is on)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the bot exited with {self.process.returncode}; see {self.tmp / 'bot.log'}")
        with contextlib.suppress(httpx.HTTPError):
            body = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1.0).json()
            return bool(body.get("status") in ("ok", "degraded"))
        return False

    def kill(self) -> tuple[float, float]:
        """SIGKILL: no shutdown code runs. Returns when the signal went and when the process was gone (wall
        clock, as the fake Telegram stamps what it accepts)."""
        assert self.process is not None
        signalled = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return signalled, time.time()

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeTelegramServer, FakeSheetsServer, FakeGeminiServer]]:
    """The three fake servers, in this process, outliving every kill of the bot."""
    with (
        FakeTelegramServer() as tg,
        FakeSheetsServer(sheets=()) as sheets,
        FakeGeminiServer(latency=0.05, responder=lambda body: answer(last_user_text(body))) as gemini,
    ):
        yield tg, sheets, gemini


def _wait(condition: object, load: Load, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        load.pump()
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


@pytest.mark.timeout(300)  # 12 kills and restarts of a real process: about 50 s, more on a busy machine
def test_sigkill_at_random_moments_loses_no_message(
    tmp_path: Path, fakes: tuple[FakeTelegramServer, FakeSheetsServer, FakeGeminiServer]
) -> None:
    """12 SIGKILLs of `marketingbot run` under load (some during a sheet outage): every message is answered and
    in E exactly once, in order; a reply sent twice was accepted right before a kill and resent after it."""
    tg, sheets, gemini = fakes
    tids = [FIRST_TID + i for i in range(PARTNERS)]
    seed(sheets, tids)
    sheets.set_latency(0.02)
    rng = random.Random(SEED)
    bot = Bot(tmp_path, tg, sheets, gemini)
    load = Load(tg, tids)
    kills: list[tuple[float, float]] = []
    bot.start()
    try:
        assert _wait(bot.serving, load, 30), "the bot did not start"
        for kill in range(KILLS):
            outage = kill % 4 == 3  # the kill lands while writes wait in the outbox and the turn journal
            sheets.set_outage(outage)
            _wait(lambda: False, load, rng.uniform(0.2, 1.2))
            kills.append(bot.kill())
            sheets.set_outage(False) if rng.random() < 0.5 else None  # replay sometimes starts right at boot
            bot.start()
            assert _wait(bot.serving, load, 30), f"the bot did not come back after kill {kill + 1}"
        sheets.set_outage(False)
        load.sending = False
        assert _wait(lambda: load.outstanding() == 0, load, 45), f"{load.outstanding()} messages never answered"
        assert bot.stop() == 0
    finally:
        if bot.process is not None and bot.process.poll() is None:
            bot.process.kill()
        bot.log.close()

    values = sheets.values(APPEALS.title)
    header = values[0]
    tid_col, log_col = header.index(AppealCol.TELEGRAM_ID), header.index(AppealCol.LOG)
    rows = {row[tid_col]: row[log_col] for row in values[1:] if len(row) > log_col and row[tid_col]}
    assert len([r for r in values[1:] if len(r) > tid_col and r[tid_col]]) == PARTNERS  # one row per partner
    duplicates = 0
    total = 0
    for partner in load.partners.values():
        log = rows[str(partner.tid)]
        positions = []
        for question in partner.sent:
            total += 1
            copies = partner.replies.get(question, [])
            assert copies, f"{question!r} never answered"
            duplicates += len(copies) - 1
            for first, again in itertools.pairwise(copies):
                assert any(signalled - KILL_WINDOW <= first <= gone <= again for signalled, gone in kills), (
                    f"{question!r} answered again {again - first:.2f} s later without a kill right after the first"
                )
            assert log.count(f"Пользователь: {question}\n") == 1, f"{question!r} not in E exactly once"
            assert log.count(f"ИИ: {answer(question)}") == 1, f"the answer to {question!r} not in E exactly once"
            positions.append(log.index(f"Пользователь: {question}\n"))
        assert positions == sorted(positions), f"E of {partner.tid} is out of order"
    print(f"\n{total} messages, {KILLS} SIGKILLs: 0 lost, {duplicates} answered twice (reply accepted before a kill)")
    assert total >= 3 * PARTNERS
