"""The `gateway` subcommands an operator runs beside the server: `reload`, `check`, `config`."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

from gateway.config import Config, shared_state_problem, worker_count
from wire.config_values import ConfigError

# Config fields whose literal value is a credential (an `env.NAME` is shown: it is a name).
_SECRET_FIELD = re.compile(r"key|secret|token|password|value|credential", re.IGNORECASE)
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|signature|session", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")
REDACTED = "<redacted>"

COMMANDS = ("reload", "check", "config")


def run(argv: list[str], load_config: Callable[[str | None], Config]) -> int:
    """Run the subcommand `argv[0]` with its arguments; its exit status."""
    name, rest = argv[0], argv[1:]
    parser = argparse.ArgumentParser(prog=f"gateway {name}")
    if name == "reload":
        parser.description = "Make the running gateway read its config again (SIGHUP)."
        parser.add_argument(
            "--pid-file", required=True, help="the one the gateway was started with"
        )
        return _reload(parser.parse_args(rest).pid_file)
    parser.add_argument("--config", help="TOML file (default: ./gateway.toml, else the built-in)")
    args = parser.parse_args(rest)
    try:
        config = load_config(args.config)
        workers = worker_count(config.server.workers)
        problem = shared_state_problem(config, workers or 1)
        if problem:
            raise ConfigError(problem)
    except ConfigError as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 1
    if name == "check":
        print(
            f"{config.source}: valid ({len(config.providers)} providers, "
            f"{len(config.models)} aliases, {len(config.keys)} gateway keys)"
        )
        return 0
    shown = redacted(msgspec.to_builtins(config))
    sys.stdout.buffer.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _reload(pid_file: str) -> int:
    try:
        pid = int(Path(pid_file).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        print(f"gateway reload: error: {pid_file}: {exc}", file=sys.stderr)
        return 1
    print(f"gateway reload: SIGHUP sent to {pid}; the gateway's log says what changed")
    return 0


def redacted(value: Any, field: str = "", headers: bool = False) -> Any:
    """`value` (the config as plain data) with every literal secret replaced: `env.NAME`
    references are kept, they are names."""
    if isinstance(value, dict):
        # A `headers` table's names are header names: judged as such.
        return {name: redacted(item, str(name), field == "headers") for name, item in value.items()}
    if isinstance(value, list):
        return [redacted(item, field) for item in value]
    if isinstance(value, str) and not value.startswith("env."):
        secret = _SECRET_HEADER if headers else _SECRET_FIELD
        if secret.search(field) and field not in ("key_header",):
            return REDACTED
        return _URL_PASSWORD.sub(rf"\1{REDACTED}@", value)
    return value
