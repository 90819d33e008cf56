"""python -m bench: stream through the gateway and its baselines, measure, and report.

Every part runs in its own process on loopback: the mock upstream (bench/upstream.py), the
raw relay (bench/relay.py), the gateway (its own CLI, generated config), any `--peer` proxy
the user started, and the load generator (bench/load.py). On a machine with 2+ CPUs the
process under test gets CPU 0 to itself; the upstream, the load generator and this
orchestrator share CPU 1. Each run is measured against every target in turn, so the ratios
compare figures taken minutes apart at most.

    python -m bench                       # every scenario, full size (a few minutes)
    python -m bench --quick               # a reduced set of each, under 30 s
    python -m bench --scenario latency --scenario long
    python -m bench --peer http://127.0.0.1:4000 --upstream-port 9100
    python -m bench --list                # the scenario table

Output: Markdown on stdout, JSON (and a PNG when matplotlib is installed) under
bench/results/. Exit status 1 when a request failed or a target did not start.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import psutil

from bench import report
from bench.load import Job, Result, Summary
from bench.measure import Sampler, Snapshot, bound_by, busy_s, client_pct, stats
from bench.peers import Peer, add_arguments, peers_from, redacted_argv, secrets
from bench.procs import HOST, Child, ProcessTree, StartError, free_port
from bench.scenarios import (
    API_ANTHROPIC,
    API_OPENAI,
    BY_NAME,
    FAILOVER_ALIAS,
    REPO,
    SCENARIOS,
    Run,
    Scenario,
    bounded,
)
from bench.variants import (
    AIOHTTP_ALL_FEATURES,
    ALL_FEATURES,
    BENCH_ALIAS,
    BENCH_KEY,
    VARIANTS,
    Variant,
    alias_table,
    config_text,
)

RESULTS = REPO / "bench" / "results"
DEFAULT_TARGETS = ("direct", "relay", "gateway", "gateway-plain")
# Ours: measured, compared; anything else is a --peer.
BASE_TARGETS = ("direct", "relay", *VARIANTS)
# The gateway as configured by default (metrics and access log on), and with both off: the
# two side by side price the observability (the paired run).
GATEWAYS = ("gateway", "gateway-plain")
GATEWAY_PROVIDER = "bench"
ANTHROPIC_PROVIDER = "bench_anthropic"
DOWN_PROVIDER = "bench_down"
WARMUP_TOKENS = 100
PAIRED_ROUNDS = 3


@dataclass(slots=True)
class Target:
    """Something the load generator can be pointed at, for one wire format."""

    name: str
    base: str  # http://127.0.0.1:PORT
    child: Child | None = None  # the process whose CPU and memory we measure
    tree: ProcessTree | None = None  # a peer's processes (--peer-pid and all under it)
    error: str | None = None  # why it is not available
    peer_path: str = "/v1/chat/completions"
    variant: Variant | None = None  # one of ours: how it is configured

    def endpoint(self, run: Run) -> tuple[str, str, str]:
        """(url, wire format the client sees, model) for a run whose upstream speaks `api`."""
        api = run.api
        if self.name in ("direct", "relay"):
            path = "/v1/messages" if api == API_ANTHROPIC else "/v1/chat/completions"
            return self.base + path, api, "mock-model"
        if self.variant is not None:
            provider = ANTHROPIC_PROVIDER if api == API_ANTHROPIC else GATEWAY_PROVIDER
            if run.client_api == API_ANTHROPIC:  # inbound Messages, to either upstream
                return self.base + "/v1/messages", API_ANTHROPIC, f"{provider}/mock-model"
            model = run.gateway_model or (
                BENCH_ALIAS
                if self.variant.alias and api == API_OPENAI
                else f"{provider}/mock-model"
            )
            return self.base + "/v1/chat/completions", API_OPENAI, model
        return self.base + self.peer_path, API_OPENAI, ""


@dataclass
class Options:
    quick: bool
    scenarios: list[Scenario]
    targets: list[str]
    peers: list[Peer]
    duration_s: float | None
    requests: int | None
    timeout_s: float
    run_cap_s: float
    upstream_port: int
    pin: bool
    chart: bool
    keep_raw: bool
    out: Path
    features: bool = False  # `gateway` with every per-request feature on


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else msgspec.json.encode(body)
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return msgspec.json.decode(resp.read())


def gateway_config(
    gateway_port: int, upstream: str, anthropic: bool, variant: Variant, redis_url: str | None
) -> str:
    text = f"""[server]
