"""The knowledge base: BM25 with Russian stemming over staff-maintained entries, refreshed without a restart."""

from __future__ import annotations

from pathlib import Path

from bot.ai.search import BM25Index, Tokenizer
from bot.services.demo import DEMO_CODE, DEMO_TELEGRAM_ID, seed_demo_partner
from bot.services.knowledge import KnowledgeBase, demo_knowledge, is_active
from gateway import AsyncSheetsGateway
from gateway.schemas import AUTH, KNOWLEDGE, AuthCol, KnowledgeCol
from tests.chat_support import add_fact, chat_gateway_config, start_flaky_gateway


class Tick:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _seed_demo(gw: AsyncSheetsGateway) -> None:
    ops = [gw.table(KNOWLEDGE).op_insert(dict(e)) for e in demo_knowledge()]
    await gw.write(ops)


def test_tokenizer_stems_russian_and_drops_stop_words() -> None:
    """Inflected forms share a stem; filler words are dropped; English is stemmed too."""
    tok = Tokenizer()
    assert tok("документы") == tok("документов") == tok("документами")
    assert tok("Какие у вас комиссии?") == tok("комиссия")
    assert tok("reports") == tok("report")
    assert tok("ёлка") == tok("елка")


def test_bm25_prefers_rarer_and_denser_matches() -> None:
    """A document matching a rare query term outranks one matching only a common term."""
    index = BM25Index([["a", "b"], ["a", "c", "c"], ["a", "d"]])
    assert index.top(["a", "c"], 1)[0][0] == 1
    assert index.top(["z"], 3) == []


async def test_search_finds_the_relevant_demo_entry(local_gateway: AsyncSheetsGateway) -> None:
    """Partners' questions in their own words find the right demo entry first."""
    await _seed_demo(local_gateway)
    kb = KnowledgeBase(local_gateway)
    cases = {
        "какой процент я получу за сделку?": "вознаграждение получает партнёр",
        "когда придут деньги за клиента": "выплачивается вознаграждение",
        "что нужно от продавца из документов": "документы нужны продавцу",
        "в каких банках можно взять ипотеку": "банками работает агентство",
        "как запросить аналитику по объекту": "Аналитика 360",
        "на сколько дней закрепляется клиент": "закрепление клиента",
    }
    for question, expected in cases.items():
        found = await kb.search(question, 3)
        assert found, question
        assert expected.casefold() in found[0].question.casefold(), (question, found[0].question)


async def test_nothing_matches_nothing_returned(local_gateway: AsyncSheetsGateway) -> None:
    """A message unrelated to every entry (or only stop words) retrieves nothing."""
    await _seed_demo(local_gateway)
    kb = KnowledgeBase(local_gateway)
    assert await kb.search("квантовая хромодинамика", 3) == []
    assert await kb.search("а как же это", 3) == []


async def test_inactive_entries_are_ignored(local_gateway: AsyncSheetsGateway) -> None:
    """`Активно` = нет hides an entry; an empty cell keeps it active."""
    await add_fact(local_gateway, "Старая комиссия", "1%", "комиссия", active="нет")
    await add_fact(local_gateway, "Новая комиссия", "2%", "комиссия", active="")
    found = await KnowledgeBase(local_gateway).search("комиссия", 5)
    assert [e.answer for e in found] == ["2%"]
    assert is_active("Да") and is_active("") and not is_active(" НЕТ ")


async def test_staff_edits_are_seen_after_the_refresh_interval(local_gateway: AsyncSheetsGateway) -> None:
    """A new entry shows up once `refresh_seconds` have passed, without a restart."""
    tick = Tick()
    kb = KnowledgeBase(local_gateway, refresh_seconds=60, clock=tick)
    assert await kb.search("парковка", 3) == []
    await add_fact(local_gateway, "Есть ли парковка у офиса?", "Да, гостевая парковка во дворе.", "парковка, офис")
    tick.now = 59
    assert await kb.search("парковка", 3) == []
    tick.now = 61
    found = await kb.search("парковка", 3)
    assert [e.question for e in found] == ["Есть ли парковка у офиса?"]
    assert found[0].render() == "Вопрос: Есть ли парковка у офиса?\nОтвет: Да, гостевая парковка во дворе."


async def test_last_good_copy_serves_while_the_sheet_is_down(tmp_path: Path) -> None:
    """When the sheet cannot be read, searches keep using the entries read last time."""
    gw, backend = await start_flaky_gateway(chat_gateway_config(tmp_path))
    try:
        await add_fact(gw, "Как связаться с офисом?", "Телефон в профиле", "контакты")
        tick = Tick()
        kb = KnowledgeBase(gw, refresh_seconds=1, clock=tick)
        assert len(await kb.search("контакты", 3)) == 1
        backend.down = True
        tick.now = 5
        assert len(await kb.search("контакты", 3)) == 1
    finally:
        backend.down = False
        await gw.close()


def test_demo_knowledge_is_complete() -> None:
    """The demo set has at least 12 entries, each with a question, an answer, tags and `да`."""
    rows = demo_knowledge()
    assert len(rows) >= 12
    for row in rows:
        assert row[KnowledgeCol.QUESTION].endswith("?")
        assert len(row[KnowledgeCol.ANSWER]) > 60
        assert row[KnowledgeCol.TAGS] and row[KnowledgeCol.ACTIVE] == "да"


async def test_seed_demo_is_idempotent_and_respects_staff_changes(local_gateway: AsyncSheetsGateway) -> None:
    """Seeding twice leaves one demo partner and one copy of the knowledge base; staff edits survive."""
    await seed_demo_partner(local_gateway)
    auth = local_gateway.table(AUTH)
    row = await auth.get(DEMO_CODE)
    assert row is not None
    assert (row[AuthCol.PHONE], row[AuthCol.TELEGRAM_ID], row[AuthCol.STATUS], row[AuthCol.NAME]) == (
        "+79000000001",
        str(DEMO_TELEGRAM_ID),
        "authorized",
        "Демо Партнёр",
    )
    assert row[AuthCol.PROMO_OPT_IN] == "да"
    await auth.write([auth.op_upsert(DEMO_CODE, {AuthCol.STATUS: "blocked"})])
    await seed_demo_partner(local_gateway)
    rows = await auth.all()
    assert len(rows) == 1 and rows[0][AuthCol.STATUS] == "blocked"
    assert len(await local_gateway.table(KNOWLEDGE).all()) == len(demo_knowledge())
