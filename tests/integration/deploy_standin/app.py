"""Stand-in `marketingbot` CLI for the deploy tests; installed into a release as `bot/cli.py`.

It implements only what deploy.sh relies on: `check` (the smoke test) and `run` (serves GET /healthz on
WEB_HOST:WEB_PORT, or on the socket systemd passes as fd 3 plus SLOT_SOCKET in the slot layout, takes the
leader lease LEADER_LOCK_FILE when it may, and exits cleanly on SIGTERM). Each release decides its own
behaviour through `behaviour.json` beside this file, written by the test harness before the commit.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GATE_WAIT_SECONDS = 60.0


def load_behaviour() -> dict[str, Any]:
    """Reads the release's behaviour switches."""
    data: dict[str, Any] = json.loads(Path(__file__).with_name("behaviour.json").read_text())
    return data


def check(behaviour: dict[str, Any]) -> int:
    """Smoke test: optionally signals that it started and waits at a gate, then passes or fails."""
    started = os.environ.get("STANDIN_CHECK_STARTED")
    if started:
        Path(started).touch()
    gate = os.environ.get("STANDIN_CHECK_GATE")
    if gate:
        # Lets a test hold a deploy inside its smoke test (and so inside the lock) for as long as it needs.
        deadline = time.monotonic() + GATE_WAIT_SECONDS
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    # Like the real check: the data directory must be writable (DATA_DIR, which the unit sets to shared/data).
    data = Path("data") if behaviour.get("data_in_release") else Path(os.environ.get("DATA_DIR", "data"))
    try:
        data.mkdir(parents=True, exist_ok=True)
        (data / ".write-probe").write_text("ok")
    except OSError as exc:
        print(f"✖ data directory writable — cannot write in {data.absolute()} ({exc.strerror})")
        return 1
    if behaviour["check_ok"]:
        print("check: configuration valid, dependencies reachable")
        return 0
    print("check: GOOGLE_SPREADSHEET_ID is not set")
    return 1


ROLE = {"role": "standby"}


def make_handler(behaviour: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    """Builds the request handler answering /healthz for this release."""

    class HealthHandler(BaseHTTPRequestHandler):
        """Answers GET /healthz with the release's status and version."""

        def do_GET(self) -> None:
            """Serves /healthz; everything else is 404."""
            if self.path != "/healthz":
                self.send_error(404)
                return
            healthy = bool(behaviour["healthy"])
            fields = {"status": "ok" if healthy else "degraded", "version": behaviour["version"], "cwd": os.getcwd()}
            if os.environ.get("SLOT"):
                fields.update(role=ROLE["role"], slot=os.environ["SLOT"])
            body = json.dumps(fields).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keeps the service journal quiet."""

    return HealthHandler


class InheritedHTTPServer(ThreadingHTTPServer):
    """Serves on an already listening socket (systemd's fd 3, or a unix socket) instead of binding one."""

    def __init__(self, sock: socket.socket, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler, bind_and_activate=False)
        self.socket = sock

    def get_request(self) -> tuple[socket.socket, Any]:
        """Unix sockets have no peer address; http.server wants a pair."""
        conn, address = self.socket.accept()
        return conn, address or ("unix", 0)


def listening_servers(handler: type[BaseHTTPRequestHandler]) -> list[HTTPServer]:
    """The port's server (inherited fd 3 when LISTEN_PID is ours, else bound), plus the slot's unix socket."""
    if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
        servers: list[HTTPServer] = [InheritedHTTPServer(socket.socket(fileno=3), handler)]
    else:
        host = os.environ.get("WEB_HOST", "127.0.0.1")
        servers = [ThreadingHTTPServer((host, int(os.environ.get("WEB_PORT", "8080"))), handler)]
    slot_socket = os.environ.get("SLOT_SOCKET")
    if slot_socket:
        Path(slot_socket).parent.mkdir(parents=True, exist_ok=True)
        Path(slot_socket).unlink(missing_ok=True)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(slot_socket)
        unix.listen(16)
        servers.append(InheritedHTTPServer(unix, handler))
    return servers


def take_lease(behaviour: dict[str, Any], stop: threading.Event) -> None:
    """Takes LEADER_LOCK_FILE when free (retrying), unless this release is told never to lead."""
    path = os.environ.get("LEADER_LOCK_FILE")
    if not path or not behaviour.get("leads", True):
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    while not stop.is_set():
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stop.wait(0.02)
            continue
        ROLE["role"] = "leader"
        return  # held until the process exits


def run(behaviour: dict[str, Any]) -> int:
    """Serves /healthz until SIGTERM."""
    servers = listening_servers(make_handler(behaviour))
    stop = threading.Event()
    threading.Thread(target=take_lease, args=(behaviour, stop), daemon=True).start()

    def on_term(signum: int, frame: object) -> None:
        stop.set()
        # shutdown() waits for serve_forever() to return, so it must not run on the serving thread.
        for server in servers:
            threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"stand-in {behaviour['version']} serving", flush=True)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}) for s in servers[1:]]
    for thread in threads:
        thread.start()
    servers[0].serve_forever(poll_interval=0.05)
    for thread in threads:
        thread.join()
    for server in servers:
        server.server_close()
    return 0


def main() -> None:
    """Entry point of the `marketingbot` console script."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    behaviour = load_behaviour()
    real = behaviour.get("exec_python")
    if real:
        # The real app of the worktree under test, in the release directory, with the unit's environment and
        # fds (the held socket stays fd 3, LISTEN_PID stays right: exec keeps the pid). -I: never import the
        # stand-in `bot` from the working directory.
        os.execv(real, [real, "-u", "-I", "-m", "bot", *sys.argv[1:]])
    if command == "check":
        sys.exit(check(behaviour))
    if command == "run":
        sys.exit(run(behaviour))
    print("usage: marketingbot check|run", file=sys.stderr)
    sys.exit(2)
