"""`python -m bench.jsondepth`: what the JSON depth guard costs beside the decode it guards.

Times `wire.jsondepth.too_deep` and the request body's decode (`dict[str, Raw]`, as
gateway/server/parsing.py reads it) on the agents' captured request bodies
(tests/fixtures/agents/) and on Claude Code's tool-result turn grown to ~232 KB: the best of
interleaved runs, in microseconds, so a busy machine shows in both columns alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import msgspec
import orjson

from wire.jsondepth import too_deep

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "agents"
_decode = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


def _body(path: Path) -> bytes:
    raw = path.read_bytes()
    head_end = raw.find(b"\r\n\r\n")
    return raw if head_end < 0 else raw[head_end + 4 :]


def bodies() -> dict[str, bytes]:
    found = {path.stem: _body(path) for path in sorted(FIXTURES.iterdir())}
    found = {name: body for name, body in found.items() if body.startswith(b"{")}
    grown = orjson.loads(found["claude_code_tool_result"])
    messages = grown["messages"]
    while len(orjson.dumps(grown)) < 232_000:
        grown["messages"] = grown["messages"] + messages
    found["claude_code_tool_result x232KB"] = orjson.dumps(grown)
    return found


def best_of(runs: int, functions: dict[str, Callable[[], object]]) -> dict[str, float]:
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(runs):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e6 for name, seconds in best.items()}


def main() -> None:
    print(f"{'body':40} {'KB':>6} {'too_deep us':>12} {'decode us':>10}")
    for name, body in bodies().items():
        guard, decode = partial(too_deep, body), partial(_decode, body)
        times = best_of(200, {"guard": guard, "decode": decode})
        print(f"{name:40} {len(body) / 1000:6.0f} {times['guard']:12.1f} {times['decode']:10.1f}")


if __name__ == "__main__":
    main()
