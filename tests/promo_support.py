"""Working fakes and builders for the promotions and admin tests, and the broadcaster the SIGKILL test runs.

`python -m tests.promo_support --db PATH --api-url URL --token TOKEN [--rate R] [--max-in-flight N]` runs ONE
promotions poll with real python-telegram-bot against a (fake) Bot API and the local store at PATH; the e2e test
kills it mid-broadcast.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.services.ports import DeliveryError, InlineButton
from gateway import AsyncSheetsGateway, GatewayConfig, RetryPolicy, build_gateway
from gateway.schemas import AUTH, PROMOTIONS, AuthCol, PromoCol

FAST_RETRY = RetryPolicy(max_attempts=3, max_delay=2.0, initial_backoff=0.01, max_backoff=0.05)
FIRST_PARTNER = 500_000


class Crash(BaseException):
    """Simulates the process dying at a chosen point (not an Exception, so nothing catches it)."""


@dataclass(frozen=True)
class Delivered:
    """One message the fake messenger delivered."""

    kind: str  # "text" | "photo" | "document"
    chat_id: int
    text: str
    url: str = ""
    data: bytes = b""
    filename: str = ""


Hook = Callable[[str, int], Awaitable[None]]


@dataclass
class PromoMessenger:
    """A Messenger recording deliveries; partners can block the bot, pictures can be refused, hooks can
    fail, crash or slow a send `before` it reaches "Telegram" or `after` Telegram accepted it, and `delay`
    holds each answer back after the message was accepted (the window a cancellation can fall into)."""

    delivered: list[Delivered] = field(default_factory=list)
    staff: list[str] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    refuse_photos: bool = False
    delay: float = 0.0
    before: Hook | None = None
    after: Hook | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def send_text(
        self, chat_id: int, text: str, *, buttons: Sequence[str] | Sequence[InlineButton] | None = None
    ) -> None:
        await self._deliver(Delivered("text", chat_id, text))

    async def send_photo(self, chat_id: int, photo_url: str, caption: str) -> None:
        if self.refuse_photos and chat_id not in self.blocked:
            raise DeliveryError("BadRequest: failed to get HTTP URL content", permanent=True)
        await self._deliver(Delivered("photo", chat_id, caption, url=photo_url))

    async def send_document(self, chat_id: int, data: bytes, filename: str, caption: str) -> None:
        await self._deliver(Delivered("document", chat_id, caption, data=data, filename=filename))

    async def notify_staff(self, text: str) -> None:
        self.staff.append(text)

    async def _deliver(self, item: Delivered) -> None:
        if self.before is not None:
            await self.before(item.kind, item.chat_id)
        if item.chat_id in self.blocked:
            raise DeliveryError("Forbidden: bot was blocked by the user", permanent=True)
        self.delivered.append(item)
        self._changed.set()
        if self.delay:  # Telegram has the message; its answer is still on the way
            await asyncio.sleep(self.delay)
        if self.after is not None:
            await self.after(item.kind, item.chat_id)

    async def wait_for(self, count: int, task: asyncio.Task[object] | None = None) -> None:
        """Until `count` messages were delivered (or `task` ended first)."""
        while len(self.delivered) < count and not (task is not None and task.done()):
            self._changed.clear()
            waiters = {asyncio.ensure_future(self._changed.wait())} | ({task} if task is not None else set())
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in pending - {task}:
                w.cancel()

    def to(self, chat_id: int) -> list[Delivered]:
        """What one chat received, oldest first."""
        return [d for d in self.delivered if d.chat_id == chat_id]

    def counts(self) -> dict[int, int]:
        """Messages per chat."""
        out: dict[int, int] = {}
        for d in self.delivered:
            out[d.chat_id] = out.get(d.chat_id, 0) + 1
        return out


def partner_ids(n: int, first: int = FIRST_PARTNER) -> list[int]:
    """Telegram IDs of the seeded partners."""
    return list(range(first, first + n))


async def seed_partners(
    gw: AsyncSheetsGateway,
    n: int,
    *,
    first: int = FIRST_PARTNER,
    opted_out: Iterable[int] = (),
    status: str = "authorized",
) -> list[int]:
    """n authorized partners `P-<id>` with Telegram IDs from `first`, in ONE write; returns their IDs."""
    out = set(opted_out)
    auth = gw.table(AUTH)
    ids = partner_ids(n, first)
    ops = [
        auth.op_insert(
            {
                AuthCol.CODE: f"P-{tid}",
                AuthCol.PHONE: f"+7900{tid:07d}",
                AuthCol.NAME: f"Партнёр {tid}",
                AuthCol.STATUS: status,
                AuthCol.TELEGRAM_ID: str(tid),
                AuthCol.PROMO_OPT_IN: "нет" if tid in out else "да",
            }
        )
        for tid in ids
    ]
    await gw.write(ops)
    return ids


async def add_promo(
    gw: AsyncSheetsGateway,
    promo_id: str = "A1",
    *,
    title: str = "Скидка 10% на комиссию",
    text: str = "Только до конца месяца.",
    picture: str = "",
    start: str = "",
    audience: str = "all",
    status: str = "READY",
) -> None:
    """One row of Акции."""
    await gw.table(PROMOTIONS).write(
        [
            gw.table(PROMOTIONS).op_insert(
                {
                    PromoCol.ID: promo_id,
                    PromoCol.TITLE: title,
                    PromoCol.TEXT: text,
                    PromoCol.PICTURE: picture,
                    PromoCol.START: start,
                    PromoCol.AUDIENCE: audience,
                    PromoCol.STATUS: status,
                }
            )
        ]
    )


async def promo_row(gw: AsyncSheetsGateway, promo_id: str = "A1") -> dict[str, str]:
    """The promotion's row, read fresh."""
    rec = await gw.table(PROMOTIONS).get(promo_id)
    assert rec is not None
    return dict(rec)


def store_config(db: Path) -> GatewayConfig:
    """The local store config the e2e test and its child process share."""
    return GatewayConfig(backend="local", local_db_path=db, retry=FAST_RETRY, replay_interval=0.05)


async def _broadcast_once(db: Path, api_url: str, token: str, rate: float, max_in_flight: int) -> None:
    from telegram import Bot
    from telegram.request import HTTPXRequest

    from bot.services.promotions import PromotionService
    from bot.telegram.messenger import TelegramMessenger

    gw = build_gateway(store_config(db))
    await gw.start()
    bot = Bot(token, base_url=api_url, request=HTTPXRequest(connection_pool_size=8))
    try:
        async with bot:
            service = PromotionService(gw, TelegramMessenger(bot), rate_per_second=rate, max_in_flight=max_in_flight)
            print("polling", flush=True)
            await service.poll_once()
    finally:
        await gw.close()


def main(argv: list[str] | None = None) -> None:
    """Run one promotions poll (the child of the SIGKILL test)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--max-in-flight", type=int, default=1)
    args = parser.parse_args(argv)
    asyncio.run(_broadcast_once(args.db, args.api_url, args.token, args.rate, args.max_in_flight))


if __name__ == "__main__":
    main()
