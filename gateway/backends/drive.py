"""Downloads of the report PDFs Apps Script keeps private in Drive, shared with the bot's service account only.

One call: `GET https://www.googleapis.com/drive/v3/files/{fileId}?alt=media` with the service account's
credentials (scope `drive.readonly`: `drive.file`, which the Sheets backend uses, covers only files the
service account created itself). `base_url` points it at an emulator or the tests' fake Drive server; with it
and no credentials file, anonymous credentials are used.
"""

from __future__ import annotations

import asyncio
import threading

from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account
from requests import RequestException

from gateway.drive_links import drive_file_id, valid_drive_file_id
from gateway.errors import GatewayError

__all__ = ["DRIVE_SCOPES", "DriveDownloadError", "DriveFiles", "drive_file_id"]

DRIVE_API_ROOT = "https://www.googleapis.com"
DRIVE_SCOPES = ("https://www.googleapis.com/auth/drive.readonly",)
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


class DriveDownloadError(GatewayError):
    """A Drive file could not be downloaded (not shared with us, missing, too large, or Drive unreachable)."""


class DriveFiles:
    """Downloads Drive files as the service account (blocking HTTP in a worker thread, one pooled session)."""

    def __init__(
        self,
        credentials_file: str | None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._credentials_file = credentials_file
        self._root = (base_url or DRIVE_API_ROOT).rstrip("/")
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._session: AuthorizedSession | None = None
        self._lock = threading.Lock()

    async def download(self, file_id: str) -> bytes:
        """The file's content; raises DriveDownloadError."""
        if not valid_drive_file_id(file_id):
            raise DriveDownloadError(f"not a Drive file id: {file_id!r}")
        return await asyncio.to_thread(self._download, file_id)

    def _download(self, file_id: str) -> bytes:
        url = f"{self._root}/drive/v3/files/{file_id}"
        try:
            resp = self._get_session().get(
                url, params={"alt": "media", "supportsAllDrives": "true"}, timeout=self._timeout, stream=True
            )
            try:
                if resp.status_code != 200:
                    raise DriveDownloadError(f"Drive answered {resp.status_code} for file {file_id}")
                data = bytearray()
                for chunk in resp.iter_content(64 * 1024):
                    data += chunk
                    if len(data) > self._max_bytes:
                        raise DriveDownloadError(f"Drive file {file_id} is larger than {self._max_bytes} bytes")
                return bytes(data)
            finally:
                resp.close()
        except (RequestException, auth_exceptions.GoogleAuthError) as exc:
            raise DriveDownloadError(f"Drive unreachable for file {file_id}: {type(exc).__name__}") from exc

    def _get_session(self) -> AuthorizedSession:
        with self._lock:
            if self._session is None:
                self._session = AuthorizedSession(self._credentials())  # type: ignore[no-untyped-call]
            return self._session

    def _credentials(self) -> Credentials:
        if not self._credentials_file:
            return AnonymousCredentials()  # type: ignore[no-untyped-call]
        try:
            credentials: Credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                self._credentials_file, scopes=list(DRIVE_SCOPES)
            )
        except (OSError, ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise DriveDownloadError(f"cannot load the service-account key {self._credentials_file}: {exc}") from exc
        return credentials

    async def close(self) -> None:
        """Close pooled connections."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()  # type: ignore[no-untyped-call]
