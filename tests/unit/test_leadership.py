"""The leader lease (bot/lease.py), leader/standby hand-over (bot/leadership.py), socket inheritance
(bot/listen.py) and the webhook hand-off from a standby to the leader (bot/handoff.py)."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.handoff import FORWARDED_HEADER, forward_to_leader
from bot.leadership import Leadership
from bot.lease import LeaderLease
from bot.listen import ListenError, bind_slot_socket, inherited_sockets

TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(1)
sys.exit(0)
"""

HOLD_LOCK = """
import sys, time
from pathlib import Path
from bot.lease import LeaderLease
lease = LeaderLease(Path(sys.argv[1]), holder={"slot": "blue"})
assert lease.try_acquire()
print("held", flush=True)
time.sleep(60)
"""


def other_process_can_lock(path: Path) -> bool:
    """Whether a separate process gets the lock right now."""
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(path)], timeout=30).returncode == 0


def test_lease_is_exclusive_across_processes_and_records_its_holder(tmp_path: Path) -> None:
    """While held, no other process gets the lock; the file names the holder; released, the lock is free."""
    lease = LeaderLease(tmp_path / "data" / "leader.lock", holder={"slot": "green"})
    assert lease.try_acquire() and lease.held
    assert not other_process_can_lock(lease.path)
    assert lease.read_holder() == {"pid": os.getpid(), "slot": "green"}
    lease.release()
    assert not lease.held
    assert other_process_can_lock(lease.path)


def test_lease_of_a_killed_holder_is_free_at_once(tmp_path: Path) -> None:
    """SIGKILL leaves no stale lease: the kernel drops the lock with the process."""
    path = tmp_path / "leader.lock"
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lease = LeaderLease(path)
        assert not lease.try_acquire()
        assert lease.read_holder()["slot"] == "blue"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert lease.try_acquire()
        lease.release()
    finally:
        holder.kill()
        holder.wait()


async def test_standby_takes_over_only_after_the_leader_released(tmp_path: Path) -> None:
    """Two processes' worth of leadership on one lock: B waits as standby, and takes updates only after A
    gave them up and released the lease, within the retry interval."""
    path = tmp_path / "leader.lock"
    events: list[str] = []

    def leadership(name: str) -> Leadership:
        async def take() -> None:
            events.append(f"{name} take")

        async def give() -> None:
            await asyncio.sleep(0.05)  # an in-flight turn finishing
            events.append(f"{name} give")

        return Leadership(LeaderLease(path, holder={"slot": name}), take, give, retry=0.02)

    a, b = leadership("a"), leadership("b")
    await a.start()
    await b.start()
    assert (a.role, b.role) == ("leader", "standby")
    await asyncio.sleep(0.1)
    assert events == ["a take"]  # B keeps trying but never gets in while A holds the lease

    await a.stop()
    assert a.role == "stepping-down" and b.role == "standby"  # drained, lease still A's (gateway flush next)
    await asyncio.sleep(0.1)
    assert events == ["a take", "a give"]
    released = time.monotonic()
    a.release()
    while b.role != "leader":
        await asyncio.sleep(0.005)
        assert time.monotonic() - released < 2.0
    await asyncio.sleep(0.01)
    assert events == ["a take", "a give", "b take"]
    assert a.role == "stopped"
    await b.stop()
    b.release()
    assert events[-1] == "b give"


async def test_a_leader_that_cannot_take_updates_gives_the_lease_up(tmp_path: Path) -> None:
    """If taking updates fails, the lease is released (the other slot may manage) and the error surfaces."""
    path = tmp_path / "leader.lock"
    gave: list[str] = []

    async def take() -> None:
        raise ConnectionError("Telegram unreachable")

    async def give() -> None:
        gave.append("give")

    leadership = Leadership(LeaderLease(path), take, give)
    with pytest.raises(ConnectionError):
        await leadership.start()
    assert gave == ["give"] and leadership.role == "standby"
    assert other_process_can_lock(path)


