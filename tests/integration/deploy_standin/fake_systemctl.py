"""Stub service manager for the deploy tests: `fake_systemctl.py start|stop|restart|reset-failed|is-active|
enable|disable UNIT`.

It runs the service the way the REAL unit file says: ExecStart, WorkingDirectory (resolved through the
`current` symlink at start, as systemd does), EnvironmentFile, KillSignal and TimeoutStopSec are read from
marketingbot.service with `/home/marketing` rewritten to the test's BASE. So a unit whose paths do not
match the deploy layout fails these tests too.

Template instances (`marketingbot@blue`) come from `marketingbot@.service` beside the unit, `%i` replaced by
the instance. `marketingbot.socket` is held by socket_holder.py (binds ListenStream once, keeps it for its
life); a service with `Sockets=` gets that very socket as fd 3 with LISTEN_FDS=1 and its own LISTEN_PID,
the sd_listen_fds(3) protocol systemd speaks.

Environment: FAKE_SYSTEMCTL_UNIT (the unit file), FAKE_SYSTEMCTL_ROOT (replaces /home/marketing),
FAKE_SYSTEMCTL_STATE (directory for the pid files, the services' output and an event log),
FAKE_SYSTEMCTL_LISTEN (host:port replacing the socket unit's ListenStream).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNIT_ROOT = "/home/marketing"


class UnitError(Exception):
    """The unit file lacks a setting the stub needs."""


def parse_unit(path: Path, root: str, instance: str = "", section_name: str = "[Service]") -> dict[str, list[str]]:
    """Returns one section's settings of a unit file, each key with all its values, paths and %i rewritten."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == section_name and "=" in line:
            key, value = line.split("=", 1)
            value = value.strip().replace(UNIT_ROOT, root).replace("%i", instance)
            settings.setdefault(key.strip(), []).append(value)
    required = ("ExecStart", "WorkingDirectory") if section_name == "[Service]" else ("ListenStream",)
    for key in required:
        if key not in settings:
            raise UnitError(f"{path}: no {key}= in {section_name}")
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


