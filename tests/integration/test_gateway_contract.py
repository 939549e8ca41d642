"""One contract, two backends: the local store and Google (real gspread against the fake Sheets server)."""

from __future__ import annotations

import asyncio

import pytest

from gateway import AsyncSheetsGateway, CellTooLarge
from gateway.a1 import sheet_range
from gateway.schemas import APPEALS, ARCHIVE, AUTH, AppealCol, ArchiveCol, AuthCol

pytestmark = pytest.mark.usefixtures("any_gateway")


async def _raw(gw: AsyncSheetsGateway, title: str) -> list[list[str]]:
    (rows,) = await gw.read_ranges([sheet_range(title)])
    return rows


async def test_write_read_and_find_by_key(any_gateway: AsyncSheetsGateway) -> None:
    """A row written by key reads back by its key and by another column."""
    auth = any_gateway.table(AUTH)
    await auth.write(
        [auth.op_upsert("P-1", {AuthCol.PHONE: "+79161234567", AuthCol.NAME: "Иванов Иван", AuthCol.TELEGRAM_ID: "42"})]
    )
    rec = await auth.get("P-1")
    assert rec is not None and rec[AuthCol.NAME] == "Иванов Иван" and rec.row == 2
    by_tid = await auth.get("42", column=AuthCol.TELEGRAM_ID)
    assert by_tid is not None and by_tid[AuthCol.CODE] == "P-1"
    assert await auth.get("nope") is None


async def test_append_inserts_after_last_row(any_gateway: AsyncSheetsGateway) -> None:
    """Inserted rows land one after another below the header."""
    auth = any_gateway.table(AUTH)
    for i in range(3):
        await auth.write([auth.op_insert({AuthCol.CODE: f"P-{i}", AuthCol.PHONE: f"+7900000000{i}"})])
    rows = await _raw(any_gateway, AUTH.title)
    assert [r[0] for r in rows[1:]] == ["P-0", "P-1", "P-2"]


@pytest.mark.parametrize(
    "value",
    [
        "=1+1",
        '=IMPORTXML("http://x", "//a")',
        "+79161234567",
        "@user",
        "-5",
        "'quoted",
        "007",
        "Привет, мир! 🏠 ₽ «ёлка»",
        "x" * 50_000,
        "line1\nline2",
    ],
)
async def test_values_are_stored_verbatim(any_gateway: AsyncSheetsGateway, value: str) -> None:
    """User text is stored RAW: formulas, phone numbers, handles, signs and 50,000 characters come back unchanged."""
    appeals = any_gateway.table(APPEALS)
    await appeals.write([appeals.op_append_text("7", AppealCol.LOG, value)])
    rec = await appeals.get("7")
    assert rec is not None and rec[AppealCol.LOG] == value


async def test_oversized_value_is_rejected_not_truncated(any_gateway: AsyncSheetsGateway) -> None:
    """A value over 50,000 characters is refused with CellTooLarge and nothing is written."""
    with pytest.raises(CellTooLarge):
        await any_gateway.table(AUTH).write([any_gateway.table(AUTH).op_upsert("P-9", {AuthCol.NAME: "y" * 50_001})])
    assert await any_gateway.table(AUTH).get("P-9") is None


async def test_columns_found_by_header_after_staff_reorder(any_gateway: AsyncSheetsGateway) -> None:
    """Staff reorder columns and insert one: reads and writes still hit the right headers."""
    auth = any_gateway.table(AUTH)
    await auth.write([auth.op_upsert("P-1", {AuthCol.PHONE: "+79160000001", AuthCol.STATUS: "authorized"})])
    rows = await _raw(any_gateway, AUTH.title)
    header = rows[0]
    data = rows[1] + [""] * (len(header) - len(rows[1]))
    # New order: a staff column first, then the original columns reversed (and headers in other case).
    order = list(reversed(range(len(header))))
    new_header = ["Заметки", *[header[i].upper() if header[i] == "STATUS" else header[i].lower() for i in order]]
    new_row = ["звонил", *[data[i] for i in order]]
    await any_gateway.write_range(f"'{AUTH.title}'!A1", [new_header, new_row])
    rec = await auth.get("P-1")
    assert rec is not None and rec[AuthCol.PHONE] == "+79160000001" and rec[AuthCol.STATUS] == "authorized"
    await auth.write([auth.op_upsert("P-1", {AuthCol.STATUS: "blocked"})])
    rows = await _raw(any_gateway, AUTH.title)
    assert rows[1][new_header.index("status".upper())] == "blocked"
    assert rows[1][0] == "звонил"


