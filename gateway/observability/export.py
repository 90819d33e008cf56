"""GET /metrics, in one process or summed over several, rendered off the event loop.

One process: the application's own registry. Several worker processes (one gateway each):
prometheus-client's multiprocess mode, where every process writes its values to files in
PROMETHEUS_MULTIPROC_DIR and a scrape of any worker reads and sums them all. The mode must
be chosen before the first metric is created: `use_multiprocess` does it for a gateway that
starts its own workers (or set the variable in the environment before starting them, as
with gunicorn). Collectors read at scrape time (`gateway_cooldowns`) stay per process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, disable_created_metrics, values
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


class MetricsPage:
    """GET /metrics: `registry`, or in multiprocess mode the sum over every process's files
    plus this process's `local` collectors.

    A page is rendered in a thread of its own, never on the event loop (3.7 MB took 0.2 s of
    it, 0.65 s reading two workers' files: every stream stalled that long), and served again
    for `cache_seconds`: scrapes within that time, or while a render runs, share one. `before`
    runs on the loop ahead of each render (it makes the observations still pending).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        local: Sequence[Collector] = (),
        before: Callable[[], None] | None = None,
        cache_seconds: float = 1.0,
    ) -> None:
        shown = registry
        directory = multiprocess_dir()
        if directory is not None:
            shown = CollectorRegistry()
            MultiProcessCollector(shown, path=directory)  # type: ignore[no-untyped-call]  # unannotated
            for collector in local:
                shown.register(collector)
        self._shown = shown
        # A `_created` sample beside every counter and histogram series (half the lines of a
        # counter's): Prometheus reads them only with a feature flag. Process-wide.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated
        self._before = before
        self._cache_seconds = cache_seconds
        self._pages: dict[str, tuple[float, bytes]] = {}  # by content type: (started, page)
        self._rendering: dict[str, asyncio.Future[bytes]] = {}  # by content type
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self.renders = 0  # pages rendered so far

    async def handle(self, request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        loop = asyncio.get_running_loop()
        cached = self._pages.get(content_type)
        if cached is not None and loop.time() - cached[0] < self._cache_seconds:
            page = cached[1]
        else:
            rendering = self._rendering.get(content_type)
            if rendering is None:
                rendering = self._render(encode, content_type)
            # A scraper that leaves does not cancel the render the others wait for.
            page = await asyncio.shield(rendering)
        return web.Response(body=page, headers={"Content-Type": content_type})

    def _render(
        self, encode: Callable[[CollectorRegistry], bytes], kind: str
    ) -> asyncio.Future[bytes]:
        if self._before is not None:
            self._before()
        loop = asyncio.get_running_loop()
        started = loop.time()
        rendering = loop.run_in_executor(self._thread, encode, self._shown)
        self._rendering[kind] = rendering
        self.renders += 1

        def rendered(done: asyncio.Future[bytes]) -> None:
            del self._rendering[kind]
            if not done.cancelled() and done.exception() is None:
                self._pages[kind] = (started, done.result())

        rendering.add_done_callback(rendered)
        return rendering

    async def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
