"""`python -m bench.reload`: what a reload and a drain cost the clients, counted.

A real `gateway --workers N` on 127.0.0.1 with the mock (streams of 20 tokens 0.1 s apart).
S streams are opened, new requests keep arriving on new connections, the config file is
rewritten (one alias added) and the supervisor gets SIGHUP: it prints how long until the new
config answered, how many streams ended whole, how many requests went through during the
reload and how many failed. Then SIGTERM under the same load: how many requests were served,
refused (a connection error before any byte of an answer) or failed otherwise, the exit
status, and the gateway's drain lines.

    python -m bench.reload --streams 200 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0.1\ntokens = 20\n[server]\naccess_log = false\n'
NEW = MOCK + '[models.fresh]\ntargets = ["mock/x"]\n'
MESSAGES = [{"role": "user", "content": "hi"}]


async def _stream(session: aiohttp.ClientSession, url: str, started: asyncio.Event) -> bool:
    body = {"model": "mock/x", "messages": MESSAGES, "stream": True}
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            raw = b""
            async for chunk in response.content.iter_any():
                raw += chunk
                started.set()
    except aiohttp.ClientError:
        started.set()
        return False
    return raw.rstrip().endswith(b"data: [DONE]") and raw.count(b'"content":"') >= 20


async def _status(url: str, model: str) -> str:
    """One request on a new connection: its status, or "refused" / "failed"."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": 1}
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(f"{url}/v1/chat/completions", json=body) as response,
        ):
            await response.read()
            return str(response.status)
    except aiohttp.ClientConnectorError:
        return "refused"
    except aiohttp.ClientError:
        return "failed"


async def _hammer(url: str, stop: asyncio.Event, seen: Counter[str]) -> None:
    while not stop.is_set():
        seen[await _status(url, "mock/x")] += 1


def _start(config: Path, workers: int) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "gateway", "--config", str(config), "--port", "0"]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    found = re.search(r"listening on (http://\S+)", process.stdout.readline())
    assert found is not None, "the gateway did not start"
    return process, found.group(1)


async def run(streams: int, workers: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "gateway.toml"
        config.write_text(MOCK)
        process, url = await asyncio.to_thread(_start, config, workers)
        assert process.stderr is not None
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                events = [asyncio.Event() for _ in range(streams)]
                tasks = [asyncio.create_task(_stream(session, url, e)) for e in events]
                await asyncio.gather(*(e.wait() for e in events))
                stop, during = asyncio.Event(), Counter[str]()
                hammers = [asyncio.create_task(_hammer(url, stop, during)) for _ in range(clients)]
                config.write_text(NEW)
                signalled = time.monotonic()
                process.send_signal(signal.SIGHUP)
                for _ in range(3000):  # at most ~30 s
                    if await _status(url, "fresh") == "200":
                        break
                    await asyncio.sleep(0.01)
                answered = time.monotonic() - signalled
                whole = sum(await asyncio.gather(*tasks))
                stop.set()
                await asyncio.gather(*hammers)
            print(
                f"reload ({workers} workers): new config answered {answered * 1000:.0f} ms "
                f"after SIGHUP; streams whole {whole}/{streams}; requests during the reload "
                f"{dict(during)}"
            )
            stop, around = asyncio.Event(), Counter[str]()
            hammers = [asyncio.create_task(_hammer(url, stop, around)) for _ in range(clients)]
            await asyncio.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*hammers)
            status = await asyncio.to_thread(process.wait, 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        log = process.stderr.read()
        print(f"SIGTERM under load: requests {dict(around)}; exit status {status}")
        print(f"tracebacks in the log: {log.count('Traceback')}")
        for line in log.splitlines():
            if "drain ended" in line or "reload of" in line:
                print("  " + line.split(" ", 2)[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8, help="new-connection request loops")
    args = parser.parse_args()
    asyncio.run(run(args.streams, args.workers, args.clients))


if __name__ == "__main__":
    main()
