"""A clock a test moves by hand, for code that reads the event loop's time and sets timers on
it (`gateway.engine.deadline.IdleDeadline`): no real sleep, so a loaded machine cannot make it
late."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class _TimerOwner:
    """What an `asyncio.TimerHandle` asks of its loop, for handles no real loop schedules
    (uvloop's loop refuses to be told of a handle it did not make)."""

    def get_debug(self) -> bool:
        return False

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list[tuple[float, asyncio.TimerHandle]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, (), _TimerOwner())  # type: ignore[arg-type]
        self._timers.append((when, handle))
        return handle

    def advance(self, seconds: float) -> None:
        """Move the time on, running each timer that came due, in order."""
        self.now += seconds
        while True:
            due = [timer for timer in self._timers if timer[0] <= self.now]
            if not due:
                return
            timer = min(due, key=lambda timer: timer[0])
            self._timers.remove(timer)
            if not timer[1].cancelled():
                timer[1]._run()
