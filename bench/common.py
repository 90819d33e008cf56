"""Process plumbing shared by the bench's own servers: uvloop, ready line, clean stop."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the gateway runs on it, so the baselines do too."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(coro)
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # typically: the port is taken
        print(f"{sys.argv[0]}: {exc}", file=sys.stderr)
        sys.exit(1)


async def wait_for_stop(ready: str) -> None:
    """Print the ready line (it holds the URL the orchestrator waits for), then wait for
    SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(ready, flush=True)
    await stop.wait()


async def serve_app(app: web.Application, host: str, port: int, name: str) -> None:
    """Serve an aiohttp app until SIGTERM or SIGINT; `NAME listening on http://HOST:PORT`."""
    # A short shutdown: the bench stops its children at exit and must not wait on them.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    try:
        await wait_for_stop(f"{name} listening on http://{host}:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()
