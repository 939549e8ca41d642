"""AnalyticsService: code validation, queueing, flood and duplicate guards, a partner's own requests."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from bot.services.analytics import (
    AnalyticsService,
    InvalidObjectCode,
    TooManyPendingRequests,
    UnknownObjectCode,
)
from gateway import AsyncSheetsGateway
from gateway.schemas import OBJECTS, QUEUE, QueueCol
from tests.unit.analytics_support import FakeClock, put_objects, put_queue_rows, queue_row

CODES = [f"OBJ-{i}" for i in range(1, 8)]


@pytest.fixture
async def gw(local_gateway: AsyncSheetsGateway) -> AsyncSheetsGateway:
    """The local gateway with a few agency objects in Объекты."""
    await put_objects(local_gateway, [{"code": c, "type": "квартира"} for c in CODES])
    return local_gateway


@pytest.fixture
def service(gw: AsyncSheetsGateway) -> AnalyticsService:
    """The service on that gateway with a fixed clock."""
    return AnalyticsService(gw, max_pending_per_user=3, clock=FakeClock())


@pytest.mark.parametrize(
    ("raw", "code"),
    [("demo-0001", "DEMO-0001"), ("  OBJ-1 ", "OBJ-1"), ("abc", "ABC"), ("кв–12", "КВ-12"), ("A1B2C3", "A1B2C3")],
)
def test_validate_code_normalizes(service: AnalyticsService, raw: str, code: str) -> None:
    """Codes are trimmed, upper-cased and look-alike dashes become '-'."""
    assert service.validate_code(raw) == code


@pytest.mark.parametrize("raw", ["", "ab", "-ABC", "ABC-", "DEMO 0001", "A" * 33, "DEMO_0001", "=HYPERLINK(1)"])
def test_validate_code_rejects_bad_formats(service: AnalyticsService, raw: str) -> None:
    """A malformed code is refused with a Russian hint showing the expected format."""
    with pytest.raises(InvalidObjectCode) as exc:
        service.validate_code(raw)
    assert "DEMO-0001" in exc.value.message


async def test_request_writes_a_new_row(service: AnalyticsService, gw: AsyncSheetsGateway) -> None:
    """A request becomes one NEW row with a UUID id, created_at, code, telegram_id and requested_by."""
    job = await service.request(100001, "DEMO-001", "obj-1")
    rows = await gw.table(QUEUE).all()
    assert len(rows) == 1
    row = rows[0]
    assert uuid.UUID(row[QueueCol.ID]) and row[QueueCol.ID] == job.id
    assert row[QueueCol.STATUS] == "NEW" and job.status == "NEW" and not job.existing
    assert row[QueueCol.OBJECT_CODE] == "OBJ-1"
    assert row[QueueCol.TELEGRAM_ID] == "100001"
    assert row[QueueCol.REQUESTED_BY] == "DEMO-001"
    assert row[QueueCol.CREATED_AT] == "2026-11-24 12:00:00"


async def test_duplicate_pending_request_returns_the_existing_job(
    service: AnalyticsService, gw: AsyncSheetsGateway
) -> None:
    """Asking again for a code that is still pending returns that job and writes nothing."""
    first = await service.request(100001, "DEMO-001", "OBJ-1")
    again = await service.request(100001, "DEMO-001", " obj-1")
    assert again.id == first.id and again.existing
    assert len(await gw.table(QUEUE).all()) == 1


async def test_double_tap_queues_once(service: AnalyticsService, gw: AsyncSheetsGateway) -> None:
    """Two simultaneous identical requests of one partner queue a single row."""
    a, b = await asyncio.gather(
        service.request(100001, "DEMO-001", "OBJ-1"), service.request(100001, "DEMO-001", "OBJ-1")
    )
    assert a.id == b.id and a.existing != b.existing
    assert len(await gw.table(QUEUE).all()) == 1


async def test_finished_request_can_be_asked_again(service: AnalyticsService, gw: AsyncSheetsGateway) -> None:
    """Once a request is DONE, the same code queues a fresh request."""
    first = await service.request(100001, "DEMO-001", "OBJ-1")
    await gw.table(QUEUE).write([gw.table(QUEUE).op_upsert(first.id, {QueueCol.STATUS: "DONE"})])
    second = await service.request(100001, "DEMO-001", "OBJ-1")
    assert second.id != first.id and not second.existing


async def test_flood_limit_per_partner(service: AnalyticsService, gw: AsyncSheetsGateway) -> None:
    """A partner with 3 pending requests gets a named error; another partner is not affected."""
    for code in CODES[:3]:
        await service.request(100001, "DEMO-001", code)
    with pytest.raises(TooManyPendingRequests) as exc:
        await service.request(100001, "DEMO-001", CODES[3])
    assert "3 запроса" in exc.value.message
    other = await service.request(100002, "DEMO-002", CODES[3])
    assert other.status == "NEW"
    assert len(await gw.table(QUEUE).all()) == 4


async def test_processing_requests_count_towards_the_limit(service: AnalyticsService, gw: AsyncSheetsGateway) -> None:
    """PROCESSING rows are pending too; DONE and ERROR rows are not."""
    await put_queue_rows(
        gw,
        [
            queue_row("a", object_code="OBJ-1", status="PROCESSING"),
            queue_row("b", object_code="OBJ-2", status="DONE"),
            queue_row("c", object_code="OBJ-3", status="ERROR"),
            queue_row("d", object_code="OBJ-4", status="NEW"),
        ],
    )
    await service.request(100001, "DEMO-001", "OBJ-5")
    with pytest.raises(TooManyPendingRequests):
        await service.request(100001, "DEMO-001", "OBJ-6")


async def test_unknown_code_is_refused_with_a_hint(service: AnalyticsService, gw: AsyncSheetsGateway) -> None:
    """A code absent from Объекты is refused, telling where to find the code; nothing is queued."""
    with pytest.raises(UnknownObjectCode) as exc:
        await service.request(100001, "DEMO-001", "NOPE-404")
    assert "NOPE-404" in exc.value.message and "карточке объекта" in exc.value.message
    assert await gw.table(QUEUE).all() == []


async def test_code_check_matches_staff_typed_codes(gw: AsyncSheetsGateway) -> None:
    """Codes typed by staff in lower case or with spaces still match."""
    await gw.table(OBJECTS).write([gw.table(OBJECTS).op_insert({"code": " demo-0042 ", "type": "квартира"})])
    svc = AnalyticsService(gw, clock=FakeClock())
    assert (await svc.request(7, "X", "DEMO-0042")).object_code == "DEMO-0042"


async def test_partners_only_see_their_own_requests(gw: AsyncSheetsGateway) -> None:
    """list_for and get return the caller's rows only, newest first."""
    clock = FakeClock()
    svc = AnalyticsService(gw, clock=clock)
    mine_old = await svc.request(100001, "DEMO-001", "OBJ-1")
    clock.advance(timedelta(minutes=1))
    mine_new = await svc.request(100001, "DEMO-001", "OBJ-2")
    theirs = await svc.request(100002, "DEMO-002", "OBJ-1")
    assert [j.id for j in await svc.list_for(100001)] == [mine_new.id, mine_old.id]
    assert (await svc.get(100001, mine_old.id)) is not None
    assert await svc.get(100001, theirs.id) is None
    assert await svc.get(100001, "no-such-id") is None
    assert await svc.get(100001, "") is None


async def test_requests_created_in_the_same_second_are_listed_newest_first(
    service: AnalyticsService, gw: AsyncSheetsGateway
) -> None:
    """Requests whose created_at is the same second are listed in creation order (newest first), not by text."""
    same = "2026-11-24 15:10:05"
    ids = ["z-first", "a-second", "m-third"]
    await put_queue_rows(gw, [queue_row(i, **{QueueCol.CREATED_AT: same}) for i in ids])
    await put_queue_rows(gw, [queue_row("older", **{QueueCol.CREATED_AT: "2026-11-24 15:10:04"})])
    assert [j.id for j in await service.list_for(100001)] == ["m-third", "a-second", "z-first", "older"]
