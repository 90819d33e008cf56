"""What a /metrics scrape costs a stream: the worst gap between a paced stream's chunks, with
and without scrapers, and the page's size.

    python -m bench.scrape_stall                     # 1 and 2 workers, 4 scrapers every second
    python -m bench.scrape_stall --workers 1 --models 203 --streams 3

The mock upstream (bench/upstream.py) sends `--tokens` tokens `--delay-ms` apart (default 20
ms). The gateway (its own CLI, with its defaults: metrics and the access log on) first serves
a non-streamed and a streamed request for each of `--models` model names (`bench/m-0`, ...;
the label keeps up to 200 free names per process, the rest are `_OTHER`), so that its
registry holds every label combination a busy gateway has. Then, `--streams` times each:
one stream alone, then one stream while `--scrapers` clients (in another process, so that
their reading does not delay this one's) each GET /metrics every `--interval` seconds. The
stream's client records when each chunk arrived; the figure is the worst gap between two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import sys
import tempfile
import time

import aiohttp
import orjson

from bench.procs import Child, gateway_child

MB = 1024 * 1024


async def _stream_gaps(session: aiohttp.ClientSession, url: str, tokens: int) -> list[float]:
    """One paced stream: the gaps between its chunks' arrivals, in seconds."""
    body = {
        "model": "bench/m-0",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "bench": {"tokens": tokens},
    }
    arrivals: list[float] = []
    async with session.post(f"{url}/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        async for _ in response.content.iter_any():
            arrivals.append(time.perf_counter())
    # The first gap is the time to first token, not a gap between chunks.
    return [b - a for a, b in itertools.pairwise(arrivals[1:])]


async def _populate(session: aiohttp.ClientSession, url: str, models: int) -> None:
    async def ask(model: str, stream: bool) -> None:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
            "stream_options": {"include_usage": True} if stream else None,
            "bench": {"tokens": 5, "delay_ms": 0},
        }
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            await response.read()
            assert response.status == 200, response.status

    names = [f"bench/m-{i}" for i in range(models)]
    for start in range(0, len(names), 50):
        batch = names[start : start + 50]
        await asyncio.gather(*(ask(name, stream) for name in batch for stream in (False, True)))


async def _scrape_forever(url: str, scrapers: int, interval: float) -> None:
    """`scrapers` clients, each GET /metrics every `interval` seconds, staggered (run in a
    process of its own by `--scrape-only`)."""
    async with aiohttp.ClientSession() as session:

        async def one(offset: float) -> None:
            await asyncio.sleep(offset)
            while True:
                began = time.monotonic()
                async with session.get(f"{url}/metrics") as response:
                    await response.read()
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

        await asyncio.gather(*(one(i * interval / scrapers) for i in range(scrapers)))


async def _page(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    """The /metrics page's size, and the median time of 5 scrapes of it."""
    took = []
    size = 0
    for _ in range(5):
        began = time.perf_counter()
        async with session.get(f"{url}/metrics") as response:
            size = len(await response.read())
        took.append(time.perf_counter() - began)
        await asyncio.sleep(0.2)
    return size, statistics.median(took)


async def measure(args: argparse.Namespace, workers: int, upstream: str) -> dict[str, float]:
    config = (
        f'[providers.bench]\ntype = "openai"\nbase_url = "{upstream}/v1"\napi_key = "unused"\n'
        f"[server]\nworkers = {workers}\n"
    )
    if args.cache_seconds is not None:
        config += f"[metrics]\ncache_seconds = {args.cache_seconds}\n"
    with tempfile.TemporaryDirectory() as directory:
        gateway = gateway_child(directory, config)
        try:
            url = gateway.wait_address(60)
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                await _populate(session, url, args.models)
                await asyncio.sleep(1.0)
                size, scrape_s = await _page(session, url)
                # Alternately, so that the machine's other load weighs on both alike.
                alone: list[float] = []
                scraped: list[float] = []
                for _ in range(args.streams):
                    alone += await _stream_gaps(session, url, args.tokens)
                    scrapers = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "bench.scrape_stall",
                        "--scrape-only",
                        url,
                        "--scrapers",
                        str(args.scrapers),
                        "--interval",
                        str(args.interval),
                    )
                    try:
                        await asyncio.sleep(2 * args.interval)  # every scraper at its pace
                        scraped += await _stream_gaps(session, url, args.tokens)
                    finally:
                        scrapers.terminate()
                        await scrapers.wait()
        finally:
            gateway.stop()
    return {
        "gaps": len(alone),
        "scraped_gaps": len(scraped),
        "alone_over_50ms": sum(gap > 0.05 for gap in alone),
        "scraped_over_50ms": sum(gap > 0.05 for gap in scraped),
        "page_bytes": size,
        "scrape_ms": scrape_s * 1000,
        "alone_worst_ms": max(alone) * 1000,
        "alone_p99_ms": statistics.quantiles(alone, n=100, method="inclusive")[98] * 1000,
        "scraped_worst_ms": max(scraped) * 1000,
        "scraped_p99_ms": statistics.quantiles(scraped, n=100, method="inclusive")[98] * 1000,
    }


async def main(args: argparse.Namespace) -> int:
    upstream_child = Child(
        "upstream",
        [
            sys.executable,
            "-m",
            "bench.upstream",
            "--tokens",
            str(args.tokens),
            "--delay-ms",
            str(args.delay_ms),
            "--usage",
            "always",
        ],
        None,
    )
    try:
        upstream = upstream_child.wait_address(30)
        rows = [(workers, await measure(args, workers, upstream)) for workers in args.workers]
    finally:
        upstream_child.stop()
    print(
        f"{args.models} model names, {args.tokens} tokens {args.delay_ms:g} ms apart, "
        f"{args.streams} streams each; {args.scrapers} scrapers every {args.interval:g} s"
    )
    print("| workers | page | scrape | alone: worst gap, p99, > 50 ms | scraped: the same |")
    print("| --- | --- | --- | --- | --- |")
    for workers, row in rows:
        print(
            f"| {workers} | {row['page_bytes'] / 1000:,.0f} kB | {row['scrape_ms']:.0f} ms "
            f"| {row['alone_worst_ms']:.0f} ms, {row['alone_p99_ms']:.0f} ms, "
            f"{row['alone_over_50ms']:.0f} of {row['gaps']:.0f} "
            f"| {row['scraped_worst_ms']:.0f} ms, {row['scraped_p99_ms']:.0f} ms, "
            f"{row['scraped_over_50ms']:.0f} of {row['scraped_gaps']:.0f} |"
        )
    print(orjson.dumps({str(workers): row for workers, row in rows}).decode())
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape_stall", description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", type=int, default=203)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--scrapers", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument(
        "--cache-seconds", type=float, help="[metrics] cache_seconds (default: the gateway's)"
    )
    parser.add_argument("--scrape-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (1 <= args.models <= 1000 and 1 <= args.streams <= 20 and 1 <= args.scrapers <= 16):
        parser.error("--models 1..1000, --streams 1..20, --scrapers 1..16")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.scrape_only:
        with contextlib.suppress(KeyboardInterrupt):
            scraping = _scrape_forever(
                arguments.scrape_only, arguments.scrapers, arguments.interval
            )
            asyncio.run(scraping)
        sys.exit(0)
    sys.exit(asyncio.run(main(arguments)))
