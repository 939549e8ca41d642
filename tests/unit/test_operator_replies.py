"""Operator replies: one read per poll, delivered exactly once through a durable ledger, whatever crashes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bot.services.message_parts import split_message
from bot.services.operator_replies import (
    LEDGER_KIND,
    OperatorReplyService,
    format_operator_message,
    reply_hash,
)
from bot.services.ports import DeliveryError, InlineButton
from bot.web.staff_console import GatewayStaffConsole
from gateway import AsyncSheetsGateway, DeliveryPhase, DeliveryRecord, GatewayConfig
from gateway.schemas import APPEALS, AppealCol
from tests.chat_support import (
    Crash,
    FakeMessenger,
    FlakyBackend,
    ManualClock,
    chat_gateway_config,
    failing_send,
    moscow,
    start_flaky_gateway,
)

LOG = "[2026-11-23 14:05] Пользователь: Когда выплата?\n[2026-11-23 14:05] ИИ: Обычно 10 дней."


class Harness:
    """A gateway that can be 'restarted' (closed and reopened on the same files) plus a fresh service each time."""

    def __init__(self, cfg: GatewayConfig, gw: AsyncSheetsGateway, backend: FlakyBackend) -> None:
        self.cfg = cfg
        self.gw = gw
        self.backend = backend
        self.messenger = FakeMessenger()
        self.clock = ManualClock(moscow(2026, 11, 23, 15, 10))
        self.service = OperatorReplyService(gw, self.messenger, clock=self.clock)

    async def restart(self) -> None:
        """Simulate a process restart: everything in memory is gone, the sheet and state files remain."""
        await self.gw.close()
        self.gw, self.backend = await start_flaky_gateway(self.cfg)
        self.service = OperatorReplyService(self.gw, self.messenger, clock=self.clock)

    async def row(self, tid: str = "42") -> dict[str, str]:
        rec = await self.gw.table(APPEALS).get(tid)
        assert rec is not None
        return dict(rec)

    async def staff_types(self, reply: str, tid: str = "42", status: str = "В работе") -> None:
        await self.gw.table(APPEALS).write(
            [
                self.gw.table(APPEALS).op_upsert(
                    tid, {AppealCol.LOG: LOG, AppealCol.STATUS: status, AppealCol.OPERATOR_REPLY: reply}
                )
            ]
        )

    def delivered(self, chat_id: int = 42) -> list[str]:
        return self.messenger.texts_to(chat_id)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness on a fresh local store."""
    cfg = chat_gateway_config(tmp_path)
    gw, backend = await start_flaky_gateway(cfg)
    harness = Harness(cfg, gw, backend)
    try:
        yield harness
    finally:
        harness.backend.down = harness.backend.writes_down = False
        await harness.gw.close()


async def test_reply_is_delivered_logged_and_cleared_once(h: Harness) -> None:
    """A reply in G is sent, appended to the log as Оператор:, G is cleared; the next poll sends nothing."""
    await h.staff_types("Выплата придёт в пятницу.")
    assert await h.service.poll_once() == 1
    assert h.delivered() == [format_operator_message("Выплата придёт в пятницу.")]
    row = await h.row()
    assert row[AppealCol.OPERATOR_REPLY] == ""
    assert row[AppealCol.LOG] == LOG + "\n[2026-11-23 15:10] Оператор: Выплата придёт в пятницу."
    assert row[AppealCol.UPDATED] == "2026-11-23 15:10:00"
    assert await h.service.poll_once() == 0
    assert len(h.delivered()) == 1


async def test_a_telegram_id_staff_typed_with_a_space_still_gets_the_reply(h: Harness) -> None:
    """Staff typed the partner's Telegram ID as `100 042`: the reply reaches chat 100042 once and G is cleared."""
    await h.staff_types("Ваш договор готов.", tid="100 042")
    assert await h.service.poll_once() == 1
    assert h.delivered(100042) == [format_operator_message("Ваш договор готов.")]
    assert (await h.row("100042"))[AppealCol.OPERATOR_REPLY] == ""
    assert await h.service.poll_once() == 0


