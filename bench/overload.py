"""Overload: connections past the connection cap, and streams past the open-file limit. Not
part of the test suite (each run takes a minute at most).

    python -m bench.overload refusals                  # 10,000 connections past the cap of 20
    python -m bench.overload refusals --workers 2
    python -m bench.overload files                     # 1,000 streams, soft limit 1,024

`refusals`: a gateway (its own CLI, `[server] max_connections = --cap`, the mock provider)
is filled to its cap with streams that last the run; then `--connections` more connect,
`--concurrency` at a time, each sending `GET /health` and reading to the end. Each must get
the 503 `too_many_connections` in OpenAI's shape: not an empty reply, a reset or a hang. Then
`/health` is asked while the cap is still full (a 503 says the listener lives) and again once
the held streams are closed (200).

`files`: the mock upstream (bench/upstream.py) streams `--tokens` tokens `--delay-ms` apart;
the gateway relays it under a soft and hard open-file limit of `--nofile` (as `prlimit
--nofile=1024:1024` would start it), with no `max_connections` set: the cap is sized from the
limit. `--streams` clients connect at once and each asks for one stream. Served: a 200 with
every token and `[DONE]`; refused: the 503 `too_many_connections`; failed: anything else (a
stream cut or ended with an error, another status, a reset, a hang).

Either passes (exit status 0) when nothing failed and the gateway logged no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO

import orjson

from bench.common import run
from bench.procs import ADDRESS, HOST, Child, free_port
from bench.scenarios import REPO
from bench.wire import END_HEAD, ChunkedDecoder, parse_head

# The gateway under a hard limit too, as `prlimit --nofile=N:N` starts it: it cannot raise it.
GATEWAY_LAUNCH = """\
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["gateway", *sys.argv[2:]]
runpy.run_module("gateway", run_name="__main__", alter_sys=True)
"""
MAX_CONNECTIONS = 100_000  # bounded: a load test of the listener, not of the machine
MAX_STREAMS = 5_000
TIMEOUT_S = 30.0  # for one answer; a hang is a failure, not a wait


class Gateway:
    """`python -m gateway` with `toml`, its stderr kept whole in a file."""

    def __init__(self, toml: str, tmp: Path, *args: str, nofile: int | None = None) -> None:
        config = tmp / "gateway.toml"
        config.write_text(toml)
        self.log_path = tmp / "gateway.log"
        self._log: IO[str] = self.log_path.open("w")
        argv = ["--config", str(config), "--host", HOST, "--port", str(free_port()), *args]
        if nofile is None:
            command = [sys.executable, "-m", "gateway", *argv]
        else:
            command = [sys.executable, "-c", GATEWAY_LAUNCH, str(nofile), *argv]
        self.proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = ADDRESS.search(line)
        if found is None:
            self.stop()
            sys.exit(f"bench.overload: the gateway did not start:\n{self.log()}")
        self.port = int(found.group(1))

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


async def _exchange(port: int, request: bytes) -> tuple[int | None, bytes, str | None]:
    """One request on a new connection, read to the connection's end: status, body (chunks
    joined), and what went wrong (None: nothing)."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                writer.write(request)
                data = await reader.read()
            finally:
                writer.close()
    except TimeoutError:
        return None, b"", "timed out"
    except OSError as exc:
        return None, b"", type(exc).__name__
    end = data.find(END_HEAD)
    if end < 0:
        return None, b"", "empty reply" if not data else "cut in the head"
    head = parse_head(data, end)
    body = data[end + len(END_HEAD) :]
    if head.chunked:
        decoder = ChunkedDecoder()
        body = b"".join(decoder.feed(body))
        if not decoder.done:
            return int(head.first[1]), body, "cut in the body"
    return int(head.first[1]), body, None


def _refused(status: int | None, body: bytes) -> bool:
    """The 503 past the cap, in OpenAI's error shape."""
    if status != 503:
        return False
    try:
        error = orjson.loads(body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return set(error) == {"message", "type", "param", "code"} and (
        error["code"] == "too_many_connections"
    )


def _health(port: int) -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()


def _stream_request(port: int, model: str) -> bytes:
    messages = [{"role": "user", "content": "hi"}]
    body = orjson.dumps({"model": model, "stream": True, "messages": messages})
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"  # the answer's end is the connection's
    ).encode() + body


async def _hold(port: int, count: int) -> list[asyncio.StreamWriter]:
    """Open streams (on the mock, lasting the run) until `count` are admitted."""
    held: list[asyncio.StreamWriter] = []
    for _ in range(count * 4):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(_stream_request(port, "mock/held"))
        async with asyncio.timeout(TIMEOUT_S):
            line = await reader.readline()
        if b" 200 " in line:
            held.append(writer)
            if len(held) == count:
                return held
        else:
            writer.close()
    sys.exit(f"bench.overload: {len(held)} streams admitted of the {count} wanted")


async def _health_status(port: int) -> tuple[int | None, str | None, float]:
    started = time.monotonic()
    status, _, problem = await _exchange(port, _health(port))
    return status, problem, time.monotonic() - started


def _raise_own_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"bench.overload: the hard open-file limit {hard} is below the {needed} needed")


