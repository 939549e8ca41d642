"""The chat bench's fake servers and simulated partners, in a process of their own.

In production Telegram, Sheets and Gemini run elsewhere. Served from the bot's own process, the fakes' request
threads would take the interpreter lock (and a share of the CPU) from the bot's event loop, and every figure would
carry their cost. So `hosted_fakes()` starts them in child processes (spawned, not forked: the parent may already
run an event loop and threads) and hands back stand-ins that forward attribute reads and method calls to them.
The partners' driver runs next to the fake Telegram it talks to; the fake model has a process of its own, so the
50 answers it streams at once do not wait for the interpreter lock behind Telegram's and the sheet's threads.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from typing import Any

from tests.fakes.gemini_server import FakeGeminiServer, FakeTimeout, last_user_text
from tests.fakes.sheets_server import FakeSheetsServer
from tests.fakes.telegram_server import FakeTelegramServer


@dataclass(frozen=True)
class Reply:
    """What the driver saw of one sent message: when it went out and when (and what) the answer came back."""

    tid: int
    number: int
    text: str
    sent_at: float
    replied_at: float | None
    reply: str | None


class FakesHost:
    """Lives in a child process: some of the fakes (`serves`), seeded as the bench wants, and the partners' driver
    where the fake Telegram is."""

    def __init__(self, args: argparse.Namespace, tids: Sequence[int], serves: Sequence[str]) -> None:
        from bench.chat import model_answer, seed  # the child imports the bench module itself (spawned)

        # Each request is a thread here; a thread woken by its socket waits for the interpreter lock up to the
        # switch interval (5 ms), and 50 of them queue behind each other. Real servers answer in parallel.
        sys.setswitchinterval(0.0005)
        self._stack = contextlib.ExitStack()
        self._fakes: dict[str, Any] = {}
        if "sheets" in serves:
            sheets = self._fakes["sheets"] = self._stack.enter_context(FakeSheetsServer(sheets=()))
            seed(sheets, tids, args.idle_partners, with_appeal_rows=not args.new_partners)
            sheets.set_latency(args.sheet_latency)
            sheets.quota_per_minute(reads=args.quota, writes=args.quota)
        if "gemini" in serves:
            self._fakes["gemini"] = self._stack.enter_context(
                FakeGeminiServer(latency=args.model_latency, responder=lambda body: model_answer(last_user_text(body)))
            )
        if "tg" in serves:
            self.tg = self._fakes["tg"] = self._stack.enter_context(FakeTelegramServer(latency=args.telegram_latency))

    def _fake(self, which: str) -> Any:
        return self._fakes[which]

    def look(self, which: str, name: str) -> tuple[bool, Any]:
        """(True, None) when `name` is a method of that fake, else (False, its value)."""
        value = getattr(self._fake(which), name)
        return (True, None) if callable(value) else (False, value)

    def call(self, which: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call a method of one fake."""
        return getattr(self._fake(which), name)(*args, **kwargs)

    def cpu(self) -> float:
        """CPU seconds this process (the fakes and the driver) has used."""
        return time.process_time()

    def drive(self, plan: Mapping[int, Sequence[str]], spread: float, reply_timeout: float) -> list[Reply]:
        """Every partner sends their first message (within `spread` s, at seeded random moments), then the next one
        of `plan` as soon as the reply to the previous arrives. A message never answered comes back with
        `replied_at` None."""
        return self._drive(
            plan, lambda tid, n: plan[tid][n - 1] if n <= len(plan[tid]) else None, spread, reply_timeout
        )

    def drive_sustained(self, texts: Mapping[int, str], duration: float, reply_timeout: float) -> list[Reply]:
        """Every partner sends the next message (`texts[tid]` formatted with its number) as soon as the previous
        is answered, for `duration` seconds."""
        end = time.time() + duration
        return self._drive(
            texts, lambda tid, n: texts[tid].format(number=n) if n == 1 or time.time() < end else None, 0, reply_timeout
        )

    def _drive(
        self,
        tids: Iterable[int],
        text_of: Callable[[int, int], str | None],
        spread: float,
        reply_timeout: float,
    ) -> list[Reply]:
        """The partners' loop: message `n` of partner `tid` is `text_of(tid, n)`, None when they are done."""
        in_flight: dict[int, tuple[int, str, float]] = {}
        replies: list[Reply] = []
        order = list(tids)
        waiting = set(order)  # partners with a message still to come or in flight
        lock = threading.Lock()  # timers send first messages from their own threads

        def send(tid: int, number: int) -> None:
            text = text_of(tid, number)
            with lock:
                if text is None:
                    waiting.discard(tid)
                    return
                in_flight[tid] = (number, text, time.time())
            self.tg.user_sends_text(tid, text)

        rng = random.Random(7)
        timers = [threading.Timer(rng.uniform(0, spread), send, (tid, 1)) for tid in order] if spread > 0 else []
        for timer in timers:
            timer.start()
        if not timers:
            for tid in order:
                send(tid, 1)
        try:
            while waiting:
                try:
                    # One waiter for every chat: 50 waiters would each rescan the sent list on every record.
                    msg = self.tg.wait_for_sent_sync(method="sendMessage", timeout=reply_timeout)
                except FakeTimeout:
                    break  # whatever is still in flight never got its reply: counted as lost
                tid = int(msg.chat_id or 0)
                with lock:
                    sent = in_flight.pop(tid, None)
                if sent is None:
                    continue
                number, text, sent_at = sent
                replies.append(Reply(tid, number, text, sent_at, msg.timestamp, msg.plain_text or msg.text))
                send(tid, number + 1)
        finally:
            for timer in timers:
                timer.cancel()
        replies.extend(Reply(tid, n, text, at, None, None) for tid, (n, text, at) in in_flight.items())
        return replies

    def close(self) -> None:
        """Stop the fakes."""
        self._stack.close()


class _Manager(BaseManager):
    pass


_Manager.register("FakesHost", FakesHost)


class Remote:
    """One fake in the child, read and called as if it were here (each access is a round trip: keep them out of
    the bot's hot path)."""

    def __init__(self, host: Any, which: str) -> None:
        self._host = host
        self._which = which

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        is_method, value = self._host.look(self._which, name)
        if not is_method:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._host.call(self._which, name, args, kwargs)

        return call


@dataclass
class HostedFakes:
    """The stand-ins for the three fakes; `host` runs the fake Telegram and the partners."""

    sheets: Any
    gemini: Any
    tg: Any
    host: Any
    hosts: Sequence[Any]

    def cpu(self) -> float:
        """CPU seconds the fakes' processes (and the driver) have used."""
        return sum(h.cpu() for h in self.hosts)


@contextlib.contextmanager
def hosted_fakes(args: argparse.Namespace, tids: Sequence[int]) -> Iterator[HostedFakes]:
    """The fakes in child processes for as long as the block runs: Telegram and the sheets in one, the model in
    another."""
    with contextlib.ExitStack() as stack:
        hosts = []
        for serves in (("tg", "sheets"), ("gemini",)):
            manager = _Manager(ctx=multiprocessing.get_context("spawn"))
            manager.start()
            stack.callback(manager.shutdown)
            host = manager.FakesHost(args, list(tids), serves)  # type: ignore[attr-defined]
            stack.callback(host.close)
            hosts.append(host)
        main, model = hosts
        yield HostedFakes(Remote(main, "sheets"), Remote(model, "gemini"), Remote(main, "tg"), main, hosts)