async def test_one_read_per_poll(h: Harness) -> None:
    """A poll with nothing to deliver costs exactly one read for all rows."""
    for tid in ("1", "2", "3"):
        await h.gw.table(APPEALS).write(
            [h.gw.table(APPEALS).op_upsert(tid, {AppealCol.LOG: LOG, AppealCol.STATUS: "Ответ ИИ"})]
        )
    before = h.gw.metrics.calls["batch_get"]
    assert await h.service.poll_once() == 0
    assert h.gw.metrics.calls["batch_get"] - before == 1


async def test_replies_to_several_users_in_one_poll(h: Harness) -> None:
    """Every row with a reply is handled in the same poll."""
    for tid in ("41", "42", "43"):
        await h.staff_types(f"Ответ для {tid}", tid=tid)
    assert await h.service.poll_once() == 3
    for chat in (41, 42, 43):
        assert h.delivered(chat) == [format_operator_message(f"Ответ для {chat}")]


async def test_reply_takes_over_from_the_ai_but_keeps_solved(h: Harness) -> None:
    """An operator reply moves Ответ ИИ/Новое to В работе (the AI must not talk over), but leaves Решено."""
    await h.staff_types("Уточните, пожалуйста, адрес.", status="Ответ ИИ")
    await h.service.poll_once()
    assert (await h.row())[AppealCol.STATUS] == "В работе"
    await h.staff_types("Вопрос закрыт, спасибо!", status="Решено")
    await h.service.poll_once()
    assert (await h.row())[AppealCol.STATUS] == "Решено"


async def test_ledger_is_written_before_and_after_sending(h: Harness) -> None:
    """While Telegram is being called the record says SENDING with the text's hash; afterwards SETTLED."""
    seen: list[tuple[DeliveryPhase, str]] = []

    async def look(chat_id: int, text: str) -> None:
        entry = await h.gw.state.delivery_get(LEDGER_KIND, "42")
        assert entry is not None
        seen.append((entry.phase, entry.fingerprint))

    h.messenger.before_send = look
    await h.staff_types("Добрый день!")
    await h.service.poll_once()
    assert seen == [(DeliveryPhase.SENDING, reply_hash("Добрый день!"))]
    entry = await h.gw.state.delivery_get(LEDGER_KIND, "42")
    assert entry is not None and entry.phase is DeliveryPhase.SETTLED


async def test_crash_before_telegram_took_it_resends_once(h: Harness) -> None:
    """Killed after 'sending' but before Telegram accepted the message: the restarted bot sends it once."""

    async def die(chat_id: int, text: str) -> None:
        raise Crash

    h.messenger.before_send = die
    await h.staff_types("Ответ А")
    with pytest.raises(Crash):
        await h.service.poll_once()
    assert h.delivered() == []
    h.messenger.before_send = None
    await h.restart()
    assert await h.service.poll_once() == 1
    assert await h.service.poll_once() == 0
    assert h.delivered() == [format_operator_message("Ответ А")]
    assert (await h.row())[AppealCol.LOG].count("Оператор: Ответ А") == 1


async def test_the_one_window_telegram_cannot_close(h: Harness) -> None:
    """Killed after Telegram accepted the message but before 'sent' was recorded: the reply is sent again.

    This is the documented duplicate window (sendMessage has no idempotency key); it is the only one.
    """

    async def die(chat_id: int, text: str) -> None:
        raise Crash

    h.messenger.after_send = die
    await h.staff_types("Ответ Б")
    with pytest.raises(Crash):
        await h.service.poll_once()
    h.messenger.after_send = None
    await h.restart()
    await h.service.poll_once()
    assert h.delivered() == [format_operator_message("Ответ Б")] * 2
    assert (await h.row())[AppealCol.LOG].count("Оператор: Ответ Б") == 1


