"""A fake of the Google Drive v3 API's file download (`GET /drive/v3/files/{fileId}?alt=media`), enough for
the bot to fetch the private report PDFs Apps Script shares with its service account.

Files are added with `put(file_id, data)`; an unknown id answers 404 with Drive's JSON error shape, a file
marked `forbidden` answers 403 (not shared with the caller), and every request is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.fakes._http import HTTPRequest, HTTPResponse, LoopbackHTTPServer

_FILE_PATH = re.compile(r"^/drive/v3/files/([A-Za-z0-9_-]+)$")


def _error(status: int, reason: str, message: str) -> HTTPResponse:
    return HTTPResponse.json(
        status, {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
    )


@dataclass
class FakeDriveServer(LoopbackHTTPServer):
    """Drive file downloads on 127.0.0.1 (point DriveFiles' base_url at `.url`)."""

    files: dict[str, bytes] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    requests: list[HTTPRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def put(self, file_id: str, data: bytes) -> None:
        """Store a file."""
        self.files[file_id] = data

    def _handle(self, request: HTTPRequest) -> HTTPResponse:
        self.requests.append(request)
        match = _FILE_PATH.match(request.path)
        if request.method != "GET" or match is None:
            return _error(404, "notFound", "Not Found")
        file_id = match.group(1)
        if request.query.get("alt") != ["media"]:
            # Without alt=media Drive returns the metadata, not the content: the client must ask for media.
            return HTTPResponse.json(200, {"kind": "drive#file", "id": file_id, "mimeType": "application/pdf"})
        if file_id in self.forbidden:
            return _error(403, "insufficientFilePermissions", "The user does not have sufficient permissions.")
        if file_id not in self.files:
            return _error(404, "notFound", f"File not found: {file_id}.")
        return HTTPResponse(200, self.files[file_id], {"Content-Type": "application/pdf"})
