"""The admin's Telegram console: open appeals, conversations and their export, system health, prompt reload and
a test of a promotion. Only ADMIN_TELEGRAM_IDS reach it (the handlers filter); everything is read fresh.

Each command returns an AdminReply (text, or a document with a caption); `handle` runs one command and sends its
reply through the Messenger, turning a sheet outage or a bad argument into a short Russian message.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.ai.fallback import FallbackAI
from bot.ai.prompt import SystemPrompt
from bot.services import chatlog
from bot.services.auth import is_authorized_status
from bot.services.ports import Clock, DeliveryError, Messenger, utc_now
from bot.services.promotions import PromotionError, PromotionService, is_opted_in
from bot.services.sheet_time import MOSCOW
from gateway import AsyncSheetsGateway, GatewayError, Record, SheetUnavailable
from gateway.schemas import (
    APPEALS,
    ARCHIVE,
    AUTH,
    QUEUE,
    AppealCol,
    AppealStatus,
    ArchiveCol,
    AuthCol,
    QueueCol,
    QueueStatus,
)

log = logging.getLogger(__name__)

#: Admin commands and their menu descriptions (setMyCommands, /help).
ADMIN_COMMANDS: tuple[tuple[str, str], ...] = (
    ("list", "Открытые обращения"),
    ("view", "Последние сообщения: /view <Telegram ID>"),
    ("export", "Переписка целиком в .txt: /export <Telegram ID>"),
    ("export_all", "Все переписки архивом .zip"),
    ("stats", "Состояние системы"),
    ("reload", "Перечитать системный промпт"),
    ("broadcast_test", "Тест акции себе: /broadcast_test <id>"),
)
OPEN_STATUSES = (AppealStatus.IN_WORK, AppealStatus.NEW)
TEXT_SHEET_DOWN = "Таблица сейчас недоступна, попробуйте через минуту."


@dataclass(frozen=True)
class AdminReply:
    """What a command answers: a text, or a document with `text` as its caption."""

    text: str
    document: bytes | None = None
    filename: str = ""


class AdminService:
    """The logic behind the admin commands."""

    def __init__(
        self,
        gw: AsyncSheetsGateway,
        messenger: Messenger,
        prompt: SystemPrompt,
        *,
        promotions: PromotionService | None = None,
        ai: FallbackAI | None = None,
        view_entries: int = 12,
        view_chars: int = 3500,
        tz: ZoneInfo = MOSCOW,
        clock: Clock = utc_now,
    ) -> None:
        self._gw = gw
        self._appeals = gw.table(APPEALS)
        self._archive = gw.table(ARCHIVE)
        self._auth = gw.table(AUTH)
        self._queue = gw.table(QUEUE)
        self._messenger = messenger
        self._prompt = prompt
        self._promotions = promotions
        self._ai = ai
        self._view_entries = view_entries
        self._view_chars = view_chars
        self._tz = tz
        self._clock = clock
        self._prompt_version = prompt.version

    async def handle(self, chat_id: int, command: str, args: Sequence[str]) -> None:
        """Run one admin command and send its reply to `chat_id`."""
        try:
            reply = await self._dispatch(chat_id, command, [a for a in args if a])
        except SheetUnavailable:
            reply = AdminReply(TEXT_SHEET_DOWN)
        except GatewayError as exc:
            log.warning("/%s failed: %s", command, exc)
            reply = AdminReply(f"Ошибка таблицы: {exc}")
        except PromotionError as exc:
            reply = AdminReply(str(exc))
        except DeliveryError as exc:
            reply = AdminReply(f"Не удалось отправить: {exc}")
        except Exception:  # the admin still gets an answer; the details go to the log
            log.exception("/%s failed", command)
            reply = AdminReply(f"Команда /{command} не выполнена: внутренняя ошибка, подробности в логе.")
        try:
            if reply.document is not None:
                await self._messenger.send_document(chat_id, reply.document, reply.filename, reply.text)
            else:
                await self._messenger.send_text(chat_id, reply.text)
        except DeliveryError as exc:
            log.warning("reply to /%s for %s not delivered: %s", command, chat_id, exc)

    async def _dispatch(self, chat_id: int, command: str, args: list[str]) -> AdminReply:
        if command == "list":
            return AdminReply(await self.list_open())
        if command == "view":
            return AdminReply(await self.view(args[0]) if args else "Укажите Telegram ID: /view 100001")
        if command == "export":
            return await self.export(args[0]) if args else AdminReply("Укажите Telegram ID: /export 100001")
        if command == "export_all":
            return await self.export_all()
        if command == "stats":
            return AdminReply(await self.stats())
        if command == "reload":
            return AdminReply(self.reload_prompt())
        if command == "broadcast_test":
            if not args:
                return AdminReply("Укажите id акции из листа «Акции»: /broadcast_test A1")
            return AdminReply(await self.broadcast_test(args[0], chat_id))
        return AdminReply(f"Неизвестная команда /{command}")

    # -- appeals -------------------------------------------------------------------------------

    async def list_open(self) -> str:
        """Open appeals (`В работе`, `Новое`): name, code, status and how long since the last activity."""
        rows = await self._appeals.select(
            [AppealCol.TELEGRAM_ID, AppealCol.NAME, AppealCol.CODE, AppealCol.STATUS, AppealCol.DATE, AppealCol.UPDATED]
        )
        now = self._clock()
        found = []
        for row in rows:
            status = row[AppealCol.STATUS].strip()
            if status not in OPEN_STATUSES:
                continue
            at = self._when(row[AppealCol.UPDATED]) or self._when(row[AppealCol.DATE])
            found.append((OPEN_STATUSES.index(AppealStatus(status)), at or now, row, at))
        if not found:
            return "Открытых обращений нет."
        found.sort(key=lambda f: (f[0], f[1]))  # «В работе» first, the longest waiting on top
        counts = Counter(f[2][AppealCol.STATUS].strip() for f in found)
        lines = [
            f"Открытые обращения: {len(found)} (В работе — {counts[AppealStatus.IN_WORK]}, "
            f"Новое — {counts[AppealStatus.NEW]})"
        ]
        for _, _, row, at in found:
            name = row[AppealCol.NAME].strip() or "без имени"
            code = row[AppealCol.CODE].strip() or "без кода"
            age = f"{_age(now - at)} назад" if at else "время неизвестно"
            lines.append(
                f"• {name} ({code}) — {row[AppealCol.STATUS].strip()}, {age}; /view {row[AppealCol.TELEGRAM_ID]}"
            )
        return "\n".join(lines)

    async def view(self, target: str) -> str:
        """The last part of a conversation (by Telegram ID or partner code)."""
        row = await self._find_appeal(target)
        if row is None:
            return f"В «Обращения» нет переписки «{target}»."
        entries = chatlog.parse(row[AppealCol.LOG], self._tz)
        tail = entries[-self._view_entries :]
        while len(tail) > 1 and len(chatlog.render(tail)) > self._view_chars:
            tail = tail[1:]
        tid = row[AppealCol.TELEGRAM_ID].strip()
        head = self._who(row)
        if not entries:
            return f"{head}\n\nВ «Обращения» пусто. Архив, если есть: /export {tid}"
        body = chatlog.render(tail)
        if len(body) > self._view_chars:
            body = "…" + body[-self._view_chars :]
        earlier = len(entries) - len(tail)
        more = f"\n\n…ранее ещё {earlier} сообщ. Полностью: /export {tid}" if earlier else ""
        return f"{head}\n\n{body}{more}"

    async def export(self, target: str) -> AdminReply:
        """The whole conversation, Архив parts first, as a .txt document."""
        row = await self._find_appeal(target)
        tid = row[AppealCol.TELEGRAM_ID].strip() if row is not None else target.strip()
        archive = await self._archive.all()
        parts = [r[ArchiveCol.LOG] for r in archive if r[ArchiveCol.TELEGRAM_ID].strip() == tid]
        if row is None and not parts:
            return AdminReply(f"Переписки «{target}» нет ни в «Обращения», ни в «Архив».")
        text = self._document(tid, row, parts)
        archived = f", из них частей в архиве: {len(parts)}" if parts else ""
        return AdminReply(
            f"Переписка, Telegram ID {tid}{archived}.", text.encode("utf-8"), f"conversation_{_safe(tid)}.txt"
        )

    async def export_all(self) -> AdminReply:
        """Every conversation (Обращения and Архив) as a .zip of .txt files, one per partner."""
        rows, archive = await asyncio.gather(self._appeals.all(), self._archive.all())
        parts: dict[str, list[str]] = {}
        for r in archive:
            parts.setdefault(r[ArchiveCol.TELEGRAM_ID].strip(), []).append(r[ArchiveCol.LOG])
        by_id = {r[AppealCol.TELEGRAM_ID].strip() or f"строка-{r.row}": r for r in rows}
        ids = list(by_id) + [tid for tid in parts if tid not in by_id]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for tid in ids:
                row = by_id.get(tid)
                code = row[AppealCol.CODE].strip() if row is not None else ""
                name = f"{_safe(tid)}_{_safe(code)}.txt" if code else f"{_safe(tid)}.txt"
                zf.writestr(name, self._document(tid, row, parts.get(tid, [])))
        stamp = self._clock().astimezone(self._tz).strftime("%Y%m%d_%H%M")
        data = buffer.getvalue()
        caption = f"Все переписки: {len(ids)} файлов, {max(1, len(data) // 1024)} КБ."
        return AdminReply(caption, data, f"conversations_{stamp}.zip")

    async def _find_appeal(self, target: str) -> Record | None:
        key = target.strip()
        if key.lstrip("-").isdigit():
            return await self._appeals.get(key)
        return await self._appeals.get(key, column=AppealCol.CODE)

    def _document(self, tid: str, row: Record | None, archived: list[str]) -> str:
        now = self._clock().astimezone(self._tz)
        header = [
            "Переписка с партнёром",
            f"Telegram ID: {tid}",
            f"ФИО: {row[AppealCol.NAME].strip() if row is not None else ''}",
            f"Код партнера: {row[AppealCol.CODE].strip() if row is not None else ''}",
            f"Статус: {row[AppealCol.STATUS].strip() if row is not None else ''}",
            f"Выгружено: {now:%Y-%m-%d %H:%M} ({self._tz.key})",
        ]
        # Archived parts were cut from the cell at entry boundaries, oldest first: joined with a newline they
        # give back the log exactly as it grew.
        pieces = [p.strip("\n") for p in archived] + ([row[AppealCol.LOG].strip("\n")] if row is not None else [])
        return "\n".join(header) + "\n\n" + "\n".join(p for p in pieces if p) + "\n"

    def _who(self, row: Record) -> str:
        name = row[AppealCol.NAME].strip() or "без имени"
        code = row[AppealCol.CODE].strip() or "без кода"
        updated = row[AppealCol.UPDATED].strip() or "—"
        return (
            f"{name} ({code}), Telegram ID {row[AppealCol.TELEGRAM_ID].strip()}\n"
            f"Статус: {row[AppealCol.STATUS].strip() or '—'}, обновлено {updated}"
        )

    def _when(self, text: str) -> datetime | None:
        return chatlog.parse_stamp(text.strip(), self._tz) if text.strip() else None

    # -- health --------------------------------------------------------------------------------

    async def stats(self) -> str:
        """Partners, appeals by status, AI answers today, the analytics queue, sheet API use and health."""
        now = self._clock().astimezone(self._tz)
        auth, appeals, queue = await asyncio.gather(
            self._auth.select([AuthCol.STATUS, AuthCol.PROMO_OPT_IN]),
            self._appeals.select([AppealCol.STATUS]),
            self._queue.select([QueueCol.STATUS]),
            return_exceptions=True,
        )
        lines = [f"📊 Состояние на {now:%Y-%m-%d %H:%M}"]
        if isinstance(auth, BaseException):
            lines.append(f"Партнёры: нет данных ({_short(auth)})")
        else:
            authorized = [r for r in auth if is_authorized_status(r[AuthCol.STATUS])]
            opted_out = sum(1 for r in authorized if not is_opted_in(r[AuthCol.PROMO_OPT_IN]))
            lines.append(f"Партнёры: авторизовано {len(authorized)} (отписались от акций: {opted_out})")
        if isinstance(appeals, BaseException):
            lines.append(f"Обращения: нет данных ({_short(appeals)})")
        else:
            counts = Counter(r[AppealCol.STATUS].strip() or "без статуса" for r in appeals)
            lines.append("Обращения: " + _counts(counts, [str(s) for s in AppealStatus]))
        answers = await self._gw.ledgers.ai_answers.total(now.date().isoformat())
        lines.append(f"Ответов ИИ сегодня: {answers}")
        if isinstance(queue, BaseException):
            lines.append(f"Очередь аналитики: нет данных ({_short(queue)})")
        else:
            counts = Counter(r[QueueCol.STATUS].strip() or "без статуса" for r in queue)
            lines.append("Очередь аналитики: " + _counts(counts, [str(s) for s in QueueStatus]))
        hour = self._gw.metrics.last_hour()
        calls = Counter({k: v for k, v in hour.items() if k != "429"})
        detail = ", ".join(f"{k} {v}" for k, v in calls.most_common())
        lines.append(
            f"API таблицы за час: {sum(calls.values())} вызовов"
            + (f" ({detail})" if detail else "")
            + f", ошибок 429: {hour['429']}"
        )
        lines.append(f"Предохранители: таблица — {self._gw.breaker_state}; {self._ai_state()}")
        lines.append(f"Очередь записей в таблицу (outbox): {self._gw.outbox_depth}")
        fault = self._gw.structure_fault
        if fault is not None:
            lines.append(f"Записи ждут исправления таблицы: {fault.fix}")
        dead = await self._gw.dead_letters()
        lines.append(
            f"Неприменимые записи (dead letters): {dead}"
            + (" — см. marketingbot outbox list, затем retry ID или drop ID" if dead else "")
        )
        lines.append(f"Системный промпт: версия {self._prompt.version}")
        progress = self._promotions.progress if self._promotions is not None else None
        if progress is not None:
            lines.append(f"Рассылка: «{progress.title or progress.promo_id}» — {progress.done} из {progress.total}")
        return "\n".join(lines)

    def _ai_state(self) -> str:
        if self._ai is None:
            return "ИИ — нет данных"
        if self._ai.is_offline:
            return "ИИ — офлайн-режим"
        state = getattr(self._ai.primary, "breaker_state", None)
        return f"ИИ ({self._ai.primary.name}) — {state if state is not None else 'нет данных'}"

    # -- prompt and promotions -----------------------------------------------------------------

    def reload_prompt(self) -> str:
        """Re-read the system prompt file and report its version."""
        before = self._prompt_version
        text = self._prompt.text  # re-reads the file when it changed
        version = self._prompt.version
        self._prompt_version = version
        facts = f"{len(text)} символов, сценариев: {len(self._prompt.scripts())}"
        if not self._prompt.path.is_file():
            return f"Файл промпта {self._prompt.path} недоступен; действует версия {version} ({facts})."
        if version != before:
            return f"Системный промпт обновлён: версия {version} (была {before}), {facts}."
        return f"Системный промпт без изменений: версия {version}, {facts}."

    async def broadcast_test(self, promo_id: str, chat_id: int) -> str:
        """Send a promotion to the admin only and say whom the real broadcast would reach."""
        if self._promotions is None:
            return "Рассылка акций не настроена."
        result = await self._promotions.send_test(promo_id, chat_id)
        promo = result.promo
        lines = [
            f"Тест акции «{promo.title or promo.id}» (id {promo.id}) отправлен только вам.",
            f"Статус в таблице: {promo.status or '—'}. При рассылке получат: {result.recipients}"
            + (f" (отписались: {result.opted_out})" if result.opted_out else "")
            + ".",
        ]
        lines += [f"⚠️ {note}" for note in result.notes]
        return "\n".join(lines)


def _age(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} мин"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} ч {minutes} мин" if minutes else f"{hours} ч"
    days, hours = divmod(hours, 24)
    return f"{days} дн {hours} ч" if hours else f"{days} дн"


def _counts(counts: Counter[str], order: list[str]) -> str:
    known = [f"{s} — {counts[s]}" for s in order]
    other = [f"{s} — {n}" for s, n in counts.items() if s not in order]
    return ", ".join(known + other)


def _short(exc: BaseException) -> str:
    return "таблица недоступна" if isinstance(exc, SheetUnavailable) else type(exc).__name__


def _safe(text: str) -> str:
    """A file-name-safe version of an ID or code."""
    return re.sub(r"[^\w.-]+", "_", text.strip())[:60] or "_"
