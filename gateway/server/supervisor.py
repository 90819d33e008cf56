"""Worker processes on every core: `gateway --workers N` (or `[server] workers`).

One Python process uses one core. The supervisor binds the listening sockets itself and
starts N workers (`python -m gateway ... --worker-fds FDS`), each a full gateway that accepts
from the same sockets: the kernel hands each connection to one of them, and a worker that
drains or dies takes nothing queued down with it. The supervisor restarts a worker that dies
(after 1 s, doubling to 30 s while it keeps dying, logged), and passes SIGTERM/SIGINT on: on
the first, it closes its own copy of the sockets (new connections are refused once every
worker has closed its copy too) and waits for the workers' drain; a second stops them at once.

SIGHUP reloads (nginx's way): the supervisor reads the config again (`reread`; a refused
file changes nothing), starts a new generation of N workers on it, accepting from the same
sockets, and once every one of them is ready sends SIGTERM to the old ones, which drain. No
connection is refused meanwhile: the listen queue stays open throughout, served by whichever
generation accepts. A new worker that does not start fails the reload: the old ones go on.

Workers run in their own process group, so a terminal's Ctrl-C reaches the supervisor only
(which passes it on once), and each asks the kernel for SIGTERM should the supervisor die.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from gateway.config import Config
from gateway.server.listener import bind

log = logging.getLogger("gateway")

_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
_HEALTHY_AFTER = 60.0  # a worker that ran this long resets its slot's backoff
_READY_WITHIN = 60.0  # seconds a worker has to print its ready line
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: this worker gets SIGTERM (and drains) if its supervisor dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: an orphan worker keeps serving until stopped
        pass


class _Slot:
    """One worker's place: its process, and how long to wait before restarting it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self.backoff = _FIRST_BACKOFF
        self.retired = False  # replaced by a reload: draining, never restarted


def _nothing(_: object) -> None:
    pass


