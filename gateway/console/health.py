"""Each provider's last few minutes, for the Providers view: attempts and failures, TTFT
percentiles, and the last failure of each target and each provider's keys (why it rests).

Fed by the console's hooks at an attempt's end and a request's end, never per chunk. Bounded:
one bucket per provider per minute for WINDOW_MINUTES, each holding at most SAMPLES TTFTs
(a uniform sample of the minute's, reservoir-style); providers are the configured tables; the
failures noted per target are capped at MAX_TARGETS (targets named by requests are free text).
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

import msgspec

from gateway.engine.events import Attempt, RequestRecord

WINDOW_MINUTES = 5
SAMPLES = 256  # TTFTs kept per provider and minute
MAX_TARGETS = 1000  # targets whose last failure is remembered; the oldest noted go first
# The statuses for which the dispatcher rests the key that was used (gateway.engine.dispatcher).
KEY_REFUSED = frozenset({401, 403, 429})


class Failure(msgspec.Struct, gc=False):
    """The last failed attempt at a target, or the last key refusal of a provider."""

    at: float  # Unix seconds
    target: str  # provider/model
    status: int | None
    outcome: str | None  # retried, failed_over, error


class _Minute:
    __slots__ = ("attempts", "failed", "minute", "requests", "seen", "ttfts")

    def __init__(self, minute: int) -> None:
        self.minute = minute  # Unix minute number
        self.attempts = 0
        self.failed = 0
        self.requests = 0  # requests this provider answered (their last attempt was its)
        self.ttfts: list[float] = []  # ms, a sample of at most SAMPLES
        self.seen = 0  # TTFTs offered this minute


class ProviderHealth:
    """The per-provider windows of this process."""

    def __init__(self) -> None:
        self._minutes: dict[str, deque[_Minute]] = {}
        self.target_failures: dict[str, Failure] = {}  # by target
        self.key_refusals: dict[str, Failure] = {}  # by provider

    def _bucket(self, provider: str, now: float) -> _Minute:
        minute = int(now // 60)
        buckets = self._minutes.get(provider)
        if buckets is None:
            buckets = self._minutes[provider] = deque(maxlen=WINDOW_MINUTES)
        if not buckets or buckets[-1].minute != minute:
            buckets.append(_Minute(minute))
        return buckets[-1]

    def attempt_ended(self, attempt: Attempt, now: float) -> None:
        bucket = self._bucket(attempt.provider, now)
        bucket.attempts += 1
        if attempt.outcome == "ok":
            return
        bucket.failed += 1
        failure = Failure(now, attempt.label, attempt.status, attempt.outcome)
        failures = self.target_failures
        failures.pop(attempt.label, None)  # re-inserted last: the dict's order is recency
        if len(failures) >= MAX_TARGETS:
            del failures[next(iter(failures))]
        failures[attempt.label] = failure
        if attempt.status in KEY_REFUSED:
            self.key_refusals[attempt.provider] = failure

    def request_ended(self, record: RequestRecord, now: float) -> None:
        if not record.attempts or record.served is None:
            return
        bucket = self._bucket(record.attempts[-1].provider, now)
        bucket.requests += 1
        first = record.first_content
        if first is None:
            return
        ttft = (first - record.started) * 1000
        bucket.seen += 1
        if len(bucket.ttfts) < SAMPLES:
            bucket.ttfts.append(ttft)
        else:  # reservoir sampling: each of the minute's TTFTs is kept with equal chance
            slot = random.randrange(bucket.seen)
            if slot < SAMPLES:
                bucket.ttfts[slot] = ttft

    def report(self, provider: str, now: float) -> dict[str, Any]:
        """The provider's figures over the last WINDOW_MINUTES minutes (this one included)."""
        oldest = int(now // 60) - WINDOW_MINUTES + 1
        buckets = [b for b in self._minutes.get(provider, ()) if b.minute >= oldest]
        attempts = sum(b.attempts for b in buckets)
        failed = sum(b.failed for b in buckets)
        ttfts = sorted(t for b in buckets for t in b.ttfts)
        return {
            "window_minutes": WINDOW_MINUTES,
            "attempts": attempts,
            "failed_attempts": failed,
            "error_rate": failed / attempts if attempts else None,
            "requests": sum(b.requests for b in buckets),
            "ttft_p50_ms": percentile(ttfts, 0.50),
            "ttft_p95_ms": percentile(ttfts, 0.95),
            "minutes": [
                {
                    "minute": b.minute * 60,
                    "attempts": b.attempts,
                    "failed_attempts": b.failed,
                    "ttft_p95_ms": percentile(sorted(b.ttfts), 0.95),
                }
                for b in buckets
            ],
        }


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values (None for none)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return round(ordered[rank - 1], 3)
