"""GET /metrics, in one process or summed over several.

One process: the application's own registry. Several worker processes (one gateway each):
prometheus-client's multiprocess mode, where every process writes its values to files in
PROMETHEUS_MULTIPROC_DIR and a scrape of any worker reads and sums them all. The mode must
be chosen before the first metric is created: `use_multiprocess` does it for a gateway that
starts its own workers (or set the variable in the environment before starting them, as
with gunicorn). Collectors read at scrape time (`gateway_cooldowns`) stay per process.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess(directory: str | Path) -> None:
    """Every metric created from now on, in this process and the workers it starts, writes
    to files under `directory` (which should be empty when the first worker starts)."""
    os.makedirs(directory, exist_ok=True)
    os.environ[MULTIPROC_DIR] = str(directory)
    # prometheus-client chose at import; its helpers here carry no annotations.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR) or None


def worker_exited(pid: int) -> None:
    """A worker is gone: its live gauges (requests in flight) stop counting."""
    from prometheus_client import multiprocess

    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # unannotated


def metrics_handler(
    registry: CollectorRegistry,
    local: Sequence[Collector] = (),
    before: Callable[[], None] | None = None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The /metrics handler: `registry`, or in multiprocess mode the sum over every
    process's files plus this process's `local` collectors; `before` runs first (it makes
    the observations still pending)."""
    shown = registry
    directory = multiprocess_dir()
    if directory is not None:
        shown = CollectorRegistry()
        MultiProcessCollector(shown, path=directory)  # type: ignore[no-untyped-call]  # unannotated
        for collector in local:
            shown.register(collector)

    async def metrics(request: web.Request) -> web.Response:
        if before is not None:
            before()
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(shown), headers={"Content-Type": content_type})

    return metrics
