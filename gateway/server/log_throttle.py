"""A log line that is written at most once a minute, however often its event happens.

For events a client can cause at will (a malformed request head, a connection past the cap)
or that repeat by the thousand once they start (out of file descriptors): the log says what
happened, and how often since, without flooding.
"""

from __future__ import annotations

import logging
import time


class Throttled:
    __slots__ = ("_interval", "_log", "_next", "_skipped")

    def __init__(self, log: logging.Logger, interval: float = 60.0) -> None:
        self._log = log
        self._interval = interval
        self._next = 0.0
        self._skipped = 0

    def warning(self, message: str, *, exc_info: bool = False) -> None:
        """Log `message` (with the exception being handled, if `exc_info`) unless a line went
        out less than `interval` seconds ago."""
        now = time.monotonic()
        if now < self._next:
            self._skipped += 1
            return
        if self._skipped:
            message += f" ({self._skipped} more since the last such line)"
        self._log.warning(
            "%s; not logged again for %g s", message, self._interval, exc_info=exc_info
        )
        self._next = now + self._interval
        self._skipped = 0
