"""Reply first, write after: the turn journal, reads overlaid with writes the sheet does not hold yet, crash replay,
the update inbox, and the authorization remembered across restarts (local gateway, sheet that can go down)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bot.services.appeals import ChatReply, ReplyKind, decode_reply, encode_reply
from bot.services.auth import AuthService, Partner
from bot.services.turn_context import TurnContext, enter_turn, leave_turn
from bot.telegram.context import BotContext
from bot.telegram.handlers.chat import _handle_when_authorizable, _Postponed
from gateway import AsyncSheetsGateway, InboxUpdate, Rows, SheetUnavailable, build_gateway
from gateway.schemas import APPEALS, AppealCol, AppealStatus
from tests.chat_support import (
    ChatKit,
    FlakyBackend,
    add_partner,
    build_kit,
    chat_gateway_config,
    say,
    start_flaky_gateway,
)

PARTNER = Partner(code="P-1", name="Иванов Иван", phone="+79161234567", telegram_id=42)


class GatedBackend(FlakyBackend):
    """A sheet whose writes wait until `open_gate` is set (reads go through)."""

    def __init__(self, inner: FlakyBackend) -> None:
        super().__init__(inner)
        self.open_gate = asyncio.Event()
        self.open_gate.set()

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None:
        await self.open_gate.wait()
        await super().batch_update(data)

    async def append(self, sheet: str, rows: Rows) -> int:
        await self.open_gate.wait()
        return await super().append(sheet, rows)


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[AsyncSheetsGateway, GatedBackend]]:
    """A started local gateway whose sheet writes can be held back."""
    gw, flaky = await start_flaky_gateway(chat_gateway_config(tmp_path))
    gate = GatedBackend(flaky)
    gw.backend.inner = gate
    try:
        yield gw, gate
    finally:
        gate.open_gate.set()
        flaky.down = False
        await gw.close()


async def _log(gw: AsyncSheetsGateway, tid: int = 42) -> str:
    row = await gw.table(APPEALS).get(str(tid))
    return row[AppealCol.LOG] if row else ""


async def test_the_reply_returns_before_the_sheet_write_lands(gated: tuple[AsyncSheetsGateway, GatedBackend]) -> None:
    """With the sheet's write held back, the answer is returned anyway; the turn lands once the sheet takes it."""
    gw, gate = gated
    kit = build_kit(gw, reply_first=True)
    gate.open_gate.clear()
    reply = await asyncio.wait_for(say(kit.appeals, PARTNER, "Привет"), 5)
    assert reply.text == "Ответ 1: Привет"
    assert await _log(gw) == ""  # not in the sheet yet
    assert gw.turns.in_flight == 1
    gate.open_gate.set()
    await gw.turns.drain()
    assert await _log(gw) == "[2026-11-23 14:05] Пользователь: Привет\n[2026-11-23 14:05] ИИ: Ответ 1: Привет"


async def test_next_turn_history_includes_a_turn_not_yet_in_the_sheet(
    gated: tuple[AsyncSheetsGateway, GatedBackend],
) -> None:
    """The second message's history holds the first turn while its write is still held back; E gets both, in order."""
    gw, gate = gated
    kit = build_kit(gw, reply_first=True)
    gate.open_gate.clear()
    await say(kit.appeals, PARTNER, "Первый")
    await say(kit.appeals, PARTNER, "Второй")
    history = kit.ai.calls[1].history
    assert [(t.role, t.text) for t in history] == [("user", "Первый"), ("model", "Ответ 1: Первый")]
    gate.open_gate.set()
    await gw.turns.drain()
    log = await _log(gw)
    assert log.count("Пользователь: Первый") == 1 and log.count("Пользователь: Второй") == 1
    assert log.index("Первый") < log.index("Второй")


