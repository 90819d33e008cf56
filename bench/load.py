"""Load generator: C concurrent streams for T seconds (or N requests), one record per request.

Runs in its own process so its CPU is not the target's. Two ways to drive it:
- one job from the command line, records as JSON to `--out` (default stdout):
  `python -m bench.load --url http://127.0.0.1:P/v1/chat/completions -c 10 -d 5`
- `--serve`: one job per stdin line (a `Job` as JSON), records written to the job's `out`
  file and one `Summary` line per job on stdout. The orchestrator uses this, so it pays the
  interpreter start-up once rather than once per run.

A token is one SSE event carrying content (one NDJSON line for Ollama). TTFT runs from just
before the request is written to the read that completed the first token event; each gap is
between the reads that completed two consecutive token events, so tokens that arrive in the
same read have a gap of 0, which is what a client sees.

To stay cheap the client is a plain asyncio protocol (bench/wire.py) with one keep-alive
connection per worker, and it counts tokens with `bytes.count` over whole reads instead of
decoding each event.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from itertools import repeat
from typing import cast
from urllib.parse import urlsplit

import msgspec
import orjson

from bench.common import loop_factory
from bench.scenarios import APIS
from bench.wire import END_HEAD, MAX_HEAD, ChunkedDecoder, ProtocolError, parse_head


class Job(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    api: str = "openai"  # wire format of the answer: openai | anthropic | gemini | ollama
    model: str = "mock-model"
    stream: bool = True
    concurrency: int = 1
    duration_s: float | None = None
    requests: int | None = None
    max_tokens: int = 100
    expect_tokens: int | None = None  # a stream with another token count is an error
    expect_bytes: int | None = None  # a non-streamed answer with other content size is too
    headers: dict[str, str] = {}
    timeout_s: float = 60.0
    out: str = "-"  # records file; "-" stdout; "" nowhere


class Record(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    start: float  # seconds since the job started
    status: int
    ttft: float | None  # streamed: first token; non-streamed: the whole answer
    total: float
    tokens: int
    gaps_us: list[int]
    usage: bool  # an OpenAI usage chunk arrived
    error: str | None


class Summary(msgspec.Struct):
    out: str
    requests: int
    errors: int
    wall_s: float  # first request sent to last answer complete
    cpu_s: float  # this process's CPU over the job: user + system
    pid: int


class Result(msgspec.Struct):
    summary: Summary
    records: list[Record]


def request_body(job: Job) -> bytes:
    prompt = "Write a story about a lighthouse."
    if job.api == "gemini":
        return orjson.dumps(
            {
                "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "generationConfig": {"maxOutputTokens": job.max_tokens},
            }
        )
    body: dict[str, object] = {
        "model": job.model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": job.stream,
    }
    if job.api in ("openai", "anthropic"):
        body["max_tokens"] = job.max_tokens
    if job.api == "openai" and job.stream:
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def request_bytes(job: Job, body: bytes) -> tuple[str, int, bytes]:
    """(host, port, the whole request) for `job.url`, built once per job."""
    url = urlsplit(job.url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"only http:// URLs are supported: {job.url}")
    port = url.port or 80
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = {
        "Host": f"{url.hostname}:{port}",
        "User-Agent": "bench-load/1",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **job.headers,
    }
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return url.hostname, port, head.encode() + b"\r\n" + body


class Grammar:
    """How to count tokens and spot the end of one wire format in a block of whole events."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.sep = b"\n" if api == "ollama" else b"\n\n"
        self.key = b'"text"' if api == "gemini" else b'"content"'
        self.done = {
            "openai": (b"[DONE]",),
            "anthropic": (b"message_stop",),
            "gemini": (b'"finishReason"',),
            "ollama": (b'"done":true', b'"done": true'),
        }[api]

    def tokens(self, block: bytes, spaced: bool | None) -> tuple[int, bool | None]:
        """(token events in the block, whether the serializer puts a space after ':').

        Counting with bytes.count runs at C speed; the style is learnt from the first
        block that shows it, so later blocks take two passes, not four.
        """
        if self.api == "anthropic":
            return block.count(b"text_delta"), spaced
        key = self.key
        if spaced is None:
            head = block[:4096]
            if key + b": " in head:
                spaced = True
            elif key + b":" in head:
                spaced = False
            else:
                n = block.count(key + b':"') + block.count(key + b': "')
                return n - block.count(key + b':""') - block.count(key + b': ""'), None
        colon = b": " if spaced else b":"
        return block.count(key + colon + b'"') - block.count(key + colon + b'""'), spaced

    def finished(self, tail: bytes) -> bool:
        return any(marker in tail for marker in self.done)


