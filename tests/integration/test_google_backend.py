"""GoogleSheetsBackend with the real gspread client against the fake Sheets v4 server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import gspread
import pytest
from google.auth.credentials import AnonymousCredentials

from gateway import (
    BadRequest,
    CellTooLarge,
    GatewayError,
    QuotaExceeded,
    SchemaError,
    SheetMissing,
    SheetUnavailable,
    TransientBackendError,
)
from gateway.backends.google import GoogleSheetsBackend, RebasedSession, translate_error
from gateway.schemas import QUEUE, QueueStatus
from tests.fakes.sheets_server import FakeSheetsServer

HEADERS = ["id", "created_at", "object_code", "status"]
STATUSES = [s.value for s in QueueStatus]


class FrozenClock:
    """A clock that only moves when told to."""

    now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def frozen_server() -> Iterator[FakeSheetsServer]:
    """A fake server whose quota window never slides on its own."""
    with FakeSheetsServer(clock=FrozenClock()) as server:
        yield server


async def _open(server: FakeSheetsServer, request_timeout: float = 5.0) -> GoogleSheetsBackend:
    """An opened backend on `server` with the given per-request timeout."""
    backend = GoogleSheetsBackend(server.spreadsheet_id, None, base_url=server.url, timeout=request_timeout)
    await backend.open()
    return backend


@pytest.fixture
async def backend(sheets_server: FakeSheetsServer) -> AsyncIterator[GoogleSheetsBackend]:
    """An opened backend talking anonymously to the fake server."""
    b = await _open(sheets_server)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def queue_sheet(backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer) -> str:
    """A sheet with a header row, created through the backend."""
    await backend.add_sheet("Очередь", HEADERS)
    sheets_server.reset_counters()
    return "Очередь"


# -- sheets ----------------------------------------------------------------------------------------


async def test_open_makes_no_call_and_titles_cost_one(sheets_server: FakeSheetsServer) -> None:
    """open() makes no call (the bot must start during an outage); sheet_titles() is one metadata call."""
    sheets_server.add_sheet("Auth")
    backend = await _open(sheets_server)
    try:
        assert sheets_server.calls == {}
        assert await backend.sheet_titles() == ["Sheet1", "Auth"]
        assert sheets_server.calls == {"metadata": 1}
    finally:
        await backend.close()


async def test_add_sheet_creates_sheet_and_headers_in_one_call(
    backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer
) -> None:
    """add_sheet sends one spreadsheets.batchUpdate that creates the tab with its header row."""
    sheets_server.reset_counters()
    await backend.add_sheet("Обращения", ["Дата", "=not a formula", "Telegram ID"])
    assert sheets_server.calls == {"sheetsBatchUpdate": 1}
    assert sheets_server.values("Обращения") == [["Дата", "=not a formula", "Telegram ID"]]
    assert await backend.sheet_titles() == ["Sheet1", "Обращения"]


async def test_add_sheet_on_existing_title_rewrites_headers(
    backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer
) -> None:
    """Adding a sheet that exists keeps its data and (re)writes the header row, like the local backend."""
    sheets_server.set_values("Auth", [["old"], ["P-1", "+7900"]])
    await backend.add_sheet("Auth", ["Код партнера", "Телефон"])
    assert sheets_server.values("Auth") == [["Код партнера", "Телефон"], ["P-1", "+7900"]]


# -- values ----------------------------------------------------------------------------------------


async def test_round_trip_through_one_batch_call_each(backend: GoogleSheetsBackend, queue_sheet: str) -> None:
    """batch_update writes all pairs in one call; batch_get reads all ranges in one call, in order."""
    await backend.batch_update(
        [(f"'{queue_sheet}'!A2:D2", [["1", "t", "DEMO-0001", "NEW"]]), (f"'{queue_sheet}'!A3", [["2"]])]
    )
    got = await backend.batch_get([f"'{queue_sheet}'!A3:D3", f"'{queue_sheet}'!A1:D1", f"'{queue_sheet}'!A2:D2"])
    assert got == [[["2"]], [HEADERS], [["1", "t", "DEMO-0001", "NEW"]]]


async def test_batch_get_returns_empty_rows_for_empty_ranges_and_trims(
    backend: GoogleSheetsBackend, queue_sheet: str, sheets_server: FakeSheetsServer
) -> None:
    """An empty range reads as []; trailing empty cells and rows are trimmed, inner empty rows kept."""
    sheets_server.set_values(queue_sheet, [HEADERS, ["1", "", ""], [], ["3", "x", "", ""]])
    got = await backend.batch_get([f"'{queue_sheet}'!F1:G9", f"'{queue_sheet}'!A2:D9"])
    assert got == [[], [["1"], [], ["3", "x"]]]
    assert sheets_server.calls["batchGet"] == 1


async def test_empty_batches_make_no_call(backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer) -> None:
    """Nothing to read or write means no HTTP call."""
    sheets_server.reset_counters()
    assert await backend.batch_get([]) == []
    await backend.batch_update([])
    assert sheets_server.calls == {}


@pytest.mark.parametrize(
    "value", ["=1+1", "+79161234567", "@user", "-5", "'quoted", "007", "TRUE", "=IMPORTXML(A1)", "Привет 🏠 «ёлка»"]
)
async def test_values_are_written_raw(
    backend: GoogleSheetsBackend, queue_sheet: str, sheets_server: FakeSheetsServer, value: str
) -> None:
    """User text is sent RAW and stored verbatim: never evaluated, reformatted or stripped."""
    await backend.batch_update([(f"'{queue_sheet}'!C2", [[value]])])
    row = await backend.append(queue_sheet, [["x", value]])
    assert sheets_server.cell(queue_sheet, "C2") == value
    assert sheets_server.cell(queue_sheet, f"B{row}") == value
    assert sheets_server.formula(queue_sheet, "C2") is None
    assert sheets_server.value_input_options == {"RAW": 2}
    assert await backend.batch_get([f"'{queue_sheet}'!C2"]) == [[[value]]]


async def test_a_50000_character_cell_round_trips(backend: GoogleSheetsBackend, queue_sheet: str) -> None:
    """A value of exactly 50,000 characters is accepted and read back whole."""
    value = "ж" * 50_000
    await backend.batch_update([(f"'{queue_sheet}'!A2", [[value]])])
    assert await backend.batch_get([f"'{queue_sheet}'!A2"]) == [[[value]]]


async def test_a_50001_character_cell_is_cell_too_large(
    backend: GoogleSheetsBackend, queue_sheet: str, sheets_server: FakeSheetsServer
) -> None:
    """Google's 400 for an oversized cell becomes CellTooLarge and nothing is written."""
    with pytest.raises(CellTooLarge):
        await backend.batch_update([(f"'{queue_sheet}'!A2", [["ok", "y" * 50_001]])])
    with pytest.raises(CellTooLarge):
        await backend.append(queue_sheet, [["z" * 50_001]])
    assert sheets_server.values(queue_sheet) == [HEADERS]


