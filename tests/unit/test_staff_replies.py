"""StaffDesk: notices map to partners durably; a member's reply is journaled, delivered once and logged once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bot.services.ports import DeliveryError, InlineButton
from bot.services.staff_replies import ReplyOutcome, StaffDesk, StaffMember
from gateway import DeliveryRecord
from gateway.schemas import APPEALS, AppealCol
from tests.chat_support import (
    Crash,
    FakeMessenger,
    ManualClock,
    chat_gateway_config,
    failing_send,
    moscow,
    start_flaky_gateway,
)

PARTNER = 42
ANNA = StaffMember(7, "Анна")
STRANGER = StaffMember(8, "Чужой")


class FakeStaffChat:
    """The staff chat: posts get ids 1, 2, …; members are a set."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, str, list[str], int | None]] = []
        self.edits: list[tuple[int, str, list[str]]] = []
        self.members = {ANNA.user_id}

    async def post(self, text: str, buttons: Sequence[InlineButton], *, reply_to: int | None = None) -> list[int]:
        self.posts.append((len(self.posts) + 1, text, [b.text for b in buttons], reply_to))
        return [len(self.posts)]

    async def edit(self, message_id: int, text: str, buttons: Sequence[InlineButton]) -> None:
        self.edits.append((message_id, text, [b.text for b in buttons]))

    async def is_member(self, user_id: int) -> bool:
        return user_id in self.members


class Desk:
    """A desk over a restartable local gateway."""

    def __init__(self, tmp_path: Path) -> None:
        self.cfg = chat_gateway_config(tmp_path)
        self.messenger = FakeMessenger()
        self.chat = FakeStaffChat()
        self.clock = ManualClock(moscow(2026, 11, 23, 15, 10))

    async def start(self) -> None:
        self.gw, self.backend = await start_flaky_gateway(self.cfg)
        self.desk = StaffDesk(self.gw, self.messenger, self.chat, clock=self.clock)

    async def restart(self) -> None:
        await self.gw.close()
        await self.start()

    async def log(self) -> str:
        rec = await self.gw.table(APPEALS).get(str(PARTNER))
        assert rec is not None
        return rec[AppealCol.LOG]


@pytest.fixture
async def d(tmp_path: Path) -> AsyncIterator[Desk]:
    """A desk with the partner's row and one escalation notice (message 1) about them."""
    desk = Desk(tmp_path)
    await desk.start()
    await desk.gw.table(APPEALS).write(
        [desk.gw.table(APPEALS).op_upsert(str(PARTNER), {AppealCol.STATUS: "В работе", AppealCol.LOG: ""})]
    )
    await desk.desk.post_notice(PARTNER, "🔔 Партнёр просит оператора", actions=True)
    yield desk
    desk.backend.down = False
    await desk.gw.close()


async def test_a_reply_to_a_notice_reaches_the_partner_once(d: Desk) -> None:
    """The notice carries the buttons; a member's reply is sent once and logged with the name."""
    assert d.chat.posts[0][2] == ["Взять", "Решено"]
    assert await d.desk.reply(100, 1, ANNA, "Добрый день!") is ReplyOutcome.DELIVERED
    assert await d.desk.reply(100, 1, ANNA, "Добрый день!") is ReplyOutcome.DELIVERED  # the update again
    assert await d.desk.resume_pending() == 0
    assert d.messenger.texts_to(PARTNER) == ["Ответ оператора:\n\nДобрый день!"]
    assert (await d.log()).endswith("Оператор (Анна): Добрый день!")
    assert d.chat.posts[-1][1:] == ("✅ Отправлено партнёру.", [], 100)


async def test_replies_that_are_not_for_a_partner_or_not_from_staff_are_ignored(d: Desk) -> None:
    """A reply to any other message, or by a non-member, sends nothing and journals nothing."""
    assert await d.desk.reply(101, 99, ANNA, "болтаем между собой") is ReplyOutcome.NOT_A_NOTICE
    assert await d.desk.reply(102, 1, STRANGER, "я не сотрудник") is ReplyOutcome.NOT_MEMBER
    assert await d.desk.resume_pending() == 0
    assert d.messenger.sent == [] and await d.log() == ""


