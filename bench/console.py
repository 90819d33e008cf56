"""`python -m bench.console`: what the console costs a request, and what its ring weighs.

The console's hooks run once per attempt and once per request (after the last byte); the feed
encodes each finished request once per open viewer. Both are timed here in process, without
sockets (a load run cannot resolve a few microseconds in a request's cost), and the ring's
memory is measured full, at the default size, with tracemalloc.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc

from gateway.config import ConsoleConfig
from gateway.console.feed import events
from gateway.console.recorder import ConsoleRecorder
from gateway.console.state import ConsoleState
from gateway.engine.events import Attempt, RequestRecord

REQUESTS = 200_000
ROUNDS = 5


def _record(n: int) -> tuple[RequestRecord, Attempt]:
    """A streamed request served at its first attempt, with usage: the common case."""
    record = RequestRecord("chat.completions", f"openai/gpt-4o-mini-{n % 50}", True, "team-a")
    attempt = Attempt(1, record.model, "openai")
    attempt.outcome = "ok"
    record.attempts = [attempt]
    record.served = record.model
    record.first_content, record.ended = record.started + 0.2, record.started + 2.0
    record.usage = {"prompt_tokens": 812, "completion_tokens": 240, "total_tokens": 1052}
    return record, attempt


async def main() -> None:
    recent = ConsoleConfig().recent
    hooks, feed = [], []
    for _ in range(ROUNDS):
        console = ConsoleState(recent)
        recorder = ConsoleRecorder(console.ring, console.health)
        record, attempt = _record(0)
        start = time.perf_counter()
        for _ in range(REQUESTS):
            recorder.attempt_ended(record, attempt)
            recorder.request_ended(record)
        hooks.append((time.perf_counter() - start) / REQUESTS * 1e6)
        entries = console.ring.newest(1)
        start = time.perf_counter()
        for _ in range(REQUESTS):
            events(entries, entries[0].id - 1)
        feed.append((time.perf_counter() - start) / REQUESTS * 1e6)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    console = ConsoleState(recent)
    recorder = ConsoleRecorder(console.ring, console.health)
    for n in range(recent):
        record, attempt = _record(n)
        recorder.attempt_ended(record, attempt)
        recorder.request_ended(record)
    weight = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"hooks (attempt_ended + request_ended): median {sorted(hooks)[ROUNDS // 2]:.1f} µs")
    print(f"feed: median {sorted(feed)[ROUNDS // 2]:.1f} µs per request per open viewer")
    print(f"ring of {recent:,} requests: {weight / 1024:.0f} KiB ({weight / recent:.0f} B each)")


if __name__ == "__main__":
    asyncio.run(main())
