"""What the durable inbox tells the code handling one update: its id, and whether to leave it for later.

The inbox's update processor sets the context before the handlers run (they run in the same task, so a
context variable reaches them without changing any handler's signature):
- `turn_id` names the turn in the turn journal, so a resumed update finds the reply it already got;
- a handler that cannot finish now (the sheet cannot confirm who the sender is) sets `postponed`, and the
  update stays unfinished: it is processed again on the next start instead of being dropped;
- `stopping` is set at shutdown, so such a handler stops waiting.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token
from dataclasses import dataclass, field


@dataclass
class TurnContext:
    """One update being handled."""

    turn_id: str
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    postponed: bool = False


_CURRENT: ContextVar[TurnContext | None] = ContextVar("marketingbot_turn", default=None)


def current_turn() -> TurnContext | None:
    """The update being handled by this task, if the durable inbox runs it."""
    return _CURRENT.get()


def enter_turn(turn: TurnContext) -> Token[TurnContext | None]:
    """Make `turn` current for this task; returns the token `leave_turn` takes."""
    return _CURRENT.set(turn)


def leave_turn(token: Token[TurnContext | None]) -> None:
    """Restore the previous context."""
    _CURRENT.reset(token)


def update_turn_id(update_id: int) -> str:
    """The turn id of a Telegram update."""
    return f"update:{update_id}"
