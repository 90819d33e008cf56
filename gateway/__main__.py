"""The `gateway` command: `gateway --config PATH --host HOST --port PORT`."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import gc
import importlib.metadata
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import app, commands
from gateway.config import Config, load, shared_state_problem, warn_missing_keys, worker_count
from gateway.observability import export
from gateway.server import fdlimit
from gateway.server.config_key import CONFIG
from gateway.server.drain import DRAIN
from gateway.server.listener import bind
from gateway.server.reload import reread
from gateway.server.supervisor import Supervisor, die_with_parent
from wire.config_values import ConfigError

DEFAULT_CONFIG = "gateway.toml"

log = logging.getLogger("gateway")


def _version() -> str:
    try:
        return importlib.metadata.version("gateway")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="A streaming, OpenAI-compatible LLM gateway.",
        epilog="Also: `gateway check [--config F]` validates a config, `gateway config "
        "[--config F]` prints the effective one (secrets redacted), `gateway reload "
        "--pid-file F` makes the running gateway read its config again.",
    )
    parser.add_argument(
        "--config",
        help=f"TOML file (default: ./{DEFAULT_CONFIG}; without it, the built-in mock provider)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--host", help="address to listen on (overrides [server] host)")
    parser.add_argument(
        "--port", type=_port, help="port to listen on, 0-65535 (overrides [server] port)"
    )
    parser.add_argument(
        "--workers",
        help='worker processes sharing the port: a number or "auto" (one per core); '
        "overrides [server] workers",
    )
    # A worker started by the supervisor: the listening sockets it inherited.
    parser.add_argument("--worker-fds", help=argparse.SUPPRESS)
    parser.add_argument(
        "--pid-file",
        help="write the gateway's process id here (for `gateway reload --pid-file`); "
        "removed at exit",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="level of the gateway's messages (the access log has its own switch)",
    )
    return parser.parse_args(argv)


def _port(text: str) -> int:
    """A port as [server] port takes it: 0 (any free one) to 65535."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535 (got {text!r})")
    return int(text)


def load_config(path: str | None) -> Config:
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load(path)


async def serve(
    config: Config,
    host: str,
    port: int,
    sockets: list[socket.socket] | None = None,
    reload: Callable[[Config], Config | None] | None = None,
) -> int:
    """Serve until a signal: the first SIGTERM/SIGINT drains (exit status 0), a second stops at
    once (1). A listener that cannot be mended drains too, and exits 1. SIGHUP (with `reload`,
    which reads the config again, or None if it is refused) starts a new generation on the new
    config, accepting on the same sockets, and drains the old one: a request in flight ends on
    the config it started with. Without `reload` (a worker: its supervisor reloads), SIGHUP is
    ignored."""
    signals: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    if reload is None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    else:
        loop.add_signal_handler(signal.SIGHUP, signals.put_nowait, signal.SIGHUP)
    # Bound once, for every generation: each accepts from its own duplicate, closed by its
    # drain; these close when the process stops taking connections.
    listening = bind(host, port) if sockets is None else sockets
    try:
        runner, url = await app.start(config, host, port, _copies(listening))
    except BaseException:
        _close(listening)
        raise
    # What start-up built lives as long as the process: out of the collector's way. And a
    # request frees what it made by reference counting, so the young generation only grows
    # with what stays alive (streams in flight): collecting it every 700 net allocations ran
    # the collector about every 10 requests at C=100, 10 % of the gateway's CPU; every 20,000
    # runs it a few times a minute (measured: 2,414 collections for 20,000 streams, then 1).
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    # Printed once the socket is bound and signals are handled: a caller may use both at once.
    print(f"gateway listening on {url} (config: {config.source})", flush=True)
    retiring: set[asyncio.Task[None]] = set()  # older generations, draining
    while True:
        drain = runner.app[DRAIN]
        first = asyncio.ensure_future(signals.get())
        broken = asyncio.ensure_future(drain.broken.wait())
        done, _ = await asyncio.wait({first, broken}, return_when=asyncio.FIRST_COMPLETED)
        for waiting in (first, broken):
            waiting.cancel()
        if broken not in done and first.result() == signal.SIGHUP:
            assert reload is not None
            renewed = await _renew(reload, config, host, port, listening)
            if renewed is not None:
                old, (runner, _), config = runner, renewed[0], renewed[1]
                retire = drain.run(old, old.app[CONFIG].server.drain_timeout, why="reload")
                task = asyncio.ensure_future(retire)
                retiring.add(task)
                task.add_done_callback(retiring.discard)
            continue
        break
    draining = asyncio.ensure_future(
        drain.run(runner, config.server.drain_timeout, lambda: _close(listening), why="stopping")
    )
    everything = asyncio.ensure_future(asyncio.gather(draining, *retiring))
    second = asyncio.ensure_future(_next_stop(signals))
    either: set[asyncio.Future[Any]] = {everything, second}
    finished, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if everything in finished:
        second.cancel()
        everything.result()
        log.info("gateway exits")
        return 1 if drain.broken.is_set() else 0
    for task in (draining, *retiring):  # a second signal: whatever still runs ends now
        task.cancel()
    await drain.cut()
    await asyncio.gather(everything, return_exceptions=True)
    log.info("gateway exits at once (a second signal)")
    return 1


async def _next_stop(signals: asyncio.Queue[int]) -> int:
    """The next SIGTERM or SIGINT (a SIGHUP while stopping changes nothing)."""
    while (signum := await signals.get()) == signal.SIGHUP:
        log.warning("reload ignored: the gateway is stopping")
    return signum


async def _renew(
    reload: Callable[[Config], Config | None],
    running: Config,
    host: str,
    port: int,
    listening: list[socket.socket],
) -> tuple[tuple[web.AppRunner, str], Config] | None:
    """A new generation on the reloaded config, or None (logged) if it is refused."""
    config = reload(running)
    if config is None:
        return None
    try:
        started = await app.start(config, host, port, _copies(listening))
    except (ConfigError, OSError) as exc:  # e.g. a provider that cannot be built
        log.error("reload refused, still serving the previous config: %s", exc)
        return None
    log.info("reloaded: new requests are served on %s", config.source)
    return started, config


def _copies(sockets: list[socket.socket]) -> list[socket.socket]:
    copies = [sock.dup() for sock in sockets]
    for copy in copies:
        copy.setblocking(False)
    return copies


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _worker_sockets(fds: str) -> list[socket.socket]:
    return [socket.socket(fileno=int(fd)) for fd in fds.split(",")]


def main(argv: list[str] | None = None) -> None:
    given = sys.argv[1:] if argv is None else argv
    if given and given[0] in commands.COMMANDS:
        sys.exit(commands.run(given, load_config))
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

    def reload_file() -> Config:
        return load_config(args.config)

    if args.pid_file and not args.worker_fds:
        pid_file = Path(args.pid_file)
        pid_file.write_text(f"{os.getpid()}\n")
        atexit.register(pid_file.unlink, missing_ok=True)
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
                reread=lambda running: reread(reload_file, running, workers),
                config=config,
            )
            status = runner(supervisor.run())
        else:
            status = runner(
                serve(config, host, port, reload=lambda running: reread(reload_file, running, 1))
            )
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
