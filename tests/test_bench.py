"""`python -m bench --quick` works end to end; the bench's own parsers are right.

The quick run is started once, as a subprocess, the way a user would start it. It proves
that results are produced and that no request failed through any target; it asserts no
speed, since this machine's load is not ours to control.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.load import Grammar
from bench.scenarios import SCENARIOS
from bench.upstream import anthropic_stream, openai_stream, token_texts
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
