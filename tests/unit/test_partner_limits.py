"""Per-partner limits (issue 12, item 3): the request rate limiter, refused messages are not stored, and staff
notices for messages sent while «В работе» are batched per partner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.appeals import ReplyKind
from bot.services.auth import Partner
from bot.services.partner_limits import PartnerRateLimiter, StaffNoticeBatcher, rate_limited_text, render_notice
from gateway import AsyncSheetsGateway
from gateway.schemas import APPEALS, AppealCol
from tests.chat_support import FlakyBackend, build_kit, chat_gateway_config, flaky_gateway, say

PARTNER = Partner(code="P-1", name="Иванов Иван", phone="+79161234567", telegram_id=42)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sheet(tmp_path: Path) -> AsyncIterator[tuple[AsyncSheetsGateway, FlakyBackend]]:
    """A local gateway."""
    async with flaky_gateway(chat_gateway_config(tmp_path)) as sheet:
        yield sheet


# -- the limiter ---------------------------------------------------------------------------------------------


def test_burst_is_allowed_then_refused_with_a_retry_delay() -> None:
    """`burst` requests pass at once; the next is refused with the seconds until one more is allowed."""
    clock = Clock()
    limiter = PartnerRateLimiter(per_minute=6, burst=3, monotonic=clock)
    assert [limiter.acquire(1) for _ in range(3)] == [None, None, None]
    retry = limiter.acquire(1)
    assert retry is not None and retry == pytest.approx(10.0)
    clock.now += 10.0
    assert limiter.acquire(1) is None
    assert limiter.acquire(1) is not None


def test_partners_have_separate_budgets() -> None:
    """One partner using up their budget does not refuse another."""
    limiter = PartnerRateLimiter(per_minute=1, burst=1, monotonic=Clock())
    assert limiter.acquire(1) is None and limiter.acquire(1) is not None
    assert limiter.acquire(2) is None


def test_zero_rate_switches_the_limit_off() -> None:
    """PARTNER_RATE_PER_MINUTE=0 never refuses."""
    limiter = PartnerRateLimiter(per_minute=0, burst=1, monotonic=Clock())
    assert all(limiter.acquire(1) is None for _ in range(1000))


def test_refusal_text_is_polite_russian_and_says_nothing_was_saved() -> None:
    """The refusal says the message was not saved and when to send it again (whole seconds)."""
    text = rate_limited_text(9.2)
    assert "не сохранено" in text and "через 10 с" in text


# -- daily limit: refused messages are not appended -------------------------------------------------------------


async def test_messages_refused_for_the_daily_limit_are_not_appended(
    sheet: tuple[AsyncSheetsGateway, FlakyBackend],
) -> None:
    """After the daily limit, 20 more messages leave the log as it was and the partner is told so."""
    gw, _ = sheet
    kit = build_kit(gw, daily_limit=1)
    assert (await say(kit.appeals, PARTNER, "первый")).kind is ReplyKind.ANSWER
    log_before = (await gw.table(APPEALS).get("42"))[AppealCol.LOG]  # type: ignore[index]
    for i in range(20):
        reply = await say(kit.appeals, PARTNER, f"лишний {i} " + "x" * 4000)
        assert reply.kind is ReplyKind.LIMIT
    assert "не сохранено" in reply.text
    assert (await gw.table(APPEALS).get("42"))[AppealCol.LOG] == log_before  # type: ignore[index]


# -- staff notices while «В работе» are batched -------------------------------------------------------------


async def test_messages_while_in_work_give_one_staff_notice_per_interval(
    sheet: tuple[AsyncSheetsGateway, FlakyBackend],
) -> None:
    """Ten quick messages while «В работе» are all logged, but staff get one notice at once and one batch later."""
    gw, _ = sheet
    kit = build_kit(gw, staff_notice_interval=0.5)
    await say(kit.appeals, PARTNER, "позовите оператора")
    escalation_notices = len(kit.messenger.staff)
    for i in range(10):
        await say(kit.appeals, PARTNER, f"сообщение {i}")
    log = (await gw.table(APPEALS).get("42"))[AppealCol.LOG]  # type: ignore[index]
    assert all(f"сообщение {i}" in log for i in range(10))
    assert len(kit.messenger.staff) - escalation_notices == 1
    await asyncio.sleep(0.8)
    notices = kit.messenger.staff[escalation_notices:]
    assert len(notices) == 2
    assert "сообщение 0" in notices[0]
    assert all(f"сообщение {i}" in notices[1] for i in range(1, 10)) and "сообщений: 9" in notices[1]


async def test_gathered_notices_are_posted_on_close() -> None:
    """Messages still gathered when the service stops are posted at once, not lost."""
    sent: list[str] = []

    async def send(key: int, text: str) -> None:
        assert key == 1  # the partner the notice is about, so a staff reply to it reaches them
        sent.append(text)

    batcher = StaffNoticeBatcher(send, interval=3600.0, monotonic=time.monotonic)
    await batcher.add(1, "✉️ Партнёр 1", "a")
    await batcher.add(1, "✉️ Партнёр 1", "b")
    await batcher.add(1, "✉️ Партнёр 1", "c")
    assert len(sent) == 1
    await batcher.aclose()
    assert len(sent) == 2 and "1) b" in sent[1] and "2) c" in sent[1]


def test_a_long_batch_fits_one_telegram_message() -> None:
    """A batch of many long messages is cut to fit Telegram's 4,096 characters and says how many were left out."""
    notice = render_notice("✉️ header", ["я" * 3000 for _ in range(30)])
    assert len(notice) < 4096 and "ещё" in notice and "сообщений: 30" in notice
