"""Once started, the bot exempts what start-up built from later garbage-collector passes (bot/lifecycle.py)."""

from __future__ import annotations

import gc
import weakref

from bot.lifecycle import settle_heap


def test_settle_heap_collects_start_up_garbage_then_freezes_the_rest() -> None:
    """A cycle left by start-up is collected, not frozen forever; the live objects are moved out of the
    collector's generations (a full pass no longer walks them)."""

    class Node:
        def __init__(self) -> None:
            self.me = self

    garbage = weakref.ref(Node())  # unreachable, kept alive only by its own cycle
    gc.unfreeze()
    try:
        settle_heap()
        assert garbage() is None  # collected before the freeze, not kept forever
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