class Supervisor:
    def __init__(
        self,
        argv: Sequence[str],
        host: str,
        port: int,
        count: int,
        source: str,
        *,
        share_dir: Callable[[str], None] = _nothing,
        worker_exited: Callable[[int], None] = _nothing,
        reread: Callable[[Config], Config | None] | None = None,
        config: Config | None = None,
    ) -> None:
        self._argv = list(argv)  # the worker's command line, but for --worker-fds
        # A directory every worker writes to (the metrics' files, that /metrics in any worker
        # sums up), and what to do of a worker's there when it exits.
        self._share_dir = share_dir
        self._worker_exited = worker_exited
        self._host = host
        self._port = port
        self._count = count
        self._source = source
        self._sockets: list[socket.socket] = []
        self._slots = [_Slot(n) for n in range(count)]
        self._fresh: list[_Slot] = []  # a reload's generation, while it starts
        self._retired: list[_Slot] = []  # replaced by a reload, draining
        self._reread = reread
        self._config = config
        self._reloading = asyncio.Lock()
        self._stopping = False
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._exited: asyncio.Queue[_Slot] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()  # exit watchers, restarts: held until done

    async def run(self) -> int:
        """Serve until a signal stops every worker; the exit status (0: all drained)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._signals.put_nowait, signum)
        self._sockets = bind(self._host, self._port)
        for sock in self._sockets:
            sock.set_inheritable(True)
        metrics_dir = tempfile.TemporaryDirectory(prefix="gateway-metrics-")
        self._share_dir(metrics_dir.name)
        try:
            urls = await asyncio.gather(*(self._start(slot) for slot in self._slots))
            print(
                f"gateway listening on {urls[0]} ({self._count} workers, config: {self._source})",
                flush=True,
            )
            return await self._watch()
        finally:
            for sock in self._sockets:
                sock.close()
            metrics_dir.cleanup()

    async def _start(self, slot: _Slot) -> str:
        fds = ",".join(str(sock.fileno()) for sock in self._sockets)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            *self._argv,
            "--worker-fds",
            fds,
            pass_fds=[sock.fileno() for sock in self._sockets],
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C is for the supervisor alone
        )
        slot.process, slot.started = process, time.monotonic()
        # Watched from its first moment: whatever happens next, its exit restarts the slot once.
        self._hold(self._await_exit(slot, process))
        assert process.stdout is not None
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), _READY_WITHIN)).decode()
            found = re.search(r"listening on (\S+)", line)
            if found is None:
                raise RuntimeError(f"worker {slot.number} did not start: {line.strip()!r}")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()  # a worker that is not serving must not hold the socket
            raise
        return found.group(1)

    def _hold(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_exit(self, slot: _Slot, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        if slot.retired:
            self._worker_exited(process.pid)
            if slot in self._retired:  # not there if it had exited before its retirement
                self._retired.remove(slot)
            log.info("worker %d (pid %d) of the previous config drained", slot.number, process.pid)
        elif slot.process is process:
            self._exited.put_nowait(slot)

    async def _watch(self) -> int:
        signals = asyncio.ensure_future(self._signals.get())
        exited = asyncio.ensure_future(self._exited.get())
        while True:
            done, _ = await asyncio.wait({signals, exited}, return_when=asyncio.FIRST_COMPLETED)
            if signals in done:
                signum = signals.result()
                signals = asyncio.ensure_future(self._signals.get())
                if signum == signal.SIGHUP:
                    self._hold(self._reload())
                    continue
                exited.cancel()
                signals.cancel()
                return await self._stop(signum)
            slot = exited.result()
            exited = asyncio.ensure_future(self._exited.get())
            self._hold(self._restart(slot))  # its backoff never delays a signal

    async def _restart(self, slot: _Slot) -> None:
        process = slot.process
        assert process is not None
        self._worker_exited(process.pid)
        if time.monotonic() - slot.started >= _HEALTHY_AFTER:
            slot.backoff = _FIRST_BACKOFF
        log.warning(
            "worker %d (pid %d) exited with status %s; restarting it in %g s",
            slot.number,
            process.pid,
            process.returncode,
            slot.backoff,
        )
        delay, slot.backoff = slot.backoff, min(slot.backoff * 2, _MAX_BACKOFF)
        await asyncio.sleep(delay)
        if self._stopping or slot.retired:  # a reload replaced it meanwhile
            return
        try:
            await self._start(slot)
        except OSError as exc:  # no process at all: try again, after a longer wait
            log.warning("worker %d could not restart: %s", slot.number, exc)
            self._exited.put_nowait(slot)
        except (RuntimeError, TimeoutError) as exc:  # killed: its exit brings it back
            log.warning("worker %d could not restart: %s", slot.number, exc)

    async def _reload(self) -> None:
        async with self._reloading:  # one after the other
            if self._reread is None or self._config is None:
                return
            config = self._reread(self._config)
            if config is None:
                return
            self._fresh = [_Slot(n) for n in range(self._count)]
            try:
                await asyncio.gather(*(self._start(slot) for slot in self._fresh))
            except (OSError, RuntimeError, TimeoutError) as exc:
                log.error(
                    "reload failed, still serving the previous config: a worker on the new "
                    "config did not start (%s)",
                    exc,
                )
                self._retire(self._fresh)
                return
            finally:
                fresh, self._fresh = self._fresh, []
            old, self._slots, self._config = self._slots, fresh, config
            self._retire(old)
            log.info(
                "reloaded: %d workers serve %s; the %d previous ones drain",
                len(fresh),
                config.source,
                len(old),
            )

    def _retire(self, slots: list[_Slot]) -> None:
        """Drain `slots`' workers (SIGTERM); their exit restarts nothing."""
        for slot in slots:
            slot.retired = True
            process = slot.process
            if process is not None and process.returncode is None:
                self._retired.append(slot)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    async def _stop(self, signum: int) -> int:
        """Drain: close our sockets, pass the signal on, wait; a second signal stops all."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()  # no restart now (a worker half started is killed)
        for sock in self._sockets:
            sock.close()
        self._forward(signum, [*self._slots, *self._fresh])  # the retired drain already
        everyone = [*self._slots, *self._fresh, *self._retired]
        waits = [slot.process.wait() for slot in everyone if slot.process is not None]
        drained = asyncio.ensure_future(asyncio.gather(*waits))
        second = asyncio.ensure_future(self._next_stop())
        either: set[asyncio.Future[Any]] = {drained, second}
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if second in done:
            self._forward(second.result(), everyone)  # the workers' second signal: at once
            await drained
        else:
            second.cancel()
        statuses = drained.result()
        return 0 if all(status == 0 for status in statuses) else 1

    async def _next_stop(self) -> int:
        while (signum := await self._signals.get()) == signal.SIGHUP:
            log.warning("reload ignored: the gateway is stopping")
        return signum

    def _forward(self, signum: int, slots: list[_Slot]) -> None:
        for slot in slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)
