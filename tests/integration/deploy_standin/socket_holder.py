"""What systemd does for `marketingbot.socket`, for the deploy tests: binds the port once and holds it.

`socket_holder.py HOST:PORT BACKLOG CONTROL` listens on HOST:PORT and never accepts; every connection to
the unix socket CONTROL receives the listening socket (SCM_RIGHTS), which fake_systemctl.py passes to a
slot as fd 3. Slots come and go; the port stays bound, so a connection waits in the queue, never refused.
"""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    """Holds the socket until SIGTERM."""
    listen, backlog, control = argv[0], int(argv[1]), Path(argv[2])
    host, _, port = listen.rpartition(":")
    held = socket.create_server((host or "127.0.0.1", int(port)), backlog=backlog)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(control) + ".tmp")
    Path(str(control) + ".tmp").rename(control)  # appears only once it can be connected to
    server.listen(16)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print(f"holding {listen} (backlog {backlog}) for the slots", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            socket.send_fds(conn, [b"fd"], [held.fileno()])


if __name__ == "__main__":
    main(sys.argv[1:])
