"""The agency's objects (Объекты) as a searchable catalogue for the Mini App.

One read of Объекты per search: the catalogue is small (the agency's own listings) and staff edit it, so
it is read fresh like every other sheet. Numbers are parsed the way the analytics reads them (spaces,
commas, «₽»), so the filters agree with the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.analytics.analysis import norm_text, parse_number, parse_rooms
from gateway import AsyncSheetsGateway, Record
from gateway.schemas import OBJECTS, ObjectCol

MAX_RESULTS = 200
# Objects staff marked as gone are not offered for analytics; everything else (incl. an empty status) is.
CLOSED_STATUSES = frozenset({"продано", "продан", "продана", "снято", "снят", "снята", "архив", "sold", "archived"})


@dataclass(frozen=True, slots=True)
class CatalogueObject:
    """One object as the partner sees it: text as typed in the sheet, plus parsed numbers for sorting."""

    code: str
    type: str
    district: str
    address: str
    rooms: str
    area: str
    price: str
    status: str
    rooms_n: int | None
    area_n: float | None
    price_n: float | None


@dataclass(frozen=True, slots=True)
class CatalogueQuery:
    """Search text and filters; None means "any"."""

    q: str = ""
    district: str = ""
    rooms: int | None = None  # exactly this many (0: a studio)
    rooms_min: int | None = None  # at least this many («4 и более»)
    price_min: float | None = None
    price_max: float | None = None


@dataclass(frozen=True, slots=True)
class CataloguePage:
    """The matching objects (at most MAX_RESULTS), how many matched, and every district for the filter."""

    items: list[CatalogueObject]
    total: int
    districts: list[str]


def _object(rec: Record) -> CatalogueObject:
    return CatalogueObject(
        code=rec[ObjectCol.CODE].strip(),
        type=" ".join(rec[ObjectCol.TYPE].split()),
        district=" ".join(rec[ObjectCol.DISTRICT].split()),
        address=" ".join(rec[ObjectCol.ADDRESS].split()),
        rooms=rec[ObjectCol.ROOMS].strip(),
        area=rec[ObjectCol.AREA].strip(),
        price=rec[ObjectCol.PRICE].strip(),
        status=rec[ObjectCol.STATUS].strip(),
        rooms_n=parse_rooms(rec[ObjectCol.ROOMS]),
        area_n=parse_number(rec[ObjectCol.AREA]),
        price_n=parse_number(rec[ObjectCol.PRICE]),
    )


def matches(obj: CatalogueObject, query: CatalogueQuery) -> bool:
    """Whether an object passes the search text and every filter."""
    if query.q:
        haystack = norm_text(" ".join((obj.code, obj.type, obj.district, obj.address)))
        if not all(word in haystack for word in norm_text(query.q).split()):
            return False
    if query.district and norm_text(obj.district) != norm_text(query.district):
        return False
    if query.rooms is not None and obj.rooms_n != query.rooms:
        return False
    if query.rooms_min is not None and (obj.rooms_n is None or obj.rooms_n < query.rooms_min):
        return False
    if query.price_min is not None and (obj.price_n is None or obj.price_n < query.price_min):
        return False
    return not (query.price_max is not None and (obj.price_n is None or obj.price_n > query.price_max))


class CatalogueService:
    """Searches Объекты (one fresh read per call)."""

    def __init__(self, gw: AsyncSheetsGateway) -> None:
        self._objects = gw.table(OBJECTS)

    async def search(self, query: CatalogueQuery) -> CataloguePage:
        """Objects on offer that match, in the sheet's order; raises the gateway's errors when unreadable."""
        rows = await self._objects.all()
        on_offer = [o for o in (_object(r) for r in rows) if o.code and norm_text(o.status) not in CLOSED_STATUSES]
        found = [o for o in on_offer if matches(o, query)]
        districts = sorted({o.district for o in on_offer if o.district}, key=norm_text)
        return CataloguePage(found[:MAX_RESULTS], len(found), districts)
