"""Every provider type, through the same checks: one row per provider in `ROWS`.

Each row names the provider's table, its key's variable, a stream and the same answer whole (as
the upstream sends them: fixtures from tests/fixtures/, replayed by tests/replay.py), a
parameter it cannot honour, and an error answer. The checks, over real sockets through the
official OpenAI SDK where a client is involved:

- a missing key is a 502 `provider_key_missing` naming the variable, and nothing goes upstream;
- an unsupported parameter is a 400 naming it, with a `code`, and nothing goes upstream;
- an upstream error answer keeps its status and message, streamed or not;
- the streamed answer reads as the whole one;
- a stream cut before its end is an error in the SDK, never a clean end;
- any byte split of the stream gives the same chunks (the stream translator, fed directly);
- arbitrary bytes into the stream translator never raise.

Adding a provider is adding its row. `mock` has no row: it has no key, no upstream and no
translator of its own (its stream is OpenAI's, normalised like `openai`'s): tests/test_mock*.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import parse
from providers import build_provider, provider_types
from tests.chat_answers import run, split
from tests.conftest import FakeUpstream, GatewayFactory
from tests.replay import fixture, replay
from tests.sdk import Reply, read_chunks, read_completion, stream_chunks
from tests.streams import chat_completion, openai_chat_stream, parse_sse
from wire.operations import Operation

HI = [{"role": "user", "content": "Hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
OPENAI_RATE_LIMIT = orjson.dumps(
    {"error": {"message": "Rate limit reached.", "type": "requests", "code": "rate_limit"}}
)


@dataclass(frozen=True)
class Row:
    type: str
    settings: str  # the table's lines beyond type, base_url and api_key
    key: str  # the variable its api_key reads ("env.NAME")
    stream: bytes  # a streamed answer, as the upstream sends it
    whole: bytes  # the same answer, not streamed
    stream_type: str  # the stream's Content-Type
    error: tuple[int, bytes, str]  # an error answer: status, body, the message it carries
    unsupported: tuple[str, Any] | None  # a parameter it cannot honour, with a value asking it
    model: str = "m"

    def toml(self, base_url: str) -> str:
        return (
            f'[providers.p]\ntype = "{self.type}"\nbase_url = "{base_url}"\n'
            f'api_key = "env.{self.key}"\n{self.settings}'
        )


def openai_shaped(type: str, settings: str = "") -> Row:
    """A row for an upstream that speaks OpenAI's API: it takes every parameter (passed
    through as the client sent it), so it has none to refuse."""
    return Row(
        type,
        settings,
        f"CONFORMANCE_{type.upper()}_KEY",
        b"".join(openai_chat_stream(["Hello", ",", " world"])),
        orjson.dumps(chat_completion("Hello, world")),
        "text/event-stream",
        (429, OPENAI_RATE_LIMIT, "Rate limit reached."),
        None,
    )


ROWS = [
    openai_shaped("openai"),
    openai_shaped("azure"),
    openai_shaped("cloudflare", 'account_id = "acct"\n'),
    Row(
        "anthropic",
        "",
        "CONFORMANCE_ANTHROPIC_KEY",
        fixture("anthropic/tool_use_stream.sse"),
        fixture("anthropic/tool_use_message.json"),
        "text/event-stream",
        (404, fixture("anthropic/error.json"), "The requested resource could not be found."),
        ("logprobs", True),
    ),
    Row(
        "gemini",
        "",
        "CONFORMANCE_GEMINI_KEY",
        fixture("gemini/tool_stream.sse"),
        fixture("gemini/tool_answer.json"),
        "text/event-stream",
        (429, fixture("gemini/error_429.json"), "You exceeded your current quota"),
        ("n", 2),
    ),
    Row(
        "ollama",
        "",
        "CONFORMANCE_OLLAMA_KEY",
        fixture("ollama/tool_stream.ndjson"),
        fixture("ollama/tool_answer.json"),
        "application/x-ndjson",
        (404, fixture("ollama/error_404.json"), 'model "llama3.3" not found'),
        ("logprobs", True),
    ),
    Row(
        "cohere",
        "",
        "CONFORMANCE_COHERE_KEY",
        fixture("cohere/tool_stream.sse"),
        fixture("cohere/tool_response.json"),
        "text/event-stream",
        (429, fixture("cohere/error_429.json"), "You are using a Trial key"),
        ("logprobs", True),
    ),
    Row(
        "bedrock",
        'region = "eu-west-1"\n',
        "CONFORMANCE_BEDROCK_KEY",
        fixture("bedrock/tool_stream.bin"),
        fixture("bedrock/converse_tool_response.json"),
        "application/vnd.amazon.eventstream",
        (429, fixture("bedrock/error_throttling.json"), "Too many requests"),
        ("seed", 7),
    ),
]
ROW = pytest.mark.parametrize("row", ROWS, ids=[row.type for row in ROWS])
UNSUPPORTING = [row for row in ROWS if row.unsupported is not None]


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for row in ROWS:
        monkeypatch.setenv(row.key, f"key-for-{row.type}")


async def _client(start_gateway: GatewayFactory, upstream: FakeUpstream, row: Row) -> Any:
    url = await start_gateway(row.toml(upstream.url))
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def _same_view(reply: Reply) -> Reply:
    """The answer without what each answer may generate anew (tool-call ids: only that each
    call has one) or name its own way (the model)."""
    assert all(reply.ids)
    reply.ids, reply.model = [], ""
    return reply


@ROW
async def test_a_missing_key_is_a_502_naming_its_variable(
    row: Row, upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(row.key, raising=False)
    async with await _client(start_gateway, upstream, row) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model=f"p/{row.model}", messages=HI)
    assert caught.value.status_code == 502
    assert caught.value.code == "provider_key_missing"
    assert row.key in caught.value.message
    assert upstream.requests == []


@pytest.mark.parametrize("row", UNSUPPORTING, ids=[row.type for row in UNSUPPORTING])
async def test_an_unsupported_parameter_is_a_400_naming_it(
    row: Row, upstream: FakeUpstream, start_gateway: GatewayFactory, keys: None
) -> None:
    assert row.unsupported is not None
    param, value = row.unsupported
    async with await _client(start_gateway, upstream, row) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model=f"p/{row.model}", messages=HI, extra_body={param: value}
            )
    assert (caught.value.param, caught.value.code) == (param, "unsupported_parameter")
    assert f"Parameter '{param}' is not supported by provider 'p'" in caught.value.message
    assert upstream.requests == []


@pytest.mark.parametrize("row", UNSUPPORTING, ids=[row.type for row in UNSUPPORTING])
async def test_a_tool_that_is_no_function_is_a_400_naming_it(
    row: Row, upstream: FakeUpstream, start_gateway: GatewayFactory, keys: None
) -> None:
    """Translated providers take function tools only: another kind is refused, never sent on
    as a function."""
    tools = [{"type": "custom", "function": {"name": "grammar"}}]
    async with await _client(start_gateway, upstream, row) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model=f"p/{row.model}", messages=HI, extra_body={"tools": tools}
            )
    assert (caught.value.param, caught.value.code) == ("tools[0].type", "invalid_value")
    assert upstream.requests == []


@ROW
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_an_upstream_error_keeps_its_status_and_message(
    row: Row, stream: bool, upstream: FakeUpstream, start_gateway: GatewayFactory, keys: None
) -> None:
    status, body, message = row.error
    upstream.handler = replay(body, status=status, content_type="application/json")
    async with await _client(start_gateway, upstream, row) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model=f"p/{row.model}", messages=HI, stream=stream)
    assert caught.value.status_code == (503 if status == 529 else status)
    assert message in caught.value.message


@ROW
@pytest.mark.parametrize("seed", [0, 1])
async def test_the_streamed_answer_reads_as_the_whole_one(
    row: Row, seed: int, upstream: FakeUpstream, start_gateway: GatewayFactory, keys: None
) -> None:
    request = {"model": f"p/{row.model}", "messages": HI, "tools": [WEATHER]}
    async with await _client(start_gateway, upstream, row) as client:
        upstream.handler = replay(row.stream, seed=seed, content_type=row.stream_type)
        streamed = read_chunks(await stream_chunks(client, **request))
        upstream.handler = replay(row.whole, content_type="application/json")
        whole = read_completion(await client.chat.completions.create(**request))
    assert whole.finish_reason is not None and whole.usage is not None
    assert _same_view(Reply.of(whole)) == _same_view(Reply.of(streamed))


@ROW
async def test_a_stream_cut_before_its_end_is_an_error(
    row: Row, upstream: FakeUpstream, start_gateway: GatewayFactory, keys: None
) -> None:
    upstream.handler = replay(row.stream[: len(row.stream) * 2 // 3], content_type=row.stream_type)
    async with await _client(start_gateway, upstream, row) as client:
        with pytest.raises(openai.APIError) as caught:
            await stream_chunks(client, model=f"p/{row.model}", messages=HI)
    assert "closed the stream" in caught.value.message


def _translator(row: Row) -> Any:
    config = parse(row.toml("http://127.0.0.1:9"), "conformance.toml").providers["p"]
    return build_provider("p", config).stream_translator(Operation.CHAT, row.model)


def _events(out: bytes) -> list[Any]:
    """The client's events, without what each translator generates anew (ids, timestamps)."""
    return [
        event.data if event.data == "[DONE]" else _without_ids(orjson.loads(event.data))
        for event in parse_sse(out)
    ]


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in ("id", "created")}
    if isinstance(value, list):
        return [_without_ids(item) for item in value]
    return value


@ROW
@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=30))
def test_any_byte_split_gives_the_same_chunks(row: Row, cuts: list[int]) -> None:
    whole = run(_translator(row), [row.stream])
    assert b"[DONE]" in whole
    assert _events(run(_translator(row), split(row.stream, cuts))) == _events(whole)


@ROW
@settings(max_examples=60, deadline=None)
@given(pieces=st.lists(st.binary(max_size=512), max_size=6))
def test_arbitrary_bytes_never_raise(row: Row, pieces: list[bytes]) -> None:
    translator = _translator(row)
    out = [translator.feed(piece) for piece in pieces]
    out.append(translator.end())
    assert translator.finished
    assert all(isinstance(chunk, bytes) for chunk in out)


def test_every_provider_type_has_a_row() -> None:
    assert {row.type for row in ROWS} == set(provider_types()) - {"mock"}