# The end marker, a usage chunk or an error event sit at the end of a block: look only there.
TAIL = 1024


class Conn(asyncio.Protocol):
    """One keep-alive connection; one request at a time; the response parsed as it arrives."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.grammar = runner.grammar
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[None] | None = None
        self.reset(0.0)

    def reset(self, start: float) -> None:
        self.start = start
        self.buf = b""
        self.status = 0
        self.in_body = False
        self.decoder: ChunkedDecoder | None = None
        self.remaining: int | None = None  # Content-Length still to read; None: chunked/EOF
        self.keep_alive = True
        self.pending = b""  # an incomplete event, kept for the next read
        self.pieces: list[bytes] = []  # a non-streamed body
        self.tokens = 0
        self.ttft: float | None = None
        self.last = 0.0
        self.gaps: list[int] = []
        self.done = False
        self.usage = False
        self.spaced: bool | None = None
        self.error: str | None = None
        self.complete = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.in_body and self.remaining is None and self.decoder is None:
                self.complete = True  # a body delimited by the connection's end
            elif self.error is None:
                self.error = f"connection closed mid-response ({exc or 'EOF'})"
            self.waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.waiter is None or self.waiter.done():
            return  # nothing asked: a server talking out of turn; ignored
        try:
            if not self.in_body:
                data = self.head(data)
                if not self.in_body:
                    return
            self.body(data, now)
        except (ProtocolError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.keep_alive = False
            self.complete = True
        if self.complete:
            self.waiter.set_result(None)

    # the response

    def head(self, data: bytes) -> bytes:
        buf = self.buf + data
        end = buf.find(END_HEAD)
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("response head too long")
            self.buf = buf
            return b""
        head = parse_head(buf, end)
        self.buf = b""
        self.status = int(head.first[1])
        self.keep_alive = not head.close
        self.in_body = True
        if head.chunked:
            self.decoder = ChunkedDecoder()
        else:
            self.remaining = head.length
            if self.remaining is None:
                self.keep_alive = False
            elif self.remaining == 0:
                self.complete = True
        return buf[end + 4 :]

    def body(self, data: bytes, now: float) -> None:
        if self.decoder is not None:
            pieces = self.decoder.feed(data)
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if self.decoder.done:
                self.complete = True
        elif self.remaining is not None:
            data = data[: self.remaining]
            self.remaining -= len(data)
            if not self.remaining:
                self.complete = True
        if self.status != 200 or not self.runner.job.stream:
            self.pieces.append(data)
        elif data:
            self.scan(data, now)
        if self.complete and self.pending.strip():
            self.scan(self.grammar.sep, now)  # a last event without its blank line

    def scan(self, data: bytes, now: float) -> None:
        grammar = self.grammar
        if b"\r" in data:  # CRLF-framed SSE (Gemini, some proxies)
            data = data.replace(b"\r\n", b"\n")
        buf = self.pending + data if self.pending else data
        cut = buf.rfind(grammar.sep)
        if cut < 0:
            self.pending = buf
            return
        block = buf[:cut]
        self.pending = buf[cut + len(grammar.sep) :]
        found, self.spaced = grammar.tokens(block, self.spaced)
        if found:
            # Tokens completed by one read arrived together: their gaps are 0.
            if self.tokens:
                self.gaps.append(int((now - self.last) * 1e6))
            else:
                self.ttft = now - self.start
            if found > 1:
                self.gaps.extend(repeat(0, found - 1))
            self.last = now
            self.tokens += found
        tail = block[-TAIL:]
        if grammar.finished(tail):
            self.done = True
        if b'"usage":{' in tail or b'"usage": {' in tail:
            self.usage = True
        if b'"error"' in tail and self.error is None:
            self.error = "error event in stream: " + tail[-300:].decode(errors="replace")

    # driving it

    async def exchange(self, runner: Runner) -> Record:
        # A pooled connection may have served another job: take this job's settings.
        self.runner, self.grammar = runner, runner.grammar
        request, timeout = runner.request, runner.job.timeout_s
        loop = asyncio.get_running_loop()
        transport = self.transport
        assert transport is not None
        self.reset(time.perf_counter())
        self.waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, self.expire, timeout)
        transport.write(request)
        try:
            await waiter
        finally:
            timer.cancel()
        end = time.perf_counter()
        if not self.keep_alive or self.error is not None:
            transport.close()
            self.closed = True
        return self.record(end)

    def expire(self, timeout: float) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.error = f"timeout after {timeout} s"
            self.waiter.set_result(None)

    def record(self, end: float) -> Record:
        job = self.runner.job
        error = self.error
        if error is None and self.status != 200:
            error = f"HTTP {self.status}: " + b"".join(self.pieces)[:300].decode(errors="replace")
        elif error is None and not job.stream:
            error = self.check_answer(end)
        elif error is None and not self.done:
            error = "stream ended without its end marker"
        elif error is None and job.expect_tokens is not None and self.tokens != job.expect_tokens:
            error = f"{self.tokens} tokens, expected {job.expect_tokens}"
        return Record(
            start=self.start - self.runner.t0,
            status=self.status,
            ttft=self.ttft,
            total=end - self.start,
            tokens=self.tokens,
            gaps_us=self.gaps,
            usage=self.usage,
            error=error,
        )

    def check_answer(self, end: float) -> str | None:
        self.ttft = end - self.start
        job = self.runner.job
        try:
            text = answer_text(job.api, b"".join(self.pieces))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return f"not a {job.api} answer: {type(exc).__name__}: {exc}"
        if job.expect_bytes is not None and len(text) != job.expect_bytes:
            return f"content is {len(text)} bytes, expected {job.expect_bytes}"
        return None


def answer_text(api: str, data: bytes) -> str:
    """The content of a non-streamed answer; raises when it has none."""
    doc = orjson.loads(data)
    if api == "openai":
        return doc["choices"][0]["message"]["content"]
    if api == "anthropic":
        return doc["content"][0]["text"]
    if api == "gemini":
        return doc["candidates"][0]["content"]["parts"][0]["text"]
    return doc["message"]["content"]


# Idle keep-alive connections by (host, port), kept across jobs: a run's warm-up leaves C
# connections open, so the measured requests do not pay for TCP set-up (clients of an LLM
# API keep their connections too).
POOL: dict[tuple[str, int], list[Conn]] = {}


class Runner:
    """One job: the workers, their shared budget, and the records."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.grammar = Grammar(job.api)
        self.host, self.port, self.request = request_bytes(job, request_body(job))
        self.records: list[Record] = []
        self.issued = 0
        self.t0 = 0.0
        self.deadline = float("inf")

    async def run(self) -> list[Record]:
        self.t0 = time.perf_counter()
        if self.job.duration_s is not None:
            self.deadline = self.t0 + self.job.duration_s
        await asyncio.gather(*(self.worker() for _ in range(self.job.concurrency)))
        return self.records

    def _more(self) -> bool:
        if time.perf_counter() >= self.deadline:
            return False
        if self.job.requests is not None:
            if self.issued >= self.job.requests:
                return False
            self.issued += 1
        return True

    async def worker(self) -> None:
        idle = POOL.setdefault((self.host, self.port), [])
        conn: Conn | None = None
        try:
            while self._more():
                reused = False
                while (conn is None or conn.closed) and idle:
                    conn, reused = idle.pop(), True
                if conn is None or conn.closed:
                    conn = await self.connect()
                    if conn is None:
                        continue
                record = await conn.exchange(self)
                lost = (record.error or "").startswith("connection closed")
                if reused and record.status == 0 and lost:
                    # The server closed this idle connection as we reused it: what any
                    # keep-alive client retries, once, on a new connection.
                    conn = await self.connect()
                    if conn is None:
                        continue
                    record = await conn.exchange(self)
                self.records.append(record)
        finally:
            if conn is not None and not conn.closed:
                idle.append(conn)  # kept open for the next job to the same target

    async def connect(self) -> Conn | None:
        """A new connection, or None after recording why there is none."""
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: Conn(self), self.host, self.port),
                self.job.timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            self.records.append(self.failed(start, f"connect: {exc!r}"))
            await asyncio.sleep(0.05)  # a refused port must not spin the loop
            return None
        return cast(Conn, proto)

    def failed(self, start: float, error: str) -> Record:
        total = time.perf_counter() - start
        return Record(start - self.t0, 0, None, total, 0, [], False, error)


