"""The fake Sheets v4 server itself: wire format, Google's value semantics, validation and knobs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.fakes.sheets_server import FakeSheetsServer

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A hand-driven monotonic clock for the quota window."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A frozen clock the test advances by hand."""
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[FakeSheetsServer]:
    """A fake server with a hand-driven clock and two sheets."""
    with FakeSheetsServer("book-1", ("Sheet1", "Обращения 'A'!"), clock=clock) as srv:
        yield srv


def call(
    srv: FakeSheetsServer,
    method: str,
    tail: str,
    params: Any = None,
    body: Any = None,
    timeout: float = 5.0,
    spreadsheet_id: str | None = None,
) -> requests.Response:
    """One raw HTTP request to the fake (tail follows /v4/spreadsheets/{id})."""
    url = f"{srv.url}/v4/spreadsheets/{spreadsheet_id or srv.spreadsheet_id}{tail}"
    return requests.request(method, url, params=params, json=body, timeout=timeout)


def rng(text: str) -> str:
    """A range percent-encoded for the URL path, as gspread does."""
    return quote(text, safe="")


def write(srv: FakeSheetsServer, a1: str, values: list[list[Any]], option: str = "RAW") -> requests.Response:
    """PUT values/{range}."""
    return call(srv, "PUT", f"/values/{rng(a1)}", {"valueInputOption": option}, {"values": values})


def read(srv: FakeSheetsServer, a1: str, **params: str) -> requests.Response:
    """GET values/{range}."""
    return call(srv, "GET", f"/values/{rng(a1)}", params)


# -- values semantics ----------------------------------------------------------------------------


def test_raw_stores_text_verbatim(server: FakeSheetsServer) -> None:
    """RAW keeps formulas, phone numbers, handles and signs exactly as sent."""
    values = [["=1+1", "+79161234567", "@user", "-5", "'quoted", "007"]]
    assert write(server, "Sheet1!A1", values).status_code == 200
    assert read(server, "Sheet1!A1:F1").json()["values"] == values
    assert server.formula("Sheet1", "A1") is None
    assert server.value_input_options == {"RAW": 1}


def test_user_entered_is_visibly_evaluated(server: FakeSheetsServer) -> None:
    """USER_ENTERED evaluates '=1+1', reformats numbers and drops a leading apostrophe, so misuse is detectable."""
    values = [["=1+1", "+79161234567", "-05", "'text", "=FOO(1)", "true"]]
    assert write(server, "Sheet1!A1", values, "USER_ENTERED").status_code == 200
    assert read(server, "Sheet1!A1:F1").json()["values"] == [["2", "79161234567", "-5", "text", "#NAME?", "TRUE"]]
    assert read(server, "Sheet1!A1", valueRenderOption="FORMULA").json()["values"] == [["=1+1"]]
    assert server.formula("Sheet1", "A1") == "=1+1"
    assert server.value_input_options == {"USER_ENTERED": 1}


def test_reads_trim_trailing_empties_but_keep_inner_empty_rows(server: FakeSheetsServer) -> None:
    """Trailing empty cells and rows are dropped; an empty row in the middle comes back as []."""
    server.set_values("Sheet1", [["a", "", ""], ["", ""], ["b", "c", ""], ["", "", ""]])
    body = read(server, "Sheet1!A1:D10").json()
    assert body["values"] == [["a"], [], ["b", "c"]]
    assert body["range"] == "Sheet1!A1:D10"
    assert "values" not in read(server, "Sheet1!A20:B30").json()


def test_null_skips_a_cell_and_empty_string_clears_it(server: FakeSheetsServer) -> None:
    """JSON null leaves a cell unchanged, "" clears it."""
    server.set_values("Sheet1", [["a", "b", "c"]])
    write(server, "Sheet1!A1", [[None, "", "z"]])
    assert server.values("Sheet1") == [["a", "", "z"]]


def test_cell_limit_is_50000_characters(server: FakeSheetsServer) -> None:
    """50,000 characters fit in a cell; 50,001 is a 400 with Google's message and writes nothing."""
    assert write(server, "Sheet1!A1", [["x" * 50_000]]).status_code == 200
    response = write(server, "Sheet1!A2", [["ok", "y" * 50_001]])
    assert response.status_code == 400
    assert "more than the maximum of 50000 characters" in response.json()["error"]["message"]
    assert server.values("Sheet1") == [["x" * 50_000]]


def test_one_cell_range_is_an_anchor_but_a_box_is_a_limit(server: FakeSheetsServer) -> None:
    """A single-cell range takes any block of values; a larger range rejects values that overflow it."""
    assert write(server, "Sheet1!B2", [["a", "b"], ["c", "d"]]).status_code == 200
    response = write(server, "Sheet1!A1:B1", [["a"], ["b"]])
    assert response.status_code == 400
    assert "tried writing to row [2]" in response.json()["error"]["message"]


