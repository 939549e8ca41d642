"""Streaming answers on our side of the ports: AppealsService hands the AI's answer to a delta sink (and only
the AI's answer), FallbackAI's broken-stream rules, the draft-refusal memory and the rest of a long answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from telegram.error import BadRequest, InvalidToken

from bot.ai.base import AIUnavailable, Turn
from bot.ai.fallback import OPERATOR_NOTIFIED, FallbackAI
from bot.ai.offline import OFFLINE_INTRO
from bot.services.appeals import AppealsService, ReplyKind, WorkingHours
from bot.services.auth import Partner
from bot.services.chatlog import parse
from bot.services.message_parts import split_message
from bot.telegram.drafts import DraftSupport
from bot.telegram.handlers.chat import _unsent_rest
from gateway import AsyncSheetsGateway
from gateway.schemas import APPEALS, AppealCol
from tests.chat_support import FakeMessenger, ManualClock, build_kit, chat_gateway_config, flaky_gateway, moscow, say

PARTNER = Partner(code="P-1", name="Иванов Иван", phone="+79161234567", telegram_id=42)


class StreamingAI:
    """A streaming AIProvider of ours: yields `pieces`, then raises `fail_after` (if set) instead of finishing."""

    name = "streaming"

    def __init__(self, pieces: Sequence[str], fail_after: Exception | None = None, fail_first: bool = False) -> None:
        self.pieces = list(pieces)
        self.fail_after = fail_after
        self.fail_first = fail_first

    async def generate(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> str:
        return "".join(self.pieces)

    async def stream(self, system: str, history: list[Turn], user_text: str, context: list[str]) -> AsyncIterator[str]:
        if self.fail_first:
            raise AIUnavailable("down before any text")
        for piece in self.pieces:
            yield piece
        if self.fail_after is not None:
            raise self.fail_after


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[AsyncSheetsGateway]:
    """A local gateway."""
    async with flaky_gateway(chat_gateway_config(tmp_path)) as (gateway, _):
        yield gateway


def appeals_with(
    gw: AsyncSheetsGateway, provider: StreamingAI, messenger: FakeMessenger | None = None
) -> AppealsService:
    """AppealsService over `gw` answering from `provider`."""
    kit = build_kit(gw)
    clock = ManualClock(moscow(2026, 11, 23, 14, 5))
    return AppealsService(
        gw,
        FallbackAI(provider),
        kit.prompt,
        kit.knowledge,
        messenger or FakeMessenger(),
        working_hours=WorkingHours(),
        clock=clock,
        monotonic=clock.monotonic,
    )


async def test_the_answer_reaches_the_sink_as_written_and_the_log_whole(gw: AsyncSheetsGateway) -> None:
    """Each piece goes to the sink in order; the reply and the logged AI entry are the whole answer."""
    appeals = appeals_with(gw, StreamingAI(["Половина ", "комиссии ", "агентства."]))
    pieces: list[str] = []
    reply = await say(appeals, PARTNER, "Какая комиссия?", pieces.append)
    assert appeals.streams
    assert pieces == ["Половина ", "комиссии ", "агентства."]
    assert reply.text == "Половина комиссии агентства." and reply.kind == ReplyKind.ANSWER
    row = await gw.table(APPEALS).get(str(PARTNER.telegram_id))
    assert row is not None
    assert [e.text for e in parse(row[AppealCol.LOG])] == ["Какая комиссия?", "Половина комиссии агентства."]


async def test_canned_replies_stream_nothing(gw: AsyncSheetsGateway) -> None:
    """An escalation is not the AI's answer: the sink hears nothing and the reply is the canned text."""
    appeals = appeals_with(gw, StreamingAI(["не должно прозвучать"]))
    pieces: list[str] = []
    reply = await say(appeals, PARTNER, "позовите оператора", pieces.append)
    assert reply.kind == ReplyKind.ESCALATED and pieces == []


async def test_a_broken_stream_is_logged_with_the_note_and_staff_told(gw: AsyncSheetsGateway) -> None:
    """Any error after text flowed ends the answer with the received text plus the note; staff are pinged."""
    provider = StreamingAI(["Половина ", "комис"], fail_after=RuntimeError("connection reset"))
    messenger = FakeMessenger()
    appeals = appeals_with(gw, provider, messenger)
    pieces: list[str] = []
    reply = await say(appeals, PARTNER, "Какая комиссия?", pieces.append)
    assert reply.kind == ReplyKind.FALLBACK
    assert reply.text == f"Половина комис\n\n{OPERATOR_NOTIFIED}"
    assert "".join(pieces).endswith(OPERATOR_NOTIFIED)
    assert len(messenger.staff) == 1 and "connection reset" in messenger.staff[0]


async def test_a_failure_before_any_text_answers_offline_without_deltas(gw: AsyncSheetsGateway) -> None:
    """Nothing streamed yet: the usual offline answer, not handed to the sink (it is sent whole)."""
    appeals = appeals_with(gw, StreamingAI([], fail_first=True))
    pieces: list[str] = []
    reply = await say(appeals, PARTNER, "Какая комиссия?", pieces.append)
    assert reply.kind == ReplyKind.FALLBACK and reply.text.startswith(OFFLINE_INTRO)
    assert pieces == []


def test_draft_refusals_are_remembered_per_bot_or_per_chat() -> None:
    """A 404 or a 400 about the method switches drafts off for the bot; another 400 only for that chat."""
    support = DraftSupport()
    support.refused(1, BadRequest("TEXTDRAFT_PEER_INVALID"))
    assert not support.allowed(1) and support.allowed(2)
    support.refused(2, InvalidToken("Not Found"))
    assert not support.allowed(2) and not support.allowed(3)
    other = DraftSupport()
    other.refused(1, BadRequest("Method is not available"))
    assert not other.allowed(2)
    assert not DraftSupport(enabled=False).allowed(5)


def test_unsent_rest_of_a_long_answer() -> None:
    """After the streamed parts were sent, only the rest goes out; if the final text diverged, all of it."""
    text = "\n\n".join(f"Абзац {i}. " + "слово " * 150 for i in range(12))
    pieces = split_message(text)
    assert len(pieces) >= 3
    assert _unsent_rest(text, []) == text
    assert split_message(_unsent_rest(text, pieces[:1])) == pieces[1:]
    assert _unsent_rest(text, ["совсем другой текст"]) == text
