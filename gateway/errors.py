"""Errors raised by the data layer. Services catch `GatewayError`; the subclasses say why."""

from __future__ import annotations


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


class SchemaError(GatewayError):
    """A sheet is missing or lacks a header the schema requires."""


class CellTooLarge(BadRequest):
    """A value exceeds the 50,000-character limit of one Google Sheets cell."""
