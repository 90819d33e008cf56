"""Where the spans go: OpenTelemetry's SDK, its batch span processor and OTLP/HTTP exporter.

Imported only with `[tracing] enabled` (the `gateway[otel]` extra). Export never holds up a
request: an ended span joins a bounded queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048), which a thread
of the SDK's sends in batches; a full queue drops the oldest span. Dropped spans are counted
(`gateway_trace_spans_dropped_total`, by reason), and a collector that fails is a warning at
most every `warn_interval` seconds, in place of the SDK's own line per failed batch.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from gateway.config import TracingConfig
from gateway.server.log_throttle import Throttled
from wire.config_values import resolve_key

log = logging.getLogger("gateway")

TRACES_PATH = "/v1/traces"
DEFAULT_SERVICE = "gateway"
# Their own lines, one per failed batch or dropped span, become ours: counted and throttled.
_QUIETED = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.sdk._shared_internal")

Dropped = Callable[[str, int], None]  # (reason, spans): "queue_full" or "export_failed"


def tracer_provider(config: TracingConfig, dropped: Dropped) -> TracerProvider:
    """A provider exporting to `config`'s collector (or the OTEL_* variables'), its resource
    naming this process: `service.instance.id` host:pid, `process.pid`."""
    for name in _QUIETED:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    exporter = OTLPSpanExporter(endpoint=_traces_url(config.endpoint), headers=_headers(config))
    warn = Throttled(log, config.warn_interval)  # one line for every kind of export trouble
    counted = CountedExporter(exporter, dropped, warn)
    processor = CountedBatchProcessor(BatchSpanProcessor(counted), dropped, warn)
    sampler = None  # OTEL_TRACES_SAMPLER's, else parent-based always-on
    if config.sample_ratio is not None:
        sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
    provider = TracerProvider(sampler=sampler, resource=_resource(config))
    provider.add_span_processor(processor)
    return provider


def _traces_url(endpoint: str | None) -> str | None:
    """`[tracing] endpoint` is a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is; None lets the
    exporter read the variables."""
    if endpoint is None:
        return None
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def _headers(config: TracingConfig) -> dict[str, str] | None:
    if not config.headers:
        return None  # OTEL_EXPORTER_OTLP_(TRACES_)HEADERS
    resolved = {name: resolve_key(value) for name, value in config.headers.items()}
    for name, key in resolved.items():
        if key.missing_env:
            log.warning(
                "tracing.headers.%s: environment variable %s is not set; sent empty",
                name,
                key.missing_env,
            )
    return {name: key.value or "" for name, key in resolved.items()}


def _resource(config: TracingConfig) -> Resource:
    pid = os.getpid()
    attributes: dict[str, str | int] = {
        "service.instance.id": f"{socket.gethostname()}:{pid}",
        "process.pid": pid,
    }
    if config.service_name:
        attributes["service.name"] = config.service_name
    resource = Resource.create(attributes)  # with OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE}))
    return resource


class CountedExporter(SpanExporter):
    """The OTLP exporter, its failed batches counted and told of at most every so often."""

    def __init__(self, exporter: SpanExporter, dropped: Dropped, warn: Throttled) -> None:
        self._exporter = exporter
        self._dropped = dropped
        self._warn = warn

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except Exception as exc:  # the SDK would log a traceback per batch
            result = SpanExportResult.FAILURE
            self._warn.warning(f"tracing: exporting spans failed: {exc!r}")
        else:
            if result is not SpanExportResult.SUCCESS:
                self._warn.warning(
                    f"tracing: the collector did not take {len(spans)} span(s) "
                    "(unreachable, or it refused them); they are dropped"
                )
        if result is not SpanExportResult.SUCCESS:
            self._dropped("export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class CountedBatchProcessor(SpanProcessor):
    """The SDK's batch processor, the spans its full queue drops counted.

    The queue's length is read from the processor's inner deque (the SDK has no public count
    of its drops); without one (another SDK version) drops go uncounted, never unexported.
    """

    def __init__(self, batch: BatchSpanProcessor, dropped: Dropped, warn: Throttled) -> None:
        self._batch = batch
        self._dropped = dropped
        self._warn = warn
        inner = getattr(batch, "_batch_processor", None)
        self._queue = getattr(inner, "_queue", None)
        self._capacity: int | None = getattr(inner, "_max_queue_size", None)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._batch.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._queue
        if queue is not None and len(queue) == self._capacity and span.context.trace_flags.sampled:
            self._dropped("queue_full", 1)  # the queue is full: its oldest span makes room
            self._warn.warning(
                "tracing: the span export queue is full (OTEL_BSP_MAX_QUEUE_SIZE); its oldest "
                "spans are dropped"
            )
        self._batch.on_end(span)

    def shutdown(self) -> None:
        self._batch.shutdown()  # type: ignore[no-untyped-call]  # unannotated

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batch.force_flush(timeout_millis)