async def refusals(args: argparse.Namespace, tmp: Path) -> bool:
    toml = (
        f"[server]\nmax_connections = {args.cap}\naccess_log = false\n"
        '[providers.mock]\ntype = "mock"\ndelay = 1\ntokens = 100000\n'
    )
    gateway = Gateway(toml, tmp, "--workers", str(args.workers))
    port = gateway.port
    try:
        held = await _hold(port, args.cap * args.workers)
        print(f"gateway :{port}, {args.workers} worker(s): {len(held)} streams held (the cap)")
        outcomes: Counter[str] = Counter()
        gate = asyncio.Semaphore(args.concurrency)

        async def one() -> None:
            async with gate:
                status, body, problem = await _exchange(port, _health(port))
            kind = "503 too_many_connections" if _refused(status, body) else None
            outcomes[kind or problem or f"status {status}"] += 1

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(args.connections)))
        took = time.monotonic() - started
        print(
            f"{args.connections} connections past the cap in {took:.1f} s: "
            + ", ".join(f"{n} {kind}" for kind, n in outcomes.most_common())
        )
        status, problem, seconds = await _health_status(port)
        print(f"/health with the cap still full: {status or problem} in {seconds * 1000:.0f} ms")
        for writer in held:
            writer.close()
        await asyncio.sleep(0.5)
        status, problem, seconds = await _health_status(port)
        print(
            f"/health once the held streams closed: {status or problem} in {seconds * 1000:.0f} ms"
        )
    finally:
        gateway.stop()
    log = gateway.log()
    traceback = "Traceback" in log
    print(f"traceback in the gateway's log: {traceback}")
    ok = set(outcomes) == {"503 too_many_connections"} and status == 200 and not traceback
    if not ok:
        print(log[-4000:], file=sys.stderr)
    return ok


async def files(args: argparse.Namespace, tmp: Path) -> bool:
    upstream_port = free_port()
    upstream_argv = ["-m", "bench.upstream", "--port", str(upstream_port)]
    upstream_argv += ["--tokens", str(args.tokens), "--delay-ms", str(args.delay_ms)]
    upstream = Child("mock upstream", [sys.executable, *upstream_argv], None)
    try:
        upstream.wait_address(15)
        toml = (
            "[server]\naccess_log = false\n"
            f'[providers.bench]\ntype = "openai"\nbase_url = "http://{HOST}:{upstream_port}/v1"\n'
            'api_key = "bench-key"\ntimeout = 60\n'
        )
        gateway = Gateway(toml, tmp, nofile=args.nofile)
        try:
            said = [line for line in gateway.log().splitlines() if "max_connections =" in line]
            print(f"gateway under --nofile {args.nofile}: {' / '.join(said)}")
            outcomes: Counter[str] = Counter()
            tokens = 0

            async def one() -> None:
                nonlocal tokens
                status, body, problem = await _exchange(
                    gateway.port, _stream_request(gateway.port, "bench/mock-model")
                )
                if problem is None and status == 200:
                    events = [e for e in body.split(b"\n\n") if e.startswith(b"data: ")]
                    content = sum(
                        1 for e in events if b'"content":"' in e and b'"content":""' not in e
                    )
                    complete = events and events[-1] == b"data: [DONE]" and content == args.tokens
                    if complete and b'"error"' not in body:
                        tokens += content
                        outcomes["served"] += 1
                        return
                    problem = f"a stream with {content} of {args.tokens} tokens"
                if _refused(status, body):
                    outcomes["refused (503 too_many_connections)"] += 1
                else:
                    outcomes[f"failed: {problem or f'status {status}'}"] += 1

            started = time.monotonic()
            await asyncio.gather(*(one() for _ in range(args.streams)))
            took = time.monotonic() - started
            status, problem, _ = await _health_status(gateway.port)
        finally:
            gateway.stop()
    finally:
        upstream.stop()
    log = gateway.log()
    print(
        f"{args.streams} streams at once, in {took:.1f} s: "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(outcomes.items()))
        + f"; {tokens} tokens served"
    )
    ran_out = "out of file descriptors" in log
    traceback = "Traceback" in log
    print(
        f"/health after: {status or problem}; ran out of files: {ran_out}; traceback: {traceback}"
    )
    failed = any(kind.startswith("failed") for kind in outcomes)
    ok = not failed and status == 200 and not traceback and not ran_out
    if not ok:
        print(log[-4000:], file=sys.stderr)
    return ok


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__)
    runs = parser.add_subparsers(dest="run", required=True)
    past = runs.add_parser("refusals", help="connections past the connection cap")
    past.add_argument("--connections", type=int, default=10_000)
    past.add_argument("--concurrency", type=int, default=100, help="connections at once")
    past.add_argument("--cap", type=int, default=20, help="[server] max_connections")
    past.add_argument("--workers", type=int, default=1)
    fds = runs.add_parser("files", help="streams past the open-file limit")
    fds.add_argument("--streams", type=int, default=1000, help="clients at once")
    fds.add_argument("--nofile", type=int, default=1024, help="the gateway's open-file limit")
    fds.add_argument("--tokens", type=int, default=30, help="tokens per stream")
    fds.add_argument("--delay-ms", type=float, default=100.0, help="between two tokens")
    args = parser.parse_args(argv)
    if args.run == "refusals" and not 0 < args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections 1..{MAX_CONNECTIONS}")
    if args.run == "files" and not 0 < args.streams <= MAX_STREAMS:
        parser.error(f"--streams 1..{MAX_STREAMS}")
    _raise_own_limit(getattr(args, "streams", 0) + getattr(args, "concurrency", 0) + 256)
    outcome: list[bool] = []

    async def go() -> None:
        with tempfile.TemporaryDirectory(prefix="overload-") as name:
            work = refusals if args.run == "refusals" else files
            outcome.append(await work(args, Path(name)))

    run(go())
    print("PASS" if outcome == [True] else "FAIL")
    sys.exit(0 if outcome == [True] else 1)


if __name__ == "__main__":
    main()
