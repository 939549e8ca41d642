"""The production backend: a Google spreadsheet through gspread 6, one HTTP call per method call.

It neither retries, nor rate-limits, nor trips a breaker: the gateway's resilience layer wraps
it. Its job is to send exactly the right request (values always RAW, appends INSERT_ROWS) and to
turn every failure into the gateway error that says what happened:

=====================================================  =========================================
failure                                                raised
=====================================================  =========================================
HTTP 429                                               QuotaExceeded (retry_after from Retry-After
                                                       or the body's RetryInfo)
HTTP 5xx / 408, request timeout, connection failure    TransientBackendError
HTTP 404 (no such spreadsheet / not shared)            SchemaError
HTTP 400 "Unable to parse range: 'Sheet'!…"            SheetMissing (the sheet was deleted/renamed)
HTTP 400 "… above the limit of 10000000 cells"         GridFull
HTTP 403 "… protected cell or object …"                RangeProtected
HTTP 401 / 403 otherwise                               AccessDenied
HTTP 400 "more than … 50000 characters"                CellTooLarge
other 4xx                                              BadRequest
=====================================================  =========================================

The structural ones (SheetMissing, GridFull, RangeProtected, AccessDenied, SchemaError) are
StructureFaults: staff can fix them, so the gateway keeps the write in the outbox until they do.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import gspread
import requests
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from gspread.exceptions import APIError
from gspread.http_client import HTTPClient
from requests.adapters import HTTPAdapter

from gateway import a1
from gateway.backend import Rows
from gateway.errors import (
    AccessDenied,
    BadRequest,
    CellTooLarge,
    GatewayError,
    GridFull,
    QuotaExceeded,
    RangeProtected,
    SchemaError,
    SheetMissing,
    TransientBackendError,
)
from gateway.schemas import normalize_header

SHEETS_API_ROOT = "https://sheets.googleapis.com"
SCOPES = (
    "https://www.googleapis.com/auth/spreadsheets",
    "https://www.googleapis.com/auth/drive.file",
)
NEW_SHEET_ROWS = 1000
NEW_SHEET_COLUMNS = 26
_MAX_SHEET_ID = 2**31 - 1
_POOL_SIZE = 32  # asyncio's default thread pool is at most 32 workers

log = logging.getLogger(__name__)

T = TypeVar("T")


class RebasedSession(AuthorizedSession):
    """An authorized requests session that sends Sheets API calls to `base_url` instead.

    gspread builds its URLs from module constants; rewriting them here (not patching gspread) is
    how an emulator or a proxy is reached. Connection pooling is sized for the thread pool and
    transport-level retries are off: retrying is the gateway's decision.
    """

    def __init__(self, credentials: Credentials, base_url: str | None = None) -> None:
        super().__init__(credentials)  # type: ignore[no-untyped-call]
        self._base_url = base_url.rstrip("/") if base_url else None
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE, max_retries=0)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send the request, to `base_url` when the URL is the Sheets API's."""
        if self._base_url and isinstance(url, str) and url.startswith(SHEETS_API_ROOT):
            url = self._base_url + url[len(SHEETS_API_ROOT) :]
        response: requests.Response = super().request(method, url, *args, **kwargs)  # type: ignore[no-untyped-call]
        return response


