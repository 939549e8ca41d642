"""A turn after an answered one asks the model while the partner's row is read, and shows nothing until the fresh
row confirms the history the model was given: staff edits, «В работе» and a revoked access still win."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from bot.ai.base import Turn
from bot.services.appeals import ReplyKind
from bot.services.auth import Partner
from bot.services.chatlog import Author, format_entry
from gateway import AsyncSheetsGateway
from gateway.schemas import APPEALS, AppealCol, AppealStatus
from tests.chat_support import ChatKit, build_kit, chat_gateway_config, flaky_gateway, known, moscow, say

PARTNER = Partner(code="P-1", name="Иванов Иван", phone="+79161234567", telegram_id=42)
FIRST_TURN = [Turn("user", "Первый"), Turn("model", "Ответ 1: Первый")]


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[ChatKit]:
    """Chat services over a local sheet, the model taking 50 ms an answer."""
    async with flaky_gateway(chat_gateway_config(tmp_path)) as (gw, _):
        kit = build_kit(gw)
        kit.ai.delay = 0.05
        yield kit


class HeldRowReads:
    """Holds every read of Обращения until released (other sheets read freely)."""

    def __init__(self, gw: AsyncSheetsGateway) -> None:
        self.release = asyncio.Event()
        self.started = 0
        backend = gw.backend
        inner = backend.batch_get

        async def batch_get(ranges: Sequence[str]) -> list[list[list[str]]]:
            if any(APPEALS.title in r for r in ranges):
                self.started += 1
                await self.release.wait()
            return await inner(ranges)

        backend.batch_get = batch_get  # type: ignore[method-assign]


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (for up to 5 s): the model fake offers no event to wait on."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def _log(gw: AsyncSheetsGateway) -> str:
    row = await gw.table(APPEALS).get("42")
    assert row is not None
    return row[AppealCol.LOG]


async def _set(gw: AsyncSheetsGateway, values: dict[str, str]) -> None:
    """A staff edit of the partner's row."""
    await gw.table(APPEALS).write([gw.table(APPEALS).op_upsert("42", values)])


async def test_the_model_is_asked_while_the_row_is_read_and_shown_only_after(kit: ChatKit) -> None:
    """The second message's model call starts while its row read is still held; its answer reaches the partner
    only once that read has confirmed the history, and it is the answer the model gave with that history."""
    await say(kit.appeals, PARTNER, "Первый")
    held = HeldRowReads(kit.gw)
    pieces: list[str] = []
    turn = asyncio.create_task(say(kit.appeals, PARTNER, "Второй", pieces.append))
    await until(lambda: len(kit.ai.calls) == 2)
    assert held.started >= 1 and not held.release.is_set()
    await asyncio.sleep(0.1)  # the model has answered by now, but the row is not confirmed yet
    assert not turn.done() and pieces == []
    held.release.set()
    reply = await turn
    assert reply.text == "Ответ 2: Второй" and reply.kind is ReplyKind.ANSWER
    assert "".join(pieces) == reply.text
    assert kit.ai.calls[1].history == FIRST_TURN
    assert (await _log(kit.gw)).endswith("ИИ: Ответ 2: Второй")


async def test_a_staff_edit_of_the_log_meanwhile_restarts_the_answer_from_the_fresh_row(kit: ChatKit) -> None:
    """Staff wrote into the log after the first turn: the early answer (given without it) is dropped unseen and
    the model is asked again with the history as staff left it."""
    await say(kit.appeals, PARTNER, "Первый")
    log = await _log(kit.gw)
    note = format_entry(moscow(2026, 11, 23, 14, 6), Author.OPERATOR, "Уточните, пожалуйста, адрес объекта")
    await _set(kit.gw, {AppealCol.LOG: f"{log}\n{note}"})
    held = HeldRowReads(kit.gw)
    pieces: list[str] = []
    turn = asyncio.create_task(say(kit.appeals, PARTNER, "Второй", pieces.append))
    await until(lambda: len(kit.ai.calls) == 2)  # asked early, with the history the first turn left
    assert kit.ai.calls[1].history == FIRST_TURN
    held.release.set()
    reply = await turn
    assert len(kit.ai.calls) == 3
    assert kit.ai.calls[2].history == [*FIRST_TURN, Turn("model", "Оператор: Уточните, пожалуйста, адрес объекта")]
    assert reply.text == "Ответ 3: Второй" and "".join(pieces) == reply.text
    log = await _log(kit.gw)
    assert "Ответ 2" not in log and log.count("Пользователь: Второй") == 1 and log.endswith("ИИ: Ответ 3: Второй")