async def test_a_staff_edit_is_seen_on_the_next_message(gated: tuple[AsyncSheetsGateway, GatedBackend]) -> None:
    """Reply-first still reads the sheet every turn: staff setting В работе silences the very next message."""
    gw, _ = gated
    kit = build_kit(gw, reply_first=True)
    await say(kit.appeals, PARTNER, "Привет")
    await gw.turns.drain()
    await gw.table(APPEALS).write([gw.table(APPEALS).op_upsert("42", {AppealCol.STATUS: AppealStatus.IN_WORK})])
    reply = await say(kit.appeals, PARTNER, "Ещё вопрос")
    assert reply.kind is ReplyKind.SILENT and reply.text == ""


async def test_history_during_an_outage_overlays_the_outbox(tmp_path: Path) -> None:
    """While the sheet is down, the next turn's history holds the turn that waits in the outbox (not reply-first)."""
    gw, flaky = await start_flaky_gateway(chat_gateway_config(tmp_path))
    try:
        kit = build_kit(gw)
        flaky.down = True
        await say(kit.appeals, PARTNER, "Первый")
        assert gw.outbox_depth == 1
        await say(kit.appeals, PARTNER, "Второй")
        assert [t.text for t in kit.ai.calls[1].history] == ["Первый", "Ответ 1: Первый"]
        flaky.down = False
        assert await gw.writer.wait_empty(5)
        log = await _log(gw)
        assert log.count("Пользователь: Первый") == 1 and log.count("Пользователь: Второй") == 1
    finally:
        flaky.down = False
        await gw.close()


@pytest.mark.parametrize("landed", [False, True])
async def test_a_turn_journaled_before_a_crash_is_written_exactly_once_after_restart(
    tmp_path: Path, landed: bool
) -> None:
    """A turn journaled (reply sent) whose write never ran — or ran but was never confirmed — is in E exactly
    once after the next start."""
    cfg = chat_gateway_config(tmp_path)
    gw, _ = await start_flaky_gateway(cfg)
    kit = build_kit(gw)
    op = kit.appeals._table.op_append_text("42", AppealCol.LOG, "[2026-11-23 14:05] Пользователь: до сбоя")
    if landed:
        await gw.write([op])
    await gw.turns.record("update:7", op, encode_reply(ChatReply("ответ", AppealStatus.AI)))
    await gw._journal_file.close()  # the process dies here: nothing else of the shutdown runs
    await gw.state.close()
    await gw.backend.close()

    restarted = build_gateway(cfg)
    await restarted.start(recover_turns=True)  # as the bot process starts it
    try:
        assert await restarted.writer.wait_empty(5)
        assert (await _log(restarted)).count("Пользователь: до сбоя") == 1
        assert decode_reply(await restarted.turns.reply_of("update:7") or "") == ChatReply("ответ", AppealStatus.AI)
        assert await restarted.turns.pending(APPEALS.title, "42") == []
    finally:
        await restarted.close()


async def test_the_inbox_journals_each_update_once_and_tracks_unfinished(tmp_path: Path) -> None:
    """An update journaled twice is fresh only once; done ones leave the unfinished list; the last id stays."""
    gw, _ = await start_flaky_gateway(chat_gateway_config(tmp_path))
    try:
        inbox = gw.inbox
        first = [InboxUpdate(10, 1, {"update_id": 10}), InboxUpdate(11, 2, {"update_id": 11})]
        assert [u.update_id for u in await inbox.put(first)] == [10, 11]
        assert [u.update_id for u in await inbox.put([*first, InboxUpdate(12, 1, {"update_id": 12})])] == [12]
        await inbox.done(11)
        assert [u.update_id for u in await inbox.unfinished()] == [10, 12]
        assert (await inbox.unfinished())[0].payload == {"update_id": 10}
        await inbox.done(10)
        await inbox.done(12)
        assert await inbox.prune(older_than=-1) == 2  # everything but the newest, which carries the offset
        assert await inbox.last_update_id() == 12
    finally:
        await gw.close()