async def test_crash_after_sent_before_the_write_does_not_resend(h: Harness) -> None:
    """Killed after 'sent' but before the log/clear write: the restarted bot only writes, it does not resend."""
    await h.staff_types("Ответ В")
    original = h.gw.write
    calls = 0

    async def dying_write(ops: object) -> None:
        nonlocal calls
        calls += 1
        raise Crash

    h.gw.write = dying_write  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await h.service.poll_once()
    h.gw.write = original  # type: ignore[method-assign]
    assert calls == 1
    entry = await h.gw.state.delivery_get(LEDGER_KIND, "42")
    assert entry is not None and entry.phase is DeliveryPhase.SENT
    await h.restart()
    assert await h.service.poll_once() == 0
    assert h.delivered() == [format_operator_message("Ответ В")]
    row = await h.row()
    assert row[AppealCol.OPERATOR_REPLY] == "" and row[AppealCol.LOG].count("Оператор: Ответ В") == 1


async def test_crash_after_the_write_before_cleared_changes_nothing(h: Harness) -> None:
    """Killed after the write but before 'cleared': G is already empty, so nothing is sent or written again."""
    await h.staff_types("Ответ Г")
    original = h.gw.state.delivery_set

    async def die_on_cleared(kind: str, key: str, record: DeliveryRecord) -> None:
        if record.phase is DeliveryPhase.SETTLED:
            raise Crash
        await original(kind, key, record)

    h.gw.state.delivery_set = die_on_cleared  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await h.service.poll_once()
    await h.restart()
    assert await h.service.poll_once() == 0
    assert h.delivered() == [format_operator_message("Ответ Г")]
    assert (await h.row())[AppealCol.LOG].count("Оператор: Ответ Г") == 1


async def test_transient_failure_retries_next_poll(h: Harness) -> None:
    """A network error leaves the reply in G; the next poll delivers it."""
    h.messenger.before_send = failing_send(DeliveryError("timed out", permanent=False))
    await h.staff_types("Ответ Д")
    assert await h.service.poll_once() == 0
    assert (await h.row())[AppealCol.OPERATOR_REPLY] == "Ответ Д"
    assert await h.service.poll_once() == 1
    assert h.delivered() == [format_operator_message("Ответ Д")]


async def test_blocked_user_is_reported_once_and_g_is_left(h: Harness) -> None:
    """A permanent failure (user blocked the bot) notifies staff once and leaves the reply in G."""
    h.messenger.before_send = failing_send(DeliveryError("Forbidden: bot was blocked by the user", permanent=True))
    await h.staff_types("Ответ Е")
    await h.service.poll_once()
    await h.service.poll_once()
    assert h.delivered() == []
    assert len(h.messenger.staff) == 1 and "blocked" in h.messenger.staff[0] and "Ответ Е" in h.messenger.staff[0]
    assert (await h.row())[AppealCol.OPERATOR_REPLY] == "Ответ Е"


async def test_the_same_text_typed_again_is_a_new_reply(h: Harness) -> None:
    """After a reply was delivered and cleared, the same words typed again are delivered again."""
    await h.staff_types("Спасибо!")
    await h.service.poll_once()
    await h.staff_types("Спасибо!")
    await h.service.poll_once()
    assert h.delivered() == [format_operator_message("Спасибо!")] * 2


async def test_a_newer_reply_typed_during_sending_is_not_wiped(h: Harness) -> None:
    """Staff replace G while the first reply is being sent: the new text stays in G and goes out next poll."""

    async def staff_edits(chat_id: int, text: str) -> None:
        if "первый" in text:
            await h.gw.table(APPEALS).write(
                [h.gw.table(APPEALS).op_upsert("42", {AppealCol.OPERATOR_REPLY: "второй ответ"})]
            )

    h.messenger.after_send = staff_edits
    await h.staff_types("первый ответ")
    await h.service.poll_once()
    assert (await h.row())[AppealCol.OPERATOR_REPLY] == "второй ответ"
    await h.service.poll_once()
    assert h.delivered() == [format_operator_message("первый ответ"), format_operator_message("второй ответ")]
    log = (await h.row())[AppealCol.LOG]
    assert "Оператор: первый ответ" in log and "Оператор: второй ответ" in log


