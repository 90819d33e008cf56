"""Claude Code's own requests through the gateway, on every provider type, with the anthropic SDK.

The requests are Claude Code 2.1.197's (`claude -p`, its default model), captured in
tests/fixtures/agents/ (the README there says how): its title request (thinking disabled, an
effort, a JSON schema), its first turn (a `system` message inside `messages`, from the
`mid-conversation-system` beta), its count_tokens, and the turn after a Bash tool call whose
assistant turn holds a signed thinking block and the tool_use, then the tool_result.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import msgspec
import orjson
import pytest

from formats.anthropic.count_tokens import IMAGE_TOKENS, TOOL_PROMPT, estimate_input_tokens
from tests.agent_traffic import AGENTS, agent_request
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.replay import fixture, replay
from tests.streams import answering, chat_completion, openai_chat_stream, streaming
from wire.tokens import PER_MESSAGE, PER_REQUEST, estimate_json, estimate_text


def claude_code(name: str) -> dict[str, Any]:
    """A captured request: its `headers` (names lower-cased: anthropic-beta, ...) and `body`.
    `claude_code_thinking_tool_result` is kept as JSON (README there): the only turn with a
    signed thinking block, which the harness's fake never answers."""
    kept = AGENTS / f"{name}.json"
    if kept.exists():
        recorded: dict[str, Any] = orjson.loads(kept.read_bytes())
        return recorded
    request = agent_request(name)
    headers = {key.lower(): value for key, value in request.headers}
    return {"headers": headers, "body": orjson.loads(request.body)}


def gateway_toml(url: str) -> str:
    gemini = url.removesuffix("/v1") + "/v1beta"
    return (
        "[providers.mock]\ndelay = 0\ntokens = 4\n"
        + provider_toml(url, "compat", api_key="sk-up")
        + provider_toml(url, "claude", type="anthropic", api_key="sk-ant-up")
        + provider_toml(gemini, "gem", type="gemini", api_key="g-up")
    )


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    return await start_gateway(gateway_toml(upstream.url))


@pytest.fixture
async def claude(gateway: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=gateway, api_key="unused", max_retries=0)
    yield client
    await client.close()


async def send(
    claude: anthropic.AsyncAnthropic, name: str, model: str, **changes: Any
) -> anthropic.types.beta.BetaMessage:
    """Claude Code's recorded request `name` to `model`, streamed as it streamed it, through
    the SDK's beta client (which types Claude Code's fields); the whole answer."""
    recorded = claude_code(name)
    body = {**recorded["body"], "model": model, **changes}
    del body["stream"]
    betas = recorded["headers"]["anthropic-beta"].split(",")
    async with claude.beta.messages.stream(**body, betas=betas) as stream:
        return await stream.get_final_message()


def _anthropic_answer(text: str) -> bytes:
    events = [
        ("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant",
                                       "model": "m", "content": [], "stop_reason": None,
                                       "stop_sequence": None,
                                       "usage": {"input_tokens": 3, "output_tokens": 0}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}),
        ("content_block_stop", {"index": 0}),
        ("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 1}}),
        ("message_stop", {}),
    ]  # fmt: skip
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps({"type": kind, **data}))
        for kind, data in events
    )


# --- a system message inside `messages` ---------------------------------------------------


async def test_a_system_message_inside_messages_stays_where_it_stands_in_chat(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    upstream.handler = streaming(openai_chat_stream(["Hi", " there"]))
    message = await send(claude, "claude_code_turn", "compat/gpt")
    assert [block.text for block in message.content if block.type == "text"] == ["Hi there"]
    recorded = claude_code("claude_code_turn")["body"]["messages"]
    sent = upstream.last_body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "system"]
    assert sent[2]["content"] == recorded[1]["content"]  # the text as Claude Code sent it


