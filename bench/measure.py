"""Turning a run into figures: records into percentiles and rates, CPU and memory samples
into per-request costs, and who was busy into what bounded the run."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench import report
from bench.load import Result
from bench.scenarios import Run

SAMPLE_S = 0.01  # RSS sampling period of the process under test


@dataclass
class Snapshot:
    """CPU clocks at one instant: the run's figures are differences of two of these."""

    t: float
    target: float | None
    upstream: float
    loadgen: float
    me: float
    cores: list[Any] = field(default_factory=list)


class Sampler:
    """Samples a process's RSS every SAMPLE_S on a thread while a run goes on."""

    def __init__(self, probe: Callable[[], int]) -> None:
        self.probe = probe
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.samples.append((0.0, self.probe()))
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.perf_counter() - self.t0, self.probe()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.Error):
            self.samples.append((time.perf_counter() - self.t0, self.probe()))

    def figures(
        self, hwm0: int | None, hwm1: int | None
    ) -> tuple[dict[str, float], list[list[float]]]:
        mb = 1 / (1024 * 1024)
        values = [v for _, v in self.samples]
        peak = max(values)
        if hwm0 is not None and hwm1 is not None and hwm1 > hwm0:
            peak = max(peak, hwm1)  # the kernel saw a peak between two samples
        start, end = values[0], values[-1]
        step = max(1, len(self.samples) // 300)
        series = [[round(t, 3), round(v * mb, 2)] for t, v in self.samples[::step]]
        figures = {
            "start": start * mb,
            "peak": peak * mb,
            "end": end * mb,
            "growth": (end - start) * mb,
            "peak_growth": (peak - start) * mb,
            "samples": len(values),
        }
        return figures, series


def busy_s(before: Any, after: Any) -> float:
    """Seconds a CPU ran anything; steal (the hypervisor's) and guest (already in user)
    are not ours to count."""
    fields = ("user", "nice", "system", "irq", "softirq")
    return max(0.0, sum(getattr(after, f, 0) - getattr(before, f, 0) for f in fields))


def stats(result: Result, run: Run) -> dict[str, Any]:
    records = result.records
    ok = [r for r in records if r.error is None]
    wall = result.summary.wall_s or 1e-9
    tokens = sum(r.tokens for r in ok)
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    gaps = [g for r in ok for g in r.gaps_us]
    errors = [r.error for r in records if r.error is not None]
    figures: dict[str, Any] = {
        "requests": len(records),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:3],
        "wall_s": wall,
        "req_s": len(ok) / wall,
        "tokens": tokens,
        "chunks_s": tokens / wall if run.stream else None,
        "total_ms": report.summary((r.total for r in ok), 1000),
        "usage_missing": sum(1 for r in ok if not r.usage) if run.stream else 0,
    }
    if run.stream:
        figures["ttft_ms"] = report.summary(ttfts, 1000)
        figures["itl_ms"] = report.summary(gaps, 1 / 1000)
        figures["dist"] = {
            "ttft_ms": report.distribution(ttfts, 1000),
            "itl_ms": report.distribution(gaps, 1 / 1000),
        }
    return figures


def client_pct(cpu: dict[str, Any]) -> float:
    """CPU % the load generator and the upstream used together (they share one core)."""
    return (cpu.get("loadgen_pct") or 0) + (cpu.get("upstream_pct") or 0)


def bound_by(cpu: dict[str, Any], target: str) -> str:
    """What limited the run: the answer to "was the load generator the bottleneck?"."""
    if (cpu.get("target_pct") or 0) >= 85:
        return "target CPU"
    if client_pct(cpu) >= 85:
        return "client side" + (" (expected: nothing in between)" if target == "direct" else "")
    busiest = max(cpu.get("target_core_busy_pct") or 0, cpu.get("client_core_busy_pct") or 0)
    if busiest >= 85 and (cpu.get("others_pct") or 0) >= 25:
        return "other processes"
    return "latency (no core saturated)"
