"""`python -m bench --quick` works end to end; the bench's own parsers are right.

The quick run is started once, as a subprocess, the way a user would start it. It proves
that results are produced and that no request failed through any target; it asserts no
speed, since this machine's load is not ours to control.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from bench import report
from bench.load import Grammar
from bench.scenarios import SCENARIOS
from bench.upstream import (
    Options,
    State,
    UpstreamProtocol,
    anthropic_stream,
    openai_stream,
    token_texts,
)
from bench.wire import ChunkedDecoder, chunk

REPO = Path(__file__).resolve().parent.parent
QUICK_TIMEOUT_S = 180  # the suite targets < 30 s; this only bounds a hung run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT_S,
    )
    found = sorted(out.glob("bench-*.json"))
    return {"proc": proc, "json": found, "out": out}


def test_quick_run_exits_cleanly(quick_run: dict[str, Any]) -> None:
    proc = quick_run["proc"]
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "| scenario | run | metric |" in proc.stdout


def test_quick_run_writes_results_for_direct_relay_and_gateway(quick_run: dict[str, Any]) -> None:
    assert len(quick_run["json"]) == 1, quick_run["proc"].stderr
    results = json.loads(quick_run["json"][0].read_text())
    targets = {row["target"] for row in results["rows"]}
    assert {"direct", "relay", "gateway"} <= targets
    measured = {row["scenario"] for row in results["rows"]}
    expected = {s.name for s in SCENARIOS if s.available()}
    assert measured == expected
    for row in results["rows"]:
        where = f"{row['scenario']} {row['label']} {row['target']}"
        assert row["ok"], f"{where}: {row.get('note')}"
        assert row["requests"] > 0, where
        assert row["errors"] == 0, f"{where}: {row['error_samples']}"


def test_quick_run_prices_metrics_and_access_log_with_both_gateways_at_once(
    quick_run: dict[str, Any],
) -> None:
    results = json.loads(quick_run["json"][0].read_text())
    assert "gateway-plain" in {row["target"] for row in results["rows"]}
    paired = results["paired"]
    assert len(paired["rounds"]) == 3 and paired["ratio_median"] > 0
    for round_ in paired["rounds"]:
        assert round_["errors"] == [0, 0] and min(round_["requests"]) > 0
    assert "both gateways loaded at once" in quick_run["proc"].stdout


def test_quick_run_measures_the_process_under_test(quick_run: dict[str, Any]) -> None:
    results = json.loads(quick_run["json"][0].read_text())
    for row in results["rows"]:
        if row["target"] in ("relay", "gateway"):
            assert row["cpu"]["target_s"] is not None
            assert row["rss_mb"]["peak"] > 0
    if importlib.util.find_spec("matplotlib"):
        assert results["meta"]["chart"] and Path(results["meta"]["chart"]).exists()


def test_percentile_interpolates_between_ranks() -> None:
    assert report.percentile([], 50) is None
    assert report.percentile([5.0], 99) == 5.0
    assert report.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert report.percentile([float(i) for i in range(101)], 99) == 99.0


def test_chunked_decoder_gives_the_body_whatever_the_split() -> None:
    body = openai_stream(token_texts(5, 4), usage=True)
    wire = b"".join(chunk(x) for x in (body.head, *body.tokens, body.tail)) + b"0\r\n\r\nNEXT"
    for size in (1, 2, 3, 7, 64, len(wire)):
        decoder = ChunkedDecoder()
        pieces: list[bytes] = []
        for i in range(0, len(wire), size):
            pieces += decoder.feed(wire[i : i + size])
        assert decoder.done
        assert b"".join(pieces) == body.head + b"".join(body.tokens) + body.tail
        assert decoder.rest == b"NEXT"


@pytest.mark.parametrize("spaced", [False, True])
def test_token_count_ignores_role_and_finish_chunks(spaced: bool) -> None:
    body = openai_stream(token_texts(7, 4), usage=True)
    block = body.head + b"".join(body.tokens) + body.tail
    if spaced:  # as Python's json module writes it, e.g. behind a peer proxy
        block = block.replace(b'":', b'": ')
    assert Grammar("openai").tokens(block, None)[0] == 7
    assert Grammar("openai").finished(block[-64:])


def test_anthropic_tokens_are_text_deltas() -> None:
    body = anthropic_stream(token_texts(3, 4))
    block = body.head + b"".join(body.tokens) + body.tail
    assert Grammar("anthropic").tokens(block, None)[0] == 3
    assert Grammar("anthropic").finished(block[-64:])


async def test_openai_sdk_reads_the_mock_upstream() -> None:
    """The mock must look like OpenAI to OpenAI's own client, streamed and not."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(State(Options(tokens=5))), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench-key")
    messages = [{"role": "user", "content": "hi"}]
    try:
        stream = await client.chat.completions.create(
            model="mock-model",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "".join(token_texts(5, 4))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
        answer = await client.chat.completions.create(model="mock-model", messages=messages)
        assert answer.choices[0].message.content == text
        assert answer.usage is not None and answer.usage.completion_tokens == 5
    finally:
        await client.close()
        server.close()


# --- peers: per-peer options, header safety, redaction, the process tree, the report ---


def _parse(*argv: str):
    from bench.__main__ import parse_args

    return parse_args(list(argv))[0]


def test_peer_options_belong_to_the_peer_before_them_and_shared_ones_to_all() -> None:
    opts = _parse(
        "--peer-model", "shared-model",
        "--peer-header", "x-shared=1",
        "--peer", "litellm=http://127.0.0.1:4000",
        "--peer-key", "sk-litellm-master-key",
        "--peer", "portkey=http://127.0.0.1:8787",
        "--peer-model", "mock-model",
        "--peer-header", "x-portkey-provider=openai",
        "--peer-header", "x-portkey-custom-host=http://127.0.0.1:9100/v1",
        "--peer-pid", str(os.getpid()),
    )  # fmt: skip
    litellm, portkey = opts.peers
    assert (litellm.name, litellm.model, litellm.pid) == ("litellm", "shared-model", None)
    assert litellm.request_headers() == {
        "x-shared": "1",
        "Authorization": "Bearer sk-litellm-master-key",
    }
    assert (portkey.model, portkey.key, portkey.pid) == ("mock-model", None, os.getpid())
    assert portkey.request_headers() == {
        "x-shared": "1",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": "http://127.0.0.1:9100/v1",
    }


def test_each_peer_is_sent_its_own_model_and_headers() -> None:
    from bench.__main__ import Bench

    opts = _parse(
        "--peer", "a=http://127.0.0.1:4000", "--peer-model", "model-a", "--peer-key", "key-a",
        "--peer", "b=http://127.0.0.1:8787/v1", "--peer-header", "x-route=b",
    )  # fmt: skip
    bench = Bench(opts, "test")
    try:
        run = next(s for s in SCENARIOS if s.name == "throughput").runs[0]
        jobs = {p.name: bench.job(bench.peer_target(p), run, 1, None, "") for p in opts.peers}
    finally:
        bench.stop()
    assert (jobs["a"].model, jobs["a"].headers) == ("model-a", {"Authorization": "Bearer key-a"})
    assert (jobs["b"].model, jobs["b"].headers) == ("mock-model", {"x-route": "b"})
    assert jobs["b"].url == "http://127.0.0.1:8787/v1/chat/completions"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--peer-header", "x-a=1\r\nx-injected: 2"], "line break"),
        (["--peer-header", "x-a=1\nx-injected: 2"], "line break"),
        (["--peer-key", "sk-1\r\nx-injected: 2"], "line break"),
        (["--peer-header", "bad name=1"], "NAME=VALUE"),
        (["--peer-header", "no-value"], "NAME=VALUE"),
        (["--peer-header", "Content-Length=5"], "sets this header itself"),
        (["--peer-pid", "1", "--peer-pid", "2"], "--peer-pid given twice for peer"),
        (["--peer-model", "a", "--peer-model", "b"], "--peer-model given twice"),
        (["--peer", "gateway=http://127.0.0.1:1"], "bench's own targets"),
        (["--peer", "x=http://127.0.0.1:2"], "two peers are named 'x'"),
        (["--peer-k", "sk-abbreviated"], "unrecognized arguments"),
    ],
)
def test_bad_peer_options_are_refused_with_a_clear_error(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        _parse("--peer", "x=http://127.0.0.1:1", *argv)
    assert caught.value.code == 2
    assert said in capsys.readouterr().err


def test_peer_pid_must_follow_its_peer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("--peer-pid", "1", "--peer", "http://127.0.0.1:1")
    assert "after the --peer whose process it is" in capsys.readouterr().err


def test_keys_header_values_and_url_credentials_are_redacted_in_the_saved_argv() -> None:
    from bench.peers import redacted_argv

    argv = [
        "--peer", "p=http://user:hunter2@127.0.0.1:4000",
        "--peer-key", "sk-secret-one",
        "--peer-key=sk-secret-two",
        "--peer-header", "x-portkey-api-key=pk-secret",
        "--peer-header=authorization=Bearer abc",
        "--quick",
    ]  # fmt: skip
    saved = " ".join(redacted_argv(argv))
    for secret in ("hunter2", "sk-secret-one", "sk-secret-two", "pk-secret", "abc"):
        assert secret not in saved
    assert "--peer-header x-portkey-api-key=[redacted]" in saved and "--quick" in saved


def test_results_are_scrubbed_of_keys_and_credential_headers() -> None:
    from bench.peers import secrets

    opts = _parse(
        "--peer", "http://127.0.0.1:1", "--peer-key", "sk-master-0123",
        "--peer-header", "x-portkey-api-key=pk-0123456", "--peer-header", "x-route=openai",
    )  # fmt: skip
    found = secrets(opts.peers)
    assert set(found) == {"sk-master-0123", "pk-0123456"}  # x-route is no credential
    results = {"rows": [{"error_samples": ["401: bad key sk-master-0123 (pk-0123456)"]}]}
    assert report.scrub(results, found) == {
        "rows": [{"error_samples": ["401: bad key [redacted] ([redacted])"]}]
    }


def test_a_peers_process_tree_counts_a_launchers_children() -> None:
    from bench.procs import ProcessTree, process_cpu_s

    busy_child = "import time\nend = time.time() + 20\nwhile time.time() < end: pass"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy_child!r}])",
        ]
    )
    try:
        tree = ProcessTree(launcher.pid)
        for _ in range(200):  # until the child is running and has used some CPU
            tree.refresh()
            if len(tree.tree) > 1 and tree.cpu_s() > process_cpu_s(tree.ps) + 0.05:
                break
            time.sleep(0.05)
        assert len(tree.tree) == 2
        assert tree.cpu_s() > process_cpu_s(tree.ps) + 0.05
        assert tree.rss() > tree.ps.memory_info().rss
    finally:
        for proc in reversed(tree.tree):
            proc.kill()
        launcher.wait(5)


