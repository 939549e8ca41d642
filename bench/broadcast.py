"""Promotions broadcast: delivery rate at the configured limit, and sheet API calls per broadcast.

1. Pace: a promotion to N partners through real python-telegram-bot (with PTB's AIORateLimiter, as in production)
   against the fake Bot API, which also enforces Telegram's overall flood limit. Prints messages/second delivered
   (measured from the server's receive times) against the configured limit (target: within 10%), the busiest
   one-second window and any 429s.
2. Sheet calls: the same broadcast at a high rate for 100 and 1000 recipients on the local store; prints the
   gateway's backend calls (target: the same for both — O(1) in recipients).

Run: `.venv/bin/python -m bench.broadcast [--recipients 750] [--rate 25] [--telegram-limit 30]`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import tempfile
import time
from collections import Counter
from pathlib import Path

from telegram.ext import AIORateLimiter, ApplicationBuilder

from bot.services.promotions import PromotionService
from bot.telegram.messenger import TelegramMessenger
from gateway import AsyncSheetsGateway, build_gateway
from tests.fakes.telegram_server import FakeTelegramServer
from tests.promo_support import PromoMessenger, add_promo, seed_partners, store_config


async def _gateway(root: Path) -> AsyncSheetsGateway:
    gw = build_gateway(store_config(root / "sheets.db"))
    await gw.start()
    await gw.ensure_sheets()
    return gw


def _busiest_second(stamps: list[float]) -> int:
    """The most sends in any one-second window [t, t+1)."""
    return max((bisect.bisect_left(stamps, t + 1.0) - i for i, t in enumerate(stamps)), default=0)


async def pace(recipients: int, rate: float, telegram_limit: float) -> None:
    """Broadcast to `recipients` partners at `rate`/s through PTB against the fake Bot API."""
    with tempfile.TemporaryDirectory() as tmp, FakeTelegramServer() as tg:
        tg.set_flood_limits(global_per_second=telegram_limit)
        gw = await _gateway(Path(tmp))
        try:
            await seed_partners(gw, recipients)
            await add_promo(gw)
            app = (
                ApplicationBuilder()
                .token(tg.token)
                .base_url(tg.api_base_url)
                .base_file_url(tg.file_base_url)
                .rate_limiter(AIORateLimiter(max_retries=3))
                .build()
            )
            async with app:
                service = PromotionService(gw, TelegramMessenger(app.bot), rate_per_second=rate)
                started = time.perf_counter()
                (report,) = await service.poll_once()
                elapsed = time.perf_counter() - started
        finally:
            await gw.close()
        stamps = sorted(s.timestamp for s in tg.sent if s.method == "sendMessage")
        span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        measured = (len(stamps) - 1) / span if span else 0.0
        per_chat = Counter(s.chat_id for s in tg.sent if s.method == "sendMessage")
        refused = sum(1 for c in tg.calls if c.status == 429)
        duplicates = sum(per_chat.values()) - len(per_chat)
        print(f"pace: {recipients} recipients, limit {rate:g}/s (the fake Telegram enforces {telegram_limit:g}/s)")
        print(f"  delivered {report.sent} in {elapsed:.1f} s; failed {report.failed}; duplicates {duplicates}")
        print(
            f"  rate at the server: {measured:.2f} msg/s = {measured / rate:.1%} of the limit "
            f"(target 90–100%); busiest 1-s window: {_busiest_second(stamps)}; 429s: {refused}"
        )


async def sheet_calls(sizes: list[int]) -> None:
    """Backend calls of one broadcast, by kind, for each audience size (fast pace, recording messenger)."""
    print("sheet API calls per broadcast (poll read … final SENT write; progress every 100 recipients and 15 s):")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            gw = await _gateway(Path(tmp))
            try:
                await seed_partners(gw, n)
                await add_promo(gw)
                before = Counter(gw.metrics.calls)
                service = PromotionService(gw, PromoMessenger(), rate_per_second=5000.0, max_in_flight=8)
                started = time.perf_counter()
                (report,) = await service.poll_once()
                elapsed = time.perf_counter() - started
                calls = Counter(gw.metrics.calls)
                calls.subtract(before)
            finally:
                await gw.close()
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()) if v)
        print(f"  {n:>5} recipients: {sum(calls.values())} calls ({kinds}); sent {report.sent} in {elapsed:.1f} s")
    print(
        "  a paced broadcast adds one progress point (3 calls: read the row, verified write) per 15 s of sending, "
        "e.g. +6 calls for 1000 recipients at 25/s (40 s)"
    )


def main() -> None:
    """Parse flags and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=750, help="partners in the paced run (default 750: ~30 s)")
    parser.add_argument("--rate", type=float, default=25.0, help="the broadcaster's configured limit, msg/s")
    parser.add_argument("--telegram-limit", type=float, default=30.0, help="overall flood limit of the fake Bot API")
    parser.add_argument("--calls-for", type=int, nargs="+", default=[100, 1000], help="audience sizes for part 2")
    args = parser.parse_args()
    asyncio.run(pace(args.recipients, args.rate, args.telegram_limit))
    asyncio.run(sheet_calls(args.calls_for))


if __name__ == "__main__":
    main()