async def test_a_system_message_inside_messages_joins_geminis_system_instruction(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    upstream.handler = replay(fixture("gemini/text_stream.sse"))
    message = await send(claude, "claude_code_turn", "gem/gemini-2.5-flash")
    assert message.content
    sent = upstream.last_body
    assert [content["role"] for content in sent["contents"]] == ["user"]
    system = [part["text"] for part in sent["systemInstruction"]["parts"]]
    assert system[-1] == claude_code("claude_code_turn")["body"]["messages"][1]["content"]


async def test_a_system_message_inside_messages_passes_through_to_anthropic(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    upstream.handler = streaming([_anthropic_answer("Hi")])
    await send(claude, "claude_code_turn", "claude/claude-opus-4-8")
    recorded = claude_code("claude_code_turn")
    assert upstream.last_body == {**recorded["body"], "model": "claude-opus-4-8"}
    assert (
        upstream.requests[-1]["headers"]["anthropic-beta"] == recorded["headers"]["anthropic-beta"]
    )


async def test_claude_code_through_the_mock_answers_text_after_its_tool_ran(
    claude: anthropic.AsyncAnthropic,
) -> None:
    first = await send(claude, "claude_code_turn", "mock/any")
    assert [block.type for block in first.content] == ["tool_use"]  # the mock calls a tool
    after = claude_code("claude_code_thinking_tool_result")["body"]["messages"]
    # Claude Code appends its reminders as system messages after a tool result, too.
    system = {"role": "system", "content": "<system-reminder>Keep going.</system-reminder>"}
    turn = "claude_code_thinking_tool_result"
    second = await send(claude, turn, "mock/any", messages=[*after, system])
    assert [block.type for block in second.content] == ["text"]
    assert second.stop_reason == "end_turn"


async def test_a_system_message_cleared_at_the_next_user_message_is_left_out_after_it(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    upstream.handler = answering(chat_completion("ok"))
    messages: Any = [
        {"role": "user", "content": "one"},
        {"role": "system", "content": "only for one", "clear_at": "next_user_message"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "two"},
        {"role": "system", "content": [{"type": "text", "text": "for two"}],
         "clear_at": "next_user_message"},
    ]  # fmt: skip
    await claude.beta.messages.create(model="compat/gpt", max_tokens=9, messages=messages)
    assert upstream.last_body["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "two"},
        {"role": "system", "content": "for two"},
    ]


# --- refusals worded as Anthropic words them ------------------------------------------------


async def test_an_unknown_role_is_refused_as_anthropic_refuses_it(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    messages: Any = [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(model="compat/gpt", max_tokens=9, messages=messages)
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages.1.role: Input should be 'user', 'assistant' or 'system'",
        },
    }
    assert not upstream.requests


def claude_code_drops_its_system_messages(message: str) -> bool:
    """Claude Code 2.1.197's test (its `MBn`) for a 400 that refuses role "system", after which
    it sends their text as a <system-reminder> in a user turn and retries."""
    return ("Unexpected role" in message and "input message role" in message) or (
        "not supported" in message and re.search(r"role .{0,2}system", message, re.I) is not None
    )


async def test_a_system_message_chat_cannot_carry_is_refused_so_claude_code_falls_back(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    change = {"type": "tool_addition", "tool": {"type": "tool_reference", "tool_name": "Bash"}}
    messages: Any = [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": [{"type": "text", "text": "Bash is back."}, change]},
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.beta.messages.create(model="compat/gpt", max_tokens=9, messages=messages)
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("messages.1.content.1: 'tool_addition' blocks")
    assert claude_code_drops_its_system_messages(error["message"])
    assert not upstream.requests


# --- thinking -------------------------------------------------------------------------------


async def test_claude_codes_title_request_asks_no_reasoning_effort(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    """Thinking disabled with an effort named: the chat request gets no reasoning_effort, and
    nothing else the client did not ask for."""
    upstream.handler = streaming(openai_chat_stream(['{"title": "Hi"}']))
    await send(claude, "claude_code_title", "compat/gpt")
    sent = upstream.last_body
    assert "reasoning_effort" not in sent
    assert set(sent) == {
        "model",
        "messages",
        "max_tokens",
        "stream",
        "stream_options",  # the gateway's own: the usage comes last
        "user",  # metadata.user_id
        "response_format",  # output_config.format
    }


async def test_claude_codes_adaptive_thinking_with_an_effort_asks_that_effort(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    upstream.handler = streaming(openai_chat_stream(["Hi"]))
    await send(claude, "claude_code_turn", "compat/gpt")
    assert upstream.last_body["reasoning_effort"] == "high"


# --- count_tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["compat/gpt", "gem/gemini-2.5-flash", "mock/any"])
async def test_count_tokens_is_estimated_without_calling_a_model(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic, model: str
) -> None:
    """Claude Code's `/context` sends one count_tokens per item; a provider without a token
    count gets the gateway's estimate, marked as one, and no model call is made."""
    recorded = claude_code("claude_code_count_tokens")
    body = {**recorded["body"], "model": model}
    betas = recorded["headers"]["anthropic-beta"].split(",")
    answer = await claude.beta.messages.with_raw_response.count_tokens(**body, betas=betas)
    assert answer.status_code == 200
    assert answer.headers["x-gateway-token-count"] == "estimate"
    assert answer.headers["x-gateway-model"] == model
    assert (await answer.parse()).input_tokens == estimate_input_tokens(_raw(body))
    assert not upstream.requests


async def test_count_tokens_passes_through_to_anthropic_unmarked(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    upstream.handler = answering({"input_tokens": 4242})
    recorded = claude_code("claude_code_count_tokens")
    body = {**recorded["body"], "model": "claude/claude-opus-4-8"}
    answer = await claude.beta.messages.with_raw_response.count_tokens(**body)
    assert (await answer.parse()).input_tokens == 4242
    assert "x-gateway-token-count" not in answer.headers
    assert upstream.last_body == {**recorded["body"], "model": "claude-opus-4-8"}


def _raw(body: dict[str, Any]) -> dict[str, msgspec.Raw]:
    return {key: msgspec.Raw(orjson.dumps(value)) for key, value in body.items()}


def _count(**fields: Any) -> int:
    return estimate_input_tokens(_raw({"model": "m", **fields}))


def test_the_estimate_counts_system_messages_and_tools_as_anthropic_does() -> None:
    hi = [{"role": "user", "content": "Hi"}]
    bare = _count(messages=hi)
    assert bare == PER_REQUEST + PER_MESSAGE + estimate_text("Hi")
    assert _count(messages=hi, system="Be brief.") == bare + estimate_text("Be brief.")
    in_messages = [*hi, {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}]
    assert _count(messages=in_messages) == bare + PER_MESSAGE + estimate_text("Be brief.")
    tool = {"name": "Bash", "description": "Run it", "input_schema": {"type": "object"}}
    schema = estimate_text("Bash") + estimate_text("Run it") + estimate_json({"type": "object"})
    assert _count(messages=hi, tools=[tool]) == bare + TOOL_PROMPT["auto"] + schema
    chosen = _count(messages=hi, tools=[tool], tool_choice={"type": "any"})
    assert chosen == bare + TOOL_PROMPT["any"] + schema
    picture = {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
    with_image = [{"role": "user", "content": [{"type": "text", "text": "Hi"}, picture]}]
    assert _count(messages=with_image) == bare + IMAGE_TOKENS


def test_the_estimate_counts_thinking_of_the_current_turn_only() -> None:
    """Anthropic drops earlier turns' thinking from the context; the turn a tool loop is in
    keeps it."""
    thought = {"type": "thinking", "thinking": "Let me think it over.", "signature": "s"}
    call = {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "a.txt"}
    loop = [
        {"role": "user", "content": "list"},
        {"role": "assistant", "content": [thought, call]},
        {"role": "user", "content": [result]},
    ]
    after = [*loop, {"role": "assistant", "content": "a.txt"}, {"role": "user", "content": "ok"}]
    thinking = estimate_text("Let me think it over.")
    without = [{**m, "content": [call]} if m["role"] == "assistant" else m for m in loop]
    assert _count(messages=loop) == _count(messages=without) + thinking
    plain = [*without, *after[3:]]
    assert _count(messages=after) == _count(messages=plain)  # an earlier turn's thinking


# --- the base URL itself -------------------------------------------------------------------


async def test_head_and_get_of_the_base_url_answer_200_without_a_key_naming_no_provider(
    start_gateway: GatewayFactory,
) -> None:
    """Claude Code sends `HEAD /` (with its key) before its first request; a person may open
    the base URL in a browser. Both get a small 200 saying what answers, even where every
    other route wants a gateway key, and nothing of the configuration."""
    url = await start_gateway(
        '[providers.private-upstream]\ntype = "mock"\n[keys.k]\nvalue = "sk-gateway-k"\n'
    )
    async with aiohttp.ClientSession() as session:
        async with session.head(f"{url}/", headers={"x-api-key": "sk-ant-wrong"}) as head:
            assert head.status == 200
            assert await head.read() == b""
        async with session.get(f"{url}/") as got:
            assert got.status == 200
            body = await got.read()
        async with session.get(f"{url}/v1/models") as models:
            assert models.status == 401  # the rest still wants a key
    about = orjson.loads(body)
    assert about["health"] == "/health"
    assert b"private-upstream" not in body and b"sk-gateway-k" not in body
