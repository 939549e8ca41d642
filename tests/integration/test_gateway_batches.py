"""Batches hold several callers' reads and ops: each gets its own outcome, and ops apply in order and whole."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway import AsyncSheetsGateway, CellTooLarge, SchemaError
from gateway.a1 import sheet_range
from gateway.batch import BatchApplier, Job
from gateway.schemas import APPEALS, ARCHIVE, AUTH, QUEUE, AppealCol, AuthCol, Overflow, QueueCol
from tests.conftest import google_config, started_gateway
from tests.fakes.sheets_server import FakeSheetsServer


async def _rows(gw: AsyncSheetsGateway, title: str) -> list[list[str]]:
    (rows,) = await gw.read_ranges([sheet_range(title)])
    return rows


# -- locating rows while staff move columns ---------------------------------------------------------


async def test_concurrent_lookups_after_staff_swap_columns_find_every_row(local_gateway: AsyncSheetsGateway) -> None:
    """Two lookups sharing one read after staff swapped the key column away both notice it and find their rows."""
    gw = local_gateway
    auth = gw.table(AUTH)
    title = sheet_range(AUTH.title)
    await gw.write_range(f"{title}!A2:B3", [["P-1", "+79000000001"], ["P-2", "+79000000002"]])  # typed by staff
    await auth.header()  # the gateway knows the old layout (Код партнера in A)
    await gw.write_range(
        f"{title}!A1:B3",
        [[AuthCol.PHONE, AuthCol.CODE], ["+79000000001", "P-1"], ["+79000000002", "P-2"]],
    )
    one, two = await asyncio.gather(auth.get("P-1"), auth.get("P-2"))
    assert one is not None and one[AuthCol.PHONE] == "+79000000001"
    assert two is not None and two[AuthCol.PHONE] == "+79000000002"


# -- ops of one batch on the same key ----------------------------------------------------------------


async def test_insert_then_update_of_the_same_key_in_one_write(local_gateway: AsyncSheetsGateway) -> None:
    """An insert followed by an update of the same new key in one write makes one row carrying the update."""
    queue = local_gateway.table(QUEUE)
    await local_gateway.write(
        [
            queue.op_insert({QueueCol.ID: "job-1", QueueCol.STATUS: "NEW"}),
            queue.op_upsert("job-1", {QueueCol.STATUS: "PROCESSING"}, create=False),
        ]
    )
    rows = [r for r in await queue.all() if r[QueueCol.ID] == "job-1"]
    assert [r[QueueCol.STATUS] for r in rows] == ["PROCESSING"]


async def test_a_rejected_op_changes_nothing_on_an_existing_row(local_gateway: AsyncSheetsGateway) -> None:
    """An append that would overflow the cell is rejected whole: the status set in the same op is not written."""
    appeals = local_gateway.table(APPEALS)
    await appeals.write([appeals.op_append_text("1", AppealCol.LOG, "x" * 40_000, values={AppealCol.STATUS: "Новое"})])
    with pytest.raises(CellTooLarge):
        await appeals.write(
            [appeals.op_append_text("1", AppealCol.LOG, "y" * 20_000, values={AppealCol.STATUS: "Решено"})]
        )
    rec = await appeals.get("1")
    assert rec is not None and rec[AppealCol.STATUS] == "Новое" and rec[AppealCol.LOG] == "x" * 40_000


async def test_a_rejected_op_creates_no_row(local_gateway: AsyncSheetsGateway) -> None:
    """An op whose new row cannot hold its text is rejected whole: no empty row is left behind."""
    appeals = local_gateway.table(APPEALS)
    with pytest.raises(CellTooLarge):
        await appeals.write([appeals.op_append_text("2", AppealCol.LOG, "z" * 50_001)])
    assert await appeals.get("2") is None
    assert len(await _rows(local_gateway, APPEALS.title)) == 1


async def test_an_op_naming_an_unknown_column_changes_nothing(local_gateway: AsyncSheetsGateway) -> None:
    """An upsert with one unknown column writes none of its values: it waits in the outbox for the column."""
    appeals = local_gateway.table(APPEALS)
    await appeals.write([appeals.op_upsert("3", {AppealCol.STATUS: "Новое"})])
    await appeals.write([appeals.op_upsert("3", {AppealCol.STATUS: "Решено", "Нет такой колонки": "x"})])
    rec = await appeals.get("3")
    assert rec is not None and rec[AppealCol.STATUS] == "Новое"
    assert local_gateway.outbox_depth == 1
    fault = local_gateway.writer.fault
    assert isinstance(fault, SchemaError) and "Нет такой колонки" in str(fault)


# -- one caller's bad range never fails the others' reads ---------------------------------------------


async def test_a_hinted_row_beyond_the_grid_fails_no_other_reader(tmp_path: Path) -> None:
    """After staff delete rows, a stale hint past the grid's end (HTTP 400) costs its own lookup a rescan only:
    a reader sharing that batchGet still gets its rows."""
    with FakeSheetsServer(sheets=()) as server:
        server.add_sheet(QUEUE.title, QUEUE.headers, rows=4)
        server.set_values(QUEUE.title, [list(QUEUE.headers)] + [[f"job-{i}"] for i in range(3)])  # a full grid
        async with started_gateway(google_config(tmp_path, server)) as gw:
            queue = gw.table(QUEUE)
            await gw.table(AUTH).write([gw.table(AUTH).op_upsert("P-1", {AuthCol.PHONE: "+79000000001"})])
            assert (await queue.get("job-2")) is not None  # hinted at row 4
            server.delete_rows(QUEUE.title, 2)  # the grid shrinks: row 4 no longer exists
            job, partners = await asyncio.gather(queue.get("job-2"), gw.table(AUTH).all())
            assert job is not None and job.row == 3
            assert [p[AuthCol.CODE] for p in partners] == ["P-1"]


# -- where an overflowing log goes ------------------------------------------------------------------


async def test_the_overflow_target_is_the_one_the_schema_names(local_gateway: AsyncSheetsGateway) -> None:
    """The applier archives into whatever sheet and columns the sheet's Overflow names, not a built-in «Архив»."""
    gw = local_gateway
    await gw.backend.add_sheet("Старые логи", ("кто", "когда", "что"))
    applier = BatchApplier(
        gw.backend, gw.locator, overflows={APPEALS.title: Overflow("Старые логи", "кто", "когда", "что")}
    )
    appeals = gw.table(APPEALS)
    first = "[2026-11-01 10:00] Пользователь: " + "о" * 35_000
    staff = "[01.11.2026 12:00] Менеджер: ответ"  # typed by staff: still an entry boundary
    new = "[2026-11-02 11:00] Оператор: " + "н" * 15_000
    await appeals.write([appeals.op_append_text("8", AppealCol.LOG, f"{first}\n{staff}")])
    [error] = await applier.apply([Job(appeals.op_append_text("8", AppealCol.LOG, new, archive_overflow=True))])
    assert error is None
    assert (await _rows(gw, "Старые логи"))[1:] == [["8", "2026-11-01 10:00", first]]
    assert await _rows(gw, ARCHIVE.title) == [list(ARCHIVE.headers)]
    rec = await appeals.get("8")
    assert rec is not None and rec[AppealCol.LOG] == f"{staff}\n{new}"


