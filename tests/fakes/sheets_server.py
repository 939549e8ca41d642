"""FakeSheetsServer: a real HTTP server on 127.0.0.1 speaking the Google Sheets v4 REST API.

The real client (gspread over requests) is pointed at it, so tests exercise the real wire
protocol. Requests are checked against the Sheets v4 discovery document (unknown paths → 404,
unknown query parameters / body fields / bad enum values → 400, Google's wording). Values follow
Google's semantics (see ``sheets_model``); knobs inject quota 429s, 5xx, outages, latency and
hangs; counters and helpers let tests inspect and edit the state directly (as staff would).

RAW stores text verbatim. USER_ENTERED is emulated *visibly* so a test can tell it was used:
``=1+1`` is stored as a formula and reads back ``2`` (``formula()`` returns ``=1+1``), numbers are
re-formatted (``+79161234567`` → ``79161234567``), a leading apostrophe is dropped; the
``value_input_options`` counter also tallies every option received.

Run standalone for benchmarks::

    python -m tests.fakes.sheets_server --port 8090 --latency 0.05 --quota 60
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes._http import LoopbackHandler, LoopbackServer
from tests.fakes.sheets_discovery import ApiMethod, DiscoveryError, SheetsDiscovery
from tests.fakes.sheets_model import (
    WORKBOOK_CELL_LIMIT,
    ApiError,
    Bounds,
    Formula,
    Number,
    Spreadsheet,
    col_letters,
    deep_merge,
    format_range,
    parse_field_mask,
    quote_title,
    shown,
    sort_block,
    trim_rows,
)

WINDOW_SECONDS = 60.0

KIND_BY_METHOD = {
    "sheets.spreadsheets.get": "metadata",
    "sheets.spreadsheets.values.get": "get",
    "sheets.spreadsheets.values.batchGet": "batchGet",
    "sheets.spreadsheets.values.update": "update",
    "sheets.spreadsheets.values.append": "append",
    "sheets.spreadsheets.values.batchUpdate": "batchUpdate",
    "sheets.spreadsheets.values.clear": "clear",
    "sheets.spreadsheets.values.batchClear": "batchClear",
    "sheets.spreadsheets.batchUpdate": "sheetsBatchUpdate",
}

TOKEN_PATH = "/token"  # where a test's service-account key sends its JWT grant (`token_uri` = url + this)

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_STATUS_MESSAGES = {
    500: "Internal error encountered.",
    502: "Bad gateway.",
    503: "The service is currently unavailable.",
    504: "The request timed out. Please try again.",
    429: "Quota exceeded.",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received: kind, method, path, query, JSON body and status (0: no answer)."""

    kind: str
    http_method: str
    path: str
    params: Mapping[str, list[str]]
    body: Any
    status: int
    at: float = 0.0  # time.monotonic() when it was handled (values read or written), before the answer


@dataclass(frozen=True)
class DataValidation:
    """A data-validation rule as a test sees it: A1 range, condition type and list values."""

    range: str
    condition: str
    values: tuple[str, ...]
    strict: bool
    show_custom_ui: bool


