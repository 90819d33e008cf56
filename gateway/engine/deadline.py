"""The provider `timeout` for streams: a deadline on silence, with no timer work per chunk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """What the deadline reads the time from and sets its timer on: the event loop, or a
    clock a test moves by hand."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle: ...


class IdleDeadline:
    """Cancel the current task once nothing happened for `seconds`.

    aiohttp's own read timeout (`sock_read`) re-arms a timer on every chunk read; measured on
    paced streams, that was the largest per-chunk cost of the gateway over a bare relay (about
    a fifth of its CPU). Here a chunk only notes the time (`touch`), and one timer re-arms
    itself lazily, at most once per `seconds` of a healthy stream. Like `asyncio.timeout`, an
    expiry cancels the task; `absorb` turns that cancellation back into a normal exception
    path, so a client's own disconnect (a cancellation too) is never mistaken for it.
    """

    __slots__ = ("_cancelling", "_handle", "_loop", "_task", "expired", "last", "paused", "seconds")

    def __init__(self, seconds: float, clock: Clock | None = None) -> None:
        self._loop: Clock = clock or asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "IdleDeadline runs inside a task"
        self._task = task
        # Cancellations already pending when the deadline began (asyncio.timeout's baseline).
        self._cancelling = task.cancelling()
        self.seconds = seconds
        self.expired = False
        self.paused = False  # set while waiting on something that is not the upstream
        self.last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(
            self.last + seconds, self._check
        )

    def touch(self) -> None:
        """Something happened: the silence starts again from now."""
        self.last = self._loop.time()

    def _check(self) -> None:
        now = self._loop.time()
        if self.paused:  # e.g. a write to a client that reads slowly: the clock restarts
            self.last = now
        due = self.last + self.seconds
        if now < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        self.expired = True
        self._task.cancel()

    def absorb(self, exc: BaseException) -> bool:
        """True when `exc` is this deadline's own cancellation (then withdrawn from the task).

        As in `asyncio.timeout`, the deadline's cancel is withdrawn, and it was the only one
        only if no other cancellation is left above the baseline: a client that went away in
        the same loop turn as the expiry is a cancellation, not a timeout.
        """
        if self.expired and isinstance(exc, asyncio.CancelledError):
            self.expired = False
            return self._task.uncancel() <= self._cancelling
        return False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
