"""Errors raised by the data layer. Services catch `GatewayError`; the subclasses say why."""

from __future__ import annotations

from collections.abc import Sequence


class GatewayError(Exception):
    """Base class of every error the gateway raises."""


class SheetUnavailable(GatewayError):
    """The sheet cannot be reached now: breaker open, retries exhausted, timeouts, 5xx."""


class QuotaExceeded(SheetUnavailable):
    """The backend answered 429; `retry_after` carries its Retry-After hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientBackendError(SheetUnavailable):
    """One call failed in a way worth retrying (5xx, timeout, connection reset)."""


class BadRequest(GatewayError):
    """The backend rejected a request as malformed; retrying will not help."""


class RowNotFound(GatewayError):
    """No row carries the requested key."""


class StructureFault(SheetUnavailable):
    """The spreadsheet's structure refuses the call until staff fix it (writes wait in the outbox).

    `sheet` names the sheet involved ('' when it is the whole spreadsheet); `fix` is the remedy in
    Russian, for the staff chat and /readyz.
    """

    fix_template = "исправьте таблицу"

    def __init__(self, message: str, *, sheet: str = "", fix: str | None = None) -> None:
        super().__init__(message)
        self.sheet = sheet
        self.fix = fix or self.fix_template.format(sheet=sheet)


class SchemaError(StructureFault):
    """A sheet is missing or lacks a header the schema requires (`columns`: the headers it lacks, when known)."""

    fix_template = "запустите marketingbot sheets init (или верните заголовки листа «{sheet}»)"

    def __init__(self, message: str, *, sheet: str = "", fix: str | None = None, columns: Sequence[str] = ()) -> None:
        super().__init__(message, sheet=sheet, fix=fix)
        self.columns = tuple(columns)


class SheetMissing(SchemaError):
    """A sheet the call names does not exist (deleted or renamed by staff)."""

    fix_template = "верните лист «{sheet}» (или запустите marketingbot sheets init)"


class RangeProtected(StructureFault):
    """A write hit a protected range (HTTP 403 "protected cell or object")."""

    fix_template = "снимите защиту с диапазона листа «{sheet}» (Данные → Защищённые листы и диапазоны)"


class AccessDenied(StructureFault):
    """The service account may not read or write the spreadsheet (HTTP 401/403)."""

    fix_template = "откройте доступ к таблице сервисному аккаунту (Настройки доступа → Редактор)"


class GridFull(StructureFault):
    """The spreadsheet is at Google's 10,000,000-cell limit: no row can be added."""

    fix_template = "таблица достигла лимита 10 млн ячеек: удалите пустые строки и столбцы или лишние листы"


class CellTooLarge(BadRequest):
    """A value exceeds the 50,000-character limit of one Google Sheets cell."""
