"""The README, driven as a new user would: its examples run, and print what it shows.

- Every `curl` block followed by an output block is run against the repository's own
  gateway.toml (the built-in mock), and the output it shows must match what the gateway sends:
  line by line, where `...` in a line stands for anything and a line of `...` for any lines.
- The Python examples of "Try it" and the endpoint sections run top to bottom, as one script,
  against the same gateway.
- The routing example's TOML runs, and the headers the README says it gives are the ones sent.
So the samples cannot drift from the gateway again.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway.config import parse
from providers import provider_types
from tests.conftest import GatewayFactory

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
README_URL = "http://127.0.0.1:8080"


@dataclass
class Block:
    lang: str
    text: str
    line: int


def blocks(text: str = README) -> list[Block]:
    found = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.S | re.M):
        found.append(Block(match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1))
    return found


def curl_examples() -> list[tuple[Block, Block | None]]:
    """Every curl command, in README order, with the output the README shows for it (if it
    shows one right after)."""
    found = blocks()
    return [
        (command, following if following is not None and following.lang == "" else None)
        for command, following in zip(found, [*found[1:], None], strict=True)
        if command.lang == "sh" and command.text.lstrip().startswith("curl")
    ]


def _matches(expected: str, actual: str) -> str | None:
    """None when `actual` (the lines the gateway sent) shows `expected`; else what differs."""
    # The mock numbers its answers per process: the README shows the first.
    actual = re.sub(r"(chatcmpl|cmpl)-mock\d+", r"\1-mock1", actual)
    got = [line for line in actual.splitlines() if line.strip()]
    want = [line for line in expected.splitlines() if line.strip()]
    position = 0
    gap = False  # a `...` line: any number of lines may come first
    for line in want:
        if line.strip() == "...":
            gap = True
            continue
        pattern = re.compile(".*?".join(re.escape(part) for part in line.split("...")))
        while position < len(got) and not pattern.fullmatch(got[position]):
            if not gap:
                return f"expected {line!r}, got {got[position]!r}"
            position += 1
        if position == len(got):
            return f"expected {line!r}: not found"
        position += 1
        gap = False
    return None


async def _curl(
    session: aiohttp.ClientSession, url: str, command: str, files: dict[str, bytes]
) -> str:
    """Run a README curl command (its options as the README uses them) against `url`."""
    words = shlex.split(command.replace("\\\n", " ").split("|")[0])
    assert words[0] == "curl"
    target, headers, body, form, out, show_headers = "", {}, None, aiohttp.FormData(), None, False
    args = iter(words[1:])
    has_form = False
    for word in args:
        if word in ("-N", "-s", "-sN"):
            continue
        if word == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = next(args)
        elif word == "-F":
            name, _, value = next(args).partition("=")
            has_form = True
            if value.startswith("@"):
                form.add_field(name, files[value[1:]], filename=value[1:])
            else:
                form.add_field(name, value)
        elif word == "-o":
            out = next(args)
        elif word == "-D":
            show_headers = next(args) == "-"
        else:
            target = word
    path = target.removeprefix(README_URL)
    data = form if has_form else body
    method = "POST" if data is not None else "GET"
    async with session.request(method, url + path, data=data, headers=headers) as response:
        raw = await response.read()
        if out is not None:
            files[out] = raw
        head = "".join(f"{k}: {v}\n" for k, v in response.headers.items()) if show_headers else ""
        return head + raw.decode(errors="replace")


@pytest.fixture
async def repo_gateway(start_gateway: GatewayFactory) -> str:
    return await start_gateway((REPO / "gateway.toml").read_text())


async def test_every_sample_output_is_what_the_gateway_prints(repo_gateway: str) -> None:
    files: dict[str, bytes] = {}
    checked = 0
    async with aiohttp.ClientSession() as session:
        for command, shown in curl_examples():
            if "smart" in command.text:  # the routing example runs with its own config below
                continue
            actual = await _curl(session, repo_gateway, command.text, files)
            if shown is None:
                continue
            problem = _matches(shown.text, actual)
            assert problem is None, f"README.md line {shown.line}: {problem}"
            checked += 1
    assert checked >= 4


def runnable_python() -> str:
    """The Python examples from "Try it" to the endpoint sections' end, as one script."""
    start = README.index("## Try it")
    end = README.index("## Where things are")
    return "\n".join(b.text for b in blocks(README[start:end]) if b.lang == "python")


async def test_the_python_examples_run_as_written(
    repo_gateway: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = runnable_python().replace(README_URL, repo_gateway)
    assert "OpenAI(" in script
    monkeypatch.chdir(tmp_path)  # the examples write hello.wav and read it back

    def run() -> None:
        exec(compile(script, "README.md", "exec"), {"__name__": "readme"})

    await asyncio.to_thread(run)


async def test_the_routing_example_is_served_as_the_readme_says(
    start_gateway: GatewayFactory,
) -> None:
    section = README[README.index("## Routing and fallbacks") :]
    toml = next(b for b in blocks(section) if b.lang == "toml" and "[models.smart]" in b.text)
    # Appended, as the README says, to the repository's file and to its "Configuration"
    # sample: both must still parse (a second [providers.mock] table did not).
    configuration = README[README.index("## Configuration") :]
    sample = next(b for b in blocks(configuration) if b.lang == "toml")
    assert "[providers.mock]" in sample.text
    parse(sample.text + "\n" + toml.text, "sample+routing.toml")
    url = await start_gateway((REPO / "gateway.toml").read_text() + "\n" + toml.text)
    body = {"model": "smart", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=body) as response,
    ):
        await response.read()
    claim = re.search(r"`x-gateway-model: (\S+)` and `x-gateway-attempts: (\d+)`", section)
    assert claim is not None
    assert response.headers["x-gateway-model"] == claim.group(1)
    assert response.headers["x-gateway-attempts"] == claim.group(2)


# A path in the tree the README names: `gateway/engine/stream.py`, `tests/fixtures/agents/`.
_PATH = re.compile(
    r"(?<![\w/.<>-])((?:gateway|providers|formats|wire|tests|bench|deploy|docs)/[\w./-]*[\w/])"
)


def test_every_path_the_readme_names_exists() -> None:
    named = sorted(set(_PATH.findall(README)))
    assert len(named) > 50  # the map of "Where things are" alone names more
    missing = [path for path in named if not (REPO / path).exists() and not _ignored(path)]
    assert missing == []


def _ignored(path: str) -> bool:
    """What git ignores is written by a run (`bench/results/`), not kept in the tree."""
    check = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False)
    return check.returncode == 0


def test_the_type_row_names_every_provider_type() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `type` | `[providers"))
    for name in provider_types():
        assert f"`{name}`" in row, name


async def test_an_unknown_route_is_404_and_401_without_a_key_when_keys_are_set(
    start_gateway: GatewayFactory,
) -> None:
    row = next(line for line in README.splitlines() if line.startswith("| unknown route |"))
    assert "404" in row and "401" in row
    url = await start_gateway(
        '[providers.mock]\ntype = "mock"\n[keys.team]\nvalue = "gw-test-key"\n'
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v1/nowhere") as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer gw-test-key"}
        async with session.get(f"{url}/v1/nowhere", headers=headers) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "unknown_url"