async def test_in_work_set_meanwhile_silences_the_early_answer(kit: ChatKit) -> None:
    """Staff took the conversation («В работе») after the first turn: the message is logged, nothing is shown and
    the early answer is neither sent nor written."""
    await say(kit.appeals, PARTNER, "Первый")
    await _set(kit.gw, {AppealCol.STATUS: AppealStatus.IN_WORK})
    held = HeldRowReads(kit.gw)
    pieces: list[str] = []
    turn = asyncio.create_task(say(kit.appeals, PARTNER, "А где ответ?", pieces.append))
    await until(lambda: len(kit.ai.calls) == 2)
    held.release.set()
    reply = await turn
    assert reply.kind is ReplyKind.SILENT and reply.text == "" and pieces == []
    log = await _log(kit.gw)
    assert log.endswith("Пользователь: А где ответ?") and "Ответ 2" not in log


async def test_access_revoked_meanwhile_answers_nothing_and_stores_nothing(kit: ChatKit) -> None:
    """The sender is no longer authorized when the reads come back: no reply, no delta, nothing appended."""
    await say(kit.appeals, PARTNER, "Первый")
    log = await _log(kit.gw)
    held = HeldRowReads(kit.gw)
    pieces: list[str] = []
    turn = asyncio.create_task(kit.appeals.handle_message(42, "Второй", known(), pieces.append))
    await until(lambda: len(kit.ai.calls) == 2)
    held.release.set()
    assert await turn == (None, None)
    assert pieces == [] and await _log(kit.gw) == log


async def test_two_quick_messages_get_both_answers_in_order_each_with_the_history_before_it(kit: ChatKit) -> None:
    """Messages sent back to back are answered one after the other; the second one's early model call has the
    first one's turn in its history."""
    await say(kit.appeals, PARTNER, "Первый")
    a, b = await asyncio.gather(say(kit.appeals, PARTNER, "Второй"), say(kit.appeals, PARTNER, "Третий"))
    assert (a.text, b.text) == ("Ответ 2: Второй", "Ответ 3: Третий")
    assert kit.ai.calls[2].history == [*FIRST_TURN, Turn("user", "Второй"), Turn("model", "Ответ 2: Второй")]
    log = await _log(kit.gw)
    assert log.index("Ответ 2: Второй") < log.index("Пользователь: Третий")


async def test_a_sheet_outage_during_the_early_call_still_answers_from_the_journal(tmp_path: Path) -> None:
    """The row cannot be read: the history the journal and outbox hold confirms the early answer, which is sent
    and queued for the sheet."""
    async with flaky_gateway(chat_gateway_config(tmp_path)) as (gw, flaky):
        kit = build_kit(gw, reply_first=True)
        await say(kit.appeals, PARTNER, "Первый")
        await gw.turns.drain()
        flaky.down = True
        reply = await say(kit.appeals, PARTNER, "Второй")
        assert reply.text == "Ответ 2: Второй" and kit.ai.calls[1].history == FIRST_TURN
        flaky.down = False
        assert await gw.writer.wait_empty(5)
        await gw.turns.drain()
        assert (await _log(gw)).endswith("ИИ: Ответ 2: Второй")


async def test_a_partner_at_the_daily_limit_gets_its_reply_without_a_model_call(tmp_path: Path) -> None:
    """The answer that reaches the limit leaves nothing to answer early with: the next message gets the limit's
    reply, the model is not asked at all (not even a call cancelled later), and nothing is logged."""
    async with flaky_gateway(chat_gateway_config(tmp_path)) as (gw, _):
        kit = build_kit(gw, daily_limit=1)
        kit.ai.delay = 0.05
        await say(kit.appeals, PARTNER, "Первый")
        log = await _log(gw)
        held = HeldRowReads(gw)
        pieces: list[str] = []
        turn = asyncio.create_task(say(kit.appeals, PARTNER, "Второй", pieces.append))
        # Time enough for an early model call to go out while the row is held (past the knowledge base's 0.3 s
        # wait for its own refresh, which shares the held batch).
        await asyncio.sleep(0.5)
        held.release.set()
        reply = await turn
        assert reply.kind is ReplyKind.LIMIT and pieces == []
        assert len(kit.ai.calls) == 1
        assert await _log(gw) == log


async def test_an_answer_counted_elsewhere_still_refuses_beside_the_reads(tmp_path: Path) -> None:
    """The limit is also checked while the row is read: an answer counted by another process (the other deploy
    slot) after this one remembered the history still stops the early answer: no delta, nothing logged."""
    async with flaky_gateway(chat_gateway_config(tmp_path)) as (gw, _):
        kit = build_kit(gw, daily_limit=2)
        kit.ai.delay = 0.05
        await say(kit.appeals, PARTNER, "Первый")
        await gw.ledgers.ai_answers.add("42", "2026-11-23")  # the kit's clock: 2026-11-23 14:05 Moscow
        log = await _log(gw)
        pieces: list[str] = []
        reply = await say(kit.appeals, PARTNER, "Второй", pieces.append)
        assert reply.kind is ReplyKind.LIMIT and pieces == []
        assert await _log(gw) == log
