"""The fuzz against a real gateway process: `python -m tests.fuzz_gateway`.

Draws `--requests` cases (tests/fuzz_cases.py `any_case`: every route, streamed and not, every
class of malformed input) and sends each to `python -m gateway` on loopback, whose providers are
the mock, translating providers in front of a refusing upstream, and OpenAI, Responses-bridged,
Anthropic and Gemini providers in front of one that answers (`fuzz_cases.gateway_toml`). Stops
after `--seconds`. Prints the count of each status, the 5xx, the connections closed with no
answer, the errors not in their route's shape, and the tracebacks and errors the gateway
logged; exits 1 if there is any.

    python -m tests.fuzz_gateway --requests 10000 --seconds 900 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests import fuzz_cases
from tests.fuzz_cases import Case
from tests.processes import end_process

ROOT = Path(__file__).parent.parent


class _TimeUp(Exception):
    pass


class _Upstreams(fuzz_cases.ServedInThread):
    """The fake upstreams, served by a thread of their own (uvloop)."""

    urls: tuple[str, str] = ("", "")

    async def start(self) -> Callable[[], Awaitable[None]]:
        upstreams = await fuzz_cases.upstreams()
        self.urls = upstreams.urls
        return upstreams.cleanup


class _Gateway:
    """`python -m gateway` on the fuzz's config; its log goes to a file (10,000 access-log
    lines would fill a pipe)."""

    def __init__(self, toml: str, directory: Path, source: Path) -> None:
        config = directory / "fuzz.toml"
        config.write_text(toml)
        self.log = directory / "gateway.log"
        self._log = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config), "--port", "0"],
            cwd=source,  # `-m gateway` imports the gateway found there first
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if found is None:
            self.stop()
            raise RuntimeError(f"the gateway did not start: {line!r} {self.log.read_text()}")
        self.port = int(found.group(1))

    def stop(self) -> None:
        end_process(self.process)
        self._log.close()


class _Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.routes: Counter[str] = Counter()
        self.empty: list[tuple[str, Case]] = []
        self.wrong: list[tuple[str, Case]] = []
        self.streamed = 0
        self.answered: Counter[str] = Counter()  # 200s by route, streamed or whole
        self.sent = 0


def _route(case: Case) -> str:
    path = case.path.split("?")[0]
    if path.startswith("/v1beta/models/"):
        return "/v1beta/models/{model}:" + path.rsplit(":", 1)[-1]
    return path


def _send(port: int, case: Case, tally: _Tally) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(case.method, case.path, body=case.body, headers=case.headers)
        response = connection.getresponse()
        body = response.read()
    except (http.client.HTTPException, OSError) as error:  # closed, reset or silent
        tally.empty.append((f"{type(error).__name__}: {error}", case))
        return
    finally:
        connection.close()
    tally.statuses[response.status] += 1
    content_type = response.headers.get("Content-Type", "")
    if response.status == 200:
        streamed = content_type.startswith("text/event-stream") or ":streamGenerateContent" in (
            case.path
        )
        tally.streamed += streamed
        tally.answered[f"{_route(case)} {'streamed' if streamed else 'whole'}"] += 1
    for problem in fuzz_cases.problems(case, response.status, body):
        tally.wrong.append((problem, case))


def _logged(log: str) -> dict[str, int]:
    lines = log.splitlines()
    return {
        "tracebacks": sum(line.startswith("Traceback") for line in lines),
        # the gateway's own log lines (not the access log's JSON) at ERROR or above
        "errors": sum(
            bool(re.search(r"\b(ERROR|CRITICAL)\b", line))
            for line in lines
            if not line.startswith("{")
        ),
    }


def run(requests: int, seconds: float, seed_value: int, source: Path = ROOT) -> dict[str, Any]:
    tally = _Tally()
    started = time.monotonic()
    with _Upstreams() as upstreams, tempfile.TemporaryDirectory() as directory:
        gateway = _Gateway(fuzz_cases.gateway_toml(*upstreams.urls), Path(directory), source)
        try:

            @seed(seed_value)
            @settings(
                max_examples=requests,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=fuzz_cases.any_case)
            def fuzz(case: Case) -> None:
                if time.monotonic() - started > seconds:
                    raise _TimeUp
                tally.sent += 1
                tally.routes[_route(case)] += 1
                _send(gateway.port, case, tally)

            with contextlib.suppress(_TimeUp):
                fuzz()
        finally:
            gateway.stop()
            logged = _logged(gateway.log.read_text(errors="replace"))
            alive = gateway.process.returncode in (0, -15)
    return {
        "requests": tally.sent,
        "seconds": round(time.monotonic() - started, 1),
        "streamed answers (200)": tally.streamed,
        "statuses": dict(sorted(tally.statuses.items())),
        "5xx": sum(n for status, n in tally.statuses.items() if status >= 500),
        "empty replies": len(tally.empty),
        "not in the route's error shape": len(tally.wrong),
        "gateway log": logged,
        "gateway exited cleanly": alive,
        "routes": dict(tally.routes.most_common()),
        "answered (200)": dict(sorted(tally.answered.items())),
        "examples": [f"{problem} <- {case!r}" for problem, case in (tally.empty + tally.wrong)][
            :20
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--source",
        type=Path,
        default=ROOT,
        help="a directory holding the gateway's packages to run instead (an older checkout)",
    )
    args = parser.parse_args()
    result = run(args.requests, args.seconds, args.seed, args.source.resolve())
    examples = result.pop("examples")
    for name, value in result.items():
        print(f"{name}: {value}")
    for example in examples:
        print("  " + example[:1500])
    bad = result["5xx"] + result["empty replies"] + result["not in the route's error shape"]
    sys.exit(1 if bad or result["gateway log"]["tracebacks"] else 0)


if __name__ == "__main__":
    main()