def holder_control(state: Path) -> Path:
    """The unix socket where socket_holder.py hands out the held listening socket: in the state directory
    unless that path is too long for a unix socket (108 bytes; deep pytest-xdist temp directories)."""
    path = state / "marketingbot.socket.ctl"
    if len(os.fsencode(path)) + len(".tmp") < 100:
        return path
    digest = hashlib.sha256(os.fsencode(state.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"marketingbot-{digest}.ctl"


def receive_listening_socket(state: Path) -> int:
    """The held listening socket, received from the holder as a new fd numbered 10 or above."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(holder_control(state)))
        _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    high = fcntl.fcntl(fds[0], fcntl.F_DUPFD, 10)  # never 0-3: those are remapped in the child
    os.close(fds[0])
    return high


class FakeSystemctl:
    """Starts and stops one service process as described by its unit file."""

    def __init__(self, unit: Path, root: str, state: Path, name: str = "") -> None:
        self.unit = unit
        self.name = name or unit.stem
        instance = self.name.partition("@")[2]
        self.settings = parse_unit(unit, root, instance)
        self.state = state
        # The single unit keeps the pid file name the older tests know; instances get one each.
        self.pid_file = state / ("service.pid" if "@" not in self.name else f"{self.name}.pid")
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
        listen_fd: int | None = None
        pass_fds: tuple[int, ...] = ()
        if self.settings.get("Sockets"):
            try:
                listen_fd = receive_listening_socket(self.state)
            except OSError as exc:
                print(f"Dependency failed for {self.name}: marketingbot.socket is not running ({exc})", file=sys.stderr)
                return 1
            # fd 3 with LISTEN_FDS=1, and LISTEN_PID set to the service's own pid by a shell that then execs it.
            env["LISTEN_FDS"] = "1"
            argv = ["/bin/sh", "-c", 'export LISTEN_PID=$$; exec "$@"', "sh", *argv]
            pass_fds = (3,)
        journal_name = "journal.log" if "@" not in self.name else f"journal-{self.name}.log"
        try:
            with (self.state / journal_name).open("ab") as journal:
                proc = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=journal,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=pass_fds,
                    preexec_fn=(lambda: os.dup2(listen_fd, 3)) if listen_fd is not None else None,
                )
        except OSError as exc:
            print(f"Job for {self.unit.name} failed: {exc}", file=sys.stderr)
            return 1
        finally:
            if listen_fd is not None:
                os.close(listen_fd)
        self.pid_file.write_text(str(proc.pid))
        label = "" if "@" not in self.name else f"{self.name} "
        self.event(f"start {label}{os.path.realpath(workdir)} pid={proc.pid}")
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
            label = "" if "@" not in self.name else f"{self.name} "
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)
                self.event(f"kill {label}pid={pid}")
            self.event(f"stop {label}pid={pid}")
        self.pid_file.unlink(missing_ok=True)
        return 0


class FakeSocketUnit:
    """marketingbot.socket: socket_holder.py binds ListenStream and holds it until stopped."""

    def __init__(self, unit: Path, root: str, state: Path) -> None:
        self.settings = parse_unit(unit, root, section_name="[Socket]")
        self.state = state
        self.pid_file = state / "marketingbot.socket.pid"
        state.mkdir(parents=True, exist_ok=True)

    def running_pid(self) -> int | None:
        """The holder's pid if it is running."""
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if is_alive(pid) else None

    def start(self) -> int:
        """Starts the holder and waits until it hands the socket out."""
        if self.running_pid() is not None:
            return 0
        listen = os.environ.get("FAKE_SYSTEMCTL_LISTEN") or self.settings["ListenStream"][-1]
        backlog = self.settings.get("Backlog", ["128"])[-1]
        control = holder_control(self.state)
        control.unlink(missing_ok=True)
        holder = Path(__file__).with_name("socket_holder.py")
        with (self.state / "journal-socket.log").open("ab") as journal:
            proc = subprocess.Popen(
                [sys.executable, str(holder), listen, backlog, str(control)],
                stdin=subprocess.DEVNULL,
                stdout=journal,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while not control.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                print(f"marketingbot.socket failed to listen on {listen}", file=sys.stderr)
                return 1
            time.sleep(0.01)
        self.pid_file.write_text(str(proc.pid))
        with (self.state / "events.log").open("a") as log:
            log.write(f"{time.time():.6f} start marketingbot.socket {listen} pid={proc.pid}\n")
        return 0

    def stop(self) -> int:
        """Closes the held socket."""
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            while is_alive(pid):
                time.sleep(0.005)
        self.pid_file.unlink(missing_ok=True)
        holder_control(self.state).unlink(missing_ok=True)
        return 0


def find_unit(unit: Path, unit_name: str) -> tuple[Path, str] | None:
    """The unit file for UNIT_NAME (plain, template instance or socket) and the unit's bare name."""
    name = unit_name.removesuffix(".service")
    if name in (unit.stem, unit.name):
        return unit, unit.stem
    if unit_name == f"{unit.stem}.socket" and unit.with_suffix(".socket").exists():
        return unit.with_suffix(".socket"), unit_name
    prefix, at, instance = name.partition("@")
    template = unit.with_name(f"{prefix}@.service")
    if at and instance and prefix == unit.stem and template.exists():
        return template, name
    return None


def main(argv: list[str]) -> int:
    """Dispatches one systemctl-like command."""
    if len(argv) != 2:
        print("usage: fake_systemctl.py start|stop|restart|reset-failed|is-active|enable|disable UNIT", file=sys.stderr)
        return 2
    command, unit_name = argv
    found = find_unit(Path(os.environ["FAKE_SYSTEMCTL_UNIT"]), unit_name)
    if found is None:
        print(f"Unit {unit_name}.service not found.", file=sys.stderr)
        return 5
    unit, name = found
    root, state = os.environ["FAKE_SYSTEMCTL_ROOT"], Path(os.environ["FAKE_SYSTEMCTL_STATE"])
    if name.endswith(".socket"):
        socket_unit = FakeSocketUnit(unit, root, state)
        if command in ("enable", "disable", "reset-failed"):
            return 0
        if command == "is-active":
            return 0 if socket_unit.running_pid() is not None else 3
        return socket_unit.start() if command == "start" else socket_unit.stop()
    manager = FakeSystemctl(unit, root, state, name)
    if command in ("enable", "disable"):
        manager.event(f"{command} {name}")
        return 0
    if command == "start":
        return manager.start()
    if command == "stop":
        return manager.stop()
    if command == "restart":
        manager.stop()
        return manager.start()
    if command == "reset-failed":
        manager.event("reset-failed" if "@" not in name else f"reset-failed {name}")
        return 0
    if command == "is-active":
        active = manager.running_pid() is not None
        print("active" if active else "inactive")
        return 0 if active else 3
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
