"""Gateways as real processes (`python -m gateway`), as a deployment runs them."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil


class GatewayProcess:
    """`python -m gateway --config FILE --port 0`, its URL read from the ready line."""

    def __init__(self, toml: str, directory: Path, *args: str, env: dict[str, str] | None = None):
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / f"gateway-{id(self)}.toml"
        config.write_text(toml)
        self.config = config  # rewritten by a test of reload
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        if found is None:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise RuntimeError(f"the gateway did not start: {line!r} {err[-2000:]}")
        self.url = found.group(1)
        # Its stderr read as it comes: a pipe nobody reads fills after a few hundred access
        # log lines, and the gateway then blocks on its next write.
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)
            self._lines.put(line)

    async def next_line(self, timeout: float = 5) -> str:
        """The next line it writes on stderr (TimeoutError after `timeout` seconds)."""
        try:
            return await asyncio.to_thread(self._lines.get, timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no stderr line within {timeout} s") from None

    def stop(self) -> str:
        """Stop it (SIGTERM, then SIGKILL); returns what it wrote on stderr."""
        end_process(self.process)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return "".join(self._stderr)


def end_process(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 15 s; returns once it has ended."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(10)


async def peak_growth(pid: int, work: Callable[[], Awaitable[None]]) -> int:
    """Run `work` while sampling process `pid`'s RSS; return the peak minus the start."""
    process = psutil.Process(pid)
    start = process.memory_info().rss
    peak = start
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        await work()
    finally:
        done.set()
        await sampler
    return peak - start