class GoogleSheetsBackend:
    """SheetsBackend on a Google spreadsheet (gspread 6; blocking calls run in worker threads)."""

    name = "google"

    def __init__(
        self,
        spreadsheet_id: str,
        credentials_file: str | None,
        base_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not spreadsheet_id:
            raise ValueError("GOOGLE_SPREADSHEET_ID is required for the google backend")
        if not credentials_file and not base_url:
            raise ValueError(
                "GOOGLE_CREDENTIALS_FILE is required for the google backend "
                "(anonymous access is only allowed with SHEETS_API_BASE_URL)"
            )
        self._spreadsheet_id = spreadsheet_id
        self._credentials_file = credentials_file
        self._base_url = base_url
        self._timeout = timeout
        self._client: gspread.Client | None = None
        self._session: RebasedSession | None = None
        self._sheet_ids: dict[str, int] = {}
        self._ids_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Build the client. No network call: the bot must start (and queue writes) during a Google outage;
        sheet ids are loaded on first need and `marketingbot check` proves the spreadsheet is reachable."""
        await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        credentials = self._credentials()
        session = RebasedSession(credentials, self._base_url)
        client = gspread.Client(auth=credentials, session=session)
        client.set_timeout(self._timeout)
        if self._session is not None:
            self._session.close()  # type: ignore[no-untyped-call]
        self._session, self._client = session, client

    def _credentials(self) -> Credentials:
        if not self._credentials_file:
            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        try:
            credentials: Credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                self._credentials_file, scopes=list(SCOPES)
            )
        except (OSError, ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise GatewayError(
                f"cannot load the service-account key GOOGLE_CREDENTIALS_FILE={self._credentials_file}: {exc}"
            ) from exc
        return credentials

    async def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            self._session.close()  # type: ignore[no-untyped-call]
        self._session = self._client = None

    @property
    def _http(self) -> HTTPClient:
        if self._client is None:
            raise GatewayError("google backend used before open()")
        return self._client.http_client

    # -- SheetsBackend ---------------------------------------------------------------------------

    async def sheet_titles(self) -> list[str]:
        """Titles of the sheets, in tab order (one metadata call; refreshes the sheet-id cache)."""
        ids = await self._call("sheet_titles", self._refresh_sheet_ids)
        return list(ids)

    async def add_sheet(self, title: str, headers: Sequence[str]) -> None:
        """Create the sheet and its header row in one atomic batchUpdate.

        If a sheet with that title already exists, only the header row is (re)written, as the
        local backend does.
        """
        await self._call("add_sheet", lambda: self._add_sheet(title, list(headers)))

    def _add_sheet(self, title: str, headers: list[str]) -> None:
        with self._ids_lock:
            taken = set(self._sheet_ids.values())
        sheet_id = random.randint(1, _MAX_SHEET_ID)
        while sheet_id in taken:
            sheet_id = random.randint(1, _MAX_SHEET_ID)
        grid = {"rowCount": NEW_SHEET_ROWS, "columnCount": max(NEW_SHEET_COLUMNS, len(headers))}
        requests_: list[dict[str, Any]] = [
            {"addSheet": {"properties": {"sheetId": sheet_id, "title": title, "gridProperties": grid}}}
        ]
        if headers:
            # The header row goes in the same call (addressed by the id chosen above), so a sheet
            # never exists without its headers. stringValue is stored verbatim, like RAW.
            requests_.append(
                {
                    "updateCells": {
                        "start": {"sheetId": sheet_id, "rowIndex": 0, "columnIndex": 0},
                        "rows": [{"values": [{"userEnteredValue": {"stringValue": h}} for h in headers]}],
                        "fields": "userEnteredValue",
                    }
                }
            )
        try:
            reply = self._http.batch_update(self._spreadsheet_id, {"requests": requests_})
        except APIError as exc:
            if exc.response.status_code == 400 and "A sheet with the name" in str(exc.error.get("message", "")):
                if headers:
                    self._write_rows([(a1.row_range(title, 1), [headers])])
                return
            raise
        properties = reply["replies"][0]["addSheet"]["properties"]
        with self._ids_lock:
            self._sheet_ids[str(properties["title"])] = int(properties["sheetId"])

    async def batch_get(self, ranges: Sequence[str]) -> list[Rows]:
        """Values of every range in one values:batchGet, in the order asked (missing values → [])."""
        wanted = list(ranges)
        if not wanted:
            return []
        # UNFORMATTED: a number staff typed (a Telegram ID) reads as its digits, not as `100 001` or
        # `1.00001E+5`; dates still read as the text staff see. Text cells (all we write) are unchanged.
        params: dict[str, Any] = {
            "majorDimension": "ROWS",
            "valueRenderOption": "UNFORMATTED_VALUE",
            "dateTimeRenderOption": "FORMATTED_STRING",
        }
        reply = await self._call(
            "batch_get", lambda: self._http.values_batch_get(self._spreadsheet_id, wanted, params=params)
        )
        value_ranges = reply.get("valueRanges") or []
        if len(value_ranges) != len(wanted):
            raise TransientBackendError(
                f"batch_get: asked for {len(wanted)} ranges, the API answered {len(value_ranges)}"
            )
        return [[[_text(v) for v in row] for row in vr.get("values") or []] for vr in value_ranges]

    async def batch_update(self, data: Sequence[tuple[str, Rows]]) -> None:
        """Write every (range, rows) pair RAW in one values:batchUpdate."""
        pairs = list(data)
        if pairs:
            sheets = dict.fromkeys(range_sheet(rng) for rng, _ in pairs)
            await self._call("batch_update", lambda: self._write_rows(pairs), sheets=list(sheets))

    def _write_rows(self, pairs: Sequence[tuple[str, Rows]]) -> None:
        body = {
            "valueInputOption": "RAW",
            "data": [{"range": rng, "majorDimension": "ROWS", "values": rows} for rng, rows in pairs],
        }
        self._http.values_batch_update(self._spreadsheet_id, body=body)

    async def append(self, sheet: str, rows: Rows) -> int:
        """Append rows RAW with INSERT_ROWS after the sheet's table; returns the first row number used."""
        if not rows:
            raise ValueError("append needs at least one row")
        params: dict[str, Any] = {"valueInputOption": "RAW", "insertDataOption": "INSERT_ROWS"}
        body = {"majorDimension": "ROWS", "values": rows}
        reply = await self._call(
            "append",
            lambda: self._http.values_append(self._spreadsheet_id, a1.sheet_range(sheet), params, body),
            sheets=[sheet],
        )
        updated = (reply.get("updates") or {}).get("updatedRange")
        try:
            first = a1.parse(str(updated)).row1
        except ValueError:
            first = None
        if first is None:
            raise TransientBackendError(f"append to {sheet!r}: no updatedRange in the answer ({updated!r})")
        return first

    async def format_sheet(self, sheet: str, headers: Sequence[str], dropdowns: Mapping[str, Sequence[str]]) -> None:
        """Freeze and embolden the header row and add dropdowns, in one spreadsheets.batchUpdate.

        Each dropdown's column is found by matching `headers` case-insensitively; a dropdown for a
        header that is not there is a SchemaError (nothing is sent).
        """
        positions = {normalize_header(h): i for i, h in reversed(list(enumerate(headers)))}
        columns: list[tuple[int, Sequence[str]]] = []
        for name, options in dropdowns.items():
            index = positions.get(normalize_header(name))
            if index is None:
                raise SchemaError(f"sheet {sheet!r} has no column {name!r} for its dropdown", sheet=sheet)
            columns.append((index, options))
        await self._call("format_sheet", lambda: self._format(sheet, columns))

    def _format(self, sheet: str, columns: Sequence[tuple[int, Sequence[str]]]) -> None:
        sheet_id = self._sheet_id(sheet)
        requests_: list[dict[str, Any]] = [
            {
                "updateSheetProperties": {
                    "properties": {"sheetId": sheet_id, "gridProperties": {"frozenRowCount": 1}},
                    "fields": "gridProperties.frozenRowCount",
                }
            },
            {
                "repeatCell": {
                    "range": {"sheetId": sheet_id, "startRowIndex": 0, "endRowIndex": 1},
                    "cell": {"userEnteredFormat": {"textFormat": {"bold": True}}},
                    "fields": "userEnteredFormat.textFormat.bold",
                }
            },
        ]
        for index, options in columns:
            requests_.append(
                {
                    "setDataValidation": {
                        # From row 2 to the end of the sheet: rows appended later are covered too.
                        "range": {
                            "sheetId": sheet_id,
                            "startRowIndex": 1,
                            "startColumnIndex": index,
                            "endColumnIndex": index + 1,
                        },
                        "rule": {
                            "condition": {
                                "type": "ONE_OF_LIST",
                                "values": [{"userEnteredValue": str(v)} for v in options],
                            },
                            "showCustomUi": True,
                            "strict": True,
                        },
                    }
                }
            )
        try:
            self._http.batch_update(self._spreadsheet_id, {"requests": requests_})
        except APIError as exc:
            if "No grid with id" in str(exc.error.get("message", "")):
                # The cached id is stale (the sheet was deleted or re-created): look it up next time.
                with self._ids_lock:
                    self._sheet_ids.pop(sheet, None)
                raise SheetMissing(f"sheet {sheet!r} no longer exists (id {sheet_id})", sheet=sheet) from exc
            raise

    async def delete_rows(self, sheet: str, rows: Sequence[int]) -> None:
        """Delete rows with deleteDimension requests in one atomic spreadsheets.batchUpdate (bottom first,
        so each request's row numbers are still the ones read)."""
        gone = sorted(set(rows), reverse=True)
        if gone:
            await self._call("delete_rows", lambda: self._delete_rows(sheet, gone))

    def _delete_rows(self, sheet: str, rows: Sequence[int]) -> None:
        sheet_id = self._sheet_id(sheet)
        requests_ = [
            {
                "deleteDimension": {
                    "range": {"sheetId": sheet_id, "dimension": "ROWS", "startIndex": r - 1, "endIndex": r}
                }
            }
            for r in rows
        ]
        self._http.batch_update(self._spreadsheet_id, {"requests": requests_})

    # -- helpers ---------------------------------------------------------------------------------

    def _refresh_sheet_ids(self) -> dict[str, int]:
        """Read titles and ids of all sheets (one metadata call) into the cache."""
        meta = self._http.fetch_sheet_metadata(
            self._spreadsheet_id, params={"fields": "sheets.properties(sheetId,title,index)"}
        )
        props = sorted((s["properties"] for s in meta.get("sheets") or []), key=lambda p: int(p.get("index", 0)))
        ids = {str(p["title"]): int(p.get("sheetId", 0)) for p in props}
        with self._ids_lock:
            self._sheet_ids = dict(ids)
        return ids

    def _sheet_id(self, title: str) -> int:
        """The numeric id of a sheet, from the cache or, on a miss, from fresh metadata."""
        with self._ids_lock:
            sheet_id = self._sheet_ids.get(title)
        if sheet_id is None:
            sheet_id = self._refresh_sheet_ids().get(title)
        if sheet_id is None:
            raise SheetMissing(f"the spreadsheet has no sheet {title!r}", sheet=title)
        return sheet_id

    async def _call(self, what: str, fn: Callable[[], T], *, sheets: Sequence[str] = ()) -> T:
        """Run one blocking gspread call in a worker thread, translating its failures.

        `sheets`: the sheets the call writes, to name in a protected-range or cell-limit refusal (Google's
        message does not say which range it was)."""
        try:
            return await asyncio.to_thread(fn)
        except GatewayError:
            raise
        except Exception as exc:
            error = translate_error(exc, what, self._spreadsheet_id)
            if error is None:
                raise
            if isinstance(error, RangeProtected | GridFull) and sheets:
                error = type(error)(str(error), sheet=", ".join(sheets))
            log.debug("sheets %s failed: %s", what, error)
            raise error from exc


def translate_error(exc: BaseException, what: str, spreadsheet_id: str) -> GatewayError | None:
    """The gateway error for a gspread / requests / google-auth failure (None: not ours to map)."""
    if isinstance(exc, APIError):
        status = exc.response.status_code
        message = str(exc.error.get("message", "")) or exc.response.reason or ""
        detail = f"{what}: HTTP {status}: {message}"
        if status == 429:
            return QuotaExceeded(detail, retry_after=_retry_after(exc.response, exc.error))
        if status >= 500 or status == 408:
            return TransientBackendError(detail)
        if status == 404:
            return SchemaError(
                f"{what}: spreadsheet {spreadsheet_id!r} not found — check GOOGLE_SPREADSHEET_ID and that it "
                f"is shared with the service account (HTTP 404: {message})",
                fix="проверьте GOOGLE_SPREADSHEET_ID и что таблица открыта сервисному аккаунту",
            )
        if "50000 characters" in message or f"{a1.MAX_CELL_CHARS} characters" in message:
            return CellTooLarge(detail)
        if status == 400 and message.startswith(_UNPARSABLE):
            sheet = range_sheet(message[len(_UNPARSABLE) :])
            return SheetMissing(f"{what}: the spreadsheet has no sheet {sheet!r} ({message})", sheet=sheet)
        if status == 400 and "limit of" in message and "cells" in message:
            return GridFull(detail)
        if status == 403 and "protected" in message.lower():
            return RangeProtected(detail)
        if status in (401, 403):
            return AccessDenied(f"{what}: access denied to spreadsheet {spreadsheet_id!r} (HTTP {status}: {message})")
        return BadRequest(detail)
    if isinstance(exc, requests.Timeout):
        return TransientBackendError(f"{what}: timed out: {exc}")
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return TransientBackendError(f"{what}: connection failed: {exc}")
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        return TransientBackendError(f"{what}: the API answered something that is not JSON: {exc}")
    if isinstance(exc, requests.RequestException):
        return BadRequest(f"{what}: {exc}")
    if isinstance(exc, auth_exceptions.TransportError):
        return TransientBackendError(f"{what}: cannot reach the token endpoint: {exc}")
    if isinstance(exc, auth_exceptions.RefreshError):
        if exc.retryable:
            return TransientBackendError(f"{what}: token refresh failed: {exc}")
        return BadRequest(f"{what}: the service account was refused a token: {exc}")
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return BadRequest(f"{what}: authentication failed: {exc}")
    if isinstance(exc, KeyError | TypeError | ValueError):
        return TransientBackendError(f"{what}: unexpected answer from the API: {exc!r}")
    return None


_UNPARSABLE = "Unable to parse range: "


def range_sheet(text: str) -> str:
    """The sheet title an A1 range names ('' when it names none): `'Архив'!1:1` → `Архив`."""
    text = text.strip()
    if text.startswith("'"):
        out, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(text[i])
            i += 1
        return "".join(out)
    return text.partition("!")[0] if "!" in text else text


def _retry_after(response: requests.Response, error: Mapping[str, Any]) -> float | None:
    """Seconds to wait, from the Retry-After header (seconds or HTTP date) or a RetryInfo detail."""
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    for detail in error.get("details") or []:
        delay = detail.get("retryDelay") if isinstance(detail, Mapping) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                continue
    return None


def _text(value: Any) -> str:
    """A cell as text: strings as they are, numbers (UNFORMATTED_VALUE) as plain digits, never 1e+16."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text else text
    return str(value)
