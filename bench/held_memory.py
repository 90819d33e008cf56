"""Memory held for failed and large answers: the gateway's RSS through three runs.

    python -m bench.held_memory                  # the runs of issue 22, item 3
    python -m bench.held_memory --answers 5 --uploads 10 --concurrent 5

1. `--answers` sequential requests whose upstream answer (a JSON body of spaces, 100 MiB)
   passes `[server] max_upstream_bytes` (64 MiB): every one a 502.
2. `--uploads` requests, `--upload-concurrency` at a time, each with a `--upload-mib` MiB
   message, to a provider whose port nothing listens on: every one a 502.
3. `--concurrent` requests at once, each answered `--concurrent-mib` MiB of valid JSON
   (under max_upstream_bytes): each held whole by the gateway, their sum bounded by
   `[server] max_held_bytes` (`--max-held-mib`; past it a 503).

The gateway runs from its own CLI (`python -m gateway`), the upstream and the clients in this
process, all on 127.0.0.1. Reported: the gateway's RSS at the start, the peak during each run
and two seconds after it (nothing calls the garbage collector).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import psutil
from aiohttp import web

from bench.procs import free_port, gateway_child

MB = 1024 * 1024


async def _huge(request: web.Request) -> web.StreamResponse:
    """100 MiB of JSON-looking spaces, more than the gateway holds: it lets go at its limit."""
    await request.read()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    piece = b" " * (256 * 1024)
    try:
        for _ in range(100 * MB // len(piece)):
            await response.write(piece)
    except ConnectionError:
        pass
    return response


def large_answer(size: int) -> bytes:
    """A valid chat completion of about `size` bytes (served by `serve_large`)."""
    text = "a" * size
    return orjson.dumps(
        {
            "id": "chatcmpl-large",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


LARGE = web.AppKey("large", bytes)


async def serve_large(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=request.app[LARGE], content_type="application/json")


class Rss:
    """The gateway's RSS, sampled every 5 ms while a run goes."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0

    def now(self) -> int:
        return int(self.process.memory_info().rss)

    async def during(self, work: Callable[[], Awaitable[Counter[int]]]) -> Counter[int]:
        self.peak = self.now()
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                self.peak = max(self.peak, self.now())
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        try:
            return await work()
        finally:
            done.set()
            await sampler


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    async with session.post(
        url, data=body, headers={"Content-Type": "application/json"}
    ) as response:
        await response.read()
        return response.status


async def _bounded(count: int, concurrency: int, one: Callable[[], Awaitable[int]]) -> Counter[int]:
    statuses: Counter[int] = Counter()
    left = iter(range(count))

    async def worker() -> None:
        for _ in left:
            statuses[await one()] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def main(args: argparse.Namespace) -> int:
    app = web.Application(client_max_size=1024 * MB)
    app[LARGE] = large_answer(args.concurrent_mib * MB)
    app.router.add_post("/huge/chat/completions", _huge)
    app.router.add_post("/large/chat/completions", serve_large)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    held = f"max_held_bytes = {args.max_held_mib * MB}\n" if args.max_held_mib else ""
    config = (
        f"[server]\naccess_log = false\n{held}"
        f'[providers.huge]\ntype = "openai"\nbase_url = "{upstream}/huge"\n'
        f'[providers.large]\ntype = "openai"\nbase_url = "{upstream}/large"\n'
        f'[providers.nobody]\ntype = "openai"\nbase_url = "{nobody}"\n'
        "[providers.mock]\ndelay = 0\n"
    )
    rows: list[tuple[str, str, int, int, int]] = []
    with tempfile.TemporaryDirectory() as directory:
        gateway = gateway_child(directory, config)
        try:
            url = gateway.wait_address(30) + "/v1/chat/completions"
            rss = Rss(gateway.pid)
            timeout = aiohttp.ClientTimeout(total=300)
            async with aiohttp.ClientSession(timeout=timeout) as session:

                def chat(model: str, content: str = "hi") -> bytes:
                    messages = [{"role": "user", "content": content}]
                    return orjson.dumps({"model": model, "messages": messages})

                assert await _post(session, url, chat("mock/m")) == 200  # warm up
                start = rss.now()

                async def answers() -> Counter[int]:
                    body = chat("huge/m")
                    return await _bounded(args.answers, 1, lambda: _post(session, url, body))

                async def uploads() -> Counter[int]:
                    body = chat("nobody/m", "x" * (args.upload_mib * MB))
                    return await _bounded(
                        args.uploads, args.upload_concurrency, lambda: _post(session, url, body)
                    )

                async def concurrent() -> Counter[int]:
                    body = chat("large/m")
                    return await _bounded(
                        args.concurrent, args.concurrent, lambda: _post(session, url, body)
                    )

                runs = (
                    (f"{args.answers} answers over max_upstream_bytes", answers),
                    (
                        f"{args.uploads} requests of {args.upload_mib} MiB to an unreachable "
                        f"provider (C = {args.upload_concurrency})",
                        uploads,
                    ),
                    (
                        f"{args.concurrent} concurrent {args.concurrent_mib} MiB answers",
                        concurrent,
                    ),
                )
                for name, work in runs:
                    began = time.monotonic()
                    statuses = await rss.during(work)
                    took = time.monotonic() - began
                    await asyncio.sleep(2.0)
                    shown = ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
                    rows.append((name, f"{shown} in {took:.1f} s", start, rss.peak, rss.now()))
        finally:
            gateway.stop()
            await runner.cleanup()
    print("| run | answers | RSS at start | peak | 2 s after |")
    print("| --- | --- | --- | --- | --- |")
    for name, statuses_text, at_start, peak, after in rows:
        print(
            f"| {name} | {statuses_text} | {at_start / MB:.0f} MiB | {peak / MB:.0f} MiB "
            f"| {after / MB:.0f} MiB |"
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.held_memory", description=__doc__)
    parser.add_argument("--answers", type=int, default=30)
    parser.add_argument("--uploads", type=int, default=70)
    parser.add_argument("--upload-mib", type=int, default=31)
    parser.add_argument("--upload-concurrency", type=int, default=10)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--concurrent-mib", type=int, default=50)
    parser.add_argument(
        "--max-held-mib", type=int, default=0, help="[server] max_held_bytes (0: the default)"
    )
    args = parser.parse_args(argv)
    for name in ("answers", "uploads", "upload_concurrency", "concurrent"):
        if not 1 <= getattr(args, name) <= 200:
            parser.error(f"--{name.replace('_', '-')}: between 1 and 200")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