host = "{HOST}"
port = {gateway_port}
{config_text(variant, redis_url, upstream)}
[providers.{GATEWAY_PROVIDER}]
type = "openai"
base_url = "{upstream}/v1"
api_key = "bench-key"
timeout = 30

# The failover scenario: a first target that answers 503 at once (the mock upstream's
# /fail503 prefix), then the real one; never rested, so every request pays the failover.
[providers.{DOWN_PROVIDER}]
type = "openai"
base_url = "{upstream}/fail503/v1"
api_key = "bench-key"

[models.{FAILOVER_ALIAS}]
targets = ["{DOWN_PROVIDER}/mock-model", "{GATEWAY_PROVIDER}/mock-model"]
{alias_table(GATEWAY_PROVIDER)}
[routing]
failures_to_rest = 1000000000
"""
    if anthropic:
        text += f"""
[providers.{ANTHROPIC_PROVIDER}]
type = "anthropic"
base_url = "{upstream}/v1"
api_key = "bench-key"
timeout = 30
"""
    return text


class Bench:
    """Starts the processes, runs every (scenario, run, target), and collects the rows."""

    def __init__(self, opts: Options, stamp: str) -> None:
        self.opts = opts
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-"))  # configs, records; removed at stop
        self.raw = opts.out / f"raw-{stamp}" if opts.keep_raw else self.tmp
        self.children: list[Child] = []
        self.rows: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.skipped: list[str] = []
        cpus = sorted(os.sched_getaffinity(0))
        self.pinning = opts.pin and len(cpus) >= 2
        # The process under test alone on the first CPU; everything else on the others.
        self.target_cpus = {cpus[0]} if self.pinning else None
        self.client_cpus = set(cpus[1:]) if self.pinning else None
        self.cpu_ids = cpus
        self.targets: dict[str, Target] = {}
        self.peers = {peer.name: peer for peer in opts.peers}
        self.paired: dict[str, Any] | None = None  # see measure_paired
        self.upstream_url = ""
        self.translate_error: str | None = None
        self.redis: subprocess.Popen[bytes] | None = None  # for the variants that want one
        self.redis_url: str | None = None
        self.repin: list[tuple[int, set[int]]] = []  # peers' threads and their own affinity
        self.noise: dict[str, list[tuple[str, float]]] = {"loadgen": [], "client": [], "others": []}

    # processes

    def spawn(
        self, name: str, args: list[str], cpus: set[int] | None, stdin: bool = False
    ) -> Child:
        child = Child(name, [sys.executable, *args], cpus, stdin=stdin)
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.redis is not None:
            self.redis.terminate()
            try:
                self.redis.wait(5)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()
            self.redis = None
        shutil.rmtree(self.tmp, ignore_errors=True)
        for tid, cpus in self.repin:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)
        self.repin.clear()

    def start(self) -> None:
        """Start every process at once (interpreter start-up dominates a quick run), then
        wait for each one's ready line."""
        opts = self.opts
        if self.client_cpus:
            os.sched_setaffinity(0, self.client_cpus)  # the orchestrator stays off CPU 0
        port = opts.upstream_port or free_port()
        self.upstream_url = f"http://{HOST}:{port}"
        self.upstream = self.spawn(
            "mock upstream", ["-m", "bench.upstream", "--port", str(port)], self.client_cpus
        )
        self.loadgen = self.spawn(
            "load generator", ["-m", "bench.load", "--serve"], self.client_cpus, stdin=True
        )
        # The paired observability run loads both gateways at once: one generator each.
        self.loadgen2 = None
        if all(name in opts.targets for name in GATEWAYS):
            self.loadgen2 = self.spawn(
                "load generator 2", ["-m", "bench.load", "--serve"], self.client_cpus, stdin=True
            )
        relay = None
        if "relay" in opts.targets:
            relay = self.spawn(
                "raw relay",
                ["-m", "bench.relay", "--port", "0", "--upstream", self.upstream_url],
                self.target_cpus,
            )
        if any(
            "redis" in (self.variant(name).key, self.variant(name).cache)
            for name in opts.targets
            if name in VARIANTS
        ):
            self.redis_url = self.start_redis()
        gateways = {name: self.spawn_gateways(name) for name in VARIANTS if name in opts.targets}
        if opts.chart:
            report.load_pyplot()  # while the children start: it takes about a second
        self.upstream.wait_address(15)
        print(
            f"mock upstream: {self.upstream_url}/v1 (point --peer proxies there)", file=sys.stderr
        )
        self.targets["direct"] = Target("direct", self.upstream_url)
        if relay is not None:
            self.targets["relay"] = Target("relay", relay.wait_address(15), relay)
        for name, attempts in gateways.items():
            self.targets[name] = self.wait_gateway(name, attempts)
        for peer in opts.peers:
            self.targets[peer.name] = self.peer_target(peer)

    def variant(self, name: str) -> Variant:
        if name == "gateway" and self.opts.features:
            return ALL_FEATURES
        if name == "gateway-aiohttp" and self.opts.features:
            return AIOHTTP_ALL_FEATURES
        return VARIANTS[name]

    def start_redis(self) -> str:
        """A redis-server for the variants that keep their limits there (loopback only)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise StartError("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        self.redis = subprocess.Popen(
            [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                return f"redis://{HOST}:{port}/0"
            time.sleep(0.05)
        raise StartError("redis-server did not start")

    def spawn_gateways(self, name: str) -> list[tuple[bool, Child | str]]:
        """The gateway with the generated config; when `translate` will run, first with an
        Anthropic provider too, and a plain one as the fallback should that be refused.
        `gateway-plain`: the same with metrics and the access log off."""
        if not (REPO / "gateway" / "__main__.py").exists():
            return [(False, "gateway/__main__.py does not exist yet")]
        wants = any(
            s.name in ("translate", "messages") and s.available() for s in self.opts.scenarios
        )
        kinds = (True, False) if wants else (False,)
        return [(anthropic, self.spawn_gateway(name, anthropic)) for anthropic in kinds]

    def spawn_gateway(self, name: str, anthropic: bool) -> Child:
        port = free_port()
        variant = self.variant(name)
        config = self.tmp / f"{name}{'-anthropic' if anthropic else ''}.toml"
        config.write_text(
            gateway_config(port, self.upstream_url, anthropic, variant, self.redis_url)
        )
        argv = ["-m", "gateway", "--config", str(config), "--host", HOST, "--port", str(port)]
        if variant.workers > 1:
            argv += ["--workers", str(variant.workers)]
        return self.spawn(name, argv, self.target_cpus if variant.pinned else None)

    def wait_gateway(self, name: str, attempts: list[tuple[bool, Child | str]]) -> Target:
        chosen: Target | None = None
        error = ""
        for anthropic, child in attempts:
            if isinstance(child, str):
                error = child
                continue
            if chosen is not None:
                self.discard(child)  # the fallback is not needed
                continue
            try:
                chosen = Target(name, child.wait_address(20), child, variant=self.variant(name))
            except StartError as exc:
                self.discard(child)
                error = str(exc)
                if anthropic:
                    self.translate_error = f"the gateway refused an anthropic provider: {exc}"
        return chosen or Target(name, "", error=error)

    def discard(self, child: Child) -> None:
        child.stop()
        self.children.remove(child)

    def peer_target(self, peer: Peer) -> Target:
        name, url, pid = peer.name, peer.url.rstrip("/"), peer.pid
        match = re.match(r"(https?://[^/]+)(/.*)?$", url)
        if not match or not url.startswith("http://"):
            return Target(name, "", error=f"--peer {url}: expected http://HOST:PORT[/path]")
        base, path = match.group(1), match.group(2) or ""
        if not path.endswith("/chat/completions"):
            path = (path if path.endswith("/v1") else path + "/v1") + "/chat/completions"
        target = Target(name, base, peer_path=path)
        if pid is not None and not psutil.pid_exists(pid):
            target.error = f"--peer-pid {pid}: no such process"
        elif pid is not None:
            target.tree = ProcessTree(pid)
            if self.target_cpus:
                self.pin_peer(pid, self.target_cpus)
        return target

    def pin_peer(self, pid: int, cpus: set[int]) -> None:
        """Give a peer the gateway's core, as a fair comparison needs; every thread of it and
        of its children, restored at exit."""
        try:
            tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return
        for proc in tree:
            for task in Path(f"/proc/{proc.pid}/task").glob("*"):
                with contextlib.suppress(OSError, ValueError):
                    tid = int(task.name)
                    self.repin.append((tid, os.sched_getaffinity(tid)))
                    os.sched_setaffinity(tid, cpus)

    # measuring

    def snapshot(self, target: Target) -> Snapshot:
        cpu = None
        if target.child is not None:
            cpu = target.child.cpu_s()
        elif target.tree is not None:
            cpu = target.tree.cpu_s()
        return Snapshot(
            t=time.perf_counter(),
            target=cpu,
            upstream=self.upstream.cpu_s(),
            loadgen=self.loadgen.cpu_s(),
            me=time.process_time(),
            cores=psutil.cpu_times(percpu=True),
        )

    def memory_probe(self, target: Target) -> Callable[[], int] | None:
        if target.child is not None:
            return target.child.rss
        if target.tree is not None:
            return target.tree.rss
        return None

    def configure_upstream(self, tokens: int, delay_ms: float, chunk_bytes: int) -> None:
        http_json(
            "POST",
            f"{self.upstream_url}/_bench/config",
            {"tokens": tokens, "delay_ms": delay_ms, "chunk_bytes": chunk_bytes, "usage": "auto"},
        )

    def job(
        self, target: Target, run: Run, requests: int | None, duration: float | None, out: str
    ) -> Job:
        url, api, model = target.endpoint(run)
        headers = {}
        peer = self.peers.get(target.name)
        if peer is not None:
            assert peer.model is not None
            model = peer.model
            headers = peer.request_headers()
        if target.variant is not None and target.variant.key is not None:
            headers["Authorization"] = f"Bearer {BENCH_KEY}"  # every request carries the key
        return Job(
            url=url,
            api=api,
            model=model,
            stream=run.stream,
            concurrency=run.concurrency,
            duration_s=duration,
            requests=requests,
            max_tokens=run.tokens,
            # A cache hit streams its text in one event: its tokens are not the upstream's.
            expect_tokens=run.tokens if run.stream and not _hits(target) else None,
            expect_bytes=None if run.stream else run.tokens * run.chunk_bytes,
            headers=headers,
            timeout_s=self.opts.timeout_s,
            out=out,
        )

    def send(self, job: Job) -> Summary:
        """Run one job on the load generator; returns once the job is done (records are
        written after the summary line, so CPU snapshots are not stretched by the write)."""
        stdin = self.loadgen.proc.stdin
        assert stdin is not None
        stdin.write(msgspec.json.encode(job).decode() + "\n")
        stdin.flush()
        bound = (job.duration_s or self.opts.run_cap_s) + job.timeout_s + 15
        return msgspec.json.decode(self.loadgen.readline(bound), type=Summary)

    def wait_written(self) -> None:
        self.loadgen.readline(60)

    def measure_paired(self) -> dict[str, Any] | None:
        """What metrics and the access log cost, measured with both gateways loaded at once.

        `gateway` and `gateway-plain` share the target CPU and are driven together (C=50
        each, 100-token streams, no delay), one load generator each: both see the same
        machine at the same moments, so the ratio of their CPU per request holds to about
        1 % where runs taken a minute apart differ by more than the effect. The median of
        PAIRED_ROUNDS rounds is reported."""
        on, off = self.targets.get(GATEWAYS[0]), self.targets.get(GATEWAYS[1])
        if self.loadgen2 is None or on is None or off is None or on.error or off.error:
            return None
        seconds = 0.5 if self.opts.quick else 4.0
        run = Run(concurrency=50, tokens=100, duration_s=seconds)
        self.configure_upstream(run.tokens, run.delay_ms, run.chunk_bytes)
        rounds = []
        for i in range(PAIRED_ROUNDS + 1):  # the first round warms up
            jobs = [(self.loadgen, on), (self.loadgen2, off)]
            before = [target.child.cpu_s() for _, target in jobs if target.child]
            for loadgen, target in jobs:
                job = self.job(target, run, None, seconds, "")
                stdin = loadgen.proc.stdin
                assert stdin is not None
                stdin.write(msgspec.json.encode(job).decode() + "\n")
                stdin.flush()
            bound = seconds + self.opts.timeout_s + 15
            done = [msgspec.json.decode(lg.readline(bound), type=Summary) for lg, _ in jobs]
            after = [target.child.cpu_s() for _, target in jobs if target.child]
            for loadgen, _ in jobs:
                loadgen.readline(60)  # "written"
            if i == 0 or len(before) < 2:
                continue
            per_request = [
                (a - b) / max(1, summary.requests)
                for a, b, summary in zip(after, before, done, strict=True)
            ]
            rounds.append(
                {
                    "on_ms": 1000 * per_request[0],
                    "off_ms": 1000 * per_request[1],
                    "ratio": per_request[0] / per_request[1] if per_request[1] else None,
                    "requests": [summary.requests for summary in done],
                    "errors": [summary.errors for summary in done],
                }
            )
        ratios = sorted(r["ratio"] for r in rounds if r["ratio"] is not None)
        print(
            f"[paired observability] {len(rounds)} rounds of {seconds:g} s: on/off "
            + ", ".join(f"{r:.3f}" for r in ratios),
            file=sys.stderr,
        )
        return {
            "run": asdict(run),
            "rounds": rounds,
            "ratio_median": ratios[len(ratios) // 2] if ratios else None,
        }

    def measure(self, scenario: Scenario, run: Run, target: Target) -> dict[str, Any]:
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "label": run.label,
            "target": target.name,
            "run": asdict(run),
        }
        if target.error:
            row.update(ok=False, note=target.error, errors=None)
            return row
        # Warm-up: at least one round, so connections (ours to the target, the target's to
        # the upstream) are open and the measured requests see a steady state.
        self.configure_upstream(min(run.tokens, WARMUP_TOKENS), 0.0, run.chunk_bytes)
        warm = warmup_run(run)
        count = max(run.warmup, run.concurrency)
        self.send(self.job(target, warm, count, self.opts.run_cap_s, ""))
        self.wait_written()
        self.configure_upstream(run.tokens, run.delay_ms, run.chunk_bytes)
        served0 = http_json("GET", f"{self.upstream_url}/_bench/stats")["requests"]
        self.raw.mkdir(parents=True, exist_ok=True)
        out = str(self.raw / f"{scenario.name}-{run.concurrency}-{target.name}.json")
        requests = run.requests
        duration = run.duration_s if run.duration_s is not None else self.opts.run_cap_s
        if target.child is not None:
            target.child.refresh()
        if target.tree is not None:
            target.tree.refresh()  # a launcher's children, as they are now
        probe = self.memory_probe(target)
        sampler = Sampler(probe) if probe else None
        before = self.snapshot(target)
        hwm0 = target.child.hwm() if target.child else None
        if sampler:
            sampler.start()
        try:
            summary = self.send(self.job(target, run, requests, duration, out))
        finally:
            after = self.snapshot(target)
            if sampler:
                sampler.stop()
        self.wait_written()
        hwm1 = target.child.hwm() if target.child else None
        served = http_json("GET", f"{self.upstream_url}/_bench/stats")["requests"] - served0
        result = msgspec.json.decode(Path(out).read_bytes(), type=Result)
        if not self.opts.keep_raw:
            Path(out).unlink(missing_ok=True)
        row.update(ok=True, note=None)
        row.update(stats(result, run))
        row["upstream_requests"] = served
        row["cpu"] = self.cpu_figures(before, after, summary, result, target)
        if sampler:
            row["rss_mb"], series = sampler.figures(hwm0, hwm1)
            if scenario.name in ("long", "soak"):
                row["rss_series"] = series
        row["bound_by"] = bound_by(row["cpu"], target.name)
        self.check(row, target, run)
        return row

    def cpu_figures(
        self, before: Snapshot, after: Snapshot, summary: Summary, result: Result, target: Target
    ) -> dict[str, float | None]:
        wall = after.t - before.t
        requests = max(1, len(result.records))
        tokens = sum(r.tokens for r in result.records if r.error is None)
        target_s = (
            None if before.target is None or after.target is None else after.target - before.target
        )
        up = after.upstream - before.upstream
        lg = after.loadgen - before.loadgen
        me = after.me - before.me
        # psutil lists every CPU of the machine; only the ones we run on matter here.
        busy = {
            i: busy_s(b, a) for i, (b, a) in enumerate(zip(before.cores, after.cores, strict=True))
        }
        mine = [busy.get(c, 0.0) for c in self.cpu_ids]
        ours = (target_s or 0) + up + lg + me

        def pct(x: float | None) -> float | None:
            return None if x is None else 100 * x / wall

        return {
            "wall_s": wall,
            "target_s": target_s,
            "target_pct": pct(target_s),
            "per_req_ms": None if target_s is None else 1000 * target_s / requests,
            "per_1k_chunks_ms": None if target_s is None or not tokens else 1e6 * target_s / tokens,
            "loadgen_s": summary.cpu_s,
            "loadgen_pct": 100 * summary.cpu_s / summary.wall_s if summary.wall_s else None,
            "upstream_s": up,
            "upstream_pct": pct(up),
            "target_core_busy_pct": pct(mine[0]) if self.pinning else None,
            "client_core_busy_pct": pct(sum(mine[1:])) if self.pinning else None,
            "others_pct": pct(max(0.0, sum(mine) - ours)),
        }

    def check(self, row: dict[str, Any], target: Target, run: Run) -> None:
        where = f"{row['scenario']} {row['label']} {target.name}"
        cpu = row["cpu"]
        if row["errors"]:
            samples = "; ".join(row["error_samples"])
            self.warnings.append(
                f"{where}: {row['errors']} of {row['requests']} requests failed: {samples}"
            )
        # Conditions that recur on a busy machine are gathered into one line each.
        if (cpu.get("loadgen_pct") or 0) >= 90:
            self.noise["loadgen"].append((where, cpu["loadgen_pct"]))
        client = client_pct(cpu)
        if target.name != "direct" and client >= 85 and (cpu.get("target_pct") or 0) < 85:
            self.noise["client"].append((where, client))
        if (cpu.get("others_pct") or 0) >= 15:
            self.noise["others"].append((where, cpu["others_pct"]))
        if (
            target.name != "direct"
            and row["requests"]
            and row["upstream_requests"] < row["requests"] - row["errors"]
        ):
            self.warnings.append(
                f"{where}: the mock upstream saw {row['upstream_requests']} requests for "
                f"{row['requests']} sent: is {target.name} pointed at {self.upstream_url}/v1?"
            )
        if run.stream and run.api == API_OPENAI and row.get("usage_missing"):
            self.warnings.append(
                f"{where}: {row['usage_missing']} streams asked for include_usage but got no "
                "usage chunk"
            )

    def noise_warnings(self) -> list[str]:
        texts = {
            "loadgen": "the load generator used >= 90% of its core (it may be the bottleneck)",
            "client": "the load generator and the upstream used >= 85% of their core while "
            "the target was not saturated (throughput there is a floor)",
            "others": "other processes on this machine used >= 15% of a core (figures are "
            "noisy: rerun on a quiet machine)",
        }
        out = []
        for kind, hits in self.noise.items():
            if hits:
                worst = max(hits, key=lambda h: h[1])
                runs = ", ".join(w for w, _ in hits[:6]) + (", ..." if len(hits) > 6 else "")
                out.append(
                    f"{texts[kind]} in {len(hits)} of {len(self.rows)} rows, up to "
                    f"{worst[1]:.0f}% ({worst[0]}): {runs}"
                )
        return out

    def run_all(self) -> None:
        opts = self.opts
        names = [t for t in (*BASE_TARGETS, *(p.name for p in opts.peers)) if t in self.targets]
        for name in names:
            if self.targets[name].error:
                self.warnings.append(f"{name}: not measured: {self.targets[name].error}")
        for scenario in opts.scenarios:
            if not scenario.available():
                self.skipped.append(f"{scenario.name}: needs {scenario.needs}, not there yet")
                continue
            runs = scenario.quick if opts.quick else scenario.runs
            for run in runs:
                run = bounded(run, opts.duration_s, opts.requests)
                for name in names:
                    if run.api != API_OPENAI and name not in BASE_TARGETS:
                        note = f"{scenario.name}: {name} not measured (peers: OpenAI path only)"
                        if note not in self.skipped:
                            self.skipped.append(note)
                        continue
                    target = self.targets[name]
                    if (
                        scenario.name in ("translate", "messages")
                        and name in VARIANTS
                        and self.translate_error
                    ):
                        target = Target(name, "", error=self.translate_error)
                    started = time.monotonic()
                    row = self.measure(scenario, run, target)
                    self.rows.append(row)
                    progress(row, time.monotonic() - started)

    def results(self, started: str) -> dict[str, Any]:
        peers = [p.name for p in self.opts.peers]
        names = [t for t in (*BASE_TARGETS, *peers) if t in self.targets]
        return {
            "meta": {
                "started": started,
                "quick": self.opts.quick,
                "commit": git_commit(),
                "python": platform.python_version(),
                "cpus": len(self.cpu_ids),
                "pinning": (
                    f"target on CPU {sorted(self.target_cpus or [])}, upstream + load generator "
                    f"on CPU {sorted(self.client_cpus or [])}"
                    if self.pinning
                    else "off"
                ),
                "upstream_url": self.upstream_url,
                "targets": names,
                "peers": [t for t in peers if t in self.targets],  # not ours: never judged
                "shows": {s.name: list(s.shows) for s in SCENARIOS},
                "argv": redacted_argv(sys.argv[1:]),
            },
            "rows": self.rows,
            "paired": self.paired,
            "warnings": [w for w in self.warnings if w] + self.noise_warnings(),
            "skipped": self.skipped,
        }


def _hits(target: Target) -> bool:
    return target.variant is not None and target.variant.cache in ("hit", "redis")


def warmup_run(run: Run) -> Run:
    """Warm-up requests: the run's shape, short and unpaced; they only set up pools and
    caches, so that memory figures start from a process that has served requests."""
    return replace(run, tokens=min(run.tokens, WARMUP_TOKENS), delay_ms=0.0, warmup=0)


def progress(row: dict[str, Any], seconds: float) -> None:
    head = f"[{row['scenario']} {row['label']}] {row['target']}:"
    if not row.get("ok"):
        print(f"{head} skipped: {row['note'].splitlines()[0]}", file=sys.stderr)
        return
    print(
        f"{head} {row['requests']:,} requests, {row['errors']} failed, {seconds:.1f} s",
        file=sys.stderr,
    )


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def parse_args(argv: list[str] | None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --peer-k would be --peer-key, and slip past its redaction
    )
    parser.add_argument(
        "--quick", action="store_true", help="a reduced set of every scenario, < 30 s"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(BY_NAME),
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help="comma-separated targets: direct, relay and the gateway variants "
        f"({', '.join(VARIANTS)}; see bench/variants.py); default: " + ",".join(DEFAULT_TARGETS),
    )
    parser.add_argument(
        "--features",
        action="store_true",
        help="run `gateway` with every per-request feature on: a gateway key with limits on "
        "every request, metrics, the access log, the model named through an alias",
    )
    add_arguments(parser)  # --peer and its own options (bench/peers.py)
    parser.add_argument("--duration", type=float, help="seconds per run, overriding the table")
    parser.add_argument("--requests", type=int, help="requests per run, overriding the table")
    parser.add_argument("--timeout", type=float, help="seconds per request (default 30; quick 10)")
    parser.add_argument(
        "--upstream-port",
        type=int,
        default=0,
        help="fixed port for the mock upstream (default: any)",
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU affinity")
    parser.add_argument("--no-chart", dest="chart", action="store_false", help="skip the PNG")
    parser.add_argument("--keep-raw", action="store_true", help="keep per-request records")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})"
    )
    parser.add_argument("--list", action="store_true", help="print the scenario table and exit")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(BASE_TARGETS)
    if unknown:
        parser.error(f"--targets: unknown {sorted(unknown)}; use --peer for other proxies")
    peers = peers_from(args.peer_options, parser)
    clash = {p.name for p in peers} & {"direct", *BASE_TARGETS}
    if clash:
        parser.error(f"--peer: {sorted(clash)[0]!r} names one of the bench's own targets")
    chosen = [BY_NAME[n] for n in args.scenario] if args.scenario else list(SCENARIOS)
    opts = Options(
        quick=args.quick,
        scenarios=chosen,
        targets=["direct", *(t for t in targets if t != "direct")],
        peers=peers,
        duration_s=args.duration,
        requests=args.requests,
        timeout_s=args.timeout or (10.0 if args.quick else 30.0),
        run_cap_s=20.0 if args.quick else 300.0,
        upstream_port=args.upstream_port,
        pin=args.pin,
        chart=args.chart,
        keep_raw=args.keep_raw,
        out=args.out,
        features=args.features,
    )
    return opts, args.list


def list_scenarios() -> str:
    lines = []
    for s in SCENARIOS:
        lines.append(f"{s.name}: {s.about}" + (f" (needs {s.needs})" if s.needs else ""))
        for label, runs in (("full", s.runs), ("quick", s.quick)):
            shown = ", ".join(_describe(r) for r in runs)
            lines.append(f"    {label}: {shown}")
    return "\n".join(lines)


def _describe(run: Run) -> str:
    bound = " ".join(
        x
        for x in (
            run.duration_s and f"{run.duration_s:g}s",
            run.requests and f"{run.requests:,}req",
        )
        if x
    )
    mode = "stream" if run.stream else "json"
    return f"C={run.concurrency} {run.tokens}tok {run.delay_ms:g}ms {mode} {run.api} {bound}"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the children are stopped on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    opts, listing = parse_args(argv)
    if listing:
        print(list_scenarios())
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if opts.quick else "")
    bench = Bench(opts, stamp)
    t0 = time.monotonic()
    status = 0
    with sigterm_as_interrupt():
        try:
            bench.start()
            bench.run_all()
            bench.paired = bench.measure_paired()
        except KeyboardInterrupt:
            print("interrupted: stopping the children; partial results follow", file=sys.stderr)
            status = 130
            opts.chart = False
        except (StartError, TimeoutError) as exc:
            # A part of the bench itself failed: report what was measured before it.
            print(f"python -m bench: {exc}", file=sys.stderr)
            bench.warnings.append(f"the run stopped early: {str(exc).splitlines()[0]}")
            status = 1
        finally:
            bench.stop()
    if not bench.rows and status:
        return status
    # A peer's error message may echo the key it was sent: none of it is kept.
    results = report.scrub(bench.results(started), secrets(opts.peers))
    results["meta"]["seconds"] = round(time.monotonic() - t0, 1)
    json_path = opts.out / f"bench-{stamp}.json"
    png_path = json_path.with_suffix(".png")
    if opts.chart:
        why = report.chart(results, png_path)
        results["meta"]["chart"] = None if why else str(png_path)
        if why:
            results["warnings"].append(why)
    report.write_json(results, json_path)
    sys.stdout.write(report.render(results))
    print(
        f"results: {json_path}" + (f"\nchart: {png_path}" if results["meta"].get("chart") else ""),
        file=sys.stderr,
    )
    failed = any(not r.get("ok") or r.get("errors") for r in bench.rows)
    return status or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