class _Reply(Exception):
    """Internal: finish the request with this status, body and headers."""

    def __init__(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.headers = dict(headers or {})


def error_body(status: int, message: str, reason: str | None = None, details: list[Any] | None = None) -> Any:
    """Google's JSON error envelope."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": reason or _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def apply_field_mask(value: Any, mask: Mapping[str, Any] | None) -> Any:
    """`value` reduced to the fields a parsed selector names (lists are filtered element-wise)."""
    if mask is None or "*" in mask:
        return value
    if isinstance(value, list):
        return [apply_field_mask(v, mask) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: apply_field_mask(value[k], sub) for k, sub in mask.items() if k in value}


class _Handler(LoopbackHandler):
    # Kept explicit (LoopbackHandler sets it too): with Nagle on, delayed ACKs stall each call ~40 ms.
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections are dropped after a minute

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read counters, not access logs."""


class FakeSheetsServer(LoopbackServer):
    """An in-memory Google Sheets v4 API on 127.0.0.1 with fault-injection knobs (thread-safe)."""

    handler_class = _Handler

    def __init__(
        self,
        spreadsheet_id: str = "fake-spreadsheet",
        sheets: Iterable[str] = ("Sheet1",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        discovery: SheetsDiscovery | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self._lock = threading.RLock()
        self._clock = clock
        self._discovery = discovery or SheetsDiscovery.load()
        self._book = Spreadsheet(spreadsheet_id, sheets=sheets)
        # knobs
        self._read_limit: int | None = None
        self._write_limit: int | None = None
        self._read_window: collections.deque[float] = collections.deque()
        self._write_window: collections.deque[float] = collections.deque()
        self._fail_queue: collections.deque[tuple[int, float | None]] = collections.deque()
        self._hang_queue: collections.deque[tuple[float, bool]] = collections.deque()
        self._outage = False
        self._denied = False
        self._latency = 0.0
        self._init_counters()

    def _init_counters(self) -> None:
        self._calls: collections.Counter[str] = collections.Counter()
        self._responses: collections.Counter[int] = collections.Counter()
        self._input_options: collections.Counter[str] = collections.Counter()
        self._reads = 0
        self._writes = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._log: collections.deque[RecordedRequest] = collections.deque(maxlen=10_000)

    # -- lifecycle: start/stop/url/port and the context manager come from LoopbackServer ------------

    @property
    def spreadsheet_id(self) -> str:
        """The id of the one spreadsheet this server holds (others answer 404)."""
        return self._book.spreadsheet_id

    # -- knobs -----------------------------------------------------------------------------------

    def quota_per_minute(self, reads: int | None = None, writes: int | None = None) -> None:
        """Answer 429 past `reads` / `writes` requests in any sliding 60 s window (None: unlimited)."""
        with self._lock:
            self._read_limit, self._write_limit = reads, writes
            self._read_window.clear()
            self._write_window.clear()

    def fail_next(self, n: int = 1, status: int = 503, retry_after: float | None = None) -> None:
        """Answer the next `n` requests with `status` (Google's error body), touching no state."""
        with self._lock:
            self._fail_queue.extend([(status, retry_after)] * n)

    def set_outage(self, down: bool) -> None:
        """While down, every request is answered 503."""
        with self._lock:
            self._outage = down

    def deny_access(self, denied: bool = True) -> None:
        """While denied, every Sheets request is answered 403 PERMISSION_DENIED (the spreadsheet is not shared
        with the caller); the token endpoint keeps working, as Google's does."""
        with self._lock:
            self._denied = denied

    def set_latency(self, seconds: float) -> None:
        """Delay every request by `seconds` before it is handled."""
        with self._lock:
            self._latency = max(0.0, seconds)

    def hang_next(self, n: int = 1, seconds: float = 30.0, *, applied: bool = False) -> None:
        """Hold the next `n` requests for `seconds` (released early by stop()).

        With ``applied=False`` the request then dies without effect (the connection is closed).
        With ``applied=True`` it takes effect first and only the answer is held, like a write that
        landed at Google while the client timed out.
        """
        with self._lock:
            self._hang_queue.extend([(seconds, applied)] * n)

    # -- counters --------------------------------------------------------------------------------

    @property
    def calls(self) -> collections.Counter[str]:
        """Requests received by kind: metadata, get, batchGet, update, append, batchUpdate, clear,
        batchClear, sheetsBatchUpdate (others: their discovery method name, or 'unknown')."""
        with self._lock:
            return collections.Counter(self._calls)

    @property
    def reads(self) -> int:
        """Read requests received (GET)."""
        with self._lock:
            return self._reads

    @property
    def writes(self) -> int:
        """Write requests received (POST/PUT)."""
        with self._lock:
            return self._writes

    @property
    def bytes_sent(self) -> int:
        """Bytes of response bodies sent to clients."""
        with self._lock:
            return self._bytes_sent

    @property
    def bytes_received(self) -> int:
        """Bytes of request bodies received."""
        with self._lock:
            return self._bytes_received

    @property
    def responses(self) -> collections.Counter[int]:
        """Responses sent, by HTTP status."""
        with self._lock:
            return collections.Counter(self._responses)

    @property
    def value_input_options(self) -> collections.Counter[str]:
        """valueInputOption of every values write received (RAW / USER_ENTERED)."""
        with self._lock:
            return collections.Counter(self._input_options)

    @property
    def request_log(self) -> list[RecordedRequest]:
        """The last 10,000 requests, oldest first."""
        with self._lock:
            return list(self._log)

    def reset_counters(self) -> None:
        """Zero every counter and the request log (knobs and state are kept)."""
        with self._lock:
            self._init_counters()

    # -- state helpers (what staff do in the UI) -------------------------------------------------

    def sheet_titles(self) -> list[str]:
        """Titles of the sheets, in order."""
        with self._lock:
            return [s.title for s in self._book.sheets]

    def add_sheet(self, title: str, headers: Sequence[str] = (), rows: int = 1000, cols: int = 26) -> None:
        """Create a sheet (optionally with a header row), as staff would."""
        with self._lock:
            if self._book.find(title) is not None:
                raise ValueError(f"sheet {title!r} exists")
            sheet = self._book.add_sheet(title, rows=rows, cols=max(cols, len(headers)))
            for col, header in enumerate(headers):
                sheet.put(0, col, header)

    def delete_sheet(self, title: str) -> None:
        """Remove a sheet."""
        with self._lock:
            self._book.sheets.remove(self._book.require(title))

    def rename_sheet(self, title: str, new_title: str) -> None:
        """Rename a sheet, as staff would in the tab's menu."""
        with self._lock:
            self._book.require(title).title = new_title

    def protect(self, title: str, a1_range: str | None = None) -> None:
        """Protect a whole sheet or a range of it (``"A1:H1"``): API writes into it are then refused with 403."""
        with self._lock:
            text = quote_title(title) + (f"!{a1_range}" if a1_range else "")
            self._book.protected.append(self._book.resolve(text, check_grid=False))

    def unprotect(self, title: str | None = None) -> None:
        """Remove the protections of one sheet (or of all)."""
        with self._lock:
            self._book.protected = [
                (sheet, b) for sheet, b in self._book.protected if title is not None and sheet.title != title
            ]

    def fill_grid(self, full: bool = True) -> None:
        """Put the workbook at its cell limit (no row can be added), or give it back the normal limit."""
        with self._lock:
            self._book.cell_limit = self._book.total_cells() if full else WORKBOOK_CELL_LIMIT

    def type_number(self, title: str, a1: str, value: float, shown_as: str) -> None:
        """Type a number into a cell as staff would in the UI; `shown_as` is what its number format displays."""
        with self._lock:
            sheet, (row, col) = self._locate(title, a1)
            sheet.row_count = max(sheet.row_count, row + 1)
            sheet.column_count = max(sheet.column_count, col + 1)
            sheet.put(row, col, Number(value, shown_as))

    def set_values(self, title: str, rows: Sequence[Sequence[str]]) -> None:
        """Replace a sheet's contents with `rows` verbatim (creating the sheet if needed)."""
        with self._lock:
            sheet = self._book.find(title) or self._book.add_sheet(title)
            width = max((len(r) for r in rows), default=0)
            sheet.row_count = max(sheet.row_count, len(rows))
            sheet.column_count = max(sheet.column_count, width)
            sheet.cells = [[str(v) for v in r] for r in rows]

    def values(self, title: str) -> list[list[str]]:
        """A sheet's shown values, trimmed like the API returns them."""
        with self._lock:
            sheet = self._book.require(title)
            rows = [[shown(c) for c in line] for line in sheet.cells]
        return trim_rows(rows)

    def cell(self, title: str, a1: str) -> str:
        """The shown value of one cell (``"B7"``)."""
        with self._lock:
            sheet, (row, col) = self._locate(title, a1)
            return shown(sheet.get(row, col))

    def formula(self, title: str, a1: str) -> str | None:
        """The formula source of a cell entered with USER_ENTERED ``=…``, else None."""
        with self._lock:
            sheet, (row, col) = self._locate(title, a1)
            cell = sheet.get(row, col)
            return cell.source if isinstance(cell, Formula) else None

    def set_cell(self, title: str, a1: str, value: str) -> None:
        """Type `value` into one cell, verbatim (a staff edit)."""
        with self._lock:
            sheet, (row, col) = self._locate(title, a1)
            sheet.row_count = max(sheet.row_count, row + 1)
            sheet.column_count = max(sheet.column_count, col + 1)
            sheet.put(row, col, value)

    def sort_rows(self, title: str, by: int | str, *, descending: bool = False, header_rows: int = 1) -> None:
        """Sort the rows below the header by a column (1-based index or header text), as staff do."""
        with self._lock:
            sheet = self._book.require(title)
            if isinstance(by, str):
                headers = [shown(c).strip().casefold() for c in (sheet.cells[0] if sheet.cells else [])]
                try:
                    col = headers.index(by.strip().casefold())
                except ValueError:
                    raise KeyError(f"no header {by!r} in {title!r}") from None
            else:
                col = by - 1
            sort_block(sheet, Bounds(header_rows, None, 0, None), [(col, descending)])

    def insert_rows(self, title: str, before: int, count: int = 1) -> None:
        """Insert `count` blank rows before 1-based row `before`, shifting the rest down."""
        with self._lock:
            sheet = self._book.require(title)
            if before - 1 < len(sheet.cells):
                sheet.cells[before - 1 : before - 1] = [[] for _ in range(count)]
            sheet.row_count += count

    def delete_rows(self, title: str, first: int, count: int = 1) -> None:
        """Delete `count` rows starting at 1-based row `first`, shifting the rest up."""
        with self._lock:
            sheet = self._book.require(title)
            del sheet.cells[first - 1 : first - 1 + count]
            sheet.row_count -= count

    def insert_columns(self, title: str, before: int, count: int = 1) -> None:
        """Insert `count` blank columns before 1-based column `before`, shifting the rest right."""
        with self._lock:
            sheet = self._book.require(title)
            for line in sheet.cells:
                if before - 1 < len(line):
                    line[before - 1 : before - 1] = [""] * count
            sheet.column_count += count

    def sheet_properties(self, title: str) -> dict[str, Any]:
        """SheetProperties as the API reports them (sheetId, gridProperties.frozenRowCount, …)."""
        with self._lock:
            sheet = self._book.require(title)
            return sheet.properties(self._book.sheets.index(sheet))

    def validations(self, title: str) -> list[DataValidation]:
        """Data-validation rules on a sheet, in the order they were set."""
        with self._lock:
            sheet = self._book.require(title)
            return [_validation_view(title, v.bounds, v.rule) for v in sheet.validations]

    def validation_at(self, title: str, a1: str) -> DataValidation | None:
        """The data-validation rule in force on one cell, if any."""
        with self._lock:
            sheet, (row, col) = self._locate(title, a1)
            for v in reversed(sheet.validations):
                if v.bounds.covers(row, col):
                    return _validation_view(title, v.bounds, v.rule)
            return None

    def cell_format(self, title: str, a1: str) -> dict[str, Any]:
        """The userEnteredFormat in force on one cell (every repeatCell/updateCells merged in order)."""
        with self._lock:
            sheet, (row, col) = self._locate(title, a1)
            merged: dict[str, Any] = {}
            for record in sheet.formats:
                if record.bounds.covers(row, col):
                    deep_merge(merged, record.format)
            return merged

    def _locate(self, title: str, a1: str) -> tuple[Any, tuple[int, int]]:
        sheet = self._book.require(title)
        m = re.fullmatch(r"([A-Za-z]{1,3})([0-9]+)", a1.strip())
        if not m:
            raise ValueError(f"not a cell reference: {a1!r}")
        col = 0
        for ch in m.group(1).upper():
            col = col * 26 + ord(ch) - ord("A") + 1
        return sheet, (int(m.group(2)) - 1, col - 1)

    # -- request handling ------------------------------------------------------------------------

    def _serve(self, handler: LoopbackHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        params = parse_qs(split.query, keep_blank_values=True)
        kind = "unknown"
        body: Any = None
        hold: tuple[float, bool] | None = None
        if split.path == TOKEN_PATH and handler.command == "POST":
            # OAuth 2.0 token endpoint for service-account keys whose token_uri points here (a JWT grant).
            self._send(
                handler, _Reply(200, {"access_token": "fake-access-token", "token_type": "Bearer", "expires_in": 3600})
            )
            return
        try:
            try:
                api, path_params = self._discovery.match(handler.command, split.path)
            except DiscoveryError as exc:
                with self._lock:
                    self._calls[kind] += 1
                    self._bytes_received += len(raw)
                raise _Reply(exc.status, error_body(exc.status, exc.message)) from None
            kind = KIND_BY_METHOD.get(api.id, api.id.removeprefix("sheets."))
            is_read = api.http_method == "GET"
            with self._lock:
                self._calls[kind] += 1
                self._bytes_received += len(raw)
                if is_read:
                    self._reads += 1
                else:
                    self._writes += 1
                latency = self._latency
                hold = self._hang_queue.popleft() if self._hang_queue else None
            if latency:
                self._stopping.wait(latency)
            if hold is not None and not hold[1]:
                self._stopping.wait(hold[0])
                handler.close_connection = True
                self._record(kind, handler, split.path, params, None, 0)
                return
            self._inject_faults(is_read)
            body = self._parse_body(raw)
            self._discovery.check_query(api, params)
            body = self._discovery.check_body(api, body)
            if path_params.get("spreadsheetId") != self._book.spreadsheet_id:
                raise _Reply(404, error_body(404, "Requested entity was not found."))
            with self._lock:
                payload = self._dispatch(api, kind, path_params, params, body)
            if "fields" in params:
                try:
                    payload = apply_field_mask(payload, parse_field_mask(params["fields"][0]))
                except ValueError as exc:
                    raise _Reply(400, error_body(400, str(exc))) from None
            reply = _Reply(200, payload)
        except _Reply as r:
            reply = r
        except ApiError as exc:
            reply = _Reply(exc.status, error_body(exc.status, exc.message, exc.reason))
        except DiscoveryError as exc:
            reply = _Reply(exc.status, error_body(exc.status, exc.message))
        except Exception as exc:  # a bug in the fake must surface as a 500, not a dropped socket
            traceback.print_exc()
            reply = _Reply(500, error_body(500, f"fake server error: {exc!r}"))
        if hold is not None:
            self._stopping.wait(hold[0])
        # Record before answering: a client that has its answer must find the request in the log.
        self._record(kind, handler, split.path, params, body, reply.status)
        self._send(handler, reply)

    def _inject_faults(self, is_read: bool) -> None:
        with self._lock:
            if self._denied:
                raise _Reply(403, error_body(403, "The caller does not have permission"))
            if self._outage:
                raise _Reply(503, error_body(503, _STATUS_MESSAGES[503]))
            if self._fail_queue:
                status, retry_after = self._fail_queue.popleft()
                headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after is not None else {}
                message = _STATUS_MESSAGES.get(status, "Injected failure.")
                raise _Reply(status, error_body(status, message), headers)
            limit = self._read_limit if is_read else self._write_limit
            if limit is None:
                return
            window = self._read_window if is_read else self._write_window
            now = self._clock()
            while window and window[0] <= now - WINDOW_SECONDS:
                window.popleft()
            if len(window) >= limit:
                wait = max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
                raise _Reply(429, _quota_body(is_read, limit), {"Retry-After": str(wait)})
            window.append(now)

    @staticmethod
    def _parse_body(raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _Reply(400, error_body(400, f"Invalid JSON payload received. {exc}")) from None

    def _dispatch(
        self, api: ApiMethod, kind: str, path: Mapping[str, str], params: Mapping[str, list[str]], body: Any
    ) -> Any:
        book = self._book
        sid = book.spreadsheet_id

        def param(name: str, default: str) -> str:
            return params.get(name, [default])[0]

        def flag(name: str) -> bool:
            return param(name, "false").lower() == "true"

        body = body or {}
        if kind == "metadata":
            return book.metadata(flag("includeGridData"), params.get("ranges", []))
        if kind == "get":
            return book.read(path["range"], param("majorDimension", "ROWS"), param("valueRenderOption", ""))
        if kind == "batchGet":
            major, render = param("majorDimension", "ROWS"), param("valueRenderOption", "")
            ranges = [book.read(r, major, render) for r in params.get("ranges", [])]
            return {"spreadsheetId": sid, "valueRanges": ranges}
        if kind in ("update", "append"):
            option = self._input_option(param("valueInputOption", ""))
            self._check_body_range(path["range"], body)
            major = body.get("majorDimension") or "ROWS"
            if kind == "update":
                result = book.apply(book.plan_write(path["range"], body.get("values"), option, major))
                if flag("includeValuesInResponse") and "updatedRange" in result:
                    result["updatedData"] = book.read(result["updatedRange"])
                return result
            insert = param("insertDataOption", "OVERWRITE") == "INSERT_ROWS"
            result = book.append(path["range"], body.get("values"), option, insert, major)
            if flag("includeValuesInResponse") and "updatedRange" in result["updates"]:
                result["updates"]["updatedData"] = book.read(result["updates"]["updatedRange"])
            return result
        if kind == "batchUpdate":
            option = self._input_option(body.get("valueInputOption") or "")
            plans = [
                book.plan_write(d.get("range") or "", d.get("values"), option, d.get("majorDimension") or "ROWS")
                for d in body.get("data") or []
            ]
            responses = [book.apply(p) for p in plans]
            if body.get("includeValuesInResponse"):
                for response in responses:
                    if "updatedRange" in response:
                        response["updatedData"] = book.read(response["updatedRange"])
            result = {"spreadsheetId": sid, "responses": responses}
            if responses:
                result.update(
                    totalUpdatedRows=sum(r.get("updatedRows", 0) for r in responses),
                    totalUpdatedColumns=sum(r.get("updatedColumns", 0) for r in responses),
                    totalUpdatedCells=sum(r.get("updatedCells", 0) for r in responses),
                    totalUpdatedSheets=len({p.sheet.sheet_id for p in plans}),
                )
            return result
        if kind == "clear":
            return {"spreadsheetId": sid, "clearedRange": book.clear(path["range"])}
        if kind == "batchClear":
            to_clear = [str(r) for r in body.get("ranges") or []]
            for r in to_clear:
                book.resolve(r)  # all or nothing: fail before clearing anything
            return {"spreadsheetId": sid, "clearedRanges": [book.clear(r) for r in to_clear]}
        if kind == "sheetsBatchUpdate":
            replies = book.batch_update(body.get("requests") or [])
            result = {"spreadsheetId": sid, "replies": replies}
            if body.get("includeSpreadsheetInResponse"):
                result["updatedSpreadsheet"] = book.metadata(
                    bool(body.get("responseIncludeGridData")), body.get("responseRanges") or []
                )
            return result
        raise ApiError(501, f"Method {api.id} is not implemented by the fake Sheets server.", "UNIMPLEMENTED")

    def _input_option(self, option: str) -> bool:
        """Tally a valueInputOption and say whether it is USER_ENTERED."""
        if option not in ("RAW", "USER_ENTERED"):
            raise ApiError(400, f"Invalid valueInputOption: {option or 'INPUT_VALUE_OPTION_UNSPECIFIED'}")
        self._input_options[option] += 1
        return option == "USER_ENTERED"

    def _check_body_range(self, path_range: str, body: Mapping[str, Any]) -> None:
        given = body.get("range")
        if not given:
            return
        (sheet1, bounds1), (sheet2, bounds2) = self._book.resolve(given), self._book.resolve(path_range)
        if sheet1 is not sheet2 or bounds1 != bounds2:
            raise ApiError(
                400,
                f"Invalid values[{given}]: the range in the body does not match the range in the URL ({path_range}).",
            )

    def _send(self, handler: LoopbackHandler, reply: _Reply) -> None:
        data = json.dumps(reply.payload, ensure_ascii=False).encode("utf-8")
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            handler.close_connection = True  # the client gave up (e.g. timed out) before the answer
            return
        with self._lock:
            self._bytes_sent += len(data)

    def _record(
        self, kind: str, handler: LoopbackHandler, path: str, params: Mapping[str, list[str]], body: Any, status: int
    ) -> None:
        with self._lock:
            self._responses[status] += 1
            self._log.append(RecordedRequest(kind, handler.command, path, dict(params), body, status, time.monotonic()))


def _quota_body(is_read: bool, limit: int) -> Any:
    metric = "Read requests" if is_read else "Write requests"
    message = (
        f"Quota exceeded for quota metric '{metric}' and limit '{metric} per minute per user' "
        f"of service 'sheets.googleapis.com' for consumer 'project_number:0'."
    )
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {
                "quota_metric": "sheets.googleapis.com/" + ("read_requests" if is_read else "write_requests"),
                "quota_limit": ("ReadRequests" if is_read else "WriteRequests") + "PerMinutePerUser",
                "quota_limit_value": str(limit),
            },
        }
    ]
    return error_body(429, message, "RESOURCE_EXHAUSTED", details)


def _validation_view(title: str, bounds: Bounds, rule: Mapping[str, Any]) -> DataValidation:
    condition = rule.get("condition") or {}
    values = tuple(str(v.get("userEnteredValue", "")) for v in condition.get("values") or [])
    return DataValidation(
        range=_open_range(title, bounds),
        condition=str(condition.get("type", "")),
        values=values,
        strict=bool(rule.get("strict")),
        show_custom_ui=bool(rule.get("showCustomUi")),
    )


def _open_range(title: str, bounds: Bounds) -> str:
    """A1 text of a rectangle that may be open-ended (``'Auth'!G2:G``)."""
    if bounds.row2 is not None and bounds.col2 is not None:
        return format_range(title, bounds)
    start = col_letters(bounds.col1) + str(bounds.row1 + 1)
    end = (col_letters(bounds.col2 - 1) if bounds.col2 is not None else "") + (
        str(bounds.row2) if bounds.row2 is not None else ""
    )
    return f"{quote_title(title)}!{start}:{end}"


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a fake Sheets API until interrupted (for benchmarks and manual runs)."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.sheets_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--quota", type=int, default=None, help="read and write requests allowed per minute")
    parser.add_argument("--spreadsheet-id", default="fake-spreadsheet")
    parser.add_argument("--sheet", action="append", dest="sheets", help="initial sheet title (repeatable)")
    args = parser.parse_args(argv)
    server = FakeSheetsServer(args.spreadsheet_id, args.sheets or ("Sheet1",), host=args.host, port=args.port)
    server.set_latency(args.latency)
    if args.quota is not None:
        server.quota_per_minute(reads=args.quota, writes=args.quota)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server.start()
    print(f"fake Sheets API on {server.url} (spreadsheet {server.spreadsheet_id})", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"served {sum(server.calls.values())} requests: {dict(server.calls)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
