"""The ring of finished requests: the Live view's memory, bounded, filled after the last byte.

Each request the dispatcher took becomes one `Finished` entry when it ends (the console's
`request_ended` hook: never per chunk). The ring keeps the last `[console] recent` of them in
this process, numbered from 1, so that a feed that reconnects asks for what came after the
last number it saw (SSE's Last-Event-ID) and misses nothing the ring still holds.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

import msgspec

from gateway.engine.events import RequestRecord
from gateway.observability.labels import error_type

MAX_NAME = 256  # characters of a model name kept (the client's words, as in the access log)


class Tried(msgspec.Struct, gc=False):
    """One upstream attempt of a request."""

    target: str  # provider/model
    status: int | None  # the upstream's status when it failed with one
    outcome: str | None  # ok, retried, failed_over, error (gateway.engine.events.Outcome)


class Finished(msgspec.Struct, gc=False):
    """One finished request, as the Live view and GET /console/api/requests show it."""

    id: int  # this process's number for it: 1, 2, ... (the feed's event id)
    time: float  # when it ended, Unix seconds
    key: str | None  # the gateway key's name, never its value
    operation: str  # chat.completions, messages, generateContent, embeddings, ...
    model: str  # as the client named it (an alias, or provider/model)
    served: str | None  # the provider/model that answered
    attempts: list[Tried]
    stream: bool
    status: int  # the status the client got (a stream that failed late: its error's)
    error: str  # "" on success, else the error's status ("429") or "cancelled"
    error_code: str | None  # the error's OpenAI-style code, e.g. upstream_timeout
    ttft_ms: float | None  # streams: arrival -> first content sent
    duration_ms: float  # arrival -> last byte
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None = None  # the record's cost (None: unknown, or nothing answered)
    usage_estimated: bool = False  # the tokens and cost were estimated (a cut stream)
    cache: str | None = None  # the response cache: hit, miss, bypass; None: not cached route
    cache_saved_usd: float | None = None  # a hit: what its answer would have cost upstream


def finished_of(record: RequestRecord, at: float) -> Finished:
    """The entry of `record`, which ended at `at` (time.time())."""
    ended = record.ended if record.ended is not None else record.started
    first = record.first_content
    usage = record.usage
    inputs, outputs = (usage.input, usage.output) if usage is not None else (None, None)
    error = record.error
    cost = record.cost.usd if record.cost is not None else None
    return Finished(
        id=0,
        time=at,
        key=record.key,
        operation=record.operation,
        model=record.model[:MAX_NAME],
        served=record.served[:MAX_NAME] if record.served is not None else None,
        attempts=[
            Tried(attempt.label[:MAX_NAME], attempt.status, attempt.outcome)
            for attempt in record.attempts
        ],
        stream=record.stream,
        status=record.status,
        error=error_type(record),
        error_code=(error.code or error.type) if error is not None else None,
        ttft_ms=_ms(first - record.started) if first is not None else None,
        duration_ms=_ms(ended - record.started),
        input_tokens=inputs,
        output_tokens=outputs,
        cost_usd=float(cost) if cost is not None else None,
        usage_estimated=usage is not None and usage.estimated,
        cache=record.cache,
        cache_saved_usd=record.cache_saved_usd,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class RequestRing:
    """The last `size` finished requests of this process, oldest first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.last_id = 0
        self._entries: deque[Finished] = deque(maxlen=size)
        self._changed: asyncio.Future[None] | None = None  # made only while a feed waits

    def add(self, entry: Finished) -> None:
        self.last_id += 1
        entry.id = self.last_id
        self._entries.append(entry)  # the oldest falls out
        changed = self._changed
        if changed is not None:
            self._changed = None
            if not changed.done():
                changed.set_result(None)

    def after(self, last_seen: int) -> list[Finished]:
        """The entries numbered after `last_seen`, oldest first; all of them when
        `last_seen` is ahead of this process (it restarted since)."""
        entries = self._entries
        if not entries or last_seen > self.last_id:
            return list(entries)
        start = max(0, last_seen - entries[0].id + 1)  # numbers are consecutive
        return list(itertools.islice(entries, start, None))

    def newest(self, count: int) -> list[Finished]:
        """Up to `count` entries, newest first."""
        return list(itertools.islice(reversed(self._entries), count))

    def changed(self) -> asyncio.Future[None]:
        """Done at the next `add`; shared by every waiter (wait on it without cancelling it:
        `asyncio.wait`)."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed
