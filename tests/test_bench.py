"""`python -m bench --quick` works end to end; the bench's own parsers are right.

The quick run is started once, as a subprocess, the way a user would start it. It proves
that results are produced and that no request failed through any target; it asserts no
speed, since this machine's load is not ours to control.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
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
