"""Structural faults staff cause in the spreadsheet: nothing is lost, the partner is answered, staff are told once.

Each scenario runs the chat service and the health monitor over a real gateway — the local store, and Google
through real gspread against the fake Sheets server — breaks the spreadsheet the way staff do (rename or delete a
tab, clear a header, protect a range, fill the grid), then fixes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.health import HealthMonitor, HealthThresholds
from bot.services.auth import Partner
from gateway import AsyncSheetsGateway, build_gateway
from gateway.a1 import cell_range
from gateway.schemas import APPEALS, ARCHIVE, AppealCol
from tests.chat_support import ChatKit, build_kit, say
from tests.conftest import google_config, local_config
from tests.fakes.sheets_server import FakeSheetsServer

PARTNER = Partner(code="P-1", name="Иванов Иван", phone="+79161234567", telegram_id=42)
FAST = HealthThresholds(recover_after=0.0, structure_every=0.0, structure_every_degraded=0.0)


@dataclass
class Stand:
    """A started gateway, the chat kit over it, a health monitor, and the staff's hands on the spreadsheet."""

    backend: str
    gw: AsyncSheetsGateway
    kit: ChatKit
    monitor: HealthMonitor
    server: FakeSheetsServer | None

    async def rename(self, old: str, new: str) -> None:
        """Staff rename a tab (or delete it: rename it away)."""
        if self.server is not None:
            self.server.rename_sheet(old, new)
            return
        db = self.gw.backend.inner.db  # type: ignore[attr-defined]
        await db.execute("UPDATE sheets SET title = ? WHERE title = ?", (new, old))
        await db.execute("UPDATE cells SET sheet = ? WHERE sheet = ?", (new, old))

    async def set_cell(self, sheet: str, row: int, col: int, value: str) -> None:
        """Staff type into (or clear) one cell."""
        await self.gw.write_range(cell_range(sheet, row, col), [[value]])

    async def ask(self, text: str) -> str:
        """The partner writes; returns what they were answered."""
        return (await say(self.kit.appeals, PARTNER, text)).text

    async def log(self, telegram_id: int = PARTNER.telegram_id) -> str:
        """Обращения.E of a partner, read fresh."""
        rec = await self.gw.table(APPEALS).get(str(telegram_id))
        return rec[AppealCol.LOG] if rec else ""

    async def settle(self) -> dict[str, object]:
        """One health check, then the body /healthz and /readyz would answer."""
        await self.monitor.check_once()
        return await self.monitor.body()


@contextlib.asynccontextmanager
async def stand(tmp_path: Path, backend: str) -> AsyncIterator[Stand]:
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(FakeSheetsServer(sheets=())) if backend == "google" else None
        cfg = google_config(tmp_path, server) if server is not None else local_config(tmp_path)
        gw = build_gateway(cfg)
        await gw.start()
        try:
            await gw.ensure_sheets()
            kit = build_kit(gw)
            monitor = HealthMonitor(gw, kit.messenger, thresholds=FAST, phase="running")
            yield Stand(backend, gw, kit, monitor, server)
        finally:
            await gw.close()


async def _fault_then_fix(
    s: Stand,
    brk: Callable[[], Awaitable[None]],
    fix: Callable[[], Awaitable[None]],
    *,
    named: str,
    remedy: str,
    waits: bool = True,
) -> None:
    """Break, chat three times, check what everyone saw, fix, check that every turn landed once and in order."""
    assert await s.ask("сообщение до сбоя")
    assert (await s.settle())["status"] == "ok"
    await brk()
    answers = [await s.ask(f"сообщение {i}") for i in range(3)]
    assert all(a.startswith("Ответ") for a in answers), answers  # the partner is answered by the model
    if waits:
        assert s.gw.outbox_depth >= 3  # the turns wait in the outbox, none dropped
        assert await s.gw.dead_letters() == 0
    body = await s.settle()
    body = await s.settle()  # a second check: still one alert
    print(f"\n[{s.backend}] partner saw: {answers[0]!r}")
    print(f"[{s.backend}] /readyz 503 problems: {body['problems']}")
    print(f"[{s.backend}] staff chat: {s.kit.messenger.staff}")
    assert body["status"] == "degraded" and not HealthMonitor.ready(body) and HealthMonitor.alive(body)
    assert any(named in str(p) for p in body["problems"]), body["problems"]  # type: ignore[attr-defined]
    assert len(s.kit.messenger.staff) == 1, s.kit.messenger.staff
    assert remedy in s.kit.messenger.staff[0]
    await fix()
    assert await s.gw.writer.wait_empty(10)
    body = await s.settle()
    assert body["status"] == "ok" and body["problems"] == [], body
    assert len(s.kit.messenger.staff) == 2 and s.kit.messenger.staff[1].startswith("✅")
    log = await s.log()
    print(f"[{s.backend}] after the fix: staff chat {s.kit.messenger.staff[1]!r}; E holds:\n{log}")
    texts = ["сообщение до сбоя"] + [f"сообщение {i}" for i in range(3)]
    positions = [log.find(f"Пользователь: {t}\n") for t in texts]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), log
    for t in texts:
        assert log.count(f"Пользователь: {t}\n") == 1
    assert await s.gw.dead_letters() == 0