async def test_unicode_titles_with_quotes_work(backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer) -> None:
    """A title with spaces, an apostrophe and Cyrillic works in every call."""
    title = "База знаний 'Q&A'"
    await backend.add_sheet(title, ["Вопрос", "Ответ"])
    row = await backend.append(title, [["Комиссия?", "3 % ₽"]])
    await backend.batch_update([(f"'База знаний ''Q&A'''!B{row}", [["2,5 %"]])])
    assert await backend.batch_get([f"'База знаний ''Q&A'''!A{row}:B{row}"]) == [[["Комиссия?", "2,5 %"]]]
    await backend.format_sheet(title, ["Вопрос", "Ответ"], {})
    assert sheets_server.sheet_properties(title)["gridProperties"]["frozenRowCount"] == 1


# -- append ----------------------------------------------------------------------------------------


async def test_append_returns_the_first_row_used(
    backend: GoogleSheetsBackend, queue_sheet: str, sheets_server: FakeSheetsServer
) -> None:
    """append answers the row number its first row landed on, counting the header as row 1."""
    assert await backend.append(queue_sheet, [["1"], ["2"]]) == 2
    assert await backend.append(queue_sheet, [["3"]]) == 4
    assert sheets_server.values(queue_sheet) == [HEADERS, ["1"], ["2"], ["3"]]
    assert sheets_server.calls == {"append": 2}
    params = sheets_server.request_log[-1].params
    assert params["valueInputOption"] == ["RAW"] and params["insertDataOption"] == ["INSERT_ROWS"]


async def test_append_reads_unquoted_titles_in_the_answer(
    backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer
) -> None:
    """Google prints plain titles unquoted (Auth!A3:B3); the row number is still found."""
    sheets_server.set_values("Auth", [["code", "phone"], ["P-1", "+7900"]])
    assert await backend.append("Auth", [["P-2", "+7901"]]) == 3
    assert sheets_server.request_log[-1].kind == "append"


async def test_parallel_appends_never_overwrite(
    backend: GoogleSheetsBackend, queue_sheet: str, sheets_server: FakeSheetsServer
) -> None:
    """Twenty concurrent appends get twenty distinct rows, each holding its own data."""
    rows = await asyncio.gather(*(backend.append(queue_sheet, [[f"id-{i}", "t"]]) for i in range(20)))
    assert sorted(rows) == list(range(2, 22))
    stored = sheets_server.values(queue_sheet)
    for i, row in enumerate(rows):
        assert stored[row - 1] == [f"id-{i}", "t"]


