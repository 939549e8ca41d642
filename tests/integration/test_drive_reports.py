"""Private Apps Script reports (issue 12, item 7): the bot downloads the PDF from Drive with its service account
and sends the file itself; the Mini App links to our own signed copy, never to the private Drive file."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.services.analytics import Job
from bot.services.auth import Partner
from bot.services.queue_poller import make_pdf_loader
from bot.web.app import create_web_app
from bot.web.initdata import sign_init_data
from gateway import DriveFiles, drive_file_id
from tests.fakes.drive_server import FakeDriveServer
from tests.fakes.web_ports import DEMO_ID, MINIMAL_PDF, FakeAnalytics, FakeAuth, FakeChat, ok_health

BASE_URL = "http://127.0.0.1:8080"
FILE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
DRIVE_URL = f"https://drive.google.com/file/d/{FILE_ID}/view?usp=drivesdk"
TOKEN = "123456:drive-reports-test"


@pytest.fixture
def drive_server() -> Iterator[FakeDriveServer]:
    """A running fake Drive API holding one report."""
    with FakeDriveServer() as server:
        server.put(FILE_ID, MINIMAL_PDF)
        yield server


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (DRIVE_URL, FILE_ID),
        (f"https://drive.google.com/open?id={FILE_ID}", FILE_ID),
        (f"https://drive.google.com/uc?id={FILE_ID}&export=download", FILE_ID),
        (f"https://docs.google.com/file/d/{FILE_ID}/edit", FILE_ID),
        ("https://drive.example/file/d/x/view", None),
        ("http://drive.google.com/file/d/abc/view", None),
        (f"{BASE_URL}/reports/job-1.pdf", None),
        ("https://drive.google.com/file/d/../view", None),
    ],
)
def test_drive_file_ids_are_read_from_drive_urls_only(url: str, expected: str | None) -> None:
    """Only https Google Drive URLs give a file id (a safe one)."""
    assert drive_file_id(url) == expected


async def test_a_private_drive_report_is_downloaded_and_cached_privately(
    tmp_path: Path, drive_server: FakeDriveServer
) -> None:
    """The poller's loader fetches the PDF through the Drive API (alt=media), keeps a 0600 copy, and does not
    download it again."""
    drive = DriveFiles(None, base_url=drive_server.url)
    try:
        load = make_pdf_loader(tmp_path / "reports", BASE_URL, drive=drive)
        assert await load(DRIVE_URL) == MINIMAL_PDF
        assert await load(DRIVE_URL) == MINIMAL_PDF
    finally:
        await drive.close()
    assert len(drive_server.requests) == 1
    assert drive_server.requests[0].query["alt"] == ["media"]
    (cached,) = (tmp_path / "reports").iterdir()
    assert cached.read_bytes() == MINIMAL_PDF
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600


@pytest.mark.parametrize("problem", ["missing", "forbidden", "not a pdf"])
async def test_an_unreachable_drive_report_gives_none(
    tmp_path: Path, drive_server: FakeDriveServer, problem: str
) -> None:
    """A file Drive refuses (404/403) or that is not a PDF gives None (the partner then gets the text only)."""
    other = "Zz" + FILE_ID[2:]
    if problem == "forbidden":
        drive_server.put(other, MINIMAL_PDF)
        drive_server.forbidden.add(other)
    elif problem == "not a pdf":
        drive_server.put(other, b"<html>viewer</html>")
    drive = DriveFiles(None, base_url=drive_server.url)
    try:
        load = make_pdf_loader(tmp_path / "reports", BASE_URL, drive=drive)
        assert await load(f"https://drive.google.com/file/d/{other}/view") is None
    finally:
        await drive.close()
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").iterdir())


async def test_the_mini_app_never_links_to_the_private_drive_file(
    tmp_path: Path, drive_server: FakeDriveServer
) -> None:
    """A DONE job with a Drive link shows no link until the bot has the copy, then our own signed link to it."""
    reports = tmp_path / "reports"
    analytics = FakeAnalytics(reports_dir=reports)
    analytics.add(DEMO_ID, Job("j-gas", "DEMO-0007", "DONE", "2026-11-24 10:00:00", "", "Готово", DRIVE_URL, "", ""))
    app = create_web_app(
        chat=FakeChat(),
        analytics=analytics,
        auth=FakeAuth([Partner("DEMO-001", "Демо Партнёр", "+79000000001", DEMO_ID)]),
        bot_token=TOKEN,
        health=ok_health,
        metrics_text=lambda: b"",
        reports_dir=reports,
    )
    headers = {"Authorization": "tma " + sign_init_data(TOKEN, {"id": DEMO_ID, "first_name": "Анна"})}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        before = (await client.get("/api/analytics/j-gas", headers=headers)).json()
        assert before["pdf_url"] is None
        drive = DriveFiles(None, base_url=drive_server.url)
        try:
            assert await make_pdf_loader(reports, BASE_URL, drive=drive)(DRIVE_URL) == MINIMAL_PDF
        finally:
            await drive.close()
        after = (await client.get("/api/analytics/j-gas", headers=headers)).json()
        assert after["pdf_url"].startswith("/reports/") and "drive.google.com" not in after["pdf_url"]
        pdf = await client.get(after["pdf_url"])
        assert pdf.status_code == 200 and pdf.content == MINIMAL_PDF
