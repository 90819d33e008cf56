"""Upstream answers held whole, bounded in sum: `[server] max_held_bytes`.

Each answer the gateway holds whole (a non-streamed answer, an error body) is bounded by
`max_upstream_bytes`; their sum was not: 20 concurrent 50 MiB answers took 2.6 GiB. Every
request's attempts count what they hold in the process's `HeldBytes` as it arrives, from the
first byte read to the last byte written to the client (a failed attempt's at once, when it
fails). A chunk that would take the sum past the limit ends the request with a 503 in its
route's shape (`HeldBytesExceeded`, Retry-After: 1), at once: neither retried nor failed
over, since the memory is the process's, whatever the upstream. It does not wait either:
answers that wait for room while holding part of themselves could wait on each other.

Streams hold at most 64 KiB each before their first content (`relay.HOLD_LIMIT`) and are not
counted; nor are requests' own bodies (`max_request_bytes` bounds each).
"""

from __future__ import annotations

from collections.abc import Callable

from wire.errors import GatewayError


class HeldBytesExceeded(GatewayError):
    status = 503
    type = "server_error"
    code = "gateway_memory_full"

    def __init__(self, limit: int) -> None:
        super().__init__(
            "The gateway holds as many upstream answers as its memory limit allows "
            f"({limit} bytes, [server] max_held_bytes). Try again shortly."
        )
        self.headers["Retry-After"] = "1"


class HeldBytes:
    """The bytes held by every request of the process, never more than `limit`."""

    __slots__ = ("_on_release", "limit", "total")

    def __init__(self, limit: int, on_release: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self.total = 0
        self._on_release = on_release  # told the size of what was let go (heap trimming)

    def account(self) -> HeldAccount:
        return HeldAccount(self)

    def _give_back(self, size: int) -> None:
        self.total -= size
        if self._on_release is not None:
            self._on_release(size)


class HeldAccount:
    """One request's share of `HeldBytes`: `take` as bytes arrive, `release` all at once."""

    __slots__ = ("_pool", "held")

    def __init__(self, pool: HeldBytes) -> None:
        self._pool = pool
        self.held = 0

    def take(self, size: int) -> None:
        """Count `size` more bytes held, or raise `HeldBytesExceeded` (nothing counted)."""
        pool = self._pool
        if pool.total + size > pool.limit:
            raise HeldBytesExceeded(pool.limit)
        pool.total += size
        self.held += size

    def release(self) -> None:
        """What this request held is let go (its answer sent, or its attempt failed)."""
        held, self.held = self.held, 0
        if held:
            self._pool._give_back(held)
