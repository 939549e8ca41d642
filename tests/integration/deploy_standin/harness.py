"""Drives the real deploy.sh and rollback.sh against a stand-in project in a temporary BASE.

Used by tests/integration/test_deploy.py and bench/deploy.py. The stand-in is a tiny git repo (no
dependencies, an in-tree build backend) whose `marketingbot` serves /healthz; the service manager is
fake_systemctl.py reading the real marketingbot.service. Everything stays on 127.0.0.1 and offline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[2]
DEPLOY_SH = PROJECT_ROOT / "deploy.sh"
ROLLBACK_SH = PROJECT_ROOT / "rollback.sh"
UNIT_FILE = PROJECT_ROOT / "marketingbot.service"
FAKE_SYSTEMCTL = HERE / "fake_systemctl.py"
FAKE_SYSTEMD_RUN = HERE / "fake_systemd_run.py"
SCRIPT_TIMEOUT = 90.0

PYPROJECT = """\
[build-system]
requires = []
build-backend = "standin_build"
backend-path = ["."]

[project]
name = "standin_marketingbot"
version = "0.0.0"
"""

# Variables the scripts read: never inherit them from the caller's environment.
SCRIPT_SETTINGS = (
    "BASE",
    "SERVICE",
    "SYSTEMCTL",
    "KEEP",
    "HEALTH_URL",
    "HEALTH_TIMEOUT",
    "HEALTH_INTERVAL",
    "HEALTH_ACCEPT",
    "REPO",
    "PYTHON",
    "SMOKE_IMPORTS",
    "SMOKE_TIMEOUT",
    "VENV_OPTS",
    "DEPLOY_PIP_OPTS",
    "DEPLOY_LAYOUT",
    "SLOT_SERVICE",
    "SLOT_SOCKET_DIR",
    "LEASE_TIMEOUT",
    "SANDBOX_RUN",
    "UNIT_FILE",
    "CHECK_OPTS",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _OkHealthHandler(BaseHTTPRequestHandler):
    """Answers every GET with 200 {"status": "ok"}."""

    def do_GET(self) -> None:
        """Reports healthy."""
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""


@contextlib.contextmanager
def ok_health_server() -> Iterator[str]:
    """A /healthz that is always ok, for runs that switch `current` without restarting anything; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OkHealthHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


@functools.cache
def fast_venv_opts() -> str:
    """`--without-pip --system-site-packages` when the base interpreter has pip, else "" (ensurepip: ~4 s).

    A release venv then borrows the base interpreter's pip instead of copying one in: same install, 30x faster.
    """
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        opts = ["--without-pip", "--system-site-packages"]
        made = subprocess.run([sys.executable, "-m", "venv", *opts, str(venv)], capture_output=True)
        if made.returncode != 0:
            return ""
        has_pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"], capture_output=True)
        return " ".join(opts) if has_pip.returncode == 0 else ""