async def test_an_authorization_remembered_before_a_restart_answers_during_an_outage(tmp_path: Path) -> None:
    """A new AuthService (a restart) lets a partner checked before it in while Auth is unreadable; a denial the
    previous run saw is honoured."""
    gw, flaky = await start_flaky_gateway(chat_gateway_config(tmp_path))
    try:
        await add_partner(gw, "P-1", "+79161234567", status="authorized", telegram_id=42)
        await add_partner(gw, "P-2", "+79161234568", status="blocked", telegram_id=43)
        before = AuthService(gw)
        assert await before.check(42) is not None
        assert await before.check(43) is None
        flaky.down = True
        after = AuthService(gw)
        partner = await after.check(42)
        assert partner is not None and partner.code == "P-1"
        with pytest.raises(SheetUnavailable):
            await after.check(43)
    finally:
        flaky.down = False
        await gw.close()


def _services(kit: ChatKit) -> BotContext:
    return BotContext(auth=kit.auth, appeals=kit.appeals, messenger=kit.messenger)


async def test_a_message_whose_authorization_cannot_be_checked_waits_and_is_answered(tmp_path: Path) -> None:
    """With Auth unreadable and nothing remembered, the message waits; once the sheet is back it is answered."""
    gw, flaky = await start_flaky_gateway(chat_gateway_config(tmp_path))
    try:
        await add_partner(gw, "P-1", "+79161234567", status="authorized", telegram_id=42)
        kit = build_kit(gw)
        flaky.down = True
        task = asyncio.create_task(_handle_when_authorizable(_services(kit), 42, "Вопрос"))
        await asyncio.sleep(0.3)
        assert not task.done()
        flaky.down = False
        partner, reply = await asyncio.wait_for(task, 10)
        assert partner is not None and reply is not None and reply.text == "Ответ 1: Вопрос"
    finally:
        flaky.down = False
        await gw.close()


async def test_a_waiting_message_is_left_in_the_inbox_at_shutdown(tmp_path: Path) -> None:
    """At shutdown a message still waiting for Auth is postponed (left unfinished for the next start), not dropped."""
    gw, flaky = await start_flaky_gateway(chat_gateway_config(tmp_path))
    try:
        kit = build_kit(gw)
        flaky.down = True
        turn = TurnContext("update:5")
        token = enter_turn(turn)
        try:
            task = asyncio.create_task(_handle_when_authorizable(_services(kit), 42, "Вопрос"))
        finally:
            leave_turn(token)
        await asyncio.sleep(0.2)
        turn.stopping.set()
        with pytest.raises(_Postponed):
            await asyncio.wait_for(task, 5)
        assert turn.postponed and kit.ai.calls == []
    finally:
        flaky.down = False
        await gw.close()


async def test_written_turns_are_pruned_pending_ones_kept(gated: tuple[AsyncSheetsGateway, GatedBackend]) -> None:
    """Pruning forgets turns the sheet has, never a turn still waiting for its write."""
    gw, gate = gated
    kit = build_kit(gw, reply_first=True)
    op = kit.appeals._table.op_append_text("42", AppealCol.LOG, "[2026-11-23 14:05] Пользователь: раз")
    await gw.turns.commit("update:1", op, "")
    await gw.turns.drain()
    gate.open_gate.clear()
    await gw.turns.commit("update:2", op, "")
    assert await gw.turns.prune(older_than=-1) == 1
    assert await gw.turns.reply_of("update:1") is None and await gw.turns.reply_of("update:2") == ""
    gate.open_gate.set()


async def test_a_cli_command_beside_the_bot_leaves_its_journaled_turns_alone(tmp_path: Path) -> None:
    """Only the bot process hands journaled turns to the outbox: a gateway started without recover_turns (a CLI
    command) neither moves nor replays them."""
    cfg = chat_gateway_config(tmp_path)
    bot_gw = build_gateway(cfg)
    await bot_gw.start(recover_turns=True)
    try:
        op = bot_gw.table(APPEALS).op_append_text("42", AppealCol.LOG, "[2026-11-23 14:05] Пользователь: в пути")
        await bot_gw.turns.record("update:9", op, "")
        cli = build_gateway(cfg)
        await cli.start()
        try:
            assert cli.outbox_depth == 0
        finally:
            await cli.close()
        assert [o.op_id for o in await bot_gw.turns.pending(APPEALS.title, "42")] == [op.op_id]
    finally:
        await bot_gw.close()