def test_writes_outside_the_grid_are_rejected(server: FakeSheetsServer) -> None:
    """Writing below the last grid row is 400 "exceeds grid limits", as on a 1000-row sheet."""
    response = write(server, "Sheet1!A1001", [["x"]])
    assert response.status_code == 400
    assert "exceeds grid limits. Max rows: 1000" in response.json()["error"]["message"]


def test_quoted_titles_with_quotes_and_cyrillic(server: FakeSheetsServer) -> None:
    """Titles with spaces, doubled quotes, '!' and Cyrillic resolve; the answer quotes them back."""
    assert write(server, "'Обращения ''A''!'!A1", [["Привет 🏠"]]).status_code == 200
    body = read(server, "'Обращения ''A''!'!A1:B2").json()
    assert body["values"] == [["Привет 🏠"]]
    assert body["range"] == "'Обращения ''A''!'!A1:B2"


def test_unknown_sheet_is_unable_to_parse_range(server: FakeSheetsServer) -> None:
    """A range on a missing sheet is 400 "Unable to parse range", like Google."""
    response = read(server, "Nope!A1")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": 400,
        "message": "Unable to parse range: Nope!A1",
        "status": "INVALID_ARGUMENT",
    }


def test_unknown_spreadsheet_is_404(server: FakeSheetsServer) -> None:
    """Another spreadsheet id is 404 NOT_FOUND."""
    response = call(server, "GET", "", spreadsheet_id="other")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


def test_append_inserts_rows_after_the_table(server: FakeSheetsServer) -> None:
    """INSERT_ROWS appends after the last non-empty row, grows the grid and names the rows used."""
    server.set_values("Sheet1", [["h1", "h2"], ["a", "b"]])
    params = {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"}
    body = call(server, "POST", f"/values/{rng('Sheet1')}:append", params, {"values": [["c"], ["d", "e"]]}).json()
    assert body["tableRange"] == "Sheet1!A1:B2"
    assert body["updates"]["updatedRange"] == "Sheet1!A3:B4"
    assert server.values("Sheet1") == [["h1", "h2"], ["a", "b"], ["c"], ["d", "e"]]
    assert server.sheet_properties("Sheet1")["gridProperties"]["rowCount"] == 1002


def test_values_batch_update_is_all_or_nothing(server: FakeSheetsServer) -> None:
    """If one range of values:batchUpdate is bad, no range is written."""
    body = {
        "valueInputOption": "RAW",
        "data": [{"range": "Sheet1!A1", "values": [["a"]]}, {"range": "Missing!A1", "values": [["b"]]}],
    }
    assert call(server, "POST", "/values:batchUpdate", None, body).status_code == 400
    assert server.values("Sheet1") == []


def test_batch_get_answers_in_request_order(server: FakeSheetsServer) -> None:
    """values:batchGet returns one ValueRange per requested range, in order."""
    server.set_values("Sheet1", [["a"], ["b"]])
    body = call(server, "GET", "/values:batchGet", {"ranges": ["Sheet1!A2", "Sheet1!C1", "Sheet1!A1"]}).json()
    assert [vr.get("values") for vr in body["valueRanges"]] == [[["b"]], None, [["a"]]]


def test_spreadsheet_batch_update_is_atomic(server: FakeSheetsServer) -> None:
    """A failing request in spreadsheets.batchUpdate undoes the ones before it."""
    requests_ = [{"addSheet": {"properties": {"title": "New"}}}, {"deleteSheet": {"sheetId": 999}}]
    response = call(server, "POST", ":batchUpdate", None, {"requests": requests_})
    assert response.status_code == 400
    assert "No grid with id: 999" in response.json()["error"]["message"]
    assert "New" not in server.sheet_titles()


def test_format_requests_are_recorded(server: FakeSheetsServer) -> None:
    """Frozen rows, bold header and a list validation land in the fake's state."""
    requests_ = [
        {
            "updateSheetProperties": {
                "properties": {"sheetId": 0, "gridProperties": {"frozenRowCount": 1}},
                "fields": "gridProperties.frozenRowCount",
            }
        },
        {
            "repeatCell": {
                "range": {"sheetId": 0, "startRowIndex": 0, "endRowIndex": 1},
                "cell": {"userEnteredFormat": {"textFormat": {"bold": True, "italic": True}}},
                "fields": "userEnteredFormat(textFormat/bold)",
            }
        },
        {
            "setDataValidation": {
                "range": {"sheetId": 0, "startRowIndex": 1, "startColumnIndex": 2, "endColumnIndex": 3},
                "rule": {"condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": "NEW"}]}},
            }
        },
    ]
    assert call(server, "POST", ":batchUpdate", None, {"requests": requests_}).status_code == 200
    assert server.sheet_properties("Sheet1")["gridProperties"]["frozenRowCount"] == 1
    assert server.cell_format("Sheet1", "Z1") == {"textFormat": {"bold": True}}
    assert server.cell_format("Sheet1", "A2") == {}
    rule = server.validation_at("Sheet1", "C500")
    assert rule is not None and rule.values == ("NEW",) and rule.range == "Sheet1!C2:C"
    assert server.validation_at("Sheet1", "C1") is None