async def test_append_after_staff_deleted_rows_in_the_middle(
    backend: GoogleSheetsBackend, queue_sheet: str, sheets_server: FakeSheetsServer
) -> None:
    """Appending lands after the last non-empty row even when a row in the middle was emptied."""
    sheets_server.set_values(queue_sheet, [HEADERS, ["1"], [], ["3"]])
    assert await backend.append(queue_sheet, [["4"]]) == 5


# -- errors ----------------------------------------------------------------------------------------


async def test_quota_429_becomes_quota_exceeded_with_retry_after(frozen_server: FakeSheetsServer) -> None:
    """Past the read quota the server's Retry-After reaches QuotaExceeded.retry_after."""
    backend = await _open(frozen_server)
    try:
        frozen_server.add_sheet("S", ["a"])
        frozen_server.quota_per_minute(reads=1)
        assert await backend.batch_get(["'S'!A1"]) == [[["a"]]]
        with pytest.raises(QuotaExceeded) as caught:
            await backend.batch_get(["'S'!A1"])
        assert caught.value.retry_after == 60
        assert isinstance(caught.value, SheetUnavailable)
    finally:
        await backend.close()


async def test_injected_429_retry_after_is_passed_on(
    backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer
) -> None:
    """A 429 on a write carries its Retry-After hint too."""
    sheets_server.fail_next(1, status=429, retry_after=7)
    with pytest.raises(QuotaExceeded) as caught:
        await backend.append("Sheet1", [["x"]])
    assert caught.value.retry_after == 7


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_transient(backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer, status: int) -> None:
    """Server errors become TransientBackendError, and the call is made exactly once."""
    sheets_server.reset_counters()
    sheets_server.fail_next(1, status=status)
    with pytest.raises(TransientBackendError):
        await backend.batch_get(["'Sheet1'!A1"])
    assert sheets_server.calls == {"batchGet": 1}


async def test_outage_is_transient(backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer) -> None:
    """During an outage every method fails with TransientBackendError."""
    sheets_server.set_outage(True)
    with pytest.raises(TransientBackendError):
        await backend.sheet_titles()
    with pytest.raises(TransientBackendError):
        await backend.batch_update([("'Sheet1'!A1", [["x"]])])


async def test_a_hang_beyond_the_timeout_is_transient(sheets_server: FakeSheetsServer) -> None:
    """A request that gets no answer within the timeout becomes TransientBackendError."""
    backend = await _open(sheets_server, request_timeout=0.3)
    try:
        sheets_server.hang_next(1, seconds=30)
        with pytest.raises(TransientBackendError, match="timed out"):
            await backend.append("Sheet1", [["x"]])
        assert sheets_server.values("Sheet1") == []
    finally:
        await backend.close()


async def test_a_refused_connection_is_transient(sheets_server: FakeSheetsServer) -> None:
    """When nothing listens any more, calls fail with TransientBackendError."""
    backend = await _open(sheets_server)
    try:
        sheets_server.stop()
        with pytest.raises(TransientBackendError):
            await backend.batch_get(["'Sheet1'!A1"])
    finally:
        await backend.close()


async def test_unknown_sheet_in_a_range_is_sheet_missing(backend: GoogleSheetsBackend) -> None:
    """Reading or appending to a sheet that does not exist ("Unable to parse range") is SheetMissing naming it."""
    with pytest.raises(SheetMissing, match="Unable to parse range") as read:
        await backend.batch_get(["'Нет такого'!A1"])
    with pytest.raises(SheetMissing, match="Unable to parse range") as append:
        await backend.append("Нет такого", [["x"]])
    assert read.value.sheet == append.value.sheet == "Нет такого"
    assert "верните лист «Нет такого»" in read.value.fix


async def test_overflowing_a_bounded_range_is_bad_request(backend: GoogleSheetsBackend) -> None:
    """Writing more rows than a bounded range holds is rejected as BadRequest."""
    with pytest.raises(BadRequest):
        await backend.batch_update([("'Sheet1'!A1:B1", [["a"], ["b"]])])


async def test_missing_spreadsheet_is_schema_error(sheets_server: FakeSheetsServer) -> None:
    """The first call on a spreadsheet id the API does not know fails with a SchemaError naming it."""
    backend = GoogleSheetsBackend("no-such-book", None, base_url=sheets_server.url)
    await backend.open()
    with pytest.raises(SchemaError, match="no-such-book"):
        await backend.sheet_titles()
    await backend.close()


def test_credentials_are_required_without_an_emulator() -> None:
    """Without SHEETS_API_BASE_URL a credentials file is mandatory."""
    with pytest.raises(ValueError, match="GOOGLE_CREDENTIALS_FILE"):
        GoogleSheetsBackend("book", None)