@dataclass
class StandinRepo:
    """A git repository holding the stand-in project; each commit is one release."""

    path: Path

    def git(self, *args: str) -> str:
        """Runs git in the repo and returns its stdout."""
        done = subprocess.run(
            ["git", "-c", "user.name=Deploy Test", "-c", "user.email=deploy@test.invalid", *args],
            cwd=self.path,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def create(self) -> None:
        """Initialises the repo with the stand-in sources and stray untracked files."""
        self.path.mkdir(parents=True)
        (self.path / "pyproject.toml").write_text(PYPROJECT)
        shutil.copy(HERE / "build_backend.py", self.path / "standin_build.py")
        (self.path / "bot").mkdir()
        (self.path / "bot" / "__init__.py").write_text('"""Stand-in bot package."""\n')
        shutil.copy(HERE / "app.py", self.path / "bot" / "cli.py")
        (self.path / "gateway").mkdir()
        (self.path / "gateway" / "__init__.py").write_text('"""Stand-in gateway package."""\n')
        (self.path / "releases.md").write_text("# Changelog\n\n## [Unreleased]\n\n")
        self.git("init", "-q", "-b", "main")
        # Untracked files a careless `cp -r` would ship: git archive must leave them out.
        (self.path / "stray.txt").write_text("not tracked\n")
        (self.path / ".env").write_text("SECRET=from-the-developer-laptop\n")

    def commit_release(
        self,
        version: str,
        *,
        check_ok: bool = True,
        healthy: bool = True,
        leads: bool = True,
        exec_python: str | None = None,
        data_in_release: bool = False,
    ) -> str:
        """Commits a release with the given behaviour and a releases.md entry; returns the commit hash.

        `leads=False`: in a slot, it never takes the leader lease. With `exec_python`, the release's
        `marketingbot` runs the real app with that interpreter instead. `data_in_release`: its check writes to
        data/ inside the release (fine outside the unit's sandbox, read-only inside it) instead of DATA_DIR.
        """
        behaviour: dict[str, object] = {
            "version": version,
            "check_ok": check_ok,
            "healthy": healthy,
            "leads": leads,
            "data_in_release": data_in_release,
        }
        if exec_python:
            behaviour["exec_python"] = exec_python
        (self.path / "bot" / "behaviour.json").write_text(json.dumps(behaviour))
        notes = self.path / "releases.md"
        head, rest = notes.read_text().split("## [Unreleased]\n\n", 1)
        entry = f"## [{version}] - 2025-01-01\n\n### Changed\n\n- Stand-in change shipped in {version}.\n\n"
        notes.write_text(f"{head}## [Unreleased]\n\n{entry}{rest}")
        self.git("add", "pyproject.toml", "standin_build.py", "bot", "gateway", "releases.md")
        self.git("commit", "-q", "-m", f"release {version}")
        return self.git("rev-parse", "HEAD")


@dataclass
class Site:
    """A temporary BASE with its shared/ files, a stand-in repo and the environment the scripts run in."""

    root: Path
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.base = self.root / "base"
        self.state = self.root / "systemctl"
        self.repo = StandinRepo(self.root / "repo")
        self.repo.create()
        shared = self.base / "shared"
        shared.mkdir(parents=True)
        (shared / ".env").write_text(f"WEB_HOST=127.0.0.1\nWEB_PORT={self.port}\n")
        (shared / "credentials.json").write_text("{}\n")
        (shared / "chat_memory.db").write_bytes(b"")
        (shared / "data").mkdir()  # DATA_DIR: made by the runbook's setup (and the unit's ExecStartPre)

    def env(self, **overrides: str) -> dict[str, str]:
        """The scripts' environment: stub service manager, offline pip, stand-in imports, short timeouts."""
        env = {key: value for key, value in os.environ.items() if key not in SCRIPT_SETTINGS}
        env.update(
            BASE=str(self.base),
            REPO=str(self.repo.path),
            SERVICE="marketingbot",
            SYSTEMCTL=f"{sys.executable} {FAKE_SYSTEMCTL}",
            # The smoke test's sandbox: the real unit's properties, applied by the stub (read-only release).
            SANDBOX_RUN=f"{sys.executable} {FAKE_SYSTEMD_RUN}",
            UNIT_FILE=str(UNIT_FILE),
            PYTHON=sys.executable,
            VENV_OPTS=fast_venv_opts(),
            DEPLOY_PIP_OPTS="--no-index --no-cache-dir",
            SMOKE_IMPORTS="bot gateway",
            HEALTH_TIMEOUT="10",
            HEALTH_INTERVAL="0.02",
            FAKE_SYSTEMCTL_UNIT=str(UNIT_FILE),
            FAKE_SYSTEMCTL_ROOT=str(self.base),
            FAKE_SYSTEMCTL_STATE=str(self.state),
            FAKE_SYSTEMCTL_LISTEN=f"127.0.0.1:{self.port}",
        )
        env.update(overrides)
        return env

    def run(self, script: Path, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        """Runs a script to completion; stdout and stderr together in `.stdout`."""
        return subprocess.run(
            [str(script), *args],
            env=self.env(**overrides),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=SCRIPT_TIMEOUT,
        )

    def deploy(self, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        """Runs deploy.sh."""
        return self.run(DEPLOY_SH, *args, **overrides)

    def rollback(self, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        """Runs rollback.sh."""
        return self.run(ROLLBACK_SH, *args, **overrides)

    def fake_release(self, name: str, *, activate: bool = False) -> str:
        """A release directory with an executable `marketingbot` but nothing built, for switch-only runs."""
        executable = self.base / "releases" / name / ".venv" / "bin" / "marketingbot"
        executable.parent.mkdir(parents=True)
        executable.write_text("#!/bin/sh\nexit 0\n")
        executable.chmod(0o755)
        if activate:
            (self.base / "current").symlink_to(f"releases/{name}")
        return name

    def current(self) -> str | None:
        """The release `current` points to, or None."""
        link = self.base / "current"
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def releases(self) -> list[str]:
        """Release directory names, oldest first."""
        folder = self.base / "releases"
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def history(self) -> list[list[str]]:
        """Lines of releases/.history split into fields: time, action, activated, left."""
        path = self.base / "releases" / ".history"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def events(self) -> list[str]:
        """The stub service manager's event log, without timestamps."""
        path = self.state / "events.log"
        return [line.split(" ", 1)[1] for line in path.read_text().splitlines()] if path.exists() else []

    def healthz(self) -> dict[str, Any]:
        """GET /healthz of whatever the service manager is running."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data

    def stop_service(self) -> None:
        """Stops the stand-in service, if the stub started one."""
        subprocess.run(
            [sys.executable, str(FAKE_SYSTEMCTL), "stop", "marketingbot"],
            env=self.env(),
            check=False,
            capture_output=True,
            timeout=SCRIPT_TIMEOUT,
        )