async def test_a_standby_that_is_stopped_never_leads(tmp_path: Path) -> None:
    """Stopping a standby ends its wait: it neither takes nor gives anything, even if the lease frees later."""
    path = tmp_path / "leader.lock"
    holder = LeaderLease(path)
    assert holder.try_acquire()
    calls: list[str] = []

    async def take() -> None:
        calls.append("take")

    async def give() -> None:
        calls.append("give")

    standby = Leadership(LeaderLease(path), take, give, retry=0.01)
    await standby.start()
    await standby.stop()
    holder.release()
    await asyncio.sleep(0.05)
    standby.release()
    assert calls == [] and standby.role == "stopped"


def test_inherited_sockets_only_for_this_process() -> None:
    """LISTEN_FDS meant for another pid is ignored, and the variables are removed either way."""
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDNAMES": "web"}
    assert inherited_sockets(env) == []
    assert env == {}
    assert inherited_sockets({}) == []
    with pytest.raises(ListenError):
        inherited_sockets({"LISTEN_FDS": "one", "LISTEN_PID": str(os.getpid())})


SERVE_INHERITED = """
import os, socket
from bot.listen import inherited_sockets
(sock,) = inherited_sockets()
assert "LISTEN_FDS" not in os.environ
conn, _ = sock.accept()
conn.sendall(b"served by %d" % os.getpid())
conn.close()
"""


def test_inherited_socket_is_served_as_fd_3(tmp_path: Path) -> None:
    """A child given a listening socket as fd 3 with LISTEN_FDS=1 and its own LISTEN_PID accepts on it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        ["/bin/sh", "-c", 'export LISTEN_PID=$$; exec "$@"', "sh", sys.executable, "-c", SERVE_INHERITED],
        env={**os.environ, "LISTEN_FDS": "1", "PYTHONPATH": str(root)},
        pass_fds=(3,),
        preexec_fn=lambda: os.dup2(listener.fileno(), 3),
    )
    try:
        listener.close()  # only the child holds it now: a refused connect would show it is not listening
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            assert conn.recv(100) == f"served by {child.pid}".encode()
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()


def test_slot_socket_replaces_a_stale_file(tmp_path: Path) -> None:
    """A socket file left by a killed run of the same slot is replaced, and the new socket accepts."""
    path = tmp_path / "data" / "slot-blue.sock"
    path.parent.mkdir()
    path.write_text("stale")
    sock = bind_slot_socket(path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
    finally:
        sock.close()


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An HTTP server on a unix socket (the leader's slot socket) for the hand-off test."""

    daemon_threads = True


def _leader_socket(path: Path, received: list[tuple[str, dict[str, str], bytes]], status: int) -> _UnixHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

        def address_string(self) -> str:
            return "unix"

    server = _UnixHTTPServer(str(path), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


async def test_standby_hands_a_webhook_update_to_the_leader_named_by_the_lease(tmp_path: Path) -> None:
    """The update goes to the leader's slot socket, marked as forwarded, and the leader's status comes back;
    with no leader named, one that is this process, or one that does not answer, nothing is sent (None)."""
    path = tmp_path / "leader.lock"
    received: list[tuple[str, dict[str, str], bytes]] = []
    green = tmp_path / "slot-green.sock"
    server = _leader_socket(green, received, 200)
    try:
        update = b'{"update_id": 7}'
        secret = {"X-Telegram-Bot-Api-Secret-Token": "s3cret", "Content-Type": "application/json"}
        standby_view = LeaderLease(path)
        assert await forward_to_leader(standby_view, "/telegram/webhook", update, secret, None) is None  # no leader

        leader = LeaderLease(path, holder={"slot": "green", "socket": str(green)})
        assert leader.try_acquire()
        status = await forward_to_leader(standby_view, "/telegram/webhook", update, secret, tmp_path / "slot-blue.sock")
        assert status == 200
        (where, headers, body) = received[0]
        assert (where, body) == ("/telegram/webhook", update)
        assert headers[FORWARDED_HEADER] == "1" and headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret"

        assert await forward_to_leader(standby_view, "/telegram/webhook", update, secret, green) is None  # itself
        leader.release()
        gone = LeaderLease(path, holder={"slot": "green", "socket": str(tmp_path / "nobody.sock")})
        assert gone.try_acquire()
        assert await forward_to_leader(standby_view, "/telegram/webhook", update, secret, None) is None
        gone.release()
        assert len(received) == 1
    finally:
        server.shutdown()
        server.server_close()
