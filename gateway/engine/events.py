"""What the dispatcher reports about each request and attempt, for metrics and access logs.

The dispatcher fills one `RequestRecord` per request and calls every registered `Hooks` at
four points: an attempt started, the first content went to the client, an attempt ended (its
`outcome` says how), the request ended. Nothing is reported per chunk.
"""

from __future__ import annotations

import time
from typing import Literal, Protocol

from aiohttp import web

from wire.cost import Cost
from wire.errors import GatewayError
from wire.usage import Usage

# ok: it answered; retried: it failed and the same target is tried again (or with another
# key); failed_over: it failed and the next target is tried; error: it failed, and so did the
# request.
Outcome = Literal["ok", "retried", "failed_over", "error"]


class Attempt:
    __slots__ = ("headers", "label", "number", "outcome", "provider", "span", "status")

    def __init__(self, number: int, label: str, provider: str) -> None:
        self.number = number  # 1, 2, ... within its request
        self.label = label  # "provider/model"
        self.provider = provider  # the provider table's name
        self.status: int | None = None  # the upstream's status when it failed with one
        self.outcome: Outcome | None = None  # None while it runs
        # Headers a hook adds to this attempt's upstream request (a tracer's traceparent), set
        # in `attempt_started`.
        self.headers: dict[str, str] | None = None
        self.span: object = None  # what a tracer keeps of the attempt


class RequestRecord:
    """One request, as it went: filled by the dispatcher, read by hooks."""

    __slots__ = (
        "attempts",
        "cache",
        "cache_saved_usd",
        "cost",
        "ended",
        "error",
        "finish_reasons",
        "first_content",
        "key",
        "model",
        "operation",
        "request_id",
        "served",
        "span",
        "started",
        "status",
        "stream",
        "traceparent",
        "tracestate",
        "usage",
    )

    def __init__(
        self,
        operation: str,
        model: str,
        stream: bool,
        key: str | None = None,
        started: float | None = None,
    ) -> None:
        self.operation = operation
        self.model = model  # as the client named it (an alias, or provider/model)
        self.stream = stream
        self.key = key  # the gateway key's name, when keys are configured
        # perf_counter when the request arrived (TTFT and durations count from there)
        self.started = time.perf_counter() if started is None else started
        self.attempts: list[Attempt] = []
        self.served: str | None = None  # the provider/model that answered
        self.first_content: float | None = None  # perf_counter when content went out
        self.ended: float | None = None
        self.usage: Usage | None = None  # the tokens the answer used, when known
        # Why the answer ended, in OpenAI's words (stop, length, tool_calls, content_filter),
        # one per choice, as the upstream said; () when it said none (a cut stream).
        self.finish_reasons: tuple[str, ...] = ()
        # What the answer cost: priced once, from `usage`, when an upstream served it (the
        # engine's `Pricing` port); every consumer reads it here.
        self.cost: Cost | None = None
        self.error: GatewayError | None = None  # what the client was told, if it failed
        self.status = 200
        self.cache: str | None = None  # "hit", "miss", "bypass"; None: not a cached route
        # A hit: what its answer would have cost upstream (USD; None: unknown). A hit uses no
        # provider tokens, so `usage` stays None and nothing is charged.
        self.cache_saved_usd: float | None = None
        self.request_id: str | None = None  # the gateway's id for it (x-gateway-request-id)
        # The client's W3C trace context (its `traceparent` and `tracestate` headers), if sent.
        self.traceparent: str | None = None
        self.tracestate: str | None = None
        self.span: object = None  # what a tracer keeps of the request


class Hooks(Protocol):
    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None: ...

    def first_content(self, record: RequestRecord, attempt: Attempt) -> None: ...

    def attempt_ended(self, record: RequestRecord, attempt: Attempt) -> None: ...

    def request_ended(self, record: RequestRecord) -> None: ...


# Where the dispatcher leaves a request's record, for whatever reads it once the answer is out
# (the access log). When the request arrived is the front door's (gateway.server.front_door).
REQUEST_RECORD = web.RequestKey("request_record", RequestRecord)