async def test_clear_waiting_in_the_outbox_is_not_mistaken_for_a_new_reply(tmp_path: Path) -> None:
    """The clearing write is journaled while the sheet is down; until it replays, G's old text is not resent."""
    cfg = chat_gateway_config(tmp_path, replay_interval=60.0)
    gw, backend = await start_flaky_gateway(cfg)
    h = Harness(cfg, gw, backend)
    try:
        await h.staff_types("Ответ Ж")

        async def sheet_goes_down(chat_id: int, text: str) -> None:
            h.backend.writes_down = True

        h.messenger.after_send = sheet_goes_down
        assert await h.service.poll_once() == 1
        h.messenger.after_send = None
        assert h.gw.outbox_depth == 1
        h.backend.writes_down = False
        assert (await h.row())[AppealCol.OPERATOR_REPLY] == "Ответ Ж"  # not replayed yet
        assert await h.service.poll_once() == 0
        assert await h.gw.writer.wait_empty(5.0)
        assert await h.service.poll_once() == 0
        assert h.delivered() == [format_operator_message("Ответ Ж")]
        row = await h.row()
        assert row[AppealCol.OPERATOR_REPLY] == "" and row[AppealCol.LOG].count("Оператор: Ответ Ж") == 1
    finally:
        h.backend.writes_down = False
        await h.gw.close()


async def test_sheet_unreadable_after_sending_postpones_only_the_write(h: Harness) -> None:
    """The sheet goes down right after the send: the next poll logs and clears without sending again."""

    async def sheet_goes_down(chat_id: int, text: str) -> None:
        h.backend.down = True

    h.messenger.after_send = sheet_goes_down
    await h.staff_types("Ответ И")
    assert await h.service.poll_once() == 1
    h.messenger.after_send = None
    h.backend.down = False
    assert await h.service.poll_once() == 0
    assert h.delivered() == [format_operator_message("Ответ И")]
    row = await h.row()
    assert row[AppealCol.OPERATOR_REPLY] == "" and row[AppealCol.LOG].count("Оператор: Ответ И") == 1


async def test_sheet_down_poll_does_nothing(h: Harness) -> None:
    """When the sheet cannot be read the poll returns quietly and delivers later."""
    await h.staff_types("Ответ З")
    h.backend.down = True
    assert await h.service.poll_once() == 0
    h.backend.down = False
    assert await h.service.poll_once() == 1


async def test_row_without_a_telegram_id_is_skipped(h: Harness) -> None:
    """A reply on a row whose Telegram ID is not a number is left alone (and logged once)."""
    await h.gw.table(APPEALS).write(
        [h.gw.table(APPEALS).op_insert({AppealCol.TELEGRAM_ID: "нет id", AppealCol.OPERATOR_REPLY: "текст"})]
    )
    assert await h.service.poll_once() == 0
    assert h.messenger.sent == []


async def test_a_reply_on_a_duplicated_row_is_not_resent_every_poll(h: Harness) -> None:
    """Staff copied a partner's row: a reply typed on the copy is not resent every poll; staff are told once."""
    await h.staff_types("")  # row 2: the partner's row, no reply
    console = GatewayStaffConsole(h.gw)
    await console.set_cell("Обращения", "D3", "42")  # row 3: a copy with the same Telegram ID
    await console.set_cell("Обращения", "G3", "Ответ на копии")
    for _ in range(3):
        await h.service.poll_once()
    assert h.delivered() == []
    assert len(h.messenger.staff) == 1 and "строке 3" in h.messenger.staff[0]


async def test_clear_replayed_during_a_poll_is_not_mistaken_for_a_new_reply(tmp_path: Path) -> None:
    """The outbox replays the clear after the poll read G but before the row is handled: nothing is resent."""
    cfg = chat_gateway_config(tmp_path, replay_interval=60.0)
    gw, backend = await start_flaky_gateway(cfg)
    h = Harness(cfg, gw, backend)
    try:
        await h.staff_types("Ответ К")

        async def sheet_goes_down(chat_id: int, text: str) -> None:
            h.backend.writes_down = True

        h.messenger.after_send = sheet_goes_down
        assert await h.service.poll_once() == 1
        h.messenger.after_send = None
        h.backend.writes_down = False
        assert h.gw.outbox_depth == 1
        delivery_get = h.gw.state.delivery_get

        async def replay_meanwhile(kind: str, key: str) -> object:
            assert await h.gw.writer.wait_empty(5.0)  # the replayer ran between the poll's read and this row
            return await delivery_get(kind, key)

        h.gw.state.delivery_get = replay_meanwhile  # type: ignore[method-assign, assignment]
        assert await h.service.poll_once() == 0
        assert h.delivered() == [format_operator_message("Ответ К")]
        assert (await h.row())[AppealCol.LOG].count("Оператор: Ответ К") == 1
    finally:
        h.backend.writes_down = False
        await h.gw.close()


class SplittingMessenger(FakeMessenger):
    """Splits long texts into several messages like the Telegram adapter does; piece `fail_piece` fails once."""

    def __init__(self, fail_piece: int) -> None:
        super().__init__()
        self.fail_piece = fail_piece
        self.pieces_sent = 0

    async def send_text(
        self, chat_id: int, text: str, *, buttons: Sequence[str] | Sequence[InlineButton] | None = None
    ) -> None:
        for piece in split_message(text):
            if self.pieces_sent + 1 == self.fail_piece:
                self.fail_piece = 0
                raise DeliveryError("NetworkError: connection reset", permanent=False)
            self.pieces_sent += 1
            await super().send_text(chat_id, piece)


async def test_a_long_reply_interrupted_midway_does_not_repeat_its_first_part(h: Harness) -> None:
    """A reply longer than one Telegram message fails on its second part: the next poll sends only what is missing."""
    h.messenger = messenger = SplittingMessenger(fail_piece=2)
    h.service = OperatorReplyService(h.gw, messenger, clock=h.clock)
    reply = "\n\n".join(["а" * 3000, "б" * 3000, "в" * 3000])
    await h.staff_types(reply)
    assert await h.service.poll_once() == 0
    assert await h.service.poll_once() == 1
    assert h.delivered() == split_message(format_operator_message(reply))
    row = await h.row()
    assert row[AppealCol.OPERATOR_REPLY] == "" and row[AppealCol.LOG].count("Оператор: ") == 1


@pytest.mark.parametrize(
    ("state", "payload", "sent_after_upgrade"),
    [("sent", "H", 0), ("cleared", "H", 0), ("failed", "H", 0), ("sending", "H#1", 1)],
)
async def test_records_of_an_older_release_are_honoured(
    h: Harness, state: str, payload: str, sent_after_upgrade: int
) -> None:
    """A reply recorded in the old string ledger (`hash`, `hash#i`) is not re-sent after an upgrade."""
    text = "Старый ответ. " * 400  # two Telegram messages
    await h.staff_types(text)
    await h.gw.state.ledger_set(LEDGER_KIND, "42", state, payload.replace("H", reply_hash(text.strip())))
    if state == "cleared":
        await h.gw.table(APPEALS).write(
            [h.gw.table(APPEALS).op_upsert("42", {AppealCol.OPERATOR_REPLY: ""}, create=False)]
        )
    await h.service.poll_once()
    pieces = split_message(format_operator_message(text.strip()))
    assert h.delivered() == pieces[len(pieces) - sent_after_upgrade :]
