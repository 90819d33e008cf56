"""Reload (SIGHUP, `gateway reload`): read gateway.toml again, refuse it or say what changed.

The file is read and checked whole before anything changes: an invalid one is refused with
one log line and the running config goes on serving. A valid one is described by name
(providers, aliases, gateway keys added, removed or changed; other tables changed), never by
value: a key's value is a secret. What a running process cannot change (the address it
listens on, its number of workers) is said and kept until a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from gateway.config import Config, shared_state_problem
from wire.config_values import ConfigError

log = logging.getLogger("gateway")

# [server] keys fixed for the life of the process: the sockets and the workers.
RESTART_ONLY = ("host", "port", "workers")


def reread(load: Callable[[], Config], running: Config, workers: int) -> Config | None:
    """The config `load` reads now, checked and described in the log; None (logged) if it is
    refused, and the running one goes on."""
    try:
        config = load()
        problem = shared_state_problem(config, workers)
        if problem:
            raise ConfigError(problem)
    except ConfigError as exc:
        said = " ".join(str(exc).split())  # one line, whatever the message
        log.error("reload refused, still serving the previous config: %s", said)
        return None
    log.info("reload of %s: %s", config.source, "; ".join(changes(running, config)))
    return config


def changes(old: Config, new: Config) -> list[str]:
    """What differs between `old` and `new`, by name only."""
    said = [
        *_named("providers", old.providers, new.providers),
        *_named("aliases", old.models, new.models),
        *_named("keys", old.keys, new.keys),
    ]
    for table in ("routing", "state", "admin", "metrics", "console", "prices", "pricing"):
        if getattr(old, table) != getattr(new, table):
            said.append(f"[{table}] changed")
    server_changed = [
        field
        for field in old.server.__struct_fields__
        if field not in RESTART_ONLY and getattr(old.server, field) != getattr(new.server, field)
    ]
    if server_changed:
        said.append("[server] " + ", ".join(server_changed) + " changed")
    for field in RESTART_ONLY:
        before, after = getattr(old.server, field), getattr(new.server, field)
        if before != after:
            said.append(f"[server] {field} {after!r} needs a restart: {before!r} kept")
    return said or ["nothing changed"]


def _named(kind: str, old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    added = [name for name in new if name not in old]
    removed = [name for name in old if name not in new]
    changed = [name for name in new if name in old and old[name] != new[name]]
    return [
        f"{kind} {verb}: {', '.join(names)}"
        for verb, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    ]
