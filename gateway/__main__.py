"""The `gateway` command: `gateway --config PATH --host HOST --port PORT`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gateway import app
from gateway.config import Config, load, shared_state_problem, warn_missing_keys, worker_count
from gateway.observability import export
from gateway.server import fdlimit
from gateway.server.drain import DRAIN
from gateway.server.supervisor import Supervisor, die_with_parent
from wire.config_values import ConfigError

DEFAULT_CONFIG = "gateway.toml"


def _version() -> str:
    try:
        return importlib.metadata.version("gateway")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gateway", description="A streaming, OpenAI-compatible LLM gateway."
    )
    parser.add_argument(
        "--config",
        help=f"TOML file (default: ./{DEFAULT_CONFIG}; without it, the built-in mock provider)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--host", help="address to listen on (overrides [server] host)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides [server] port)")
    parser.add_argument(
        "--workers",
        help='worker processes sharing the port: a number or "auto" (one per core); '
        "overrides [server] workers",
    )
    # A worker started by the supervisor: the listening sockets it inherited.
    parser.add_argument("--worker-fds", help=argparse.SUPPRESS)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="level of the gateway's messages (the access log has its own switch)",
    )
    return parser.parse_args(argv)


def load_config(path: str | None) -> Config:
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load(path)


async def serve(
    config: Config, host: str, port: int, sockets: list[socket.socket] | None = None
) -> int:
    """Serve until a signal: the first drains (exit status 0), a second stops at once (1).
    A listener that cannot be mended drains too, and exits 1."""
    signals: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    runner, url = await app.start(config, host, port, sockets)
    # What start-up built lives as long as the process: out of the collector's way. And a
    # request frees what it made by reference counting, so the young generation only grows
    # with what stays alive (streams in flight): collecting it every 700 net allocations ran
    # the collector about every 10 requests at C=100, 10 % of the gateway's CPU; every 20,000
    # runs it a few times a minute (measured: 2,414 collections for 20,000 streams, then 1).
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    # Printed once the socket is bound and signals are handled: a caller may use both at once.
    print(f"gateway listening on {url} (config: {config.source})", flush=True)
    drain = runner.app[DRAIN]
    first = asyncio.ensure_future(signals.get())
    broken = asyncio.ensure_future(drain.broken.wait())
    await asyncio.wait({first, broken}, return_when=asyncio.FIRST_COMPLETED)
    for waiting in (first, broken):
        waiting.cancel()
    draining = asyncio.ensure_future(drain.run(runner, config.server.drain_timeout))
    second = asyncio.ensure_future(signals.get())
    done, _ = await asyncio.wait({draining, second}, return_when=asyncio.FIRST_COMPLETED)
    if draining in done:
        second.cancel()
        draining.result()
        return 1 if drain.broken.is_set() else 0
    await drain.cut()  # a second signal: whatever still runs ends now
    await draining
    return 1


def _worker_sockets(fds: str) -> list[socket.socket]:
    return [socket.socket(fileno=int(fd)) for fd in fds.split(",")]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        sys.exit(2)
    # A process-wide setting, so made here rather than by the app: streams need two files each.
    limit = fdlimit.raise_open_file_limit()
    if not args.worker_fds:  # said once, by the supervisor, not again by each worker
        warn_missing_keys(config)
        fdlimit.announce_cap(config.server.max_connections, limit)
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    workers = worker_count(_int_or(args.workers) if args.workers else config.server.workers)
    if workers is None:
        _exit_with(f'--workers: a positive number or "auto" (got {args.workers!r})', 2)
    assert workers is not None
    problem = shared_state_problem(config, workers)
    if problem:
        _exit_with(problem, 2)
    runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        pass
    try:
        if args.worker_fds:
            die_with_parent()
            status = runner(serve(config, host, port, _worker_sockets(args.worker_fds)))
        elif workers > 1:
            passed = ["--host", host, "--port", str(port), "--workers", "1"]
            passed += ["--log-level", args.log_level]
            if args.config is not None:
                passed += ["--config", args.config]
            supervisor = Supervisor(
                passed,
                host,
                port,
                workers,
                config.source,
                share_dir=export.use_multiprocess,
                worker_exited=export.worker_exited,
            )
            status = runner(supervisor.run())
        else:
            status = runner(serve(config, host, port))
    except ConfigError as exc:  # found while building providers, e.g. a missing extra
        _exit_with(str(exc), 2)
    except OSError as exc:  # e.g. the port is taken
        _exit_with(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 1)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    sys.exit(status)


def _int_or(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _exit_with(message: str, status: int) -> None:
    print(f"gateway: error: {message}", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