async def test_the_notice_map_survives_a_restart(d: Desk) -> None:
    """Which partner a notice is about is in the state store, not in memory."""
    await d.restart()
    assert await d.desk.partner_of(1) == PARTNER
    assert await d.desk.reply(103, 1, ANNA, "После перезапуска") is ReplyOutcome.DELIVERED


async def test_sheet_down_after_the_send_logs_later_without_resending(d: Desk) -> None:
    """Sent, then the sheet is unreadable: the job later writes the entry once and sends nothing again."""

    async def sheet_goes_down(chat_id: int, text: str) -> None:
        d.backend.down = True

    d.messenger.after_send = sheet_goes_down
    assert await d.desk.reply(104, 1, ANNA, "Ответ при сбое таблицы") is ReplyOutcome.PENDING
    d.messenger.after_send = None
    d.backend.down = False
    await d.restart()
    assert await d.desk.resume_pending() == 1
    assert await d.desk.resume_pending() == 0
    assert d.messenger.texts_to(PARTNER) == ["Ответ оператора:\n\nОтвет при сбое таблицы"]
    assert (await d.log()).count("Оператор (Анна): Ответ при сбое таблицы") == 1


async def test_a_crash_after_the_log_write_does_not_log_twice(d: Desk) -> None:
    """Killed after the log write but before the record: the restarted desk neither resends nor re-logs."""
    original = d.gw.state.delivery_set

    async def die_on_settle(kind: str, key: str, record: DeliveryRecord) -> None:
        if record.phase == "settled":
            raise Crash
        await original(kind, key, record)

    d.gw.state.delivery_set = die_on_settle  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await d.desk.reply(105, 1, ANNA, "Один раз")
    await d.restart()
    await d.desk.resume_pending()
    assert d.messenger.texts_to(PARTNER) == ["Ответ оператора:\n\nОдин раз"]
    assert (await d.log()).count("Один раз") == 1


async def test_a_blocked_partner_is_reported_not_retried(d: Desk) -> None:
    """A permanent failure tells the staff member and leaves nothing pending."""
    d.messenger.before_send = failing_send(DeliveryError("Forbidden: bot was blocked", permanent=True), times=5)
    assert await d.desk.reply(106, 1, ANNA, "Не дойдёт") is ReplyOutcome.FAILED
    assert await d.desk.resume_pending() == 0
    assert "не доставлен" in d.chat.posts[-1][1] and "blocked" in d.chat.posts[-1][1]


async def test_take_and_solve_set_the_status_and_edit_the_notice(d: Desk) -> None:
    """«Взять» → В работе and «Взял(а): Анна»; «Решено» → Решено, buttons gone; a stranger changes nothing."""
    await d.gw.table(APPEALS).write([d.gw.table(APPEALS).op_upsert(str(PARTNER), {AppealCol.STATUS: "Новое"})])
    assert "только для сотрудников" in await d.desk.press("take", PARTNER, STRANGER, 1, "Уведомление")
    assert d.chat.edits == []
    await d.desk.press("take", PARTNER, ANNA, 1, "Уведомление")
    assert d.chat.edits[-1] == (1, "Уведомление\n\n✋ Взял(а): Анна", ["Решено"])
    rec = await d.gw.table(APPEALS).get(str(PARTNER))
    assert rec is not None and rec[AppealCol.STATUS] == "В работе"
    await d.desk.press("solve", PARTNER, ANNA, 1, d.chat.edits[-1][1])
    assert d.chat.edits[-1] == (1, "Уведомление\n\n✅ Решено: Анна", [])
    rec = await d.gw.table(APPEALS).get(str(PARTNER))
    assert rec is not None and rec[AppealCol.STATUS] == "Решено"
