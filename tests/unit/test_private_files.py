"""The state database, the local store and the reports are private to the service (0600 files, 0700 folders),
whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import StateStore
from gateway.backends.local import LocalSheetsBackend


def mode(path: Path) -> int:
    """The permission bits of a path."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Runs the test under umask 000, the worst case (everything would be world-writable)."""
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.usefixtures("open_umask")
async def test_state_database_and_its_folder_are_private(tmp_path: Path) -> None:
    """chat_memory.db (and its WAL files) are 0600 and a folder created for it is 0700."""
    store = StateStore(tmp_path / "data" / "chat_memory.db")
    await store.open()
    try:
        await store.file.write("CREATE TABLE IF NOT EXISTS t (x)")
        await store.file.write("INSERT INTO t VALUES (1)")
    finally:
        await store.close()
    assert mode(tmp_path / "data") == 0o700
    files = list((tmp_path / "data").iterdir())
    assert files
    for f in files:
        assert mode(f) == 0o600, f


@pytest.mark.usefixtures("open_umask")
async def test_local_store_is_private(tmp_path: Path) -> None:
    """The local store file is 0600 in a 0700 folder."""
    backend = LocalSheetsBackend(tmp_path / "store" / "marketingbot.db")
    await backend.open()
    await backend.close()
    assert mode(tmp_path / "store") == 0o700
    assert mode(tmp_path / "store" / "marketingbot.db") == 0o600


@pytest.mark.usefixtures("open_umask")
async def test_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    """A database left world-readable by an older release is made 0600 when opened."""
    path = tmp_path / "chat_memory.db"
    path.touch(mode=0o666)
    store = StateStore(path)
    await store.open()
    await store.close()
    assert mode(path) == 0o600


@pytest.mark.usefixtures("open_umask")
def test_report_pdfs_and_their_folder_are_private(tmp_path: Path) -> None:
    """A report PDF the worker saves is 0600 inside a 0700 reports/ folder."""
    from bot.services.worker import save_report_pdf

    path = save_report_pdf(tmp_path / "reports", "job-1", b"%PDF-1.4\n")
    assert path.read_bytes() == b"%PDF-1.4\n"
    assert mode(tmp_path / "reports") == 0o700
    assert mode(path) == 0o600
