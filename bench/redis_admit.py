"""The Redis client's CPU per admission: `python -m bench.redis_admit --concurrency 300`.

Drives the gateway's own `RedisLimiter` (gateway/policy/redis_state.py) against a redis-server it
starts on loopback: C tasks each admit a request under a key with every limit set (rpm,
tpm, budget, max_parallel, none ever reached) and settle it with 10 tokens, until N requests
are done. Nothing else runs in the process, so its CPU time divided by N is what the shared
limits cost the gateway per request (the check before it and the charge after it). Also
reported: requests the limiter let through uncounted (Redis "unavailable": failed open) and
requests refused (429, or 503 with `--closed`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

from bench.common import run
from bench.procs import HOST, free_port
from gateway.config import GatewayKeyConfig, StateConfig
from gateway.policy.keys import GatewayKey
from gateway.policy.shared_state import SharedState
from wire.errors import GatewayError

NEVER = GatewayKeyConfig(value="sk-bench", rpm=10**9, tpm=10**12, budget=10**15, max_parallel=10**6)


async def admissions(url: str, concurrency: int, requests: int, closed: bool) -> None:
    state = SharedState(StateConfig(redis_url=url, on_redis_error="closed" if closed else "open"))
    key = GatewayKey("bench", "sk-bench", NEVER, re.compile(".*"))
    outcomes: Counter[str] = Counter()
    left = requests

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            try:
                admission = await state.limiter.admit(key)
            except GatewayError as error:
                outcomes[str(error.status)] += 1
                continue
            outcomes["counted" if admission.counted else "uncounted"] += 1
            await asyncio.sleep(0)  # the request "runs": other tasks admit meanwhile
            state.limiter.settle(admission, 10)

    await state.limiter.admit(key)  # connect and load the script before measuring
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    await state.close()  # the last charges go out: their CPU counts too
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"C={concurrency} requests={requests}: {cpu / requests * 1e6:.0f} us CPU per "
        f"admission (check + charge), {requests / wall:.0f} admissions/s; "
        + ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_admit", description=__doc__)
    parser.add_argument("--concurrency", type=int, action="append", help="repeatable; 300")
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--closed", action="store_true", help='on_redis_error = "closed"')
    args = parser.parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        redis = subprocess.Popen(
            [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                    break
                time.sleep(0.05)
            for concurrency in args.concurrency or [300]:
                run(admissions(f"redis://{HOST}:{port}/0", concurrency, args.requests, args.closed))
        finally:
            redis.terminate()
            redis.wait(5)


if __name__ == "__main__":
    main()
