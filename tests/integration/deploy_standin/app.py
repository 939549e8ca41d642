"""Stand-in `marketingbot` CLI for the deploy tests; installed into a release as `bot/cli.py`.

It implements only what deploy.sh relies on: `check` (the smoke test) and `run` (serves GET /healthz on
WEB_HOST:WEB_PORT and exits cleanly on SIGTERM). Each release decides its own behaviour through
`behaviour.json` beside this file, written by the test harness before the commit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    if behaviour["check_ok"]:
        print("check: configuration valid, dependencies reachable")
        return 0
    print("check: GOOGLE_SPREADSHEET_ID is not set")
    return 1


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
            body = json.dumps(
                {"status": "ok" if healthy else "degraded", "version": behaviour["version"], "cwd": os.getcwd()}
            ).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keeps the service journal quiet."""

    return HealthHandler


def run(behaviour: dict[str, Any]) -> int:
    """Serves /healthz until SIGTERM."""
    host = os.environ.get("WEB_HOST", "127.0.0.1")
    port = int(os.environ.get("WEB_PORT", "8080"))
    server = ThreadingHTTPServer((host, port), make_handler(behaviour))

    def on_term(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return, so it must not run on the serving thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"stand-in {behaviour['version']} serving on {host}:{port}", flush=True)
    server.serve_forever(poll_interval=0.05)
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
