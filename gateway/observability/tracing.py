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

from gateway.config import Config
from gateway.engine.events import Attempt, RequestRecord
from gateway.observability.labels import error_type, operation_name
from gateway.policy.pricing.table import provider_type

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
            name: _PRESET_NAMES.get(name) or _PROVIDER_NAMES.get(kind, kind)
            for name, p in config.providers.items()
            for kind in (provider_type(p),)
        }

    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None:
        server = self._server_span(record)
        model = attempt.label.partition("/")[2]
        operation = operation_name(record.operation)
        span = self._tracer.start_span(
            f"{operation} {model}",
            set_span_in_context(server),
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
        headers: dict[str, str] = {}
        _W3C.inject(headers, set_span_in_context(span))
        attempt.headers = headers

    def first_content(self, record: RequestRecord, attempt: Attempt) -> None:
        span = attempt.span
        if isinstance(span, Span) and span.is_recording() and record.first_content is not None:
            ttft = record.first_content - record.started
            span.add_event(FIRST_TOKEN, {"gateway.time_to_first_token": ttft})
            server = record.span
            if isinstance(server, Span):
                server.set_attribute("gateway.time_to_first_token", ttft)

    def attempt_ended(self, record: RequestRecord, attempt: Attempt) -> None:
        span = attempt.span
        if not isinstance(span, Span):
            return
        span.set_attribute("gateway.outcome", attempt.outcome or "error")
        if attempt.outcome == "ok":
            # Its usage (a stream's) is the request's, known once the stream closed.
            attempt.span = _Served(span, time.time_ns())
            return
        if attempt.status is not None:
            span.set_attribute("http.response.status_code", attempt.status)
        failed = str(attempt.status) if attempt.status is not None else "error"
        span.set_attribute("error.type", failed)
        span.set_status(Status(StatusCode.ERROR))
        span.end()
        attempt.span = None

    def request_ended(self, record: RequestRecord) -> None:
        server = self._server_span(record)
        recording = server.is_recording()
        ended = time.time_ns() if record.ended is None else _epoch_ns(record.ended)
        for attempt in record.attempts:
            served = attempt.span
            attempt.span = None
            if isinstance(served, _Served):
                if recording:
                    _answered(served.span, record)
                served.span.end(served.ended)
                ended = max(ended, served.ended)  # two clocks: the request ends last
            elif isinstance(served, Span):  # cut while it ran (the client left)
                served.set_attribute("gateway.outcome", "error")
                served.set_attribute("error.type", "cancelled")
                served.set_status(Status(StatusCode.ERROR))
                served.end()
        if recording:
            _answered(server, record)
            server.set_attribute("gateway.attempts", len(record.attempts))
            server.set_attribute("http.response.status_code", record.status)
            failed = error_type(record)
            server.set_attribute("gateway.outcome", "error" if failed else "ok")
            if failed:
                server.set_attribute("error.type", failed)
                server.set_status(Status(StatusCode.ERROR))
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


def _answered(span: Span, record: RequestRecord) -> None:
    """What the answer was: the model that served, its tokens, its cost when known."""
    if record.served is not None:
        span.set_attribute("gen_ai.response.model", record.served.partition("/")[2])
    usage = record.usage
    if usage is not None:
        span.set_attributes(
            {"gen_ai.usage.input_tokens": usage.input, "gen_ai.usage.output_tokens": usage.output}
        )
    cost = getattr(record, "cost_usd", None)  # set by the spend accounting, where it runs
    if isinstance(cost, int | float):
        span.set_attribute("gateway.cost_usd", float(cost))


def _epoch_ns(perf: float) -> int:
    """A perf_counter reading as ns since the epoch (what spans are timed in)."""
    return time.time_ns() - int((time.perf_counter() - perf) * 1e9)