async def run_job(job: Job) -> Result:
    runner = Runner(job)
    # The collector's pauses would show up as the target's inter-token jitter: keep it off
    # for the job (records hold no cycles; the few others are collected right after).
    gc.collect()
    gc.disable()
    cpu0 = time.process_time()
    try:
        records = await runner.run()
    finally:
        gc.enable()
    wall = max((r.start + r.total for r in records), default=0.0)
    summary = Summary(
        out=job.out,
        requests=len(records),
        errors=sum(r.error is not None for r in records),
        wall_s=wall,
        cpu_s=time.process_time() - cpu0,
        pid=os.getpid(),
    )
    return Result(summary, records)


def write_records(result: Result, out: str) -> None:
    if not out:
        return  # a warm-up: nobody reads its records
    data = msgspec.json.encode(result)
    if out == "-":
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        return
    with open(out, "wb") as f:
        f.write(data)


def serve() -> None:
    """One Job per stdin line: print its Summary as soon as the job ends (the orchestrator
    stops its CPU clocks there), then write the records, then print `written`."""
    decoder = msgspec.json.Decoder(Job)
    with asyncio.Runner(loop_factory=loop_factory()) as loop:
        for line in sys.stdin.buffer:
            if not line.strip():
                continue
            job = decoder.decode(line)
            result = loop.run(run_job(job))
            sys.stdout.buffer.write(msgspec.json.encode(result.summary) + b"\n")
            sys.stdout.flush()
            write_records(result, job.out)
            del result
            sys.stdout.buffer.write(b"written\n")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="read jobs from stdin")
    parser.add_argument("--url")
    parser.add_argument("--api", choices=APIS, default="openai")
    parser.add_argument("--model", default="mock-model")
    parser.add_argument("--no-stream", dest="stream", action="store_false")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, help="seconds (default: 5 s)")
    parser.add_argument("-n", "--requests", type=int)
    parser.add_argument("--max-tokens", type=int, default=100)
    parser.add_argument("--expect-tokens", type=int)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    parser.add_argument("--out", default="-", help="records JSON file, - for stdout")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.serve:
        serve()
        return
    if not args.url:
        parser.error("--url is required without --serve")
    duration = args.duration if args.duration or args.requests else 5.0
    job = Job(
        url=args.url,
        api=args.api,
        model=args.model,
        stream=args.stream,
        concurrency=args.concurrency,
        duration_s=duration,
        requests=args.requests,
        max_tokens=args.max_tokens,
        expect_tokens=args.expect_tokens,
        timeout_s=args.timeout,
        out=args.out,
    )
    with asyncio.Runner(loop_factory=loop_factory()) as loop:
        result = loop.run(run_job(job))
    write_records(result, job.out)
    print(msgspec.json.encode(result.summary).decode(), file=sys.stderr)


if __name__ == "__main__":
    main()
