"""`marketingbot local` as a subprocess, started as a newcomer would run it: for the e2e tests and bench/startup.py.

The process gets none of the caller's configuration (DESIGN §4 variables are stripped), its data directory in
the working directory, and a free loopback port; `wait_healthy` polls /healthz and `stop` sends SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HEALTH_DEADLINE = 30.0
STOP_DEADLINE = 20.0
# Variables of DESIGN §4 that would change what `marketingbot local` does: unset, as on a newcomer's machine.
CONFIG_VARS = (
    "TELEGRAM_BOT_TOKEN",
    "GEMINI_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AI_PROVIDER",
    "SHEETS_BACKEND",
    "WEBAPP_URL",
    "WEBHOOK_URL",
    "TELEGRAM_API_BASE_URL",
    "STAFF_CHAT_ID",
    "ADMIN_TELEGRAM_IDS",
    "DAILY_AI_LIMIT",
    "OPERATOR_POLL_SECONDS",
    "WEB_HOST",
    "LOG_LEVEL",
)


class LocalStackError(RuntimeError):
    """The process exited early, did not answer /healthz in time, or outlived SIGTERM."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(data_dir: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment: no secrets or configuration from the caller, the local store in `data_dir`."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update(
        WEB_PORT=str(port),
        LOCAL_DB_PATH=str(data_dir / "marketingbot.db"),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1",
        **(extra or {}),
    )
    return env


@dataclass
class LocalStack:
    """One `python -m bot local` process and where it lives."""

    workdir: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    healthy_after: float = 0.0

    @property
    def url(self) -> str:
        """The Mini App's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self) -> dict[str, Any]:
        """Poll /healthz until it answers 200 (LocalStackError at the deadline or if the process dies); the body.

        Sets `healthy_after`: seconds from spawning to that answer.
        """
        deadline = self.started_at + HEALTH_DEADLINE
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise LocalStackError(f"marketingbot local exited with {self.process.returncode}:\n{self.log()}")
                with contextlib.suppress(httpx.TransportError):
                    response = client.get(self.url + "/healthz")
                    if response.status_code == 200:
                        self.healthy_after = time.perf_counter() - self.started_at
                        body: dict[str, Any] = response.json()
                        return body
                time.sleep(0.01)
        raise LocalStackError(f"/healthz did not answer within {HEALTH_DEADLINE}s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM; the exit code (killed, and LocalStackError, if still running after the deadline)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
            raise LocalStackError(f"no exit within {STOP_DEADLINE}s of SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL if still running, and reap."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def sheet(self, title: str) -> list[list[str]]:
        """A sheet as the staff console's API returns it (header row first)."""
        response = httpx.get(f"{self.url}/staff/api/sheets/{title}", timeout=5.0)
        response.raise_for_status()
        rows: list[list[str]] = response.json()["rows"]
        return rows


def spawn_local_stack(
    workdir: Path, log_path: Path, *, extra: dict[str, str] | None = None, python_flags: tuple[str, ...] = ()
) -> LocalStack:
    """Start `python -m bot local` in `workdir` (data in workdir/data), output appended to `log_path`.

    The port is WEB_PORT from `extra` when given (a caller that must know it in advance), else a free one.
    """
    extra = dict(extra or {})
    port = int(extra.pop("WEB_PORT", 0)) or free_port()
    with log_path.open("ab") as log_file:  # the child keeps its own copy of the descriptor
        started_at = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, *python_flags, "-m", "bot", "local"],
            cwd=workdir,
            env=stack_env(workdir / "data", port, extra),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return LocalStack(workdir, port, process, log_path, started_at)


@contextlib.contextmanager
def running_local_stack(
    workdir: Path, *, extra: dict[str, str] | None = None, python_flags: tuple[str, ...] = ()
) -> Iterator[LocalStack]:
    """A healthy stack in `workdir` (log in workdir/stack.log), stopped with SIGTERM on exit (killed if stuck)."""
    stack = spawn_local_stack(workdir, workdir / "stack.log", extra=extra, python_flags=python_flags)
    try:
        stack.wait_healthy()
        yield stack
    finally:
        if stack.process.poll() is None:
            with contextlib.suppress(LocalStackError):
                stack.stop()