async def test_an_unreadable_credentials_file_fails_on_open(sheets_server: FakeSheetsServer) -> None:
    """A missing service-account key file is a GatewayError naming the variable."""
    backend = GoogleSheetsBackend("book", "/nonexistent/key.json", base_url=sheets_server.url)
    with pytest.raises(GatewayError, match="GOOGLE_CREDENTIALS_FILE"):
        await backend.open()


# -- format_sheet ----------------------------------------------------------------------------------


async def test_format_sheet_freezes_bolds_and_adds_dropdowns_in_one_call(
    backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer
) -> None:
    """One batchUpdate freezes row 1, bolds it and puts a strict list dropdown on the status column."""
    await backend.add_sheet(QUEUE.title, list(QUEUE.headers))
    sheets_server.reset_counters()
    await backend.format_sheet(QUEUE.title, list(QUEUE.headers), {"  STATUS ": STATUSES})
    assert sheets_server.calls == {"sheetsBatchUpdate": 1}
    assert sheets_server.sheet_properties(QUEUE.title)["gridProperties"]["frozenRowCount"] == 1
    assert sheets_server.cell_format(QUEUE.title, "A1") == {"textFormat": {"bold": True}}
    assert sheets_server.cell_format(QUEUE.title, "A2") == {}
    status = f"{chr(ord('A') + QUEUE.headers.index('status'))}"
    rule = sheets_server.validation_at(QUEUE.title, f"{status}500")
    assert rule is not None
    assert (rule.condition, rule.values, rule.strict) == ("ONE_OF_LIST", tuple(STATUSES), True)
    assert sheets_server.validation_at(QUEUE.title, f"{status}1") is None
    assert sheets_server.validation_at(QUEUE.title, "A2") is None


async def test_format_sheet_finds_the_column_where_staff_moved_it(
    backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer
) -> None:
    """The dropdown goes on the column whose header matches, wherever it is now."""
    headers = ["Notes", "Статус", "id"]
    sheets_server.add_sheet("Акции", headers)
    await backend.format_sheet("Акции", headers, {"статус": ["READY", "SENT"]})
    rule = sheets_server.validation_at("Акции", "B2")
    assert rule is not None and rule.values == ("READY", "SENT")


async def test_format_sheet_refreshes_ids_for_a_sheet_it_has_not_seen(
    backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer
) -> None:
    """A sheet created behind the backend's back is found by one fresh metadata read."""
    sheets_server.add_sheet("Новый", ["a"])
    sheets_server.reset_counters()
    await backend.format_sheet("Новый", ["a"], {})
    assert sheets_server.calls == {"metadata": 1, "sheetsBatchUpdate": 1}
    assert sheets_server.sheet_properties("Новый")["gridProperties"]["frozenRowCount"] == 1


async def test_format_sheet_errors(backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer) -> None:
    """A missing sheet or a dropdown for a missing column is a SchemaError, and no batchUpdate is sent."""
    sheets_server.add_sheet("Auth", ["Код партнера"])
    sheets_server.reset_counters()
    with pytest.raises(SchemaError, match="Рассылка"):
        await backend.format_sheet("Auth", ["Код партнера"], {"Рассылка": ["да", "нет"]})
    with pytest.raises(SchemaError, match="Нет"):
        await backend.format_sheet("Нет", ["a"], {})
    assert sheets_server.calls["sheetsBatchUpdate"] == 0


async def test_format_sheet_with_a_stale_sheet_id_is_schema_error(
    backend: GoogleSheetsBackend, sheets_server: FakeSheetsServer
) -> None:
    """If the sheet was deleted after its id was cached, format_sheet says so and forgets the id."""
    await backend.add_sheet("Tmp", ["a"])
    sheets_server.delete_sheet("Tmp")
    sheets_server.add_sheet("Tmp", ["a"])
    with pytest.raises(SchemaError, match="no longer exists"):
        await backend.format_sheet("Tmp", ["a"], {})
    await backend.format_sheet("Tmp", ["a"], {})
    assert sheets_server.sheet_properties("Tmp")["gridProperties"]["frozenRowCount"] == 1


# -- request validation with the real client -------------------------------------------------------


def test_the_fake_rejects_a_field_the_api_does_not_define(sheets_server: FakeSheetsServer) -> None:
    """gspread sending an unknown body field gets Google's 400, which maps to BadRequest."""
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    client = gspread.Client(credentials, session=RebasedSession(credentials, sheets_server.url))
    with pytest.raises(gspread.exceptions.APIError) as caught:
        client.http_client.values_batch_update(
            sheets_server.spreadsheet_id, body={"valueInputOption": "RAW", "data": [], "dataa": []}
        )
    assert caught.value.response.status_code == 400
    assert 'Unknown name "dataa"' in caught.value.error["message"]
    assert isinstance(translate_error(caught.value, "test", sheets_server.spreadsheet_id), BadRequest)
