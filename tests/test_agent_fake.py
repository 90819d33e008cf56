"""The agent harness's scripted fake (bench/agents/) reads what the agents really send and
answers what their SDKs parse: so a row of `python -m bench.agents` that fails through the
gateway fails because of the gateway, not the fake.

The captured requests (tests/fixtures/agents/) are read by the fake's own readers; its
replies, in each format, streamed and whole, are read back with the SDKs' own types
(tests/agent_traffic.py, the replay test's reader).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from bench.agents import reading, writing
from bench.agents.fake import FakeUpstream
from bench.agents.script import MARKER, Call, Reply, Tool, decide, shell_call
from tests.agent_traffic import AGENT_REQUESTS, agent_request, read_answer

READERS = {
    "messages": reading.read_messages,
    "responses": reading.read_responses,
    "gemini_stream": reading.read_gemini,
    "gemini": reading.read_gemini,
}
# Each turn's shell tool, and the call the fake makes of it.
SHELL_CALLS = {
    "claude_code_turn": ("Bash", {"command": "expr 40 + 2"}),
    "codex_unknown_model_turn": ("exec_command", {"cmd": "expr 40 + 2"}),
    "gemini_cli_turn": ("run_shell_command", {"command": "expr 40 + 2"}),
}
OUTPUT_TURNS = [
    "claude_code_tool_result",
    "codex_default_model_custom_output",
    "codex_unknown_model_function_output",
    "gemini_cli_function_response",
]


@pytest.mark.parametrize("name", sorted(SHELL_CALLS))
def test_the_fake_calls_each_agents_shell_tool_with_its_own_parameters(name: str) -> None:
    request = agent_request(name)
    turn = READERS[request.kind](orjson.loads(request.body))
    assert MARKER in turn.text and turn.tool_output is None
    reply = decide(turn)
    assert reply.call is not None
    assert (reply.call.tool.name, reply.call.arguments) == SHELL_CALLS[name]


def test_codex_default_model_gets_javascript_for_its_freeform_exec_tool() -> None:
    request = agent_request("codex_default_model_turn")
    reply = decide(reading.read_responses(orjson.loads(request.body)))
    assert reply.call is not None and reply.call.tool.freeform
    assert (reply.call.tool.name, reply.call.tool.namespace) == ("exec", "functions")
    assert reply.call.input == 'text(await tools.exec_command({cmd: "expr 40 + 2"}))'


@pytest.mark.parametrize("name", OUTPUT_TURNS)
def test_the_fake_answers_a_tool_output_with_it(name: str) -> None:
    request = agent_request(name)
    reply = decide(READERS[request.kind](orjson.loads(request.body)))
    assert reply.call is None
    assert reply.text.startswith("The shell printed: ") and "42" in reply.text


def test_gemini_cli_routing_call_gets_json_its_own_validation_accepts() -> None:
    request = agent_request("gemini_cli_routing")
    reply = decide(reading.read_gemini(orjson.loads(request.body)))
    answer = orjson.loads(reply.text)
    assert isinstance(answer["complexity_reasoning"], str)
    assert 1 <= answer["complexity_score"] <= 100  # Gemini CLI's zod schema: 1-100


@pytest.mark.parametrize(
    ("read", "choice"),
    [
        (reading.read_messages, {"type": "tool", "name": "answer"}),
        (reading.read_chat, {"type": "function", "function": {"name": "answer"}}),
        (reading.read_responses, {"type": "function", "name": "answer"}),
    ],
)
def test_a_forced_tool_is_called_with_arguments_its_schema_takes(read: Any, choice: Any) -> None:
    """As Anthropic's and OpenAI's APIs guarantee a call of the tool `tool_choice` names
    (the gateway asks an older Claude for JSON so), whatever the prompt says."""
    schema = {
        "type": "object",
        "properties": {"score": {"type": "INTEGER"}, "why": {"type": "string"}},
        "required": ["score", "why"],
    }
    if read is reading.read_messages:
        tools: list[Any] = [{"name": "answer", "input_schema": schema}]
    elif read is reading.read_chat:
        tools = [{"type": "function", "function": {"name": "answer", "parameters": schema}}]
    else:
        tools = [{"type": "function", "name": "answer", "parameters": schema}]
    body = {"messages": [{"role": "user", "content": "Hi"}], "input": "Hi", "tools": tools}
    reply = decide(read({**body, "tool_choice": choice}))
    assert reply.call is not None and reply.call.tool.name == "answer"
    assert isinstance(reply.call.arguments["why"], str) and reply.call.arguments["score"] >= 1
    assert decide(read(body)).call is None  # offered, not forced: a greeting


def test_a_tool_declared_without_parameters_is_called_with_none() -> None:
    assert shell_call(Tool("run_shell_command", {"type": "object"})).arguments == {}
    assert shell_call(Tool("run_shell_command", None)).arguments == {}


TEXT = Reply(text="The shell printed: 42")
CALLS = {
    "function": Reply(call=Call(Tool("Bash"), {"command": "expr 40 + 2"})),
    "freeform": Reply(call=Call(Tool("exec", freeform=True), input="text(1)")),
}
FORMATS = {  # the reader's kind -> the fake's writer
    "messages": writing.messages_stream,
    "responses": writing.responses_stream,
    "gemini_stream": writing.gemini_stream,
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_the_fakes_streams_read_as_each_sdk_reads_them(kind: str) -> None:
    answer = read_answer(kind, "text/event-stream", b"".join(FORMATS[kind](TEXT)))
    assert (answer.text, answer.calls) == (TEXT.text, [])
    answer = read_answer(kind, "text/event-stream", b"".join(FORMATS[kind](CALLS["function"])))
    assert answer.calls == ["Bash"]


def test_the_fakes_freeform_call_reads_as_a_custom_tool_call() -> None:
    data = b"".join(writing.responses_stream(CALLS["freeform"]))
    assert read_answer("responses", "text/event-stream", data).calls == ["exec"]


def test_the_fakes_whole_gemini_answer_reads_as_the_sdk_reads_it() -> None:
    data = orjson.dumps(writing.gemini_whole(TEXT))
    assert read_answer("gemini", "application/json", data).text == TEXT.text


def test_the_fakes_chat_stream_is_openais_shape() -> None:
    chunks = [orjson.loads(piece[6:]) for piece in writing.chat_stream(CALLS["function"])[:-1]]
    calls = [
        c
        for chunk in chunks
        for choice in chunk["choices"]
        for c in choice["delta"].get("tool_calls", [])
    ]
    assert calls[0]["function"]["name"] == "Bash"
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert orjson.loads(arguments) == {"command": "expr 40 + 2"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_every_captured_turn_is_read() -> None:
    read = [n for n in AGENT_REQUESTS if agent_request(n).kind in READERS]
    assert sorted(read) == sorted(
        [
            *SHELL_CALLS,
            "codex_default_model_turn",
            *OUTPUT_TURNS,
            "claude_code_title",
            "gemini_cli_routing",
        ]
    )


UPPER = {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}
SCHEMA = {"name": "s", "schema": UPPER}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"messages": [], "response_format": {"type": "json_schema", "json_schema": SCHEMA}},
        ),
        ("/v1/messages", {"messages": [], "tools": [{"name": "f", "input_schema": UPPER}]}),
    ],
)
async def test_the_fake_refuses_gemini_schema_types_as_openai_and_anthropic_do(
    path: str, body: dict[str, Any]
) -> None:
    fake = FakeUpstream()
    url = await fake.start()
    try:
        async with aiohttp.ClientSession() as session, session.post(url + path, json=body) as r:
            assert r.status == 400
            assert "'OBJECT' is not a valid JSON Schema type" in (await r.text())
        lower = orjson.loads(
            orjson.dumps(body).replace(b"OBJECT", b"object").replace(b"STRING", b"string")
        )
        async with aiohttp.ClientSession() as session, session.post(url + path, json=lower) as r:
            assert r.status == 200
    finally:
        await fake.stop()