def test_metadata_honours_the_fields_selector(server: FakeSheetsServer) -> None:
    """spreadsheets.get returns only what `fields` selects."""
    body = call(server, "GET", "", {"fields": "sheets.properties(title,sheetId)"}).json()
    assert body == {
        "sheets": [
            {"properties": {"sheetId": 0, "title": "Sheet1"}},
            {"properties": {"sheetId": 1, "title": "Обращения 'A'!"}},
        ]
    }


# -- request validation (from the discovery document) --------------------------------------------


def test_unknown_query_parameter_is_rejected(server: FakeSheetsServer) -> None:
    """A query parameter the method does not define is a 400."""
    response = call(server, "GET", f"/values/{rng('Sheet1!A1')}", {"bogus": "1"})
    assert response.status_code == 400
    assert 'Unknown name "bogus"' in response.json()["error"]["message"]


def test_bad_enum_value_is_rejected(server: FakeSheetsServer) -> None:
    """valueInputOption must be one of the API's enum values."""
    response = write(server, "Sheet1!A1", [["x"]], option="EVAL")
    assert response.status_code == 400
    assert server.values("Sheet1") == []


def test_missing_value_input_option_is_rejected(server: FakeSheetsServer) -> None:
    """A values write without valueInputOption is a 400, as Google requires it."""
    response = call(server, "PUT", f"/values/{rng('Sheet1!A1')}", None, {"values": [["x"]]})
    assert response.status_code == 400
    assert "valueInputOption" in response.json()["error"]["message"]


def test_unknown_nested_body_field_is_rejected(server: FakeSheetsServer) -> None:
    """An unknown field deep in a batchUpdate body is a 400 naming where it is."""
    body = {"requests": [{"addSheet": {"properties": {"title": "X", "colour": "red"}}}]}
    response = call(server, "POST", ":batchUpdate", None, body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"colour\" at 'requests[0].add_sheet.properties': "
        "Cannot find field."
    )
    assert "X" not in server.sheet_titles()


def test_unknown_request_kind_is_rejected(server: FakeSheetsServer) -> None:
    """A batchUpdate request kind the API does not define is a 400."""
    response = call(server, "POST", ":batchUpdate", None, {"requests": [{"makeCoffee": {}}]})
    assert response.status_code == 400


def test_snake_case_body_fields_are_accepted(server: FakeSheetsServer) -> None:
    """Google's JSON parser accepts proto field names too (value_input_option)."""
    body = {"value_input_option": "RAW", "data": [{"range": "Sheet1!A1", "major_dimension": "ROWS", "values": [["x"]]}]}
    assert call(server, "POST", "/values:batchUpdate", None, body).status_code == 200
    assert server.values("Sheet1") == [["x"]]


def test_unknown_paths_and_methods_are_404(server: FakeSheetsServer) -> None:
    """Paths or HTTP methods the API does not have are 404."""
    assert call(server, "GET", "/nothing").status_code == 404
    assert call(server, "DELETE", f"/values/{rng('Sheet1!A1')}").status_code == 404
    assert server.calls["unknown"] == 2


# -- knobs ---------------------------------------------------------------------------------------


def test_read_quota_answers_429_with_retry_after(server: FakeSheetsServer, clock: Clock) -> None:
    """Past the per-minute read quota: 429 RESOURCE_EXHAUSTED with Retry-After until the window slides."""
    server.quota_per_minute(reads=2)
    assert read(server, "Sheet1!A1").status_code == 200
    clock.now += 30
    assert read(server, "Sheet1!A1").status_code == 200
    refused = read(server, "Sheet1!A1")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert write(server, "Sheet1!A1", [["w"]]).status_code == 200  # writes have their own quota
    clock.now += 30
    assert read(server, "Sheet1!A1").status_code == 200
    assert read(server, "Sheet1!A1").status_code == 429


def test_write_quota_is_separate(server: FakeSheetsServer) -> None:
    """The write quota refuses writes but not reads."""
    server.quota_per_minute(writes=1)
    assert write(server, "Sheet1!A1", [["a"]]).status_code == 200
    assert write(server, "Sheet1!A1", [["b"]]).status_code == 429
    assert read(server, "Sheet1!A1").json()["values"] == [["a"]]


