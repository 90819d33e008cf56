"""One run: a client through a setup, with the shell-tool round trip, bounded in time.

The fake upstream runs in this process; the gateway (`python -m gateway`, this checkout's) and
the client are child processes in their own process groups, which are killed when the run
ends, and die with the harness (PR_SET_PDEATHSIG) if it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.agents.clients import Client
from bench.agents.fake import FakeUpstream
from bench.agents.script import PROMPT
from bench.agents.setups import Setup
from providers.mock import REPLY as MOCK_REPLY

REPO = Path(__file__).resolve().parents[2]
GATEWAY_START_S = 30.0
_ANSWER = re.compile(r"(?<![\w.])42(?![\w.])")  # not 0.42, not 4242
_ERROR_LINE = re.compile(r"error|refused|unsupported|invalid|failed|exception|status", re.I)
_NOISE = re.compile(r"turn_on_debug|Reconnecting\.\.\.|^\s*(File|at) ")  # not the reason
_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


@dataclass
class Outcome:
    ok: bool
    reason: str  # short: why it failed; if ok, the gateway's errors it got past ("" if none)
    seconds: float


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def spawn(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    out: Path,
    err: Path,
) -> asyncio.subprocess.Process:
    with out.open("wb") as stdout, err.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the child's own process group (what it started too), then SIGKILL."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # what the client left behind in its group


async def _start_gateway(toml: str, tmp: Path) -> tuple[asyncio.subprocess.Process, str]:
    config = tmp / "gateway.toml"
    config.write_text(toml)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "gateway", "--config", str(config), "--port", "0"]
    out, err = tmp / "gateway.out", tmp / "gateway.err"
    process = await spawn(argv, env, REPO, out, err)
    deadline = time.monotonic() + GATEWAY_START_S
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", out.read_text())
        if found:
            return process, found.group(1)
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    await stop(process)
    raise RuntimeError(f"the gateway did not start: {err.read_text()[-300:]}")


async def run_one(client: Client, setup: Setup, timeout: float, keep: Path | None) -> Outcome:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="agents-"))
    home, work = tmp / "home", tmp / "work"
    home.mkdir()
    work.mkdir()
    fake = FakeUpstream(chat_only=setup.chat_only)
    gateway: asyncio.subprocess.Process | None = None
    process: asyncio.subprocess.Process | None = None
    try:
        url = await fake.start()
        if setup.provider_type is not None:
            gateway, url = await _start_gateway(setup.gateway_toml(fake.url), tmp)
        invocation = client.invocation(url, home, work, PROMPT)
        process = await spawn(
            invocation.argv, invocation.env, work, tmp / "client.out", tmp / "client.err"
        )
        try:
            await asyncio.wait_for(process.wait(), timeout)
            timed_out = False
        except TimeoutError:
            timed_out = True
        await stop(process)
        if gateway is not None:
            await stop(gateway)  # its access log is written out as it stops
        answer = _read(tmp / "client.out")
        if invocation.answer_file is not None and invocation.answer_file.exists():
            answer = invocation.answer_file.read_text(errors="replace")
        outcome = _judge(setup, process.returncode, timed_out, timeout, answer, tmp, fake)
    except Exception as exc:  # a harness failure is a row too, never a traceback
        outcome = Outcome(False, f"harness: {type(exc).__name__}: {exc}"[:160], 0)
    finally:
        for child in (process, gateway):
            if child is not None:
                await stop(child)
        await fake.stop()
        _keep_or_remove(tmp, keep, f"{client.name}-{setup.name}")
    outcome.seconds = time.monotonic() - started
    return outcome


def _judge(
    setup: Setup,
    status: int | None,
    timed_out: bool,
    timeout: float,
    answer: str,
    tmp: Path,
    fake: FakeUpstream,
) -> Outcome:
    if setup.provider_type == "mock":
        # The mock calls the first offered tool, not the shell: a completed turn is the test.
        passed = MOCK_REPLY.split(".")[0] in answer
    else:
        passed = _ANSWER.search(answer) is not None
    if passed and status == 0 and not timed_out:
        # Errors the client got past (a refused side call it fell back from) are worth seeing.
        return Outcome(True, "; ".join(_gateway_errors(tmp / "gateway.err")), 0)
    if timed_out:
        reasons = [f"timed out after {timeout:g} s"]
    elif status == 0:
        reasons = [f"answered {answer.strip()[:100]!r}"]
    else:
        reasons = [f"exit {status}"]
    reasons += _gateway_errors(tmp / "gateway.err")
    if status != 0:
        reasons.append(_client_error(_read(tmp / "client.out") + _read(tmp / "client.err")))
    if setup.provider_type != "mock":
        reasons.append(_round_trip(fake))
    return Outcome(False, "; ".join(r for r in reasons if r), 0)


def _client_error(log: str) -> str:
    """The client's own words for what went wrong: its last error line (a traceback's last
    line is the exception; a CLI's last ERROR is its verdict)."""
    lines = [ln.strip() for ln in log.splitlines() if _ERROR_LINE.search(ln)]
    lines = [ln for ln in lines if not _NOISE.search(ln)]
    return lines[-1][:160] if lines else ""


def _gateway_errors(access_log: Path) -> list[str]:
    """The gateway's answers of 400 and above, by route and status, with their counts."""
    counts: dict[str, int] = {}
    for line in _read(access_log).splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            entry = orjson.loads(line)
            if isinstance(entry, dict) and int(entry.get("status") or 0) >= 400:
                key = f"{entry['status']} on {entry.get('method')} {entry.get('route')}"
                counts[key] = counts.get(key, 0) + 1
    return [f"gateway {key}" + (f" x{n}" if n > 1 else "") for key, n in counts.items()]


def _round_trip(fake: FakeUpstream) -> str:
    if not fake.model_turns:
        return "the upstream got no model request"
    if fake.called_tool is None:
        return "no upstream request offered the shell tool"
    if not fake.tool_outputs:
        return f"the upstream called {fake.called_tool}; no tool output came back"
    return f"the upstream called {fake.called_tool}; its output came back"


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _keep_or_remove(tmp: Path, keep: Path | None, name: str) -> None:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp), keep / name)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
