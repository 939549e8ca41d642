"""marketingbot.service confines the bot (DESIGN §5): it writes only shared/data, cannot rewrite its secrets, and
runs with the hardening `systemd-analyze security` asks for."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "marketingbot.service"
SHARED = PurePosixPath("/home/marketing/shared")
SECRETS = (SHARED / ".env", SHARED / "credentials.json")
HARDENING = (
    "PrivateUsers=yes",
    "MemoryDenyWriteExecute=yes",
    "ProcSubset=pid",
    "RemoveIPC=yes",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def directive(name: str) -> list[str]:
    """Every path listed by a directive (possibly repeated), without systemd's `-`/`+` prefixes."""
    out: list[str] = []
    for line in UNIT.read_text().splitlines():
        if line.startswith(f"{name}="):
            out += [p.lstrip("-+") for p in line.split("=", 1)[1].split()]
    return out


def test_the_only_writable_path_is_shared_data() -> None:
    """ReadWritePaths is shared/data alone: no secret lies under a writable path."""
    writable = [PurePosixPath(p) for p in directive("ReadWritePaths")]
    assert writable == [SHARED / "data"]
    for secret in SECRETS:
        assert not any(secret == w or w in secret.parents for w in writable), secret


def test_secrets_are_explicitly_read_only() -> None:
    """.env and credentials.json are listed in ReadOnlyPaths (stays true if ProtectHome is ever relaxed)."""
    read_only = {PurePosixPath(p) for p in directive("ReadOnlyPaths")}
    assert set(SECRETS) <= read_only


def test_hardening_directives_are_present_in_one_block() -> None:
    """PrivateUsers, MemoryDenyWriteExecute, ProcSubset=pid, RemoveIPC and the rest sit in one contiguous block
    (the slot template copies it as a whole)."""
    lines = UNIT.read_text().splitlines()
    for expected in HARDENING:
        assert expected in lines, expected
    start = lines.index("# --- hardening (begin) ---")
    end = lines.index("# --- hardening (end) ---")
    block = lines[start:end]
    for expected in (*HARDENING, "ReadWritePaths=/home/marketing/shared/data"):
        assert expected in block, expected
    assert all(line.strip() for line in block), "no blank line inside the block"


def _mdwe_supported() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", f"import ctypes; print(ctypes.CDLL(None).prctl({PR_SET_MDWE}, 1, 0, 0, 0))"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return probe.stdout.strip() == "0"


MDWE_RUNNER = f"""
import ctypes, mmap, sys
assert ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W+X memory was allowed: the kernel did not apply the policy")
except OSError:
    pass
import bot.app, bot.lifecycle, telegram.ext, google.genai, gspread, google.oauth2.service_account, aiosqlite, uvicorn
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
"""


@pytest.mark.skipif(not hasattr(ctypes, "CDLL") or not _mdwe_supported(), reason="kernel without PR_SET_MDWE")
def test_runtime_works_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """CPython and our dependencies work when W+X memory is refused (the kernel's PR_SET_MDWE, the mechanism
    behind MemoryDenyWriteExecute=yes): PDF rendering, the web app, SQLite and a chat through PTB and Gemini."""
    tests = [
        "tests/unit/test_pdf.py",
        "tests/unit/test_private_files.py",
        "tests/integration/test_web_security.py",
        "tests/e2e/test_chat_e2e.py",
    ]
    res = subprocess.run(
        [sys.executable, "-c", MDWE_RUNNER, *tests], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert " passed" in res.stdout
