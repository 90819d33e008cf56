"""Soak: many concurrent streams for a while, with the gateway started under the common soft
open-file limit of 1,024. Not part of the test suite (a minute or more at full size).

    python -m bench.soak                      # 1,000 streams for 60 s
    python -m bench.soak --streams 200 --duration 10

The gateway (its own CLI, the soft limit set to `--nofile` before it starts, which it raises
to the hard limit itself) relays the mock upstream (bench/upstream.py: `--tokens` tokens
`--delay-ms` apart per stream) to the load generator (bench/load.py: `--streams` connections,
each streaming one request after another). Every part runs on 127.0.0.1.

It passes when no stream was lost, reset or cut (every one status 200 with all its tokens),
the gateway logged no traceback and never ran out of files, and its RSS after the soak is
within `--rss-slack` of its RSS after the warm-up round (same connections, same pools).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import psutil

from bench.load import Result
from bench.procs import HOST, Child, free_port

MB = 1024 * 1024
MAX_STREAMS = 5000  # bounded: the soak must not become a load test of the machine
MAX_DURATION_S = 600.0
# The gateway starts as a shell would start it: the soft limit set, then its own CLI.
GATEWAY_LAUNCH = """\
import resource, runpy, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(int(sys.argv[1]), hard), hard))
sys.argv = ["gateway", *sys.argv[2:]]
runpy.run_module("gateway", run_name="__main__", alter_sys=True)
"""

# What the gateway must never log during the soak.
_RAN_OUT = "out of file descriptors"
_TRACEBACK = "Traceback"


class Sampler:
    """The gateway's RSS, once a second, in a thread (the orchestrator waits on a child)."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.monotonic() - self._t0, self.rss()))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _raise_own_limit(needed: int) -> None:
    """The load generator and the upstream each hold `--streams` sockets too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"bench.soak: the hard open-file limit {hard} is below the {needed} needed")


def _load(
    tmp: Path, url: str, streams: int, tokens: int, timeout: float, **budget: float | int
) -> Result:
    """One load-generator run to the end; its records."""
    out = tmp / f"records-{time.monotonic_ns()}.json"
    argv = [sys.executable, "-m", "bench.load", "--url", f"{url}/v1/chat/completions"]
    argv += ["--model", "soak/mock-model", "-c", str(streams), "--expect-tokens", str(tokens)]
    argv += ["--max-tokens", str(tokens), "--timeout", str(timeout), "--out", str(out)]
    for key, value in budget.items():
        argv += [f"--{key}", str(value)]
    child = Child("load generator", argv, None)
    try:
        status = child.proc.wait(timeout=timeout + float(budget.get("duration", 0)) + 120)
    finally:
        child.stop()
    if status != 0:
        sys.exit(f"bench.soak: the load generator failed:\n{child.output()}")
    return msgspec.json.decode(out.read_bytes(), type=Result)


def _failures(result: Result) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for record in result.records:
        if record.error is not None or record.status != 200:
            kind = (record.error or f"status {record.status}").split(":")[0][:60]
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _curve(samples: list[tuple[float, int]], points: int = 8) -> str:
    """A few evenly spaced samples: flat, or still climbing?"""
    step = max(1, len(samples) // points)
    return ", ".join(f"{t:.0f}: {rss / MB:.1f}" for t, rss in samples[::step])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of soak")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per stream")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="between two tokens")
    parser.add_argument("--nofile", type=int, default=1024, help="the gateway's soft limit")
    parser.add_argument("--rss-slack", type=float, default=16.0, help="MiB, after vs before")
    args = parser.parse_args(argv)
    if not 0 < args.streams <= MAX_STREAMS or not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--streams 1..{MAX_STREAMS}, --duration up to {MAX_DURATION_S:g} s")
    _raise_own_limit(2 * args.streams + 256)
    stream_s = args.tokens * args.delay_ms / 1000
    timeout = max(30.0, 10 * stream_s)

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        upstream_port = free_port()
        upstream_argv = ["-m", "bench.upstream", "--port", str(upstream_port)]
        upstream_argv += ["--tokens", str(args.tokens), "--delay-ms", str(args.delay_ms)]
        upstream = Child("mock upstream", [sys.executable, *upstream_argv], None)
        config = tmp / "gateway.toml"
        config.write_text(
            f"[server]\nmax_connections = {args.streams + 100}\naccess_log = false\n"
            f'[providers.soak]\ntype = "openai"\nbase_url = "http://{HOST}:{upstream_port}/v1"\n'
            'api_key = "soak-key"\ntimeout = 30\n'
        )
        gateway_argv = ["-c", GATEWAY_LAUNCH, str(args.nofile), "--config", str(config)]
        gateway_argv += ["--host", HOST, "--port", str(free_port())]
        gateway = Child(
            "gateway", [sys.executable, *gateway_argv], None, watch=(_RAN_OUT, _TRACEBACK)
        )
        try:
            upstream.wait_address(15)
            url = gateway.wait_address(15)
            soft, hard = psutil.Process(gateway.pid).rlimit(psutil.RLIMIT_NOFILE)
            print(
                f"gateway {url}: started with soft open-file limit {args.nofile}, "
                f"now {soft} (hard {hard})",
                flush=True,
            )
            print(f"warm-up: one round of {args.streams} streams", flush=True)
            warm = _load(tmp, url, args.streams, args.tokens, timeout, requests=args.streams)
            time.sleep(1.0)
            with Sampler(gateway.pid) as sampler:
                before = sampler.rss()
                print(f"soak: {args.streams} streams for {args.duration:g} s", flush=True)
                started = time.monotonic()
                soak = _load(tmp, url, args.streams, args.tokens, timeout, duration=args.duration)
                took = time.monotonic() - started
                end = sampler.rss()
                time.sleep(5.0)
                after = sampler.rss()
            peak = max([rss for _, rss in sampler.samples] + [before, end, after])
            fds = len(psutil.Process(gateway.pid).net_connections("tcp"))
        finally:
            gateway.stop()
            upstream.stop()
        seen, log = gateway.seen, "\n".join(gateway.tail)

    failed = {**_failures(warm), **_failures(soak)}
    tokens = sum(record.tokens for record in soak.records)
    ran_out = _RAN_OUT in seen
    traceback = _TRACEBACK in seen
    flat = after - before <= args.rss_slack * MB
    print(
        f"\nstreams: {len(soak.records)} in {took:.1f} s ({len(warm.records)} in the warm-up), "
        f"{tokens} tokens; failed, lost or reset: {sum(failed.values())} {failed or ''}\n"
        f"gateway RSS: {before / MB:.1f} MiB after the warm-up, peak {peak / MB:.1f} MiB, "
        f"{end / MB:.1f} MiB at the end, {after / MB:.1f} MiB 5 s later "
        f"({(after - before) / MB:+.1f} MiB)\n"
        f"gateway RSS over the soak (s: MiB): {_curve(sampler.samples)}\n"
        f"gateway TCP sockets open after the soak: {fds}; ran out of files: {ran_out}; "
        f"traceback in its log: {traceback}"
    )
    ok = not failed and not ran_out and not traceback and flat
    print("PASS" if ok else "FAIL")
    if not ok:
        print(f"gateway log (last lines):\n{log}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
