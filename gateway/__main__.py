"""The `gateway` command: `gateway --config PATH --host HOST --port PORT`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from gateway import app
from gateway.config import Config, ConfigError, load, warn_missing_keys

DEFAULT_CONFIG = "gateway.toml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gateway", description="A streaming, OpenAI-compatible LLM gateway."
    )
    parser.add_argument(
        "--config",
        help=f"TOML file (default: ./{DEFAULT_CONFIG}; without it, the built-in mock provider)",
    )
    parser.add_argument("--host", help="address to listen on (overrides [server] host)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides [server] port)")
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


async def serve(config: Config, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner, url = await app.start(config, host, port)
    # Printed once the socket is bound and signals are handled: a caller may use both at once.
    print(f"gateway listening on {url} (config: {config.source})", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


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
    warn_missing_keys(config)
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    try:
        runner(serve(config, host, port))
    except ConfigError as exc:  # found while building providers, e.g. a missing extra
        print(f"gateway: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # e.g. the port is taken
        print(
            f"gateway: error: cannot listen on {host}:{port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        sys.exit(1)
    with contextlib.suppress(Exception):
        sys.stdout.flush()


if __name__ == "__main__":
    main()
