"""AdminService on the local store with a recording Messenger: what each admin command answers."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from bot.ai.prompt import SystemPrompt
from bot.services import chatlog
from bot.services.admin import TEXT_SHEET_DOWN, AdminService
from bot.services.chatlog import Author
from bot.services.promotions import PromotionService
from gateway import AsyncSheetsGateway
from gateway.ops import upsert
from gateway.schemas import APPEALS, ARCHIVE, AUTH, QUEUE, AppealCol, ArchiveCol, AuthCol, QueueCol
from tests.chat_support import ManualClock, chat_gateway_config, moscow, start_flaky_gateway
from tests.promo_support import PromoMessenger, add_promo, seed_partners

ADMIN = 4242


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    """A small system prompt with two scripts."""
    path = tmp_path / "prompt.txt"
    path.write_text("Ты ассистент агентства.\n§1. Приветствие\nШаблон: Здравствуйте!\n§2. Эскалация\n", "utf-8")
    return path


def admin_service(
    gw: AsyncSheetsGateway, messenger: PromoMessenger, prompt_file: Path, clock: ManualClock | None = None
) -> AdminService:
    """An AdminService with a fast PromotionService behind /broadcast_test."""
    clock = clock or ManualClock(moscow(2026, 11, 23, 15, 0))
    promotions = PromotionService(gw, messenger, rate_per_second=1000.0, clock=clock)
    return AdminService(gw, messenger, SystemPrompt(prompt_file), promotions=promotions, clock=clock)


async def add_appeal(
    gw: AsyncSheetsGateway, tid: int, name: str, code: str, status: str, updated: str, log: str = ""
) -> None:
    """One Обращения row."""
    await gw.table(APPEALS).write(
        [
            gw.table(APPEALS).op_insert(
                {
                    AppealCol.DATE: "2026-11-01 10:00:00",
                    AppealCol.CODE: code,
                    AppealCol.NAME: name,
                    AppealCol.TELEGRAM_ID: str(tid),
                    AppealCol.LOG: log,
                    AppealCol.STATUS: status,
                    AppealCol.UPDATED: updated,
                }
            )
        ]
    )


def rewrite(path: Path, text: str) -> None:
    """Edit a file and make sure its mtime moves (the prompt reloads on a changed mtime or size)."""
    path.write_text(text, "utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


async def reply(admin: AdminService, messenger: PromoMessenger, command: str, *args: str) -> str:
    """Run a command as the admin; the text it answered."""
    before = len(messenger.delivered)
    await admin.handle(ADMIN, command, list(args))
    new = [d for d in messenger.delivered[before:] if d.chat_id == ADMIN]
    assert new, f"/{command} answered nothing"
    return new[-1].text


async def test_list_shows_open_appeals(local_gateway: AsyncSheetsGateway, prompt_file: Path) -> None:
    """/list shows `В работе` then `Новое` appeals, longest waiting first, with name, code, status and age."""
    gw = local_gateway
    await add_appeal(gw, 101, "Иван Петров", "P-101", "Новое", "2026-11-23 14:30:00")
    await add_appeal(gw, 102, "Анна Смирнова", "P-102", "В работе", "2026-11-23 12:45:00")
    await add_appeal(gw, 103, "Олег", "P-103", "Ответ ИИ", "2026-11-23 14:00:00")
    await add_appeal(gw, 104, "Мария", "P-104", "Решено", "2026-11-23 14:00:00")
    await add_appeal(gw, 105, "", "", "Новое", "2026-11-21 09:00:00")
    messenger = PromoMessenger()
    text = await reply(admin_service(gw, messenger, prompt_file), messenger, "list")
    assert text.splitlines() == [
        "Открытые обращения: 3 (В работе — 1, Новое — 2)",
        "• Анна Смирнова (P-102) — В работе, 2 ч 15 мин назад; /view 102",
        "• без имени (без кода) — Новое, 2 дн 6 ч назад; /view 105",
        "• Иван Петров (P-101) — Новое, 30 мин назад; /view 101",
    ]


async def test_list_when_nothing_is_open(local_gateway: AsyncSheetsGateway, prompt_file: Path) -> None:
    """/list says so when every appeal is answered or solved."""
    messenger = PromoMessenger()
    await add_appeal(local_gateway, 103, "Олег", "P-103", "Решено", "2026-11-23 14:00:00")
    assert await reply(admin_service(local_gateway, messenger, prompt_file), messenger, "list") == (
        "Открытых обращений нет."
    )


async def test_view_shows_the_last_part(local_gateway: AsyncSheetsGateway, prompt_file: Path) -> None:
    """/view shows the newest entries of the log (by Telegram ID or code) and points to /export for the rest."""
    gw = local_gateway
    at = moscow(2026, 11, 23, 10, 0)
    blocks = [chatlog.format_entry(at, Author.USER if i % 2 == 0 else Author.AI, f"реплика {i}") for i in range(20)]
    await add_appeal(gw, 101, "Иван Петров", "P-101", "Ответ ИИ", "2026-11-23 14:30:00", "\n".join(blocks))
    messenger = PromoMessenger()
    admin = admin_service(gw, messenger, prompt_file)
    text = await reply(admin, messenger, "view", "101")
    assert text.startswith("Иван Петров (P-101), Telegram ID 101\nСтатус: Ответ ИИ, обновлено 2026-11-23 14:30:00")
    assert "реплика 19" in text and "реплика 8" in text and "реплика 7" not in text
    assert text.endswith("…ранее ещё 8 сообщ. Полностью: /export 101")
    assert await reply(admin, messenger, "view", "P-101") == text
    assert await reply(admin, messenger, "view", "999") == "В «Обращения» нет переписки «999»."
    assert await reply(admin, messenger, "view") == "Укажите Telegram ID: /view 100001"


async def test_export_of_a_conversation_longer_than_a_cell(
    local_gateway: AsyncSheetsGateway, prompt_file: Path
) -> None:
    """/export sends the whole conversation, Архив parts first and then Обращения, every entry once, in order."""
    gw = local_gateway
    table = gw.table(APPEALS)
    blocks = []
    for i in range(70):
        at = moscow(2026, 11, 1 + i // 10, 9 + i % 10)
        author = Author.USER if i % 2 == 0 else Author.AI
        block = chatlog.format_entry(at, author, f"Сообщение №{i:03d}. " + "текст " * 330)
        blocks.append(block)
        await table.write(
            [
                table.op_append_text(
                    "101",
                    AppealCol.LOG,
                    block,
                    insert_defaults={AppealCol.NAME: "Иван Петров", AppealCol.CODE: "P-101", AppealCol.STATUS: "Новое"},
                    archive_overflow=True,
                )
            ]
        )
    await add_appeal(gw, 102, "Другой", "P-102", "Новое", "", "[2026-11-01 09:00] Пользователь: чужое")
    await gw.table(ARCHIVE).write(
        [
            gw.table(ARCHIVE).op_insert(
                {ArchiveCol.TELEGRAM_ID: "102", ArchiveCol.LOG: "[2026-10-01 09:00] ИИ: тоже чужое"}
            )
        ]
    )
    archived = [r for r in await gw.table(ARCHIVE).all() if r[ArchiveCol.TELEGRAM_ID] == "101"]
    assert len(archived) >= 2  # the conversation really spans several cells
    messenger = PromoMessenger()
    await admin_service(gw, messenger, prompt_file).handle(ADMIN, "export", ["101"])
    (doc,) = messenger.delivered
    assert doc.kind == "document" and doc.filename == "conversation_101.txt"
    assert doc.text == f"Переписка, Telegram ID 101, из них частей в архиве: {len(archived)}."
    text = doc.data.decode("utf-8")
    head, log = text.split("\n\n", 1)
    assert head.splitlines()[:5] == [
        "Переписка с партнёром",
        "Telegram ID: 101",
        "ФИО: Иван Петров",
        "Код партнера: P-101",
        "Статус: Новое",
    ]
    assert log == "\n".join(blocks) + "\n"
    assert "чужое" not in text


async def test_export_all_zips_every_conversation(local_gateway: AsyncSheetsGateway, prompt_file: Path) -> None:
    """/export_all sends a .zip with one .txt per partner, archive-only conversations included."""
    gw = local_gateway
    await add_appeal(gw, 101, "Иван", "P-101", "Новое", "", "[2026-11-01 09:00] Пользователь: один")
    await add_appeal(gw, 102, "Анна", "P/102", "Решено", "", "[2026-11-02 09:00] Пользователь: два")
    await gw.table(ARCHIVE).write(
        [gw.table(ARCHIVE).op_insert({ArchiveCol.TELEGRAM_ID: "101", ArchiveCol.LOG: "[2026-10-01 09:00] ИИ: ранее"})]
    )
    await gw.table(ARCHIVE).write(
        [gw.table(ARCHIVE).op_insert({ArchiveCol.TELEGRAM_ID: "103", ArchiveCol.LOG: "[2026-09-01 09:00] ИИ: давно"})]
    )
    messenger = PromoMessenger()
    await admin_service(gw, messenger, prompt_file).handle(ADMIN, "export_all", [])
    (doc,) = messenger.delivered
    assert doc.filename == "conversations_20261123_1500.zip" and doc.text.startswith("Все переписки: 3 файлов")
    with zipfile.ZipFile(io.BytesIO(doc.data)) as zf:
        files = {name: zf.read(name).decode("utf-8") for name in zf.namelist()}
    assert sorted(files) == ["101_P-101.txt", "102_P_102.txt", "103.txt"]
    assert files["101_P-101.txt"].endswith("\n\n[2026-10-01 09:00] ИИ: ранее\n[2026-11-01 09:00] Пользователь: один\n")
    assert files["103.txt"].endswith("\n\n[2026-09-01 09:00] ИИ: давно\n")


async def test_stats(local_gateway: AsyncSheetsGateway, prompt_file: Path) -> None:
    """/stats counts partners, appeals, AI answers today, the queue, API calls and 429s, breakers, outbox."""
    gw = local_gateway
    await seed_partners(gw, 4, opted_out=[500_001])
    await gw.table(AUTH).write(
        [gw.table(AUTH).op_insert({AuthCol.CODE: "X", AuthCol.STATUS: "blocked", AuthCol.TELEGRAM_ID: "9"})]
    )
    await add_appeal(gw, 101, "Иван", "P-101", "Новое", "")
    await add_appeal(gw, 102, "Анна", "P-102", "В работе", "")
    await add_appeal(gw, 103, "Олег", "P-103", "В работе", "")
    for i, status in enumerate(["NEW", "DONE", "DONE", "ERROR"]):
        await gw.table(QUEUE).write([gw.table(QUEUE).op_insert({QueueCol.ID: f"q{i}", QueueCol.STATUS: status})])
    await gw.state.counter_add("ai-answers:101", "2026-11-23", 3)
    await gw.state.counter_add("ai-answers:102", "2026-11-23", 2)
    await gw.state.counter_add("ai-answers:101", "2026-11-22", 7)
    messenger = PromoMessenger()
    text = await reply(admin_service(gw, messenger, prompt_file), messenger, "stats")
    lines = text.splitlines()
    assert lines[0] == "📊 Состояние на 2026-11-23 15:00"
    assert lines[1] == "Партнёры: авторизовано 4 (отписались от акций: 1)"
    assert lines[2] == "Обращения: Новое — 1, Ответ ИИ — 0, В работе — 2, Решено — 0"
    assert lines[3] == "Ответов ИИ сегодня: 5"
    assert lines[4] == "Очередь аналитики: NEW — 1, PROCESSING — 0, DONE — 2, ERROR — 1"
    assert lines[5].startswith("API таблицы за час: ") and "batch_get" in lines[5]
    assert lines[5].endswith("ошибок 429: 0")
    assert int(lines[5].split(": ")[1].split()[0]) >= 10
    assert lines[6] == "Предохранители: таблица — closed; ИИ — нет данных"
    assert lines[7] == "Очередь записей в таблицу (outbox): 0"
    assert lines[8] == "Неприменимые записи (dead letters): 0"
    assert lines[9].startswith("Системный промпт: версия ")


async def test_stats_shows_dead_letters_and_how_to_handle_them(
    local_gateway: AsyncSheetsGateway, prompt_file: Path
) -> None:
    """/stats counts dead letters and points to `marketingbot outbox list` when there are any."""
    gw = local_gateway
    await gw.state.outbox_put(
        [upsert(AUTH.title, AuthCol.CODE, "gone", {AuthCol.NAME: "x"}, create=False)], maybe_applied=False
    )
    (entry,) = await gw.state.outbox_peek(1)
    await gw.state.outbox_kill(entry, "RowNotFound: no row")
    messenger = PromoMessenger()
    text = await reply(admin_service(gw, messenger, prompt_file), messenger, "stats")
    assert "Неприменимые записи (dead letters): 1 — см. marketingbot outbox list" in text


async def test_stats_while_the_sheet_is_down(tmp_path: Path, prompt_file: Path) -> None:
    """With the sheet down /stats still reports the breaker, the outbox and the API figures."""
    gw, flaky = await start_flaky_gateway(chat_gateway_config(tmp_path))
    try:
        flaky.down = True
        messenger = PromoMessenger()
        text = await reply(admin_service(gw, messenger, prompt_file), messenger, "stats")
        assert "Партнёры: нет данных (таблица недоступна)" in text
        assert "Очередь записей в таблицу (outbox): 0" in text
        assert await reply(admin_service(gw, messenger, prompt_file), messenger, "list") == TEXT_SHEET_DOWN
    finally:
        flaky.down = False
        await gw.close()


async def test_reload_reports_the_prompt_version(local_gateway: AsyncSheetsGateway, prompt_file: Path) -> None:
    """/reload re-reads the prompt file: a changed file gives a new version, an unchanged one says so."""
    messenger = PromoMessenger()
    admin = admin_service(local_gateway, messenger, prompt_file)
    first = await reply(admin, messenger, "reload")
    assert first.startswith("Системный промпт без изменений: версия ") and "сценариев: 2" in first
    old = first.split("версия ")[1].split(",")[0]
    rewrite(prompt_file, "Новый промпт.\n§1. Приветствие\n§2. Цены\n§3. Эскалация\n")
    second = await reply(admin, messenger, "reload")
    assert second.startswith("Системный промпт обновлён: версия ") and f"(была {old})" in second
    assert "сценариев: 3" in second


async def test_broadcast_test_goes_to_the_admin(local_gateway: AsyncSheetsGateway, prompt_file: Path) -> None:
    """/broadcast_test sends the promotion to the admin only, then how many partners the broadcast would reach."""
    gw = local_gateway
    await seed_partners(gw, 3, opted_out=[500_002])
    await add_promo(gw, "A7", title="Осенняя акция", status="DRAFT")
    messenger = PromoMessenger()
    admin = admin_service(gw, messenger, prompt_file)
    summary = await reply(admin, messenger, "broadcast_test", "A7")
    assert [(d.kind, d.chat_id) for d in messenger.delivered] == [("text", ADMIN), ("text", ADMIN)]
    assert messenger.delivered[0].text.startswith("Осенняя акция\n\n")
    assert summary == (
        "Тест акции «Осенняя акция» (id A7) отправлен только вам.\n"
        "Статус в таблице: DRAFT. При рассылке получат: 2 (отписались: 1)."
    )
    assert await reply(admin, messenger, "broadcast_test", "NOPE") == "Акции с id «NOPE» нет в листе «Акции»."
    assert await reply(admin, messenger, "broadcast_test") == "Укажите id акции из листа «Акции»: /broadcast_test A1"
