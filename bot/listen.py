"""Listening sockets: inherited from systemd (socket activation) and the slot's own probe socket.

With `marketingbot.socket` the port is bound once by systemd and held for the server's life; each release
(slot) receives it as fd 3 under the LISTEN_FDS/LISTEN_PID protocol (sd_listen_fds(3)) and accepts on it.
Two slots accepting on one socket share its queue: a connection waits there while one process stops, it is
never refused. The slot socket (a unix socket in shared/data) reaches one process only, so deploy.sh can
ask a new release whether it is ready before anything is switched.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

SD_LISTEN_FDS_START = 3


class ListenError(Exception):
    """The inherited sockets or the slot socket cannot be used."""


def inherited_sockets(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets systemd passed to this process ([] when none), as sd_listen_fds(unset=1).

    LISTEN_PID must name this process: the variables leak into children, which must not take the fds.
    """
    env = os.environ if environ is None else environ
    fds_text, pid_text = env.get("LISTEN_FDS", ""), env.get("LISTEN_PID", "")
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if not fds_text:
        return []
    try:
        count, pid = int(fds_text), int(pid_text)
    except ValueError:
        raise ListenError(f"LISTEN_FDS={fds_text!r} LISTEN_PID={pid_text!r} are not numbers") from None
    if pid != os.getpid():
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise ListenError(f"inherited fd {fd} is not a socket")
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def bind_slot_socket(path: Path) -> socket.socket:
    """A listening unix socket at `path`, replacing a leftover of an earlier run of the same slot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Only this slot's unit binds this path, and not twice at once: a file here is from a dead process.
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        sock.bind(str(path))
        path.chmod(0o660)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(f"SLOT_SOCKET {path}: {exc}") from None
    sock.setblocking(False)
    return sock
