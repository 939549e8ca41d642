"""The knowledge base (the spec's "RAG"): staff-maintained facts from «База знаний», ranked with BM25.

Unlike conversations, the knowledge base is read at most every `refresh_seconds` (default 60) rather than on
every message. It is reference material, not state: a staff edit showing up a minute later is fine, while
reading the whole sheet for every message would double the Sheets calls per turn and eat the quota the
conversations need. When the sheet cannot be read, the last good copy keeps serving. A message never waits
long for a refresh either: once a copy is loaded, a due refresh runs in the background and a search waits for
it at most `stale_wait` seconds (under load a read can wait over a second for the quota) before using the copy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.ai.base import render_fact
from bot.ai.prompt import DEFAULT_VALUES
from bot.ai.search import FieldedBM25, Tokenizer
from gateway import AsyncSheetsGateway, GatewayError
from gateway.schemas import KNOWLEDGE, KnowledgeCol

log = logging.getLogger(__name__)

# Values of «Активно» that switch an entry off; anything else (including an empty cell) keeps it on.
INACTIVE = frozenset({"нет", "no", "false", "0", "-", "выкл", "off", "н"})


@dataclass(frozen=True)
class Entry:
    """One active knowledge-base entry."""

    question: str
    answer: str
    tags: tuple[str, ...] = ()
    row: int = 0

    def render(self) -> str:
        """The entry as a fact for the model's context."""
        return render_fact(self.question, self.answer)


def is_active(value: str) -> bool:
    """Whether an «Активно» cell keeps its entry on (empty counts as on: staff often leave it blank)."""
    return value.strip().casefold() not in INACTIVE


