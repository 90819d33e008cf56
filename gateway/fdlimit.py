"""The open-file limit: raised at start, checked against the connection cap, its exhaustion
logged.

Each client connection holds a socket, and a streamed request one more to its upstream. The
common soft limit of 1,024 open files caps a gateway at about 500 streams; the hard limit is
usually far higher (systemd's is 524,288) and a process may raise its own soft limit up to it,
as nginx (worker_rlimit_nofile) and most servers do.
"""

from __future__ import annotations

import errno
import logging

from gateway.throttle import Throttled

try:
    import resource
except ImportError:  # pragma: no cover - Windows has no rlimits
    resource = None  # type: ignore[assignment]

log = logging.getLogger("gateway")

# Sockets per connection (client and upstream), and files the process holds besides them
# (the listening socket, logs, the DNS resolver, the event loop's own).
PER_CONNECTION = 2
RESERVED = 64
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
    return None if soft == resource.RLIM_INFINITY else soft


def capacity_warning(limit: int | None, max_connections: int) -> str | None:
    """A warning when `limit` open files cannot serve `max_connections` streams."""
    needed = PER_CONNECTION * max_connections + RESERVED
    if limit is None or limit >= needed:
        return None
    return (
        f"the open-file limit is {limit}, low for max_connections = {max_connections} "
        f"(about {needed} needed: a client and an upstream socket each); past about "
        f"{(limit - RESERVED) // PER_CONNECTION} streams, connections will fail. Raise the "
        "hard limit (ulimit -Hn, systemd LimitNOFILE) or lower [server] max_connections"
    )


def report_exhaustion(where: str) -> None:
    """Out of file descriptors (EMFILE/ENFILE) while `where`: said once a minute."""
    _exhaustion.warning(
        f"out of file descriptors while {where}: the open-file limit is reached; "
        "lower [server] max_connections or raise the limit"
    )
