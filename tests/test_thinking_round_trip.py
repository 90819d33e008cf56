"""Thinking survives a tool loop: what a provider signed comes back to it in the next turn.

A Claude model (Anthropic, or Bedrock's Converse) refuses the turn after a tool call unless
the assistant's thinking blocks, signatures and redacted blocks included, come back as they
were; Gemini wants its `thoughtSignature` back on the call it signed. Each test runs the
loop's two turns through the gateway, with the client's own SDK keeping what it was given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.bedrock_frames import event
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.replay import fixture, replay
from tests.streams import answering, streaming

SIGNATURE = "EqQBCkYIBxgCKkD-the-thinking-block-signature"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
THOUGHT = "The user wants the weather: call the tool."
CALL = {"command": "expr 40 + 2"}
ARGUMENTS = orjson.dumps(CALL).decode()
TOOLS = [{"name": "Bash", "input_schema": {"type": "object"}}]
CHAT_TOOLS = [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}]
EVENTSTREAM = "application/vnd.amazon.eventstream"
BEDROCK_MODEL = "anthropic.claude-sonnet-4-20250514-v1:0"


def _bedrock_toml(url: str) -> str:
    return (
        f'[providers.br]\ntype = "bedrock"\nbase_url = "{url.removesuffix("/v1")}"\n'
        'region = "us-west-2"\naccess_key_id = "AKIDEXAMPLE"\n'
        'secret_access_key = "wJalrXUtnFEMI/K7MDENG"\n'
    )


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    gemini = upstream.url.removesuffix("/v1") + "/v1beta"
    return await start_gateway(
        provider_toml(upstream.url, "claude", type="anthropic", api_key="sk-ant-up")
        + provider_toml(gemini, "gem", type="gemini", api_key="g-up")
        + _bedrock_toml(upstream.url)
    )


@pytest.fixture
async def claude(gateway: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=gateway, api_key="unused", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def chat(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0)
    yield client
    await client.close()


def _anthropic_tool_turn() -> bytes:
    """An Anthropic stream: a signed thinking block, a redacted one, then a Bash call."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant",
                                       "model": "claude-sonnet-4", "content": [],
                                       "stop_reason": None, "stop_sequence": None,
                                       "usage": {"input_tokens": 9, "output_tokens": 0}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "thinking",
                                                              "thinking": "", "signature": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta",
                                                       "thinking": THOUGHT}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta",
                                                       "signature": SIGNATURE}}),
        ("content_block_stop", {"index": 0}),
        ("content_block_start", {"index": 1, "content_block": {"type": "redacted_thinking",
                                                              "data": REDACTED}}),
        ("content_block_stop", {"index": 1}),
        ("content_block_start", {"index": 2, "content_block": {"type": "tool_use",
                                                              "id": "toolu_1", "name": "Bash",
                                                              "input": {}}}),
        ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta",
                                                       "partial_json": ARGUMENTS}}),
        ("content_block_stop", {"index": 2}),
        ("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 30}}),
        ("message_stop", {}),
    ]  # fmt: skip
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps({"type": kind, **data}))
        for kind, data in events
    )


ANTHROPIC_TURN = [
    {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE},
    {"type": "redacted_thinking", "data": REDACTED},
    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": CALL},
]