class KnowledgeBase:
    """Reads «База знаний» (at most every `refresh_seconds`) and finds the entries relevant to a message."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        *,
        refresh_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        stale_wait: float = 0.3,
    ) -> None:
        self._table = gw.table(KNOWLEDGE)
        self._stale_wait = stale_wait
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._tokenize = Tokenizer()
        self._entries: list[Entry] = []
        self._index = FieldedBM25([[], []], [2.0, 1.0])
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def entries(self) -> list[Entry]:
        """The active entries (refreshed from the sheet when older than `refresh_seconds`)."""
        await self._refresh()
        return list(self._entries)

    async def search(self, text: str, k: int = 3) -> list[Entry]:
        """The `k` active entries most relevant to `text`, best first (none when nothing matches)."""
        if self._loaded_at is None:
            await self._refresh()
        elif not self._fresh():
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.create_task(self._refresh(), name="knowledge-refresh")
            await asyncio.wait({self._refreshing}, timeout=self._stale_wait)
        query = self._tokenize(text)
        if not query or not self._entries:
            return []
        return [self._entries[i] for i, _ in self._index.top(query, k)]

    async def _refresh(self) -> None:
        if self._fresh():
            return
        async with self._lock:  # one read for everyone waiting, not one each
            if self._fresh():
                return
            try:
                records = await self._table.all()
            except GatewayError as exc:
                # Keep serving the last good copy; try again after the next interval, not on every message.
                log.warning("knowledge base not refreshed (%s); using %d cached entries", exc, len(self._entries))
                self._loaded_at = self._clock()
                return
            entries = []
            for rec in records:
                question, answer = rec[KnowledgeCol.QUESTION].strip(), rec[KnowledgeCol.ANSWER].strip()
                if not answer or not is_active(rec[KnowledgeCol.ACTIVE]):
                    continue
                tags = tuple(t.strip() for t in rec[KnowledgeCol.TAGS].replace(";", ",").split(",") if t.strip())
                entries.append(Entry(question, answer, tags, rec.row))
            self._entries = entries
            # The question and tags say what an entry is about, so a match there counts twice.
            self._index = FieldedBM25(
                [
                    [self._tokenize(" ".join([e.question, *e.tags])) for e in entries],
                    [self._tokenize(e.answer) for e in entries],
                ],
                [2.0, 1.0],
            )
            self._loaded_at = self._clock()

    def _fresh(self) -> bool:
        return self._loaded_at is not None and self._clock() - self._loaded_at < self._refresh_seconds


def demo_knowledge(working_hours: str = DEFAULT_VALUES["WORKING_HOURS"]) -> list[dict[str, str]]:
    """A useful starter set for a Moscow agency's partner programme (staff replace the figures with theirs);
    `working_hours` as WorkingHours.describe() gives it (from WORKING_HOURS)."""
    rows = [
        (
            "Какое вознаграждение получает партнёр за сделку?",
            "Партнёр получает 50% от комиссии агентства по закрытой сделке с приведённым им клиентом. "
            "Комиссия агентства по вторичному рынку Москвы обычно 2-3% от цены объекта, по новостройкам её платит "
            "застройщик. Точная сумма фиксируется в договоре с партнёром до сделки.",
            "комиссия, вознаграждение, процент, выплата, бонус",
        ),
        (
            "Когда и как выплачивается вознаграждение партнёру?",
            "Выплата производится в течение 10 рабочих дней после регистрации права собственности и получения "
            "агентством комиссии. Деньги переводятся на расчётный счёт или карту по реквизитам из договора; "
            "самозанятые партнёры присылают чек из «Мой налог».",
            "выплата, оплата, деньги, сроки, реквизиты, самозанятый",
        ),
        (
            "Как передать клиента в агентство?",
            "Напишите здесь или менеджеру партнёрского отдела: имя клиента, телефон, что он ищет или продаёт, "
            "бюджет и район. Заявка регистрируется за вами в течение рабочего дня, в ответ приходит номер заявки. "
            "Передавайте только клиентов, которые дали согласие на звонок.",
            "клиент, заявка, передать, лид, рекомендация",
        ),
        (
            "Сколько действует закрепление клиента за партнёром?",
            "Клиент закрепляется за партнёром на 90 дней с даты регистрации заявки. Если за это время клиент "
            "выходит на сделку, вознаграждение ваше, даже если он потом обратился в агентство напрямую. "
            "Продление закрепления согласуйте с менеджером партнёрского отдела.",
            "закрепление, фиксация, срок, уникальность, клиент",
        ),
        (
            "Какие документы нужны покупателю для сделки?",
            "Паспорт; при покупке в браке — нотариальное согласие супруга (для вторички) или участие супруга в "
            "сделке; для ипотеки — одобрение банка и документы по списку банка; при использовании маткапитала — "
            "сертификат и справка ПФР об остатке. Полный список юрист агентства присылает после внесения аванса.",
            "документы, покупатель, паспорт, сделка, согласие супруга",
        ),
        (
            "Какие документы нужны продавцу квартиры?",
            "Паспорт, выписка из ЕГРН, правоустанавливающий документ (договор купли-продажи, дарения, "
            "свидетельство о наследстве и т. п.), согласие супруга если квартира куплена в браке, выписка о "
            "зарегистрированных лицах, справка об отсутствии долгов за ЖКУ. Если собственник — ребёнок, нужно "
            "разрешение органов опеки. Юрист агентства проверяет комплект бесплатно.",
            "документы, продавец, егрн, собственник, опека, продажа",
        ),
        (
            "С какими банками работает агентство по ипотеке?",
            "Ипотечный брокер агентства подаёт заявку одновременно в несколько банков-партнёров (Сбербанк, ВТБ, "
            "Альфа-Банк, ДОМ.РФ и другие) и подбирает программу: семейная, IT, рыночная. Ставки и условия "
            "меняются, актуальные даёт только брокер после анкеты клиента. Услуга брокера для клиентов партнёров "
            "бесплатна.",
            "ипотека, банк, ставка, брокер, одобрение, кредит",
        ),
        (
            "Что такое «Аналитика 360» и как её получить?",
            "«Аналитика 360» — отчёт по объекту агентства: конкуренты того же типа, района и комнатности, цена за "
            "м², место цены объекта среди конкурентов, динамика цен за последние месяцы, срок экспозиции и "
            "рекомендация по цене. Откройте Mini App кнопкой меню бота, выберите «Аналитика» и введите код "
            "объекта (например, DEMO-0001). Отчёт с PDF придёт в этот чат через 1-2 минуты.",
            "аналитика, 360, отчёт, объект, код, конкуренты, pdf",
        ),
        (
            "Как пользоваться отчётом «Аналитика 360» с клиентом?",
            "Покажите продавцу место его цены среди конкурентов и срок экспозиции похожих квартир: это лучший "
            "аргумент для корректировки цены. Покупателю отчёт помогает понять, что цена рыночная. Отчёт основан "
            "на объявлениях, а не на ценах сделок, поэтому называйте его ориентиром, а не оценкой.",
            "аналитика, отчёт, продавец, цена, аргументы, торг",
        ),
        (
            "Где посмотреть объекты агентства в продаже?",
            "Актуальные объекты с кодами (DEMO-0001 … DEMO-0020) — в каталоге Mini App (кнопка меню бота), с "
            "поиском по району, комнатам и цене. По каждому объекту можно запросить «Аналитику 360». Наличие и "
            "цену конкретного объекта перед показом уточняйте у менеджера: напишите «оператор».",
            "объекты, каталог, квартиры, продажа, наличие, цена",
        ),
        (
            "Как записать клиента на показ объекта?",
            "Напишите «оператор» и назовите менеджеру код объекта, удобные дату и время и имя клиента — он "
            "подтвердит показ. На показ клиента сопровождает агент агентства; вы можете присутствовать.",
            "показ, просмотр, запись, встреча, объект",
        ),
        (
            "Как связаться с партнёрским отделом и когда он работает?",
            f"Менеджеры партнёрского отдела работают ежедневно {working_hours}. Напишите в этот чат "
            "слово «оператор» или нажмите «Позвать оператора» — сотрудник ответит здесь же. Вне рабочего времени "
            "ответ придёт в начале следующего рабочего дня.",
            "контакты, оператор, менеджер, время работы, связь",
        ),
        (
            "Как отключить рассылку акций?",
            "Отправьте боту команду /stop_promo — рассылка акций отключится сразу. Включить её обратно: команда "
            "/promo.",
            "рассылка, акции, уведомления, отписаться",
        ),
    ]
    return [
        {KnowledgeCol.QUESTION: q, KnowledgeCol.ANSWER: a, KnowledgeCol.TAGS: t, KnowledgeCol.ACTIVE: "да"}
        for q, a, t in rows
    ]
