"""Memory the gateway freed after large bodies, given back to the system.

glibc's malloc keeps what the process frees for reuse, and returns only the free space at the
top of its heap: after a burst of large bodies (ten 31 MiB requests at once, answers of 50 MiB
held whole) the gateway stayed near its peak, 500 MiB and more, though Python had freed every
one of them. `malloc_trim(0)` gives back every free page (measured: 486 -> 77 MiB in 17 ms).

Two calls do it. At start, `mallopt` gives every allocation of 1 MiB or more pages of its own
(`map_large_allocations`): a large body is returned to the system the moment it is freed. The
pieces of a body as it arrives are smaller; for them `malloc_trim(0)` runs a second after
large bodies were let go (at least `TRIM_AFTER` bytes of them since the last trim), in a
thread: the call releases the GIL, the loop runs on. Small requests never trigger it. Without
glibc (musl, macOS) there is nothing to call, and nothing is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger("gateway")

TRIM_AFTER = 16 * 1024 * 1024  # bytes of large bodies let go before a trim is worth it
LARGE_BODY = 1024 * 1024  # a body smaller than this is not noted at all
QUIET = 1.0  # seconds from the first body noted to the trim: a burst is trimmed once


_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 1024 * 1024  # allocations this large get pages of their own


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    return trim


def map_large_allocations() -> None:
    """Every allocation of MMAP_THRESHOLD bytes or more gets pages of its own, given back when
    it is freed. glibc's default threshold rises with the largest block freed, up to 32 MiB,
    so that after the first large body every body under 32 MiB (and each step of a buffer
    growing to hold one) came from the heap, and stayed there as garbage until a trim."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


class HeapTrimmer:
    """Notes large bodies as they are let go; trims the heap once after a burst of them."""

    def __init__(self, trim: Callable[[int], int] | None = None, quiet: float = QUIET) -> None:
        self._trim = trim if trim is not None else _malloc_trim()
        self._quiet = quiet
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[int] | None = None
        self.trims = 0  # done so far

    def freed(self, size: int) -> None:
        """A body of `size` bytes is let go (or about to be, with its request)."""
        if size < LARGE_BODY or self._trim is None:
            return
        self._pending += size
        self._arm()

    def _arm(self) -> None:
        if self._pending >= TRIM_AFTER and self._timer is None and self._running is None:
            self._timer = asyncio.get_running_loop().call_later(self._quiet, self._start)

    def _start(self) -> None:
        self._timer = None
        self._pending = 0
        assert self._trim is not None
        loop = asyncio.get_running_loop()
        self._running = loop.run_in_executor(None, self._trim, 0)
        self._running.add_done_callback(self._done)

    def _done(self, running: asyncio.Future[int]) -> None:
        self._running = None
        self.trims += 1
        if not running.cancelled() and running.exception() is not None:
            log.warning("malloc_trim failed: %s", running.exception())
            self._trim = None  # not again
            return
        self._arm()  # bodies let go while it ran

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is not None:
            with contextlib.suppress(Exception):
                await self._running


HEAP = web.AppKey("heap", HeapTrimmer)