ANSWER = {"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
          "content": [{"type": "text", "text": "42"}], "stop_reason": "end_turn",
          "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}  # fmt: skip


async def test_a_chat_client_gives_claude_its_thinking_back_redacted_blocks_too(
    upstream: FakeUpstream, chat: openai.AsyncOpenAI
) -> None:
    """OpenAI SDK -> chat route -> Anthropic provider, streamed: the accumulated message
    carries reasoning, its signature and the redacted blocks; sent back with the tool's
    result, Anthropic gets the turn's blocks as it wrote them."""
    upstream.handler = streaming([_anthropic_tool_turn()])
    ask: Any = [{"role": "user", "content": "Run expr 40 + 2"}]
    async with chat.chat.completions.stream(
        model="claude/claude-sonnet-4", messages=ask, tools=CHAT_TOOLS, max_tokens=999
    ) as stream:
        final = await stream.get_final_completion()
    said = final.choices[0].message
    extra = said.model_extra or {}
    assert extra["reasoning"] == THOUGHT
    assert extra["reasoning_signature"] == SIGNATURE
    assert extra["reasoning_redacted"] == [REDACTED]
    upstream.handler = answering(ANSWER)
    turn: Any = [
        *ask,
        said.model_dump(exclude_none=True, exclude={"parsed"}),
        {"role": "tool", "tool_call_id": "toolu_1", "content": "42"},
    ]
    await chat.chat.completions.create(
        model="claude/claude-sonnet-4", messages=turn, tools=CHAT_TOOLS, max_tokens=999
    )
    assert upstream.last_body["messages"][1] == {"role": "assistant", "content": ANTHROPIC_TURN}


async def test_a_whole_chat_answer_carries_the_redacted_blocks_too(
    upstream: FakeUpstream, chat: openai.AsyncOpenAI
) -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
               "content": ANTHROPIC_TURN, "stop_reason": "tool_use", "stop_sequence": None,
               "usage": {"input_tokens": 9, "output_tokens": 30}}  # fmt: skip
    upstream.handler = answering(message)
    answer = await chat.chat.completions.create(
        model="claude/claude-sonnet-4",
        messages=[{"role": "user", "content": "Run it"}],
        tools=CHAT_TOOLS,  # type: ignore[arg-type]
        max_tokens=999,
    )
    extra = answer.choices[0].message.model_extra or {}
    assert (extra["reasoning_signature"], extra["reasoning_redacted"]) == (SIGNATURE, [REDACTED])


def _bedrock_tool_turn() -> bytes:
    """A Converse stream: signed reasoning, a redacted block, then a Bash call."""
    reasoning = [{"text": THOUGHT}, {"signature": SIGNATURE}, {"redactedContent": REDACTED}]
    return b"".join(
        [
            event("messageStart", {"role": "assistant"}),
            *[
                event(
                    "contentBlockDelta",
                    {"contentBlockIndex": 0, "delta": {"reasoningContent": piece}},
                )
                for piece in reasoning
            ],
            event("contentBlockStop", {"contentBlockIndex": 0}),
            event(
                "contentBlockStart",
                {
                    "contentBlockIndex": 1,
                    "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "Bash"}},
                },
            ),
            event(
                "contentBlockDelta",
                {
                    "contentBlockIndex": 1,
                    "delta": {"toolUse": {"input": orjson.dumps(CALL).decode()}},
                },
            ),
            event("contentBlockStop", {"contentBlockIndex": 1}),
            event("messageStop", {"stopReason": "tool_use"}),
            event("metadata", {"usage": {"inputTokens": 9, "outputTokens": 30, "totalTokens": 39}}),
        ]
    )


