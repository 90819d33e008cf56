"""The gateway's Prometheus metrics, with OpenTelemetry's GenAI names and buckets, fed by the
dispatcher's hooks (`gateway.engine.events`): at an attempt's start and end, at the first content
and at the request's end. Nothing is observed per chunk, and what is noted per request is
observed in batches (`GatewayMetrics.fold`).

Metric (labels)                                 observed
gen_ai_server_time_to_first_token_seconds (H)   streams: arrival -> first content sent
gen_ai_server_time_per_output_token_seconds (H) streams that succeeded with 2+ output
                                                tokens: (duration - TTFT) / (output - 1)
gen_ai_server_request_duration_seconds (H, E)   every request the dispatcher took
gen_ai_client_token_usage (H, token type)       answers that reported usage
gateway_requests_total (A, E)                   every request the dispatcher took
gateway_tokens_total (A, token type)            answers that reported usage
gateway_spend_usd_total (A)                     answers with a known cost: what they cost
gateway_attempts_total (provider, outcome, E)   every upstream attempt
gateway_requests_in_flight                      from a request's first attempt to its end
gateway_responses_total (route, status)         every response, dispatched or not
gateway_cache_requests_total (result)           requests of a cached route: hit, miss, bypass
gateway_cache_saved_usd_total                   hits: what their answers would have cost

A: gen_ai_operation_name, gen_ai_provider_name, gen_ai_request_model, gateway_key.
H: gen_ai_operation_name, gen_ai_provider_name, and those of gen_ai_request_model and
gateway_key that `[metrics] histogram_labels` names (none by default): a histogram series is
about 18 lines, so per model and per key they made a page of megabytes; per model and per
key, the counters say how many and how much. E: error_type. gateway_cooldowns is collected
at scrape time (`gateway.observability.cooldown_watch`).

Tokens and cost are the request record's: a stream cut before its usage came counts the
gateway's estimate (its access-log line says `usage_estimated`). OpenTelemetry has no cost
metric: the spend counter is the gateway's own, priced once per request
(`gateway.policy.pricing`), never here.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.config import Config
from gateway.engine.events import Attempt, RequestRecord
from gateway.observability.labels import MAX_MODEL_LENGTH, ModelNames, error_type, operation_name

# OpenTelemetry GenAI semantic conventions' explicit bucket boundaries.
TTFT_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5)
TTFT_BUCKETS += (0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))  # 0.01 ... 81.92
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1 ... 67108864

FOLD_EVERY = 0.05  # seconds an observation may wait (a scrape never sees it wait)
_FOLD_AT = 4096  # values noted that are observed at once

LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gateway_key")
HISTOGRAM_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name")  # and those configured

_MAX_NAMES = 4096  # request names (operation, provider, model, key) remembered; then cleared


class _Series:
    """One label set (operation, provider, model, key): its children (a histogram's are
    shared with every label set that differs only in labels the histograms do not carry),
    and the values noted for them since the last fold."""

    __slots__ = (
        "duration",
        "durations",
        "histogram_labels",
        "input",
        "input_total",
        "inputs",
        "labels",
        "output",
        "output_total",
        "outputs",
        "requests",
        "spend_total",
        "spends",
        "tpot",
        "tpots",
        "ttft",
        "ttfts",
    )

    def __init__(self, metrics: GatewayMetrics, labels: tuple[str, str, str, str]) -> None:
        self.labels = labels
        self.histogram_labels = shown = tuple(labels[i] for i in metrics.histogram_positions)
        self.duration: dict[str, Histogram] = {}  # by error_type, made when first needed
        self.requests: dict[str, Counter] = {}  # by error_type, made when first needed
        self.ttft = metrics.ttft.labels(*shown)
        self.tpot = metrics.tpot.labels(*shown)
        self.input = metrics.tokens.labels(*shown, "input")
        self.output = metrics.tokens.labels(*shown, "output")
        self.input_total = metrics.tokens_total.labels(*labels, "input")
        self.output_total = metrics.tokens_total.labels(*labels, "output")
        self.spend_total = metrics.spend.labels(*labels)
        self.spends: list[float] = []
        self.ttfts: list[float] = []
        self.tpots: list[float] = []
        self.inputs: list[float] = []
        self.outputs: list[float] = []
        self.durations: dict[str, list[float]] = {}  # by error_type


class GatewayMetrics:
    """A `gateway.engine.events.Hooks`: one per application, its metrics in `registry`."""

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        self.model_name = ModelNames(config)
        extra = config.metrics.histogram_labels
        shown = HISTOGRAM_LABELS + tuple(label for label in LABELS if label in extra)
        # Where each histogram label sits in a series' (operation, provider, model, key).
        self.histogram_positions = tuple(LABELS.index(label) for label in shown)
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from a streamed request's arrival to the first content sent to the client.",
            shown,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first, once per successful streamed request.",
            shown,
            buckets=TPOT_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Time from a request's arrival to its last byte.",
            (*shown, "error_type"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Input and output tokens of each answer, from the usage it reported.",
            (*shown, "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "gateway_requests",
            "Requests the dispatcher took, by model as asked, gateway key and error type.",
            (*LABELS, "error_type"),
            registry=registry,
        )
        self.tokens_total = Counter(
            "gateway_tokens",
            "Input and output tokens the answers reported, by model as asked and gateway key.",
            (*LABELS, "gen_ai_token_type"),
            registry=registry,
        )
        self.spend = Counter(
            "gateway_spend_usd",
            "What the answers cost in USD, by model as asked and gateway key (known costs only).",
            LABELS,
            registry=registry,
        )
        self.attempts = Counter(
            "gateway_attempts",
            "Upstream attempts by provider and outcome (ok, retried, failed_over, error).",
            ("gen_ai_provider_name", "outcome", "error_type"),
            registry=registry,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight",
            "Requests between their first upstream attempt and their end.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.responses = Counter(
            "gateway_responses",
            "Responses by route (or 'unmatched') and HTTP status, dispatched or not.",
            ("route", "status"),
            registry=registry,
        )
        self.cache_requests = Counter(
            "gateway_cache_requests",
            "Requests of a route the response cache serves, by result (hit, miss, bypass).",
            ("result",),
            registry=registry,
        )
        self.cache_saved = Counter(
            "gateway_cache_saved_usd",
            "USD the cache's hits saved: their answers' usage at the price of who answered.",
            registry=registry,
        )
        self._series: dict[tuple[str, str, str, str], _Series] = {}  # by label values
        # By the names as the request gave them: most requests find their series here,
        # without working out the bounded label values again.
        self._names: dict[tuple[str, str, str, str | None], _Series] = {}
        self._attempts: dict[tuple[str, str, str], Counter] = {}
        self._responses: dict[tuple[str, int], Counter] = {}
        # Noted, not yet observed (see `fold`).
        self._in_flight = 0
        self._dirty: set[_Series] = set()
        self._noted = 0
        self._attempt_counts: dict[tuple[str, str, str], int] = {}
        self._response_counts: dict[tuple[str, int], int] = {}
        self._cache_counts: dict[str, int] = {}
        self._cache_saved = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # Hooks and the middleware note each value in its series' lists (a few attribute and
    # list operations, and no reference kept to the request); `fold` observes them at most
    # FOLD_EVERY seconds later and before every scrape, each series' values at once (see
    # `observe_all`): prometheus-client's per-observation locking and bucket search is most
    # of what metrics cost.

    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None:
        if attempt.number == 1:
            self._in_flight += 1
            if self._timer is None:  # other workers' scrapes see it at the next fold
                self._arm()

    def first_content(self, record: RequestRecord, attempt: Attempt) -> None:
        assert record.first_content is not None  # the dispatcher notes it, then calls this
        names = (record.operation, attempt.provider, record.model, record.key)
        series = self._names.get(names) or self._series_for(names)
        series.ttfts.append(record.first_content - record.started)
        self._noted_in(series)

    def attempt_ended(self, record: RequestRecord, attempt: Attempt) -> None:
        status = attempt.status
        failed = "" if attempt.outcome == "ok" or status is None else str(status)
        key = (attempt.provider, attempt.outcome or "", failed)
        self._attempt_counts[key] = self._attempt_counts.get(key, 0) + 1

    def request_ended(self, record: RequestRecord) -> None:
        attempts = record.attempts
        if attempts:
            self._in_flight -= 1
        provider = attempts[-1].provider if attempts else ""
        names = (record.operation, provider, record.model, record.key)
        series = self._names.get(names) or self._series_for(names)
        failed = error_type(record)  # now, while a client's leaving shows as cancellation
        ended = record.ended or record.started
        durations = series.durations.get(failed)
        if durations is None:
            series.durations[failed] = [ended - record.started]
        else:
            durations.append(ended - record.started)
        usage = record.usage
        if usage is not None:
            input_tokens, output_tokens = usage.input, usage.output
            series.inputs.append(input_tokens)
            if output_tokens:
                series.outputs.append(output_tokens)
            first = record.first_content
            if record.stream and not failed and output_tokens > 1 and first:
                series.tpots.append((ended - first) / (output_tokens - 1))
        cost = record.cost
        if cost is not None and cost.usd:
            series.spends.append(float(cost.usd))
        if record.cache is not None:
            self._cache_counts[record.cache] = self._cache_counts.get(record.cache, 0) + 1
            self._cache_saved += record.cache_saved_usd or 0.0
        self._noted_in(series)

    def responded(self, route: str, status: int) -> None:
        key = (route, status)
        self._response_counts[key] = self._response_counts.get(key, 0) + 1
        if self._timer is None:
            self._arm()

    def _series_for(self, names: tuple[str, str, str, str | None]) -> _Series:
        """The series of (operation, provider, model, key) as the request named them (the
        hooks look in `_names` first)."""
        operation, provider, model, key = names
        labels = (operation_name(operation), provider, self.model_name(model), key or "")
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series(self, labels)
        if len(model) > MAX_MODEL_LENGTH:  # user input: never kept when it is that long
            return series
        if len(self._names) >= _MAX_NAMES:  # model names are the clients': bounded
            self._names.clear()
        self._names[names] = series
        return series

    def _noted_in(self, series: _Series) -> None:
        self._dirty.add(series)
        self._noted += 1
        if self._noted >= _FOLD_AT:
            self.fold()
        elif self._timer is None:
            self._arm()

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(FOLD_EVERY, self.fold)

    def fold(self) -> None:
        """Make every observation noted since the last fold."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._in_flight:
            self.in_flight.inc(self._in_flight)
            self._in_flight = 0
        dirty, self._dirty, self._noted = self._dirty, set(), 0
        for series in dirty:
            for child, values in ((series.ttft, series.ttfts), (series.tpot, series.tpots)):
                if values:
                    observe_all(child, values)
                    values.clear()
            for child, total, values in (
                (series.input, series.input_total, series.inputs),
                (series.output, series.output_total, series.outputs),
            ):
                if values:
                    observe_all(child, values)
                    total.inc(sum(values))
                    values.clear()
            if series.spends:
                series.spend_total.inc(sum(series.spends))
                series.spends.clear()
            for failed, values in series.durations.items():
                if values:
                    histogram = series.duration.get(failed)
                    if histogram is None:
                        histogram = self.duration.labels(*series.histogram_labels, failed)
                        series.duration[failed] = histogram
                        series.requests[failed] = self.requests.labels(*series.labels, failed)
                    observe_all(histogram, values)
                    series.requests[failed].inc(len(values))
                    values.clear()
        attempts, self._attempt_counts = self._attempt_counts, {}
        for key, count in attempts.items():
            counter = self._attempts.get(key)
            if counter is None:
                counter = self._attempts[key] = self.attempts.labels(*key)
            counter.inc(count)
        cached, self._cache_counts = self._cache_counts, {}
        for result, count in cached.items():
            self.cache_requests.labels(result).inc(count)
        if self._cache_saved:
            self.cache_saved.inc(self._cache_saved)
            self._cache_saved = 0.0
        responses, self._response_counts = self._response_counts, {}
        for (route, status), count in responses.items():
            counter = self._responses.get((route, status))
            if counter is None:
                counter = self._responses[(route, status)] = self.responses.labels(route, status)
            counter.inc(count)


def observe_all(series: Histogram, values: list[float]) -> None:
    """`series.observe(v)` for each of `values`, adding to each bucket and to the sum once:
    prometheus-client adds to them per observation, under a lock, which is most of the cost
    of the metrics. Its histogram's buckets and sum (in process or in the multiprocess
    files) are reached as prometheus-client itself reaches them; should that change, each
    value is observed as usual (tests compare both ways)."""
    bounds = getattr(series, "_upper_bounds", None)
    buckets = getattr(series, "_buckets", None)
    total = getattr(series, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            series.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bucket whose bound >= value
    total.inc(sum(values))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