def _row(target: str, scenario: str, c: int, cpu: float, **extra: Any) -> dict[str, Any]:
    run = {"concurrency": c, "delay_ms": 0, "tokens": 100, "api": "openai"}
    return {
        "scenario": scenario,
        "label": f"C={c}",
        "target": target,
        "run": run,
        "cpu": {"per_req_ms": cpu},
        **extra,
    }


def test_the_report_judges_only_the_gateway_and_puts_peers_beside_it() -> None:
    rows = [
        _row("relay", "throughput", 100, 0.2),
        _row("gateway", "throughput", 100, 0.25),
        _row("litellm", "throughput", 100, 5.0),
        _row("gateway", "long", 1, 1.0, rss_mb={"start": 40, "peak": 41, "end": 40}),
        _row("litellm", "long", 1, 9.0, rss_mb={"start": 400, "peak": 900, "end": 880}),
    ]
    for row in rows[3:]:
        row["rss_mb"]["peak_growth"] = row["rss_mb"]["peak"] - row["rss_mb"]["start"]
    results = {
        "meta": {
            "started": "now",
            "python": "3",
            "cpus": 2,
            "pinning": "off",
            "upstream_url": "u",
            "targets": ["direct", "relay", "gateway", "litellm"],
            "peers": ["litellm"],
            "shows": {},
        },
        "rows": rows,
    }
    goals = report.hot_path_targets(results)
    assert goals and {g["target"] for g in goals} == {"gateway"}
    summary = report.checks(results)
    theirs = [c for c in summary if c["target"] == "litellm"]
    assert any("RSS" in c["check"] for c in theirs)  # it grew 500 MB: shown, not judged
    assert theirs and all(c["verdict"] == "" for c in theirs)
    assert any(c["verdict"].startswith("flat") for c in summary if c["target"] == "gateway")
    table = report.main_table(results)
    assert "litellm ÷ gateway" in table.splitlines()[0]
    cpu_line = next(
        line for line in table.splitlines() if "throughput | C=100 | CPU ms / request" in line
    )
    assert cpu_line.rstrip(" |").endswith("20.00x")  # 5.0 ÷ 0.25
    text = report.render(results)
    assert "Figures the issue asks for" not in text and "Hot-path targets" not in text
    assert "## The gateway against its performance goals" in text


