"""Working fakes of our own interfaces for the Аналитика 360 tests: a recording Messenger and a clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from bot.services.ports import DeliveryError, InlineButton
from gateway import AsyncSheetsGateway
from gateway.schemas import OBJECTS, QUEUE, QueueCol

MSK = timezone(timedelta(hours=3))


class FakeClock:
    """A settable clock returning timezone-aware datetimes."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 24, 12, 0, tzinfo=MSK)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move time forward."""
        self.now += delta


@dataclass(frozen=True)
class Sent:
    """One thing the messenger sent."""

    kind: str  # "text" | "document" | "photo" | "staff"
    chat_id: int | None
    text: str
    data: bytes = b""
    filename: str = ""


class Crash(BaseException):
    """Simulates the process dying mid-send (not an Exception, so nothing catches it)."""


@dataclass
class RecordingMessenger:
    """A Messenger that records every send; can be told to fail or crash on a given kind of send."""

    sent: list[Sent] = field(default_factory=list)
    fail_kinds: set[str] = field(default_factory=set)
    blocked: set[int] = field(default_factory=set)  # partners who blocked the bot
    crash_after: str | None = None  # record a send of this kind, then die

    async def send_text(
        self, chat_id: int, text: str, *, buttons: Sequence[str] | Sequence[InlineButton] | None = None
    ) -> None:
        self._send(Sent("text", chat_id, text))

    async def send_document(self, chat_id: int, data: bytes, filename: str, caption: str) -> None:
        self._send(Sent("document", chat_id, caption, data, filename))

    async def send_photo(self, chat_id: int, photo_url: str, caption: str) -> None:
        self._send(Sent("photo", chat_id, caption, filename=photo_url))

    async def notify_staff(self, text: str) -> None:
        self._send(Sent("staff", None, text))

    def _send(self, item: Sent) -> None:
        if item.chat_id in self.blocked:
            raise DeliveryError("Forbidden: bot was blocked by the user", permanent=True)
        if item.kind in self.fail_kinds:
            raise DeliveryError(f"{item.kind} refused", permanent=False)
        self.sent.append(item)
        if self.crash_after == item.kind:
            self.crash_after = None
            raise Crash(item.kind)

    def to(self, chat_id: int) -> list[Sent]:
        """What a partner received."""
        return [s for s in self.sent if s.chat_id == chat_id]

    @property
    def staff(self) -> list[Sent]:
        """Staff notes."""
        return [s for s in self.sent if s.kind == "staff"]


SMALL_OBJECTS = [
    {
        "code": "OBJ-1",
        "type": "квартира",
        "district": "Центр",
        "rooms": "2",
        "area": "50",
        "price": "10000000",
        "listed_at": "2026-10-01",
        "status": "в продаже",
    },
]


def small_market(count: int = 12) -> list[dict[str, str]]:
    """`count` comparable listings of OBJ-1's kind with prices around 200 000 ₽/m²."""
    return [
        {
            "id": f"M-{i}",
            "type": "квартира",
            "district": "Центр",
            "rooms": "2",
            "area": "50",
            "price": str(9_000_000 + 200_000 * i),
            "listed_at": f"2026-{6 + i % 5:02d}-10",
            "removed_at": "",
            "source": "ЦИАН",
        }
        for i in range(count)
    ]


async def put_objects(gw: AsyncSheetsGateway, objects: Sequence[dict[str, str]] = SMALL_OBJECTS) -> None:
    """Write rows into Объекты in one write."""
    t = gw.table(OBJECTS)
    await gw.write([t.op_insert(o) for o in objects])


async def put_queue_rows(gw: AsyncSheetsGateway, rows: Sequence[dict[str, str]]) -> None:
    """Write rows into Очередь as staff or another process would (no validation)."""
    t = gw.table(QUEUE)
    await gw.write([t.op_insert(r) for r in rows])


def queue_row(job_id: str, **values: str) -> dict[str, str]:
    """A row of Очередь with sensible defaults for a NEW request of partner 100001 on OBJ-1."""
    row = {
        QueueCol.ID: job_id,
        QueueCol.CREATED_AT: "2026-11-24 12:00:00",
        QueueCol.OBJECT_CODE: "OBJ-1",
        QueueCol.TELEGRAM_ID: "100001",
        QueueCol.REQUESTED_BY: "DEMO-001",
        QueueCol.STATUS: "NEW",
        QueueCol.ATTEMPTS: "0",
    }
    out = {str(k): v for k, v in row.items()}
    out.update(values)  # column names are identifiers: status="DONE", pdf_url=...
    return out