def test_fail_next_injects_errors_without_touching_state(server: FakeSheetsServer) -> None:
    """fail_next answers the next requests with the given status and Google's error body."""
    server.fail_next(2, status=500)
    first, second = write(server, "Sheet1!A1", [["a"]]), write(server, "Sheet1!A1", [["a"]])
    assert (first.status_code, second.status_code) == (500, 500)
    assert first.json()["error"]["status"] == "INTERNAL"
    assert server.values("Sheet1") == []
    assert write(server, "Sheet1!A1", [["a"]]).status_code == 200


def test_fail_next_429_carries_retry_after(server: FakeSheetsServer) -> None:
    """An injected 429 can carry a Retry-After header."""
    server.fail_next(1, status=429, retry_after=7)
    response = read(server, "Sheet1!A1")
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")


def test_outage_answers_503_until_lifted(server: FakeSheetsServer) -> None:
    """During an outage every request is 503 UNAVAILABLE."""
    server.set_outage(True)
    assert read(server, "Sheet1!A1").status_code == 503
    assert call(server, "GET", "").status_code == 503
    server.set_outage(False)
    assert read(server, "Sheet1!A1").status_code == 200


def test_hang_drops_the_request_unapplied(server: FakeSheetsServer) -> None:
    """A hung request times the client out and has no effect."""
    server.hang_next(1, seconds=30)
    with pytest.raises(requests.Timeout):
        call(server, "PUT", f"/values/{rng('Sheet1!A1')}", {"valueInputOption": "RAW"}, {"values": [["a"]]}, 0.2)
    assert server.values("Sheet1") == []
    assert read(server, "Sheet1!A1").status_code == 200


def test_hang_applied_lands_the_write_but_loses_the_answer(server: FakeSheetsServer) -> None:
    """With applied=True the write takes effect although the client timed out."""
    server.hang_next(1, seconds=30, applied=True)
    with pytest.raises(requests.Timeout):
        call(server, "PUT", f"/values/{rng('Sheet1!A1')}", {"valueInputOption": "RAW"}, {"values": [["a"]]}, 0.5)
    assert server.values("Sheet1") == [["a"]]


def test_latency_delays_every_request(server: FakeSheetsServer) -> None:
    """With latency above the client's timeout, requests time out."""
    server.set_latency(1.0)
    with pytest.raises(requests.Timeout):
        call(server, "GET", "", timeout=0.1)
    server.set_latency(0)
    assert call(server, "GET", "").status_code == 200


def test_counters_by_kind_and_reset(server: FakeSheetsServer) -> None:
    """calls, reads, writes and bytes count what was received; reset_counters zeroes them."""
    call(server, "GET", "")
    read(server, "Sheet1!A1")
    call(server, "GET", "/values:batchGet", {"ranges": ["Sheet1!A1"]})
    write(server, "Sheet1!A1", [["a"]])
    call(server, "POST", f"/values/{rng('Sheet1')}:append", {"valueInputOption": "RAW"}, {"values": [["b"]]})
    call(server, "POST", f"/values/{rng('Sheet1!A1')}:clear")
    call(server, "POST", ":batchUpdate", None, {"requests": []})
    assert server.calls == {
        "metadata": 1,
        "get": 1,
        "batchGet": 1,
        "update": 1,
        "append": 1,
        "clear": 1,
        "sheetsBatchUpdate": 1,
    }
    assert (server.reads, server.writes) == (3, 4)
    assert server.bytes_sent > 0 and server.bytes_received > 0
    assert [r.kind for r in server.request_log][-1] == "sheetsBatchUpdate"
    server.reset_counters()
    assert (server.calls, server.reads, server.writes, server.bytes_sent) == ({}, 0, 0, 0)


def test_sort_rows_simulates_a_staff_sort(server: FakeSheetsServer) -> None:
    """sort_rows keeps the header, sorts numbers before text and leaves empty keys last."""
    server.set_values("Sheet1", [["id", "name"], ["b", "x"], ["", "empty"], ["10", "y"], ["a", "z"], ["9", "w"]])
    server.sort_rows("Sheet1", "ID")
    assert server.values("Sheet1") == [["id", "name"], ["9", "w"], ["10", "y"], ["a", "z"], ["b", "x"], ["", "empty"]]
    server.sort_rows("Sheet1", 2, descending=True)
    assert [r[1] for r in server.values("Sheet1")[1:]] == ["z", "y", "x", "w", "empty"]


def test_standalone_cli_serves_with_a_quota(tmp_path: Path) -> None:
    """`python -m tests.fakes.sheets_server --port 0 --quota 1` serves and enforces the quota."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sheets_server", "--port", "0", "--quota", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split()[0]
        first = requests.get(f"{url}/v4/spreadsheets/fake-spreadsheet", timeout=5)
        second = requests.get(f"{url}/v4/spreadsheets/fake-spreadsheet", timeout=5)
        assert (first.status_code, second.status_code) == (200, 429)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
