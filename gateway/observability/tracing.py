"""Traces: a server span per request, a client span per attempt, from the dispatcher's events.

Imported only with `[tracing] enabled` (the `gateway[otel]` extra). The request's span
continues the client's W3C `traceparent` (and `tracestate`); each attempt is a child of it
(retries and fallbacks are siblings), named and attributed per OpenTelemetry's GenAI semantic
conventions (`{gen_ai.operation.name} {gen_ai.request.model}`, kind CLIENT), and its own
`traceparent` goes to the provider, so that an upstream that traces joins the same trace.
Spans start and end at the hook points only (an attempt started, its first content, an
attempt ended, the request ended): nothing per chunk. No prompt or completion is recorded.
"""

from __future__ import annotations

import time

from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from gateway.config import Config
from gateway.engine.events import Attempt, RequestRecord
from gateway.observability.labels import error_type, operation_name

_W3C = TraceContextTextMapPropagator()
# gen_ai.provider.name for each provider type with a well-known value; others: the type.
_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "cohere": "cohere",
}
# OpenAI-compatible presets with a well-known value of their own.
_PRESET_NAMES = {
    "groq": "groq",
    "mistral": "mistral_ai",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
}
FIRST_TOKEN = "gen_ai.first_token"  # the event at the first content the client got


class _Served:
    """An attempt that answered: its span ends with the request, once the usage is known."""

    __slots__ = ("ended", "span")

    def __init__(self, span: Span, ended: int) -> None:
        self.span = span
        self.ended = ended  # ns since the epoch: when the attempt's answer ended


class Tracing:
    """The dispatcher's event hooks, as spans."""

    def __init__(self, config: Config, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("gateway")
        self._providers = {
            name: _PRESET_NAMES.get(name) or _PROVIDER_NAMES.get(p.type_name, p.type_name)
            for name, p in config.providers.items()
        }

    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None:
        server = self._server_span(record)
        context = set_span_in_context(server)
        if server.is_recording():
            model = attempt.label.partition("/")[2]
            operation = operation_name(record.operation)
            span = self._tracer.start_span(
                f"{operation} {model}",
                context,
                SpanKind.CLIENT,
                {
                    "gen_ai.operation.name": operation,
                    "gen_ai.provider.name": self._providers.get(attempt.provider, attempt.provider),
                    "gen_ai.request.model": model,
                    "gateway.attempt": attempt.number,
                    "gateway.target": attempt.label,
                },
            )
            attempt.span = span
            context = set_span_in_context(span)
        # A trace not sampled has no span of its own to name: the upstream is told of the
        # request's (not sampled either), which costs no span per attempt.
        headers: dict[str, str] = {}
        _W3C.inject(headers, context)
        attempt.headers = headers

    def first_content(self, record: RequestRecord, attempt: Attempt) -> None:
        span = attempt.span
        if isinstance(span, Span) and record.first_content is not None:
            ttft = record.first_content - record.started
            span.add_event(FIRST_TOKEN, {"gateway.time_to_first_token": ttft})

    def attempt_ended(self, record: RequestRecord, attempt: Attempt) -> None:
        span = attempt.span
        if not isinstance(span, Span):
            return
        if attempt.outcome == "ok":
            # Its usage (a stream's) is the request's, known once the stream closed.
            attempt.span = _Served(span, time.time_ns())
            return
        attributes: dict[str, str | int] = {"gateway.outcome": attempt.outcome or "error"}
        if attempt.status is not None:
            attributes["http.response.status_code"] = attempt.status
        attributes["error.type"] = str(attempt.status) if attempt.status is not None else "error"
        span.set_attributes(attributes)
        span.set_status(Status(StatusCode.ERROR))
        span.end()
        attempt.span = None

    def request_ended(self, record: RequestRecord) -> None:
        server = self._server_span(record)
        record.span = None  # a record outlives its request (the console keeps the recent)
        if not server.is_recording():
            server.end()
            return
        ended = time.time_ns() if record.ended is None else _epoch_ns(record.ended)
        answered = _answered(record)
        for attempt in record.attempts:
            span = attempt.span
            attempt.span = None
            if isinstance(span, _Served):
                span.span.set_attributes({**answered, "gateway.outcome": "ok"})
                span.span.end(span.ended)
                ended = max(ended, span.ended)  # two clocks: the request ends last
            elif isinstance(span, Span):  # cut while it ran (the client left)
                span.set_attributes({"gateway.outcome": "error", "error.type": "cancelled"})
                span.set_status(Status(StatusCode.ERROR))
                span.end()
        failed = error_type(record)
        answered["gateway.attempts"] = len(record.attempts)
        answered["http.response.status_code"] = record.status
        answered["gateway.outcome"] = "error" if failed else "ok"
        if record.first_content is not None:
            answered["gateway.time_to_first_token"] = record.first_content - record.started
        if failed:
            answered["error.type"] = failed
            server.set_status(Status(StatusCode.ERROR))
        server.set_attributes(answered)
        server.end(ended)

    def _server_span(self, record: RequestRecord) -> Span:
        """The request's span, started (as of its arrival) at its first event."""
        span = record.span
        if isinstance(span, Span):
            return span
        parent: Context | None = None
        if record.traceparent is not None:
            carrier = {"traceparent": record.traceparent}
            if record.tracestate is not None:
                carrier["tracestate"] = record.tracestate
            parent = _W3C.extract(carrier)
        operation = operation_name(record.operation)
        attributes: dict[str, str | bool] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": record.model,
            "gateway.stream": record.stream,
        }
        if record.request_id is not None:
            attributes["gateway.request_id"] = record.request_id
        if record.key is not None:
            attributes["gateway.key"] = record.key
        span = self._tracer.start_span(
            f"{operation} {record.model}",
            parent,
            SpanKind.SERVER,
            attributes,
            start_time=_epoch_ns(record.started),
        )
        record.span = span
        return span


def _answered(record: RequestRecord) -> dict[str, AttributeValue]:
    """What the answer was: the model that served, why it ended, its tokens, its cost when
    known."""
    answered: dict[str, AttributeValue] = {}
    if record.served is not None:
        answered["gen_ai.response.model"] = record.served.partition("/")[2]
    if record.finish_reasons:
        answered["gen_ai.response.finish_reasons"] = list(record.finish_reasons)
    usage = record.usage
    if usage is not None:
        answered["gen_ai.usage.input_tokens"] = usage.input
        answered["gen_ai.usage.output_tokens"] = usage.output
    cost = record.cost  # priced once by the engine; None or unknown: no attribute
    if cost is not None and cost.usd is not None:
        answered["gateway.cost_usd"] = float(cost.usd)
    if record.cache is not None:
        answered["gateway.cache"] = record.cache
    return answered


def _epoch_ns(perf: float) -> int:
    """A perf_counter reading as ns since the epoch (what spans are timed in)."""
    return time.time_ns() - int((time.perf_counter() - perf) * 1e9)