def test_a_peer_is_measured_with_its_tree_and_its_secrets_stay_out(tmp_path: Path) -> None:
    """A real peer (the raw relay, started here as a user starts a proxy) beside the gateway:
    measured, put beside the gateway, never judged, its key and credential header nowhere
    in what the bench writes."""
    import socket

    from bench.procs import free_port

    upstream_port, peer_port = free_port(), free_port()
    relay = ["-m", "bench.relay", "--port", str(peer_port)]
    peer = subprocess.Popen(
        [sys.executable, *relay, "--upstream", f"http://127.0.0.1:{upstream_port}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", peer_port)):
                break
            time.sleep(0.05)
        argv = [
            *("--quick", "--scenario", "nonstream", "--targets", "relay,gateway", "--no-chart"),
            *("--upstream-port", str(upstream_port), "--out", str(tmp_path)),
            *("--peer", f"other=http://127.0.0.1:{peer_port}", "--peer-pid", str(peer.pid)),
            *("--peer-key", "sk-peer-secret-42", "--peer-header", "x-api-key=hdr-secret-42"),
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "bench", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=QUICK_TIMEOUT_S,
        )
    finally:
        peer.terminate()
        peer.wait(5)
    assert proc.returncode == 0, proc.stderr
    (saved,) = tmp_path.glob("bench-*.json")
    text = saved.read_text()
    for secret in ("sk-peer-secret-42", "hdr-secret-42"):
        assert secret not in text and secret not in proc.stdout
    results = json.loads(text)
    assert "x-api-key=[redacted]" in results["meta"]["argv"]
    assert results["meta"]["peers"] == ["other"]
    theirs = [r for r in results["rows"] if r["target"] == "other"]
    assert theirs and all(r["errors"] == 0 and r["cpu"]["target_s"] for r in theirs)
    assert "other ÷ gateway" in proc.stdout