async def test_a_sheet_without_an_overflow_target_refuses_an_overflowing_append(
    local_gateway: AsyncSheetsGateway,
) -> None:
    """Consent to archive does not help a sheet whose schema names no overflow: the op is refused, the cell kept."""
    queue = local_gateway.table(QUEUE)
    await queue.write([queue.op_upsert("job-1", {QueueCol.RESULT_TEXT: "р" * 45_000})])
    with pytest.raises(CellTooLarge):
        await queue.write([queue.op_append_text("job-1", QueueCol.RESULT_TEXT, "х" * 10_000, archive_overflow=True)])
    rec = await queue.get("job-1")
    assert rec is not None and rec[QueueCol.RESULT_TEXT] == "р" * 45_000


async def test_background_reads_ride_along_with_a_partners_read(local_gateway: AsyncSheetsGateway) -> None:
    """A poll inside `background_reads` makes no call of its own while a partner's read is coming: both ranges
    go out in one batchGet."""
    calls: list[list[str]] = []
    backend = local_gateway.backend
    inner = backend.batch_get

    async def spy(ranges: Sequence[str]) -> list[list[list[str]]]:
        calls.append(list(ranges))
        return await inner(ranges)

    backend.batch_get = spy  # type: ignore[method-assign]

    async def poll() -> None:
        with local_gateway.background_reads(patience=5.0):
            await local_gateway.read_ranges(["'Очередь'!1:1"])

    polling = asyncio.create_task(poll())
    await asyncio.sleep(0.1)
    assert calls == []
    await local_gateway.read_ranges(["'Auth'!1:1"])
    await polling
    assert len(calls) == 1 and set(calls[0]) == {"'Очередь'!1:1", "'Auth'!1:1"}
