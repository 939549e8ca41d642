"""Stub service manager for the deploy tests: `fake_systemctl.py start|stop|restart|reset-failed|is-active UNIT`.

It runs the service the way the REAL unit file says: ExecStart, WorkingDirectory (resolved through the
`current` symlink at start, as systemd does), EnvironmentFile, KillSignal and TimeoutStopSec are read from
marketingbot.service with `/home/marketing` rewritten to the test's BASE. So a unit whose paths do not
match the deploy layout fails these tests too.

Environment: FAKE_SYSTEMCTL_UNIT (the unit file), FAKE_SYSTEMCTL_ROOT (replaces /home/marketing),
FAKE_SYSTEMCTL_STATE (directory for the pid file, the service's output and an event log).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

UNIT_ROOT = "/home/marketing"


class UnitError(Exception):
    """The unit file lacks a setting the stub needs."""


def parse_unit(path: Path, root: str) -> dict[str, list[str]]:
    """Returns the [Service] settings of a unit file, each key with all its values, paths rewritten."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip().replace(UNIT_ROOT, root))
    for key in ("ExecStart", "WorkingDirectory"):
        if key not in settings:
            raise UnitError(f"{path}: no {key}= in [Service]")
    return settings


def read_env_file(path: Path) -> dict[str, str]:
    """Parses KEY=VALUE lines the way systemd's EnvironmentFile does for simple values."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        env[key.strip()] = value.strip().strip("\"'")
    return env


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state not in ("Z", "X")


class FakeSystemctl:
    """Starts and stops one service process as described by its unit file."""

    def __init__(self, unit: Path, root: str, state: Path) -> None:
        self.unit = unit
        self.settings = parse_unit(unit, root)
        self.state = state
        self.pid_file = state / "service.pid"
        state.mkdir(parents=True, exist_ok=True)

    def event(self, text: str) -> None:
        """Appends a line to the event log the tests read."""
        with (self.state / "events.log").open("a") as log:
            log.write(f"{time.time():.6f} {text}\n")

    def running_pid(self) -> int | None:
        """The service's pid if it is running."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if is_alive(pid) else None

    def start(self) -> int:
        """Spawns ExecStart in WorkingDirectory with the EnvironmentFile, like Type=simple."""
        if self.running_pid() is not None:
            return 0
        workdir = self.settings["WorkingDirectory"][-1]
        argv = shlex.split(self.settings["ExecStart"][-1])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        for value in self.settings.get("Environment", []):
            for item in shlex.split(value):
                key, _, val = item.partition("=")
                env[key] = val
        for value in self.settings.get("EnvironmentFile", []):
            optional = value.startswith("-")
            path = Path(value.lstrip("-"))
            if path.exists():
                env.update(read_env_file(path))
            elif not optional:
                print(f"EnvironmentFile {path} not found", file=sys.stderr)
                return 1
        try:
            with (self.state / "journal.log").open("ab") as journal:
                proc = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=journal,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            print(f"Job for {self.unit.name} failed: {exc}", file=sys.stderr)
            return 1
        self.pid_file.write_text(str(proc.pid))
        self.event(f"start {os.path.realpath(workdir)} pid={proc.pid}")
        return 0

    def stop(self) -> int:
        """Sends KillSignal, waits up to TimeoutStopSec, then SIGKILL."""
        pid = self.running_pid()
        if pid is not None:
            signame = self.settings.get("KillSignal", ["SIGTERM"])[-1]
            timeout = float(self.settings.get("TimeoutStopSec", ["90"])[-1].rstrip("s"))
            os.kill(pid, getattr(signal, signame))
            deadline = time.monotonic() + timeout
            while is_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)
                self.event(f"kill pid={pid}")
            self.event(f"stop pid={pid}")
        self.pid_file.unlink(missing_ok=True)
        return 0


def main(argv: list[str]) -> int:
    """Dispatches one systemctl-like command."""
    if len(argv) != 2:
        print("usage: fake_systemctl.py start|stop|restart|reset-failed|is-active UNIT", file=sys.stderr)
        return 2
    command, unit_name = argv
    unit = Path(os.environ["FAKE_SYSTEMCTL_UNIT"])
    if unit_name not in (unit.stem, unit.name):
        print(f"Unit {unit_name}.service not found.", file=sys.stderr)
        return 5
    manager = FakeSystemctl(unit, os.environ["FAKE_SYSTEMCTL_ROOT"], Path(os.environ["FAKE_SYSTEMCTL_STATE"]))
    if command == "start":
        return manager.start()
    if command == "stop":
        return manager.stop()
    if command == "restart":
        manager.stop()
        return manager.start()
    if command == "reset-failed":
        manager.event("reset-failed")
        return 0
    if command == "is-active":
        active = manager.running_pid() is not None
        print("active" if active else "inactive")
        return 0 if active else 3
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
