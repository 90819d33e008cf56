"""`python -m bench.agents.capture`: record what the coding agents send, as test fixtures.

Each CLI runs with its default settings against the scripted fake upstream in its own format
(no gateway between them), with the shell-tool round trip, so that its requests are recorded
exactly as it sends them, byte for byte, tool-result turns included. One request of each kind
is written to tests/fixtures/agents/<name>.http as an HTTP/1.1 message (request line, headers
in the client's order and spelling, a blank line, the body's exact bytes); the only change is
the fake key's value, replaced by `REDACTED`. tests/fixtures/agents/README.md lists the kinds;
tests/test_agent_replay.py replays them through the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.agents.clients import CLIENTS, Client
from bench.agents.fake import Exchange, FakeUpstream
from bench.agents.run import REPO, spawn, stop
from bench.agents.script import PROMPT

SECRET_HEADERS = {"x-api-key", "authorization", "x-goog-api-key"}
OUT = REPO / "tests" / "fixtures" / "agents"
Pick = Callable[[list[Exchange]], Exchange | None]


def _first(test: Callable[[Exchange], bool]) -> Pick:
    return lambda exchanges: next((e for e in exchanges if test(e)), None)


def _ends_in_tool_output(e: Exchange) -> bool:
    return e.turn is not None and e.turn.tool_output is not None


def _offers_bash(e: Exchange) -> bool:
    return e.turn is not None and any(tool.name == "Bash" for tool in e.turn.tools)


def _thinking_disabled(e: Exchange) -> bool:
    body = e.json if e.format == "messages" else None
    return isinstance(body, dict) and body.get("thinking") == {"type": "disabled"}


def _asks_json_schema(e: Exchange) -> bool:
    body = e.json if e.path.endswith(":generateContent") else None
    config = body.get("generationConfig") if isinstance(body, dict) else None
    return isinstance(config, dict) and "responseJsonSchema" in config


def _streamed_gemini(e: Exchange) -> bool:
    return ":streamGenerateContent" in e.path


def _largest_count(exchanges: list[Exchange]) -> Exchange | None:
    """/context counts each part apart; the request with the tools weighs the most."""
    counts = [e for e in exchanges if "/count_tokens" in e.path]
    return max(counts, key=lambda e: len(e.body), default=None)


# (client, prompt) -> the kinds of request kept from its run: fixture name -> which one.
CAPTURES: dict[tuple[str, str], dict[str, Pick]] = {
    ("claude-code", PROMPT): {
        "claude_code_turn": _first(lambda e: _offers_bash(e) and not _ends_in_tool_output(e)),
        "claude_code_tool_result": _first(_ends_in_tool_output),
        "claude_code_title": _first(_thinking_disabled),
    },
    ("claude-code", "/context"): {"claude_code_count_tokens": _largest_count},
    ("codex", PROMPT): {
        "codex_unknown_model_turn": _first(lambda e: e.format == "responses"),
        "codex_unknown_model_function_output": _first(_ends_in_tool_output),
    },
    ("codex-default-model", PROMPT): {
        "codex_default_model_turn": _first(lambda e: e.format == "responses"),
        "codex_default_model_custom_output": _first(_ends_in_tool_output),
    },
    ("gemini-cli", PROMPT): {
        "gemini_cli_routing": _first(_asks_json_schema),
        "gemini_cli_turn": _first(lambda e: _streamed_gemini(e) and not _ends_in_tool_output(e)),
        "gemini_cli_function_response": _first(
            lambda e: _streamed_gemini(e) and _ends_in_tool_output(e)
        ),
    },
}


def http_message(exchange: Exchange) -> bytes:
    lines = [f"{exchange.method} {exchange.path} HTTP/1.1"]
    for name, value in exchange.headers:
        lines.append(f"{name}: {'REDACTED' if name.lower() in SECRET_HEADERS else value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + exchange.body


async def record(client: Client, prompt: str, timeout: float) -> list[Exchange]:
    tmp = Path(tempfile.mkdtemp(prefix="capture-"))
    (tmp / "home").mkdir()
    (tmp / "work").mkdir()
    fake = FakeUpstream()
    try:
        invocation = client.invocation(await fake.start(), tmp / "home", tmp / "work", prompt)
        process = await spawn(
            invocation.argv, invocation.env, tmp / "work", tmp / "out", tmp / "err"
        )
        try:
            await asyncio.wait_for(process.wait(), timeout)
        finally:
            await stop(process)
        return fake.exchanges
    finally:
        await fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def main_async(out: Path, timeout: float) -> int:
    clients = {c.name: c for c in CLIENTS}
    missing = 0
    for (name, prompt), kinds in CAPTURES.items():
        exchanges = await record(clients[name], prompt, timeout)
        for fixture, pick in kinds.items():
            exchange = pick(exchanges)
            if exchange is None:
                missing += 1
                print(f"{fixture}: {name} sent no such request", file=sys.stderr)
                continue
            (out / f"{fixture}.http").write_bytes(http_message(exchange))
            print(
                f"{fixture}.http: {exchange.method} {exchange.path}, "
                f"{len(exchange.body)} bytes of body"
            )
    return 1 if missing else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.agents.capture",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT}")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per client run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main_async(args.out, args.timeout)))


if __name__ == "__main__":
    main()
