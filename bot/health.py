"""The health monitor: owns /healthz and /readyz (DESIGN §4) and tells the staff chat when the bot is in trouble.

Degraded (so /readyz answers 503, /healthz 200 with the problems named): the sheet unreachable or its
breaker open, a needed sheet or header missing (or another structural refusal the outbox waits on: a
protected range, the cell limit, revoked access), the oldest outbox entry older than 5 minutes,
Telegram unreachable.

Staff are told once per incident and once on recovery. An incident opens when its condition has held
for its threshold (sheet breaker open 2 min, outbox entry older than 5 min, worker not taking NEW rows
for 5 min, AI provider failing, a structural fault at once) and closes only after the condition has been
clear for `recover_after`, so a flapping condition is one incident, not a flood. A restart after a crash
(the previous process left its run marker in the state store) is one message.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.services.ports import Messenger
from bot.services.queue_poller import PollStats
from gateway import (
    AccessDenied,
    AsyncSheetsGateway,
    GatewayError,
    GridFull,
    RangeProtected,
    SheetMissing,
    StructureFault,
)

log = logging.getLogger(__name__)

RUN_MARKER_PREFIX = "run:"


class AIStatus(Protocol):
    """What the monitor reads of the AI wrapper (FallbackAI)."""

    failures_in_row: int
    last_error: str


@dataclass(frozen=True)
class HealthThresholds:
    """When a condition becomes an incident, and how often the sheet structure and Telegram are probed."""

    breaker_open: float = 120.0
    outbox_age: float = 300.0
    worker_idle: float = 300.0
    ai_failures: int = 3
    recover_after: float = 30.0
    structure_every: float = 30.0
    structure_every_degraded: float = 15.0
    telegram_every: float = 60.0


@dataclass(frozen=True)
class Condition:
    """One thing wrong now: `problem` for /readyz (None: alert only), `alert`/`recovery` for the staff chat."""

    key: str
    problem: str | None
    alert: str
    recovery: str
    hold: float = 0.0


@dataclass
class _Incident:
    since: float
    alerted: bool = False
    clear_since: float | None = None
    condition: Condition | None = None


@dataclass
class HealthMonitor:
    """Computes the health body and posts incident / recovery notes to the staff chat."""

    gateway: AsyncSheetsGateway
    messenger: Messenger
    queue_stats: Callable[[], PollStats | None] = lambda: None
    ai: AIStatus | None = None
    ai_name: str = "offline"
    telegram_probe: Callable[[], Awaitable[object]] | None = None
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    clock: Callable[[], float] = time.monotonic
    phase: str = "starting"  # "starting" → "running" → "stopping"
    extra: Callable[[], dict[str, Any]] = dict
    _incidents: dict[str, _Incident] = field(default_factory=dict, init=False)
    _structure: list[StructureFault] = field(default_factory=list, init=False)
    _probe_error: str | None = field(default=None, init=False)
    _structure_at: float | None = field(default=None, init=False)
    _telegram_error: str | None = field(default=None, init=False)
    _telegram_at: float | None = field(default=None, init=False)
    _started: float = field(default=0.0, init=False)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Record this process as running; a marker left by a dead process means it crashed: tell staff."""
        self._started = self.clock()
        runs = self.gateway.ledgers.runs
        crashed = []
        try:
            for pid in await runs.others():
                if pid != os.getpid() and not _alive(pid):
                    crashed.append(f"{RUN_MARKER_PREFIX}{pid}")
                    await runs.clear(pid)
            await runs.mark(os.getpid())
        except Exception:  # the marker only serves a crash notice: never a reason not to start
            log.warning("could not record this run in the state file: a crash of it goes unreported", exc_info=True)
        if crashed:
            log.warning("the previous run did not stop cleanly (%s)", ", ".join(crashed))
            await self._post(
                "⚠️ Бот перезапущен после аварийной остановки: предыдущий процесс завершился некорректно. "
                "Незаписанные сообщения восстановлены из локального журнала. Проверьте журнал сервиса "
                "(journalctl -u marketingbot) — почему он остановился."
            )

    async def stop(self) -> None:
        """A clean stop: remove this process's run marker."""
        self.phase = "stopping"
        try:
            await self.gateway.ledgers.runs.clear(os.getpid())
        except Exception:  # the state file may already be closed on an aborted start
            log.exception("could not clear the run marker")

    # -- the HTTP bodies -----------------------------------------------------------------------

    async def body(self) -> dict[str, Any]:
        """The /healthz and /readyz body: status, the problems named, and the figures behind them."""
        gw = self.gateway
        stats = self.queue_stats()
        oldest = await gw.outbox_oldest_age()
        problems = [c.problem for c in await self._conditions(oldest, stats) if c.problem]
        body: dict[str, Any] = {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "sheet_backend": gw.backend_name,
            "sheet_breaker": gw.breaker_state,
            "outbox_depth": gw.outbox_depth,
            "outbox_oldest_seconds": None if oldest is None else round(oldest, 1),
            "dead_letters": await gw.dead_letters(),
            "queue_lag_seconds": stats.oldest_pending_seconds if stats else None,
            "worker_idle_seconds": stats.oldest_new_seconds if stats else None,
            "ai": self.ai_name,
            "ai_failing": bool(self.ai and self.ai.failures_in_row >= self.thresholds.ai_failures),
            "telegram": "off" if self.telegram_probe is None else ("unreachable" if self._telegram_error else "on"),
            "uptime_seconds": round(self.clock() - self._started, 1),
            **self.extra(),
        }
        if self.phase != "running":
            body["status"] = self.phase  # answered with 503: not ready for traffic (deploy.sh waits for ok)
        return body

    @staticmethod
    def ready(body: dict[str, Any]) -> bool:
        """Whether /readyz says 200."""
        return body.get("status") == "ok"

    @staticmethod
    def alive(body: dict[str, Any]) -> bool:
        """Whether /healthz says 200 (the process serves, even degraded)."""
        return body.get("status") in ("ok", "degraded")

    # -- the periodic check --------------------------------------------------------------------

    async def check_once(self) -> None:
        """Probe what needs probing, then open, alert and close incidents."""
        await self._probe()
        now = self.clock()
        conditions = {c.key: c for c in await self._conditions(await self.gateway.outbox_oldest_age(), None)}
        for key, cond in conditions.items():
            inc = self._incidents.setdefault(key, _Incident(since=now))
            inc.clear_since = None
            inc.condition = cond
            if not inc.alerted and now - inc.since >= cond.hold:
                inc.alerted = True
                await self._post(cond.alert)
        for key, inc in list(self._incidents.items()):
            if key in conditions:
                continue
            if not inc.alerted:
                del self._incidents[key]  # it never became an incident
                continue
            inc.clear_since = inc.clear_since if inc.clear_since is not None else now
            if now - inc.clear_since >= self.thresholds.recover_after:
                del self._incidents[key]
                if inc.condition is not None:
                    await self._post(inc.condition.recovery)

    async def _probe(self) -> None:
        now = self.clock()
        t = self.thresholds
        every = t.structure_every_degraded if (self._structure or self._probe_error) else t.structure_every
        if self._structure_at is None or now - self._structure_at >= every:
            self._structure_at = now
            try:
                self._structure = await self.gateway.structure_problems()
                self._probe_error = None
            except StructureFault as exc:  # e.g. access to the whole spreadsheet revoked
                self._structure, self._probe_error = [exc], None
            except GatewayError as exc:
                self._probe_error = str(exc)
        if self.telegram_probe is not None and (
            self._telegram_at is None or now - self._telegram_at >= t.telegram_every
        ):
            self._telegram_at = now
            try:
                await self.telegram_probe()
                self._telegram_error = None
            except Exception as exc:  # any failure to reach Telegram is the same problem to staff
                self._telegram_error = f"{type(exc).__name__}: {exc}"

    async def _conditions(self, oldest: float | None, stats: PollStats | None) -> list[Condition]:
        gw, t = self.gateway, self.thresholds
        out: list[Condition] = []
        unreachable = gw.backend_unreachable or self._probe_error
        if gw.breaker_state != "closed" or unreachable:
            why = f"предохранитель {gw.breaker_state}" if gw.breaker_state != "closed" else unreachable
            out.append(
                Condition(
                    "sheet-down",
                    f"Google-таблица недоступна ({why}); записи ждут в очереди (outbox)",
                    "⚠️ Google-таблица недоступна больше 2 минут. Бот отвечает партнёрам, переписка копится в "
                    "локальной очереди и будет записана, когда таблица вернётся. Проверьте доступ к Google Sheets "
                    "и ключ сервисного аккаунта.",
                    "✅ Google-таблица снова доступна: ожидавшие записи вносятся в таблицу.",
                    hold=t.breaker_open,
                )
            )
        faults = {_fault_key(f): f for f in self._structure}
        if gw.structure_fault is not None:
            faults.setdefault(_fault_key(gw.structure_fault), gw.structure_fault)
        for key, fault in faults.items():
            where = f"лист «{fault.sheet}»" if fault.sheet else "таблица"
            what = _describe(fault)
            waiting = gw.outbox_depth
            held = (
                f" Партнёры получают ответы; записи ({waiting}) ждут в очереди и будут внесены по порядку после "
                "исправления."
                if waiting
                else " Партнёры получают ответы, записи пока проходят."
            )
            out.append(
                Condition(
                    key,
                    f"{where}: {what} — {fault.fix}",
                    f"⚠️ Проблема в таблице: {where} — {what}. Что сделать: {fault.fix}.{held}",
                    f"✅ Исправлено: {where} снова в порядке."
                    + (" Ожидавшие записи внесены в таблицу по порядку." if waiting else ""),
                )
            )
        if oldest is not None and oldest > t.outbox_age:
            out.append(
                Condition(
                    "outbox-old",
                    f"записи ждут таблицу {int(oldest // 60)} мин (в очереди: {gw.outbox_depth})",
                    f"⚠️ Записи ждут таблицу дольше {int(t.outbox_age // 60)} минут (в очереди: {gw.outbox_depth}). "
                    "Проверьте таблицу; список — командой marketingbot outbox list.",
                    "✅ Очередь записей в таблицу разобрана.",
                )
            )
        if self._telegram_error:
            out.append(
                Condition(
                    "telegram-down",
                    f"Telegram недоступен ({self._telegram_error})",
                    "",  # the staff chat is in Telegram: nothing to post it through
                    "✅ Связь с Telegram восстановлена.",
                )
            )
        stats = stats if stats is not None else self.queue_stats()
        idle = stats.oldest_new_seconds if stats else None
        if idle is not None and idle > t.worker_idle:
            out.append(
                Condition(
                    "worker-idle",
                    None,
                    f"⚠️ Заявки на аналитику не берутся в работу уже {int(idle // 60)} мин (лист «Очередь», статус "
                    "NEW). Проверьте триггер Apps Script или службу marketingbot worker.",
                    "✅ Обработчик аналитики снова берёт заявки.",
                )
            )
        if self.ai is not None and self.ai.failures_in_row >= t.ai_failures:
            out.append(
                Condition(
                    "ai-failing",
                    None,
                    f"⚠️ ИИ-провайдер ({self.ai_name}) не отвечает: {self.ai.last_error}. Партнёры получают "
                    "запасные ответы. Проверьте ключ и квоты провайдера (GEMINI_API_KEY / OPENAI_API_KEY).",
                    "✅ ИИ-провайдер снова отвечает.",
                )
            )
        return out

    async def _post(self, text: str) -> None:
        if not text:
            return
        log.warning("staff alert: %s", text)
        await self.messenger.notify_staff(text)


def _fault_key(fault: StructureFault) -> str:
    kind = {RangeProtected: "protected", GridFull: "grid", AccessDenied: "access"}.get(type(fault), "missing")
    return f"structure:{kind}:{fault.sheet}"


def _describe(fault: StructureFault) -> str:
    if isinstance(fault, RangeProtected):
        return "диапазон защищён от изменений"
    if isinstance(fault, GridFull):
        return "достигнут лимит ячеек Google Sheets"
    if isinstance(fault, AccessDenied):
        return "у сервисного аккаунта нет доступа"
    text = str(fault)
    if isinstance(fault, SheetMissing):
        return "лист удалён или переименован"
    if "lacks columns" in text:
        names = text.split("lacks columns", 1)[1].strip()
        return ("нет заголовков " if "," in names else "нет заголовка ") + names
    column = re.search(r"has no column '([^']*)'", text)
    if column:
        return f"нет заголовка «{column.group(1)}»"
    if "no header row" in text:
        return "нет строки заголовков"
    if "not found" in text:
        return "таблица не найдена"
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