async def test_claude_code_gives_claude_on_bedrock_its_thinking_back(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    """Anthropic SDK -> Messages route -> chat bridge -> Bedrock (a Claude model): the
    thinking block, its signature and the redacted block reach the client as Anthropic's
    blocks, and go back to Bedrock as its reasoningContent in the next turn."""
    upstream.handler = replay(_bedrock_tool_turn(), content_type=EVENTSTREAM)
    ask: Any = [{"role": "user", "content": "Run expr 40 + 2"}]
    model = f"br/{BEDROCK_MODEL}"
    async with claude.messages.stream(
        model=model,
        max_tokens=999,
        messages=ask,
        tools=TOOLS,  # type: ignore[arg-type]
    ) as stream:
        first = await stream.get_final_message()
    blocks = [block.model_dump(exclude_none=True) for block in first.content]
    assert [block["type"] for block in blocks] == ["thinking", "redacted_thinking", "tool_use"]
    assert blocks[0]["signature"] == SIGNATURE and blocks[1]["data"] == REDACTED
    upstream.handler = replay(_bedrock_tool_turn(), content_type=EVENTSTREAM)
    result = {"type": "tool_result", "tool_use_id": blocks[2]["id"], "content": "42"}
    turn: Any = [
        *ask,
        {"role": "assistant", "content": blocks},
        {"role": "user", "content": [result]},
    ]
    async with claude.messages.stream(
        model=model,
        max_tokens=999,
        messages=turn,
        tools=TOOLS,  # type: ignore[arg-type]
    ) as stream:
        await stream.get_final_message()
    sent = upstream.last_body["messages"][1]["content"]
    assert sent[:2] == [
        {"reasoningContent": {"reasoningText": {"text": THOUGHT, "signature": SIGNATURE}}},
        {"reasoningContent": {"redactedContent": REDACTED}},
    ]
    assert sent[2]["toolUse"]["input"] == CALL


async def test_a_gemini_thought_signature_comes_back_on_its_call_in_the_next_turn(
    upstream: FakeUpstream, claude: anthropic.AsyncAnthropic
) -> None:
    """Gemini signs its function call; an Anthropic client gets the signature in a thinking
    block, sends the turn back with the tool's result, and Gemini gets it on the same call."""
    upstream.handler = replay(fixture("gemini/tool_stream.sse"))
    tools: Any = [
        {"name": name, "input_schema": {"type": "object"}} for name in ("get_weather", "get_time")
    ]
    ask: Any = [{"role": "user", "content": "Weather and time in Paris?"}]
    async with claude.messages.stream(
        model="gem/gemini-2.5-flash", max_tokens=99, messages=ask, tools=tools
    ) as stream:
        first = await stream.get_final_message()
    thinking = [block for block in first.content if block.type == "thinking"]
    calls = [block for block in first.content if block.type == "tool_use"]
    assert len(thinking) == 1 and thinking[0].signature.startswith("CikBcsjafFK168")
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    results: Any = [
        {"type": "tool_result", "tool_use_id": call.id, "content": "ok"} for call in calls
    ]
    turn: Any = [
        *ask,
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": results},
    ]
    upstream.handler = replay(fixture("gemini/text_stream.sse"))
    async with claude.messages.stream(
        model="gem/gemini-2.5-flash", max_tokens=99, messages=turn, tools=tools
    ) as stream:
        await stream.get_final_message()
    model_turn = upstream.last_body["contents"][1]
    assert model_turn["role"] == "model"
    signed = [part for part in model_turn["parts"] if "thoughtSignature" in part]
    assert signed == [
        {
            "functionCall": {
                "name": "get_weather",
                "args": {"city": "Paris", "unit": "celsius", "days": [1, 2]},
            },
            "thoughtSignature": thinking[0].signature,
        }
    ]


async def test_a_whole_bedrock_answer_carries_the_redacted_blocks_too(
    upstream: FakeUpstream, chat: openai.AsyncOpenAI
) -> None:
    reasoning = {"reasoningText": {"text": THOUGHT, "signature": SIGNATURE}}
    content = [
        {"reasoningContent": reasoning},
        {"reasoningContent": {"redactedContent": REDACTED}},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "Bash", "input": CALL}},
    ]
    upstream.handler = answering(
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 9, "outputTokens": 30, "totalTokens": 39},
        }
    )
    answer = await chat.chat.completions.create(
        model=f"br/{BEDROCK_MODEL}",
        messages=[{"role": "user", "content": "Run it"}],
        tools=CHAT_TOOLS,  # type: ignore[arg-type]
    )
    extra = answer.choices[0].message.model_extra or {}
    assert (extra["reasoning_signature"], extra["reasoning_redacted"]) == (SIGNATURE, [REDACTED])
