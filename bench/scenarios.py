"""The stable scenario table, as data.

Scenario names are part of the CLI (`--scenario NAME`) and of the results JSON, so they do not
change. Each scenario is a tuple of runs; a run is one load pattern measured against every
target in turn. `quick` holds the reduced runs used by `--quick` (the whole quick suite must
finish in under 30 s, process start-up included, on a 2-core machine).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Wire formats the mock upstream speaks and the load generator understands.
API_OPENAI = "openai"
API_ANTHROPIC = "anthropic"
API_GEMINI = "gemini"
API_OLLAMA = "ollama"
APIS = (API_OPENAI, API_ANTHROPIC, API_GEMINI, API_OLLAMA)
# The gateway's alias whose first target answers 503 at once, the second serves.
FAILOVER_ALIAS = "bench-failover"


@dataclass(frozen=True, slots=True)
class Run:
    """One load pattern: C streams kept open until `duration_s` or `requests` is reached."""

    concurrency: int
    tokens: int = 100
    delay_ms: float = 0.0  # upstream delay between two tokens
    chunk_bytes: int = 4  # bytes of content per token (~ one English token)
    stream: bool = True
    duration_s: float | None = None  # stop starting requests after this long
    requests: int | None = None  # ... or after this many; whichever comes first
    warmup: int = 0  # unmeasured requests first, so memory figures exclude pool set-up
    api: str = API_OPENAI  # what the upstream speaks; clients of the gateway always see OpenAI
    # The model the gateway is asked for, when not its plain provider/model (an alias).
    gateway_model: str | None = None
    # What clients of the gateway speak (direct and relay clients speak the upstream's `api`).
    client_api: str = API_OPENAI

    @property
    def label(self) -> str:
        if self.client_api != API_OPENAI:
            return f"C={self.concurrency} {self.client_api}-in {self.api}-out"
        return f"C={self.concurrency}"


# Which figures a scenario's rows show (keys of bench.report.METRICS), in order.
STREAM_SHOWS = (
    "ttft_p50",
    "ttft_p99",
    "itl_p50",
    "itl_p99",
    "chunks_s",
    "req_s",
    "cpu_per_req_ms",
    "cpu_per_1k_chunks_ms",
    "cpu_pct",
    "rss_peak_mb",
    "errors",
)
NONSTREAM_SHOWS = (
    "total_p50",
    "total_p99",
    "req_s",
    "cpu_per_req_ms",
    "cpu_pct",
    "rss_peak_mb",
    "errors",
)
MEMORY_SHOWS = ("rss_start_mb", "rss_peak_mb", "rss_end_mb", "rss_growth_mb", "errors")
LONG_SHOWS = ("ttft_p50", "itl_p50", "itl_p99", "chunks_s", "cpu_per_1k_chunks_ms", *MEMORY_SHOWS)
SOAK_SHOWS = ("req_s", "total_p50", "cpu_per_req_ms", *MEMORY_SHOWS)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    about: str
    runs: tuple[Run, ...]
    quick: tuple[Run, ...]
    shows: tuple[str, ...] = STREAM_SHOWS
    # A gateway module the scenario needs; the scenario is skipped (with a note) without it.
    needs: str | None = None

    def available(self) -> bool:
        return self.needs is None or (REPO / self.needs).exists()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "throughput",
        "0 ms between tokens, 100 tokens: how many chunks/s and what CPU per request",
        runs=tuple(Run(c, duration_s=5.0) for c in (1, 10, 100)),
        quick=tuple(Run(c, duration_s=0.3) for c in (1, 10, 100)),
    ),
    Scenario(
        "latency",
        "20 ms between tokens: TTFT and inter-token latency added under concurrency",
        runs=tuple(Run(c, delay_ms=20.0, duration_s=6.0) for c in (10, 100)),
        # One round of 10-token streams: 0.2 s per target.
        quick=tuple(Run(c, tokens=10, delay_ms=20.0, requests=c) for c in (10, 100)),
    ),
    Scenario(
        "long",
        "one 10,000-token stream: RSS must stay flat while it is relayed",
        runs=(Run(1, tokens=10_000, delay_ms=0.5, requests=1, warmup=2),),
        quick=(Run(1, tokens=10_000, delay_ms=0.03, requests=1, warmup=2),),
        shows=LONG_SHOWS,
    ),
    Scenario(
        "nonstream",
        "stream=false, 100 tokens: added latency and CPU per request",
        runs=tuple(Run(c, stream=False, duration_s=5.0) for c in (1, 10)),
        quick=tuple(Run(c, stream=False, duration_s=0.25) for c in (1, 10)),
        shows=NONSTREAM_SHOWS,
    ),
    Scenario(
        "soak",
        "10,000 streamed requests: RSS at the start and the end must stay within 5 MB",
        runs=(Run(10, requests=10_000, warmup=200),),
        quick=(Run(10, requests=300, warmup=100),),
        shows=SOAK_SHOWS,
    ),
    Scenario(
        "translate",
        "the Anthropic path: upstream speaks Anthropic Messages SSE, clients see OpenAI",
        runs=tuple(Run(c, api=API_ANTHROPIC, duration_s=5.0) for c in (1, 10)),
        quick=(Run(10, api=API_ANTHROPIC, duration_s=0.3),),
        needs="providers/anthropic.py",
    ),
    Scenario(
        "messages",
        "clients speak Anthropic Messages (/v1/messages): passed through to an Anthropic "
        "upstream, and translated for an OpenAI-compatible one",
        runs=(
            *(Run(c, api=API_ANTHROPIC, client_api=API_ANTHROPIC, duration_s=5.0) for c in (1, 10)),
            Run(10, api=API_OPENAI, client_api=API_ANTHROPIC, duration_s=5.0),
        ),
        quick=(
            Run(10, api=API_ANTHROPIC, client_api=API_ANTHROPIC, duration_s=0.3),
            Run(10, api=API_OPENAI, client_api=API_ANTHROPIC, duration_s=0.3),
        ),
        needs="gateway/routes/messages.py",
    ),
    Scenario(
        "failover",
        "the model's first target answers 503 at once, the second serves: added TTFT",
        runs=tuple(Run(c, duration_s=5.0, gateway_model=FAILOVER_ALIAS) for c in (1, 10)),
        quick=(Run(1, duration_s=0.3, gateway_model=FAILOVER_ALIAS),),
        needs="gateway/engine/dispatcher.py",
    ),
)

BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}


def bounded(run: Run, duration_s: float | None, requests: int | None) -> Run:
    """Apply the CLI's --duration / --requests overrides to a run."""
    if duration_s is not None:
        run = replace(run, duration_s=duration_s)
    if requests is not None:
        run = replace(run, requests=requests)
    return run