@pytest.mark.parametrize("backend", ["local", "google"])
async def test_renamed_appeals_sheet_holds_turns_until_staff_name_it_back(tmp_path: Path, backend: str) -> None:
    """«Обращения» renamed: partner answered, turns wait, /readyz names it, one alert; renamed back → all land once,
    in order, one recovery note."""
    async with stand(tmp_path, backend) as s:

        async def brk() -> None:
            await s.rename(APPEALS.title, "Обращения (копия)")

        async def fix() -> None:
            await s.rename("Обращения (копия)", APPEALS.title)

        await _fault_then_fix(s, brk, fix, named="Обращения", remedy="верните лист «Обращения»")


@pytest.mark.parametrize("backend", ["local", "google"])
async def test_cleared_log_header_holds_turns_until_staff_restore_it(tmp_path: Path, backend: str) -> None:
    """The «текст_обращений» header cleared: turns wait, /readyz names the header, one alert naming
    `marketingbot sheets init`; header typed back → every turn lands once, in order."""
    async with stand(tmp_path, backend) as s:
        col = APPEALS.headers.index(AppealCol.LOG) + 1

        async def brk() -> None:
            await s.set_cell(APPEALS.title, 1, col, "")

        async def fix() -> None:
            await s.set_cell(APPEALS.title, 1, col, AppealCol.LOG)

        await _fault_then_fix(s, brk, fix, named="текст_обращений", remedy="marketingbot sheets init")


async def test_protected_appeals_sheet_holds_turns_until_protection_is_removed(tmp_path: Path) -> None:
    """A protected «Обращения» (HTTP 403 on write): turns wait, /readyz names it, one alert naming the protection;
    unprotected → every turn lands once, in order."""
    async with stand(tmp_path, "google") as s:
        assert s.server is not None
        server = s.server

        async def brk() -> None:
            server.protect(APPEALS.title)

        async def fix() -> None:
            server.unprotect(APPEALS.title)

        await _fault_then_fix(s, brk, fix, named="защищ", remedy="снимите защиту")


async def test_a_workbook_at_its_cell_limit_holds_new_rows_until_space_is_freed(tmp_path: Path) -> None:
    """A workbook at 10,000,000 cells refuses a new partner's row (HTTP 400): turns wait, /readyz names the limit,
    one alert; space freed → the row and every turn land once, in order."""
    async with stand(tmp_path, "google") as s:
        assert s.server is not None
        server = s.server

        async def fix() -> None:
            server.fill_grid(False)

        server.fill_grid()  # before the partner's first message: their row is a new one
        answers = [await s.ask(f"сообщение {i}") for i in range(3)]
        assert all(a.startswith("Ответ") for a in answers)
        assert s.gw.outbox_depth >= 3
        body = await s.settle()
        body = await s.settle()
        assert body["status"] == "degraded" and any("лимит" in str(p) for p in body["problems"])  # type: ignore[attr-defined]
        assert len(s.kit.messenger.staff) == 1 and "10 млн" in s.kit.messenger.staff[0]
        print(f"\n[google] /readyz 503 problems: {body['problems']}\n[google] staff chat: {s.kit.messenger.staff}")
        await fix()
        assert await s.gw.writer.wait_empty(10)
        assert (await s.settle())["status"] == "ok"
        assert len(s.kit.messenger.staff) == 2
        log = await s.log()
        positions = [log.find(f"Пользователь: сообщение {i}\n") for i in range(3)]
        assert all(p >= 0 for p in positions) and positions == sorted(positions), log
        assert all(log.count(f"Пользователь: сообщение {i}\n") == 1 for i in range(3))


@pytest.mark.parametrize("backend", ["local", "google"])
async def test_a_missing_archive_blocks_no_turn_but_is_reported_once(tmp_path: Path, backend: str) -> None:
    """«Архив» deleted: turns that do not overflow land at once (Архив is not read), /readyz names Архив and staff
    get one «верните лист «Архив»»; restored → one recovery note."""
    async with stand(tmp_path, backend) as s:

        async def brk() -> None:
            await s.rename(ARCHIVE.title, "старый архив")

        async def fix() -> None:
            await s.rename("старый архив", ARCHIVE.title)

        await _fault_then_fix(s, brk, fix, named="Архив", remedy="верните лист «Архив»", waits=False)
        assert s.gw.outbox_depth == 0


@pytest.mark.parametrize("backend", ["local", "google"])
async def test_an_overflow_while_the_archive_is_missing_waits_and_nothing_is_cut(tmp_path: Path, backend: str) -> None:
    """A turn that must move old text to «Архив» while Архив is missing waits whole (E untouched); restored → the
    old text is in Архив (or still in E), the new turn in E once."""
    async with stand(tmp_path, backend) as s:
        old = "[2026-11-01 10:00] Пользователь: " + "с" * 49_900
        await s.gw.table(APPEALS).write(
            [s.gw.table(APPEALS).op_append_text(str(PARTNER.telegram_id), AppealCol.LOG, old)]
        )
        await s.rename(ARCHIVE.title, "старый архив")
        assert (await s.ask("после переполнения")).startswith("Ответ")
        assert s.gw.outbox_depth >= 1 and await s.log() == old  # nothing trimmed without the archive row
        await s.rename("старый архив", ARCHIVE.title)
        assert await s.gw.writer.wait_empty(10)
        archived = [r["текст_обращений"] for r in await s.gw.table(ARCHIVE).all()]
        log = await s.log()
        assert len(archived) == 1 and archived[0].startswith("[2026-11-01 10:00] Пользователь: ссс")
        assert archived[0].count("с") + log.count("с") - log.count("после") >= 49_900  # every character kept
        assert log.count("Пользователь: после переполнения\n") == 1
