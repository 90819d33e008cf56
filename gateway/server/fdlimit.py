"""The open-file limit: raised at start, the connection cap sized from it, its exhaustion
logged.

Each client connection holds a socket, and a streamed request one more to its upstream. The
common soft limit of 1,024 open files caps a gateway at about 450 streams; the hard limit is
usually far higher (systemd's is 524,288) and a process may raise its own soft limit up to it,
as nginx (worker_rlimit_nofile) and most servers do.

Without `[server] max_connections`, the cap is what the limit allows: two files per client
connection (its socket and its upstream's), after the files the process holds besides them
and those its refusals take. Past the cap a connection gets a clean 503; sized any higher,
clients would take the files their upstream connections need, and admitted streams would fail.
"""

from __future__ import annotations

import errno
import logging

from gateway.server.log_throttle import Throttled

try:
    import resource
except ImportError:  # pragma: no cover - Windows has no rlimits
    resource = None  # type: ignore[assignment]

log = logging.getLogger("gateway")

# Sockets per connection (client and upstream), and files the process holds besides them
# (the listening socket, logs, the DNS resolver, the event loop's own, Redis).
PER_CONNECTION = 2
RESERVED = 64
# Connections past the cap held at once while their 503 is delivered (a file each).
REFUSALS = 64
# The cap when the open-file limit allows more (or there is none).
DEFAULT_MAX_CONNECTIONS = 4096
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})

_exhaustion = Throttled(log)


def raise_open_file_limit() -> int | None:
    """Raise the soft open-file limit to the hard one; the limit now in force (None: none)."""
    if resource is None:  # pragma: no cover
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. macOS refuses RLIM_INFINITY: keep the soft one
            pass
    return _finite(soft)


def open_file_limit() -> int | None:
    """The soft open-file limit in force (None: none)."""
    if resource is None:  # pragma: no cover
        return None
    return _finite(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _finite(limit: int) -> int | None:
    return None if resource is None or limit == resource.RLIM_INFINITY else limit


def _allowed(limit: int) -> int:
    """Client connections `limit` open files serve, each with its upstream connection."""
    return max(1, (limit - RESERVED - REFUSALS) // PER_CONNECTION)


def connection_cap(configured: int | None, limit: int | None) -> int:
    """The connection cap: `configured` as it is, else the default or what `limit` allows,
    the lower."""
    if configured is not None:
        return configured
    if limit is None:
        return DEFAULT_MAX_CONNECTIONS
    return min(DEFAULT_MAX_CONNECTIONS, _allowed(limit))


def cap_explained(configured: int | None, limit: int | None) -> str:
    """The start-up line: the connection cap in force, and why."""
    cap = connection_cap(configured, limit)
    if configured is not None:
        return f"max_connections = {cap} (configured)"
    if limit is None:
        return f"max_connections = {cap} (the default; no open-file limit)"
    if cap == DEFAULT_MAX_CONNECTIONS:
        return (
            f"max_connections = {cap} (the default; the open-file limit of {limit} "
            f"would allow {_allowed(limit)})"
        )
    return (
        f"max_connections = {cap}, sized from the open-file limit of {limit}: each client "
        f"connection takes two files (its own socket and its upstream's), and "
        f"{RESERVED + REFUSALS} stay for the process and for answering 503 past the cap. To "
        "serve more, raise the hard limit (ulimit -Hn, systemd LimitNOFILE)"
    )


def announce_cap(configured: int | None, limit: int | None) -> None:
    """Log the connection cap and why, at start: a warning when the open-file limit lowered
    it below the default, or when it is too low for the cap configured."""
    cap = connection_cap(configured, limit)
    lowered = configured is None and cap < DEFAULT_MAX_CONNECTIONS
    log.log(logging.WARNING if lowered else logging.INFO, cap_explained(configured, limit))
    warning = capacity_warning(limit, cap)
    if warning:
        log.warning(warning)


def capacity_warning(limit: int | None, max_connections: int) -> str | None:
    """A warning when `limit` open files cannot serve `max_connections` streams."""
    needed = PER_CONNECTION * max_connections + RESERVED + REFUSALS
    if limit is None or limit >= needed:
        return None
    return (
        f"the open-file limit is {limit}, low for max_connections = {max_connections} "
        f"(about {needed} needed: a client and an upstream socket each); past about "
        f"{_allowed(limit)} streams, connections will fail. Raise the hard limit "
        "(ulimit -Hn, systemd LimitNOFILE) or lower [server] max_connections"
    )


def report_exhaustion(where: str) -> None:
    """Out of file descriptors (EMFILE/ENFILE) while `where`: said once a minute."""
    _exhaustion.warning(
        f"out of file descriptors while {where}: the open-file limit is reached; "
        "lower [server] max_connections or raise the limit"
    )
