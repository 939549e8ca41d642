"""Truth: the shipped prompt and demo knowledge base promise nothing the product does not do."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram.ext import CommandHandler

from bot.ai.prompt import SystemPrompt
from bot.app import Runtime, build_runtime
from bot.config import Settings, default_prompt_path
from bot.telegram.handlers.chat import OPERATOR_BUTTON
from gateway.schemas import KNOWLEDGE, KnowledgeCol

STATIC = Path(__file__).resolve().parents[2] / "bot" / "web" / "static" / "index.html"
# Claims about features the product does not have (issue 15): no CRM sync, no stopping promotions by asking.
FORBIDDEN = [
    r"\bCRM\b",
    r"раз в сутки",
    r"обновля\w+ из",
    r"попросите отключить рассылку",
    r"\d{1,2}:\d{2}\s*(?:до|-|–)\s*\d{1,2}:\d{2}\s*по Москве",
]


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """`marketingbot local` built (not started) with a bot token and non-default WORKING_HOURS."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token="123456:TRUTH-test-token-000000000000000000",
        local_db_path=tmp_path / "local.db",
        ai_provider="offline",
        working_hours="10:30-19:00 Europe/Moscow",
        admin_telegram_ids=[1],
        staff_chat_id=-100500,
    )
    rt = await build_runtime(settings, local=True)
    try:
        yield rt
    finally:
        await rt.gateway.close()


async def shipped_texts(rt: Runtime) -> dict[str, str]:
    """The prompt as the model gets it, and every seeded knowledge entry, by name."""
    texts = {"prompt": rt.prompt.text}
    for row in await rt.gateway.table(KNOWLEDGE).all():
        texts[row[KnowledgeCol.QUESTION]] = row[KnowledgeCol.ANSWER]
    return texts


def registered_commands(rt: Runtime) -> set[str]:
    """Every /command a handler of the running bot answers."""
    return {
        command
        for group in rt.telegram.handlers.values()
        for handler in group
        if isinstance(handler, CommandHandler)
        for command in handler.commands
    }


async def test_every_command_named_exists(runtime: Runtime) -> None:
    """Each /command the prompt or the knowledge base tells partners to send is a registered handler."""
    commands = registered_commands(runtime)
    named = {
        (where, m) for where, text in (await shipped_texts(runtime)).items() for m in re.findall(r"/([a-z_]+)", text)
    }
    assert {"stop_promo", "promo"} <= {m for _, m in named}  # the knowledge base tells how to stop promotions
    assert [(where, m) for where, m in named if m not in commands] == []


async def test_hours_come_from_the_setting(runtime: Runtime) -> None:
    """The prompt and the knowledge base give WORKING_HOURS' hours, and no other."""
    texts = await shipped_texts(runtime)
    assert "{{" not in texts["prompt"]
    assert texts["prompt"].count("с 10:30 до 19:00 по московскому времени") == 2
    hours = {where: re.findall(r"\d{1,2}:\d{2}", text) for where, text in texts.items()}
    assert {where: h for where, h in hours.items() if h and set(h) != {"10:30", "19:00"}} == {}
    assert any(h for where, h in hours.items() if where != "prompt")  # the KB names the hours too


async def test_no_forbidden_claims(runtime: Runtime) -> None:
    """No CRM sync, no "ask an operator to stop promotions", no hard-coded hours."""
    found = [
        (where, pattern)
        for where, text in (await shipped_texts(runtime)).items()
        for pattern in FORBIDDEN
        if re.search(pattern, text, re.IGNORECASE)
    ]
    assert found == []


async def test_named_buttons_and_tabs_exist(runtime: Runtime) -> None:
    """The «Позвать оператора» button and the Mini App's «Аналитика» tab the texts name exist."""
    texts = "\n".join((await shipped_texts(runtime)).values())
    assert "«Позвать оператора»" in texts and OPERATOR_BUTTON.text == "Позвать оператора"
    assert "«Аналитика»" in texts and re.search(r'data-tab="analytics"[^>]*>Аналитика', STATIC.read_text())


def test_hot_reload_keeps_the_hours_filled(tmp_path: Path) -> None:
    """An edited prompt file is re-read on the next access with its placeholders filled again."""
    path = tmp_path / "prompt.txt"
    shutil.copy(default_prompt_path(), path)
    prompt = SystemPrompt(path, {"WORKING_HOURS": "с 08:00 до 22:00 по московскому времени"})
    assert "с 08:00 до 22:00" in prompt.text
    path.write_text("Новая версия. Часы: {{WORKING_HOURS}}. {{UNKNOWN}}", encoding="utf-8")
    assert prompt.text == "Новая версия. Часы: с 08:00 до 22:00 по московскому времени. {{UNKNOWN}}"
