"""The staff-facing sheets: titles, headers (Russian: staff read them) and each sheet's key column.

Columns are always found by header text at run time, so staff may insert or reorder columns;
the order here is only the default that `marketingbot sheets init` creates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class AuthCol(StrEnum):
    CODE = "Код партнера"
    PHONE = "Телефон"
    NAME = "ФИО"
    STATUS = "STATUS"
    TELEGRAM_ID = "Telegram ID"
    AUTHORIZED_AT = "Дата авторизации"
    PROMO_OPT_IN = "Рассылка"


class AppealCol(StrEnum):
    DATE = "Дата"
    CODE = "Код партнера"
    NAME = "ФИО"
    TELEGRAM_ID = "Telegram ID"
    LOG = "текст_обращений"
    STATUS = "Статус"
    OPERATOR_REPLY = "Ответ оператора"
    UPDATED = "Обновлено"


class AppealStatus(StrEnum):
    NEW = "Новое"
    AI = "Ответ ИИ"
    IN_WORK = "В работе"
    SOLVED = "Решено"


class QueueCol(StrEnum):
    ID = "id"
    CREATED_AT = "created_at"
    OBJECT_CODE = "object_code"
    TELEGRAM_ID = "telegram_id"
    REQUESTED_BY = "requested_by"
    STATUS = "status"
    STARTED_AT = "started_at"
    FINISHED_AT = "finished_at"
    PDF_URL = "pdf_url"
    ERROR = "error"
    RESULT_TEXT = "result_text"
    DELIVERED_AT = "delivered_at"
    ATTEMPTS = "attempts"


class QueueStatus(StrEnum):
    NEW = "NEW"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    ERROR = "ERROR"


class ObjectCol(StrEnum):
    CODE = "code"
    TYPE = "type"
    DISTRICT = "district"
    ADDRESS = "address"
    ROOMS = "rooms"
    AREA = "area"
    PRICE = "price"
    LISTED_AT = "listed_at"
    STATUS = "status"


class MarketCol(StrEnum):
    ID = "id"
    TYPE = "type"
    DISTRICT = "district"
    ROOMS = "rooms"
    AREA = "area"
    PRICE = "price"
    LISTED_AT = "listed_at"
    REMOVED_AT = "removed_at"
    SOURCE = "source"


class KnowledgeCol(StrEnum):
    QUESTION = "Вопрос"
    ANSWER = "Ответ"
    TAGS = "Теги"
    ACTIVE = "Активно"


class ArchiveCol(StrEnum):
    TELEGRAM_ID = "Telegram ID"
    PERIOD = "Период"
    LOG = "текст_обращений"


class PromoCol(StrEnum):
    ID = "id"
    TITLE = "Заголовок"
    TEXT = "Текст"
    PICTURE = "Картинка"
    START = "Начало"
    AUDIENCE = "Аудитория"
    STATUS = "Статус"
    SENT = "Отправлено"
    ERRORS = "Ошибки"


class PromoStatus(StrEnum):
    DRAFT = "DRAFT"
    READY = "READY"
    SENDING = "SENDING"
    SENT = "SENT"


@dataclass(frozen=True)
class Overflow:
    """Where the oldest entries of a log cell move when an append would overflow it (with the writer's consent,
    `archive_overflow`): one row per moved part, in another sheet. Cut at entry boundaries (gateway/logentry.py)."""

    sheet: str
    owner_column: str  # the key of the row the text came from
    period_column: str  # 'first — last' times of the moved entries
    text_column: str  # the moved entries


@dataclass(frozen=True)
class SheetSchema:
    """One sheet: its title, default headers, the header of its unique key (if any), dropdowns, and where its
    log cells overflow to (if anywhere)."""

    title: str
    headers: tuple[str, ...]
    key: str | None = None
    dropdowns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    overflow: Overflow | None = None

    def __post_init__(self) -> None:
        if self.key is not None and self.key not in self.headers:
            raise ValueError(f"key {self.key!r} is not a header of {self.title!r}")


AUTH = SheetSchema("Auth", tuple(AuthCol), key=AuthCol.CODE, dropdowns={AuthCol.PROMO_OPT_IN: ("да", "нет")})
ARCHIVE = SheetSchema("Архив", tuple(ArchiveCol))
APPEALS = SheetSchema(
    "Обращения",
    tuple(AppealCol),
    key=AppealCol.TELEGRAM_ID,
    dropdowns={AppealCol.STATUS: tuple(AppealStatus)},
    overflow=Overflow(ARCHIVE.title, ArchiveCol.TELEGRAM_ID, ArchiveCol.PERIOD, ArchiveCol.LOG),
)
QUEUE = SheetSchema("Очередь", tuple(QueueCol), key=QueueCol.ID, dropdowns={QueueCol.STATUS: tuple(QueueStatus)})
OBJECTS = SheetSchema("Объекты", tuple(ObjectCol), key=ObjectCol.CODE)
MARKET = SheetSchema("Рынок", tuple(MarketCol), key=MarketCol.ID)
KNOWLEDGE = SheetSchema("База знаний", tuple(KnowledgeCol), dropdowns={KnowledgeCol.ACTIVE: ("да", "нет")})
PROMOTIONS = SheetSchema("Акции", tuple(PromoCol), key=PromoCol.ID, dropdowns={PromoCol.STATUS: tuple(PromoStatus)})

ALL_SCHEMAS: tuple[SheetSchema, ...] = (AUTH, APPEALS, ARCHIVE, QUEUE, OBJECTS, MARKET, KNOWLEDGE, PROMOTIONS)
# Delivered analytics requests older than QUEUE_RETENTION_DAYS, moved out of Очередь. `sheets init` creates it,
# the archiver creates it on demand; the bot does not need it to run.
QUEUE_ARCHIVE = SheetSchema("Очередь архив", tuple(QueueCol), key=QueueCol.ID)
AUXILIARY_SCHEMAS: tuple[SheetSchema, ...] = (QUEUE_ARCHIVE,)


def normalize_header(text: str) -> str:
    """How headers are compared: case-insensitive, outer spaces trimmed, inner runs of spaces folded."""
    return " ".join(text.split()).casefold()