async def test_staff_sorting_rows_between_operations(any_gateway: AsyncSheetsGateway) -> None:
    """Rows re-sorted by staff between two writes: the second write still lands on its own key's row."""
    appeals = any_gateway.table(APPEALS)
    for tid in ("1", "2", "3"):
        await appeals.write([appeals.op_upsert(tid, {AppealCol.STATUS: "Новое", AppealCol.NAME: f"user{tid}"})])
    assert (await appeals.get("1")) is not None  # row hints now point at rows 2, 3, 4
    rows = await _raw(any_gateway, APPEALS.title)
    await any_gateway.write_range(f"'{APPEALS.title}'!A2", list(reversed(rows[1:])))  # staff sort Z→A
    await appeals.write([appeals.op_upsert("1", {AppealCol.STATUS: "В работе"})])
    await appeals.write([appeals.op_append_text("3", AppealCol.LOG, "[2026-11-23 14:05] Пользователь: привет")])
    after = {r[AppealCol.TELEGRAM_ID]: r for r in await appeals.all()}
    assert after["1"][AppealCol.STATUS] == "В работе" and after["1"][AppealCol.NAME] == "user1"
    assert after["2"][AppealCol.STATUS] == "Новое"
    assert after["3"][AppealCol.LOG].endswith("привет") and after["3"][AppealCol.NAME] == "user3"


async def test_fifty_concurrent_users_lose_nothing(any_gateway: AsyncSheetsGateway) -> None:
    """50 concurrent creates then 50 concurrent updates for different users all land."""
    appeals = any_gateway.table(APPEALS)
    await asyncio.gather(
        *(appeals.write([appeals.op_append_text(str(100 + i), AppealCol.LOG, f"msg {i}")]) for i in range(50))
    )
    await asyncio.gather(
        *(appeals.write([appeals.op_upsert(str(100 + i), {AppealCol.STATUS: f"s{i}"})]) for i in range(50))
    )
    rows = {r[AppealCol.TELEGRAM_ID]: r for r in await appeals.all()}
    assert len(rows) == 50
    for i in range(50):
        assert rows[str(100 + i)][AppealCol.LOG] == f"msg {i}"
        assert rows[str(100 + i)][AppealCol.STATUS] == f"s{i}"


async def test_two_concurrent_writes_to_one_row_keep_both(any_gateway: AsyncSheetsGateway) -> None:
    """Two appends to the same user's log issued at once are both kept, in order."""
    appeals = any_gateway.table(APPEALS)
    await appeals.write([appeals.op_append_text("5", AppealCol.LOG, "first")])
    await asyncio.gather(
        appeals.write([appeals.op_append_text("5", AppealCol.LOG, "second")]),
        appeals.write([appeals.op_append_text("5", AppealCol.LOG, "third", values={AppealCol.STATUS: "Ответ ИИ"})]),
    )
    rec = await appeals.get("5")
    assert rec is not None
    assert rec[AppealCol.LOG] == "first\nsecond\nthird" and rec[AppealCol.STATUS] == "Ответ ИИ"


async def test_log_overflow_moves_oldest_entries_to_archive(any_gateway: AsyncSheetsGateway) -> None:
    """Before the log cell passes 50,000 characters its oldest entries move to Архив; nothing is lost."""
    appeals = any_gateway.table(APPEALS)
    entries = [f"[2026-11-{1 + i // 100:02d} 10:{i % 60:02d}] Пользователь: " + str(i) * 4000 for i in range(13)]
    for e in entries:
        await appeals.write([appeals.op_append_text("77", AppealCol.LOG, e, archive_overflow=True)])
    rec = await appeals.get("77")
    assert rec is not None and len(rec[AppealCol.LOG]) <= 50_000
    archived = [r for r in await any_gateway.table(ARCHIVE).all() if r[ArchiveCol.TELEGRAM_ID] == "77"]
    assert archived and archived[0][ArchiveCol.PERIOD].startswith("2026-11-01 10:00")
    full = "\n".join([*(a[ArchiveCol.LOG] for a in archived), rec[AppealCol.LOG]])
    assert full == "\n".join(entries)


async def test_select_reads_only_named_columns_in_one_call(any_gateway: AsyncSheetsGateway) -> None:
    """select() returns the named columns of every row with one backend read once the header is known."""
    appeals = any_gateway.table(APPEALS)
    await asyncio.gather(
        *(appeals.write([appeals.op_upsert(str(i), {AppealCol.OPERATOR_REPLY: f"r{i}"})]) for i in range(5))
    )
    await appeals.select([AppealCol.TELEGRAM_ID])
    before = any_gateway.metrics.calls["batch_get"]
    rows = await appeals.select([AppealCol.TELEGRAM_ID, AppealCol.OPERATOR_REPLY])
    assert any_gateway.metrics.calls["batch_get"] - before == 1
    assert sorted((r[AppealCol.TELEGRAM_ID], r[AppealCol.OPERATOR_REPLY]) for r in rows) == [
        (str(i), f"r{i}") for i in range(5)
    ]
