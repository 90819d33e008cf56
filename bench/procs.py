"""The bench's child processes: start, pin, watch, measure, stop.

Every child dies with the orchestrator, even if it is SIGKILLed (PR_SET_PDEATHSIG), and runs
on the CPUs it is given from its first instruction (affinity set between fork and exec).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil

from bench.scenarios import REPO

HOST = "127.0.0.1"
ADDRESS = re.compile(r"http://127\.0\.0\.1:(\d+)")
PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


class StartError(Exception):
    """A child did not come up; the message holds the end of its output."""


def _child_setup(cpus: set[int] | None) -> Callable[[], None]:
    def setup() -> None:
        # Die with the orchestrator even if it is SIGKILLed (a test timeout): no orphans.
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


class ProcessTree:
    """A process and every process under it: a launcher's workers (uvicorn's, node's, a
    gateway's forked workers) count with it. A peer's (`--peer-pid`) is one we did not start;
    a `Child` is one we did.

    The tree is read again before each run (scanning /proc is slow: once per run); a process
    that starts during the run counts whole, one that exits during it takes its CPU time with
    it (the run is then undercounted).
    """

    def __init__(self, pid: int) -> None:
        self.ps = psutil.Process(pid)
        self.tree = [self.ps]
        self.refresh()

    def refresh(self) -> None:
        try:
            self.tree = [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            self.tree = [self.ps]

    def cpu_s(self) -> float:
        """CPU seconds of the process and its children."""
        return sum(process_cpu_s(p) for p in self.tree)

    def rss(self) -> int:
        total = 0
        for p in self.tree:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total


class Child(ProcessTree):
    """A process we started: its output lines, its CPU and memory, and its stop."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        cpus: set[int] | None,
        stdin: bool = False,
        watch: tuple[str, ...] = (),
    ):
        self.name = name
        # Lines holding one of `watch`'s words, however many lines came after them.
        self.watch = watch
        self.seen: set[str] = set()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
            preexec_fn=_child_setup(cpus),  # a prctl and an affinity call: safe after fork
        )
        super().__init__(self.proc.pid)
        self.tail: deque[str] = deque(maxlen=40)  # stdout and stderr, for error messages
        self.lines: queue.Queue[str] = queue.Queue()  # stdout lines
        self.errs: queue.Queue[str] = queue.Queue()  # stderr lines (a ready line may be there)
        self.ready = False
        for stream, q in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errs)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()

    def _pump(self, stream: IO[str] | None, q: queue.Queue[str]) -> None:
        assert stream is not None
        for line in stream:
            self.tail.append(line.rstrip("\n"))
            self.seen.update(word for word in self.watch if word in line)
            if q is self.errs and self.ready:
                continue  # past the ready line, stderr is the gateway's access log: not kept
            q.put(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return "\n".join(f"    {line}" for line in self.tail) or "    (no output)"

    def wait_address(self, timeout: float) -> str:
        """The http://127.0.0.1:PORT the child prints when it is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for q in (self.lines, self.errs):
                with contextlib.suppress(queue.Empty):
                    found = ADDRESS.search(q.get(timeout=0.02))
                    if found:
                        self.ready = True
                        return f"http://{HOST}:{found.group(1)}"
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the pumps catch the last lines
                raise StartError(
                    f"{self.name} exited with status {self.proc.returncode} before it was "
                    f"ready:\n{self.output()}"
                )
        raise StartError(
            f"{self.name} printed no http://{HOST}:PORT in {timeout:g} s:\n{self.output()}"
        )

    def readline(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            if self.proc.poll() is not None:
                raise StartError(f"{self.name} exited:\n{self.output()}") from None
            raise TimeoutError(f"{self.name} did not answer in {timeout:g} s") from None

    def hwm(self) -> int | None:
        """The kernel's peak RSS of the main process (VmHWM), in bytes."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def gateway_child(directory: str, config: str) -> Child:
    """`gateway` on `config` (written into `directory` as gateway.toml), on a free port, run
    by this interpreter: its address from `wait_address`."""
    path = Path(directory) / "gateway.toml"
    path.write_text(config)
    argv = [sys.executable, "-m", "gateway", "--config", str(path), "--port", "0"]
    return Child("gateway", argv, None)


def process_cpu_s(proc: psutil.Process) -> float:
    """On-CPU time of every thread, in ns from /proc/PID/task/*/schedstat: /proc/PID/stat
    counts in 10 ms ticks, too coarse for a 0.3 s quick run; psutil's figure otherwise."""
    try:
        total = 0
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
        if total:
            return total / 1e9
    except OSError:
        pass
    with contextlib.suppress(psutil.Error):
        t = proc.cpu_times()
        return t.user + t.system
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])
