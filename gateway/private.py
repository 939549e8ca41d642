"""Files only the service may read: folders 0700, files 0600, set explicitly so the umask does not matter."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create `path` (and parents) if missing; a folder created here is 0700. An existing one is left as the
    operator made it (e.g. shared/data, created by deploy.sh)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        with contextlib.suppress(OSError):
            os.chmod(created, DIR_MODE)


def private_file(path: Path) -> None:
    """Create `path` empty if missing, and make it 0600 (tightening a file an older release left readable)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    try:
        with contextlib.suppress(OSError):  # not ours to change (another owner): leave it as it is
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a new 0600 file at `path` (which must not exist)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), FILE_MODE)
        f.write(data)
