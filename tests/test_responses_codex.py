"""Codex CLI through the Responses bridge, to providers without a Responses API.

Codex 0.171 sends one of two request shapes (tests/fixtures/agents/codex_*, captured from
`codex exec`; the README there): with a model it has no metadata for, `function` tools,
a `namespace` of functions and a hosted `web_search`; with its own default model, no `tools` and
every tool in an `additional_tools` input item, its shell being `exec`, a `custom` (freeform)
tool in the namespace `functions`. Each goes to an OpenAI-compatible upstream with
`responses = "bridge"` and to an Anthropic one, streamed and not; each answer is read with the
openai SDK's Responses types; the tool round trip is what Codex does with it.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pydantic
import pytest
from aiohttp import web
from openai.types.responses import Response, ResponseStreamEvent

from formats.responses.tools import chat_name
from tests.agent_traffic import AGENTS, agent_request
from tests.chat_answers import ChatAnswer
from tests.conftest import FakeUpstream, provider_toml
from tests.streams import Handler, answering, chat_completion, parse_sse

UNKNOWN_MODEL = "unknown-model"  # namespace + web_search tools
DEFAULT_MODEL = "default-model"  # additional_tools, the custom `exec` shell
# Each shape's captured first turn, and the turn after a call: for the unknown model, the
# one kept as JSON, after a call of a namespaced function (`multi_agent_v1.wait_agent`).
CAPTURED = {
    UNKNOWN_MODEL: "codex_unknown_model_turn",
    f"{UNKNOWN_MODEL}-tool-output": "codex_unknown_model_namespaced_output",
    DEFAULT_MODEL: "codex_default_model_turn",
    f"{DEFAULT_MODEL}-tool-output": "codex_default_model_custom_output",
}
SHELL_JS = 'text(await tools.exec_command({cmd: "expr 40 + 2"}))'
# The shell call each shape offers, as the chat upstream sees it, and as Codex gets it back.
SHELL = {
    UNKNOWN_MODEL: ("exec_command", {"cmd": "expr 40 + 2"}),
    # In the namespace `functions`, the one OpenAI's models see every function in: unprefixed.
    DEFAULT_MODEL: ("exec", {"input": SHELL_JS}),
}
# What Codex sends back after running it (its shapes, as in the captured second turns).
SHELL_OUTPUT = {
    UNKNOWN_MODEL: {"type": "function_call_output", "output": "Process exited with code 0\n42\n"},
    DEFAULT_MODEL: {
        "type": "custom_tool_call_output",
        "output": [
            {"type": "input_text", "text": "Script completed\nOutput:\n"},
            {"type": "input_text", "text": '{"exit_code":0,"output":"42\\n"}'},
        ],
    },
}
SHELL_OUTPUT_TEXT = {
    UNKNOWN_MODEL: "Process exited with code 0\n42\n",
    DEFAULT_MODEL: 'Script completed\nOutput:\n\n{"exit_code":0,"output":"42\\n"}',
}
EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
PROVIDERS = ["compat", "claude"]  # OpenAI-compatible with responses = "bridge"; Anthropic


def codex_request(name: str, model: str, stream: bool) -> dict[str, Any]:
    kept = AGENTS / f"{CAPTURED[name]}.json"
    raw = kept.read_bytes() if kept.exists() else agent_request(CAPTURED[name]).body
    body: dict[str, Any] = orjson.loads(raw)
    return {**body, "model": model, "stream": stream}


def _providers(upstream: FakeUpstream) -> str:
    return (
        provider_toml(upstream.url, name="compat", api_key="k", responses="bridge")
        + provider_toml(upstream.url, name="claude", type="anthropic", api_key="k")
        + '[providers.mock]\ntype = "mock"\ndelay = 0\n'
    )


async def respond(url: str, body: dict[str, Any]) -> tuple[Response, list[Any], dict[str, str]]:
    """POST a Responses request; its Response (the last event's, streamed) and events, read
    with the SDK's types, and the answer's headers."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/responses", json=body) as answer,
    ):
        raw = await answer.read()
        headers = dict(answer.headers)
    assert answer.status == 200, raw[:500]
    if not body["stream"]:
        return Response.model_validate(orjson.loads(raw)), [], headers
    events = [EVENT.validate_python(orjson.loads(event.data)) for event in parse_sse(raw)]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    return events[-1].response, events, headers


# --- the fake upstreams: a model that runs the client's shell, then says what it printed ---


def _anthropic_message(content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 7},
    }


def _anthropic_stream(content: list[dict[str, Any]], stop: str) -> bytes:
    """The message as Anthropic streams it (platform.claude.com/docs/en/build-with-claude/
    streaming): each block started, its deltas (a tool's input as JSON in two pieces), stopped."""
    start = _anthropic_message([], None)  # type: ignore[arg-type]
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(content):
        if block["type"] == "text":
            opened, delta = {"type": "text", "text": ""}, {**block, "type": "text_delta"}
            deltas = [delta]
        else:
            opened = {**block, "input": {}}
            given = orjson.dumps(block["input"]).decode()
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in (given[:9], given[9:])
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": opened})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 7},
        }
    )
    events.append({"type": "message_stop"})
    return b"".join(
        f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n"
        for event in events
    )


def shell_agent(kind: str, call: tuple[str, dict[str, Any]] | None = None) -> Handler:
    """An upstream (chat, or Anthropic's Messages) that answers a turn ending in a tool result
    with "The shell said: <its text>", and any other turn by calling the client's shell tool
    (or `call`: a chat function name and its arguments), or, offered none, with a text."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        last = body["messages"][-1]
        if kind == "anthropic":
            blocks = last["content"] if isinstance(last["content"], list) else []
            results = [block for block in blocks if block.get("type") == "tool_result"]
            tools = [tool["name"] for tool in body.get("tools", [])]
        else:
            results = [last] if last["role"] == "tool" else []
            tools = [tool["function"]["name"] for tool in body.get("tools", [])]
        if results:
            said = results[-1]["content"]
            if isinstance(said, list):
                said = "".join(block["text"] for block in said)
            text, named = f"The shell said: {said}", None
        else:
            named = call or next((SHELL[s] for s in SHELL if SHELL[s][0] in tools), None)
            text = "" if named else "No shell to run it in."
        if kind == "anthropic":
            if named:
                content = [
                    {"type": "tool_use", "id": "toolu_shell", "name": named[0], "input": named[1]}
                ]
            else:
                content = [{"type": "text", "text": text}]
            stop = "tool_use" if named else "end_turn"
            if body.get("stream"):
                return _sse(_anthropic_stream(content, stop))
            return web.json_response(_anthropic_message(content, stop))
        answer = ChatAnswer(text=[text] if text else [])
        if named:
            arguments = orjson.dumps(named[1]).decode()
            answer = ChatAnswer(
                calls=[("call_shell", named[0], [arguments[:9], arguments[9:]])],
                finish="tool_calls",
            )
        if body.get("stream"):
            return _sse(answer.stream())
        return web.Response(body=answer.completion(), content_type="application/json")

    return handler


def _sse(raw: bytes) -> web.Response:
    return web.Response(body=raw, content_type="text/event-stream")


def _upstream_tools(kind: str, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The upstream request's tools by name: chat functions, or Anthropic tools."""
    if kind == "claude":
        return {tool["name"]: tool for tool in body["tools"]}
    return {tool["function"]["name"]: tool["function"] for tool in body["tools"]}


# --- a whole tool round trip in each shape -----------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("shape", [UNKNOWN_MODEL, DEFAULT_MODEL])
async def test_codex_runs_its_shell_through_a_bridged_provider(
    upstream: FakeUpstream, start_gateway, shape: str, provider: str, stream: bool
) -> None:
    url = await start_gateway(_providers(upstream))
    upstream.handler = shell_agent("anthropic" if provider == "claude" else "openai")
    first = codex_request(shape, f"{provider}/m", stream)
    response, events, headers = await respond(url, first)

    # The upstream got chat functions for every tool Codex can run, and no hosted one.
    sent = upstream.last_body
    tools = _upstream_tools(provider, sent)
    if shape == UNKNOWN_MODEL:
        assert headers["x-gateway-dropped-tools"] == "web_search"
        assert {"exec_command", "multi_agent_v1__wait_agent", "update_goal"} <= set(tools)
        assert "Tools for spawning and managing sub-agents." in str(
            tools["multi_agent_v1__wait_agent"]
        )
    else:
        assert "x-gateway-dropped-tools" not in headers
        assert {"exec", "wait", "clock__sleep", "collaboration__spawn_agent"} <= set(tools)
        assert not any(name.startswith("functions__") for name in tools)
        schema = tools["exec"].get("parameters") or tools["exec"]["input_schema"]
        assert schema["properties"] == {
            "input": {"type": "string", "description": "The tool's whole input."}
        }
        assert "PRAGMA_LINE" in tools["exec"]["description"]  # its lark grammar, told
    assert all(len(name) <= 64 for name in tools)
    if provider == "compat":
        # Only what chat has: no store, include, prompt_cache_key, client_metadata, text.verbosity,
        # and an effort only when Codex asked for one; developer messages as system messages.
        assert set(sent) <= {
            "model",
            "messages",
            "stream",
            "stream_options",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "reasoning_effort",
        }
        assert sent.get("reasoning_effort") == (None if shape == UNKNOWN_MODEL else "low")
        assert sent["tool_choice"] == "auto"
        assert sent["parallel_tool_calls"] is (shape == UNKNOWN_MODEL)
        roles = [message["role"] for message in sent["messages"]]
        assert "developer" not in roles and roles[0] == "system" and roles[-1] == "user"
    else:
        assert "You are" in str(sent["system"])  # Codex's developer messages

    # The call comes back as Codex declared the tool.
    [call] = response.output
    if shape == UNKNOWN_MODEL:
        assert (call.type, call.name, call.namespace) == ("function_call", "exec_command", None)
        assert orjson.loads(call.arguments) == {"cmd": "expr 40 + 2"}
    else:
        assert (call.type, call.name, call.namespace) == ("custom_tool_call", "exec", "functions")
        assert call.input == SHELL_JS
    if stream:
        kinds = [event.type for event in events]
        added = next(e for e in events if e.type == "response.output_item.added").item
        done = next(e for e in events if e.type == "response.output_item.done").item
        assert (added.type, added.name, added.namespace) == (call.type, call.name, call.namespace)
        assert done == call
        if shape == DEFAULT_MODEL:
            delta = next(e for e in events if e.type == "response.custom_tool_call_input.delta")
            finished = next(e for e in events if e.type == "response.custom_tool_call_input.done")
            assert delta.delta == finished.input == SHELL_JS
            assert "response.function_call_arguments.delta" not in kinds
        else:
            deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
            assert "".join(deltas) == call.arguments

    # The next turn: Codex sends back its reasoning, the call, and the shell's output.
    reasoning = {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA-opaque"}
    output = {**SHELL_OUTPUT[shape], "call_id": call.call_id}
    second = {
        **first,
        "input": [*first["input"], reasoning, call.model_dump(exclude_none=True), output],
    }
    response, _, _ = await respond(url, second)
    assert response.output_text == f"The shell said: {SHELL_OUTPUT_TEXT[shape]}"
    assert "42" in response.output_text
    sent = upstream.last_body
    name, arguments = SHELL[shape]
    if provider == "compat":
        asked, answered = sent["messages"][-2:]
        [called] = asked["tool_calls"]
        assert called["id"] == call.call_id and called["function"]["name"] == name
        assert orjson.loads(called["function"]["arguments"]) == arguments
        assert answered == {
            "role": "tool",
            "tool_call_id": call.call_id,
            "content": SHELL_OUTPUT_TEXT[shape],
        }
    else:
        asked, answered = sent["messages"][-2:]
        [used] = [block for block in asked["content"] if block["type"] == "tool_use"]
        assert (used["id"], used["name"], used["input"]) == (call.call_id, name, arguments)
        [result] = answered["content"]
        assert result["tool_use_id"] == call.call_id
        given = result["content"]
        given = given if isinstance(given, str) else "".join(b["text"] for b in given)
        assert given == SHELL_OUTPUT_TEXT[shape]


# --- Codex's own second turns, and the mock ----------------------------------------------------


@pytest.mark.parametrize("provider", [*PROVIDERS, "mock"])
@pytest.mark.parametrize("shape", [UNKNOWN_MODEL, DEFAULT_MODEL])
async def test_codex_captured_turns_get_a_well_formed_stream_from_every_bridged_provider(
    upstream: FakeUpstream, start_gateway, shape: str, provider: str
) -> None:
    """Both captured turns of each shape, as Codex sent them (the second carrying a call and
    its output), streamed and not; the mock answers the first by calling Codex's first tool."""
    url = await start_gateway(_providers(upstream))
    upstream.handler = shell_agent("anthropic" if provider == "claude" else "openai")
    for stream in (True, False):
        response, _, _ = await respond(url, codex_request(shape, f"{provider}/m", stream))
        [call] = response.output
        if shape == UNKNOWN_MODEL:
            assert (call.type, call.name) == ("function_call", "exec_command")
        else:
            assert (call.type, call.name, call.namespace) == (
                "custom_tool_call",
                "exec",
                "functions",
            )
            assert isinstance(call.input, str) and call.input
        turn = codex_request(f"{shape}-tool-output", f"{provider}/m", stream)
        response, _, _ = await respond(url, turn)
        [message] = response.output
        assert message.type == "message" and response.output_text
    if provider == "compat":
        asked, answered = upstream.last_body["messages"][-2:]
        [called] = asked["tool_calls"]
        if shape == UNKNOWN_MODEL:  # the namespaced function Codex called, flat for chat
            assert called["function"] == {
                "name": "multi_agent_v1__wait_agent",
                "arguments": '{"timeout_ms": 10000}',
            }
            assert answered["content"] == "agent ids must be non-empty"
        else:
            assert called["function"]["name"] == "exec"
            assert orjson.loads(called["function"]["arguments"]) == {"input": SHELL_JS}
            assert answered["content"].startswith("Script completed\n")
            assert '"exit_code":0' in answered["content"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("shape", "called", "name", "namespace"),
    [
        (UNKNOWN_MODEL, "multi_agent_v1__wait_agent", "wait_agent", "multi_agent_v1"),
        (DEFAULT_MODEL, "wait", "wait", "functions"),  # the default namespace: no prefix
    ],
)
async def test_a_namespaced_function_call_goes_back_with_its_namespace(
    upstream: FakeUpstream,
    start_gateway,
    stream: bool,
    shape: str,
    called: str,
    name: str,
    namespace: str,
) -> None:
    url = await start_gateway(_providers(upstream))
    upstream.handler = shell_agent("openai", (called, {"timeout_ms": 5}))
    response, events, _ = await respond(url, codex_request(shape, "compat/m", stream))
    [call] = response.output
    assert (call.type, call.name, call.namespace) == ("function_call", name, namespace)
    assert orjson.loads(call.arguments) == {"timeout_ms": 5}
    if stream:
        added = next(e for e in events if e.type == "response.output_item.added").item
        assert (added.name, added.namespace) == (name, namespace)
    # Sent back in the next turn, it is the same chat function again.
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "done"}
    turn = codex_request(shape, "compat/m", stream)
    turn["input"] = [*turn["input"], call.model_dump(exclude_none=True), output]
    await respond(url, turn)
    asked = upstream.last_body["messages"][-2]
    assert [c["function"]["name"] for c in asked["tool_calls"]] == [called]


# --- hosted tools, odd names, images in tool outputs -------------------------------------------

HOSTED = [
    {"type": "web_search", "external_web_access": False},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "web_search"},
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_hosted_tools_are_left_out_and_named_and_no_tool_settings_go_without_tools(
    upstream: FakeUpstream, start_gateway, stream: bool
) -> None:
    """The mock refuses tool_choice without tools, as OpenAI does: the bridge sends neither."""
    url = await start_gateway(_providers(upstream))
    upstream.handler = shell_agent("openai")
    for model in ("mock/m", "compat/m"):
        body = {
            "model": model,
            "input": "Hi",
            "stream": stream,
            "tools": HOSTED,
            "tool_choice": "auto",
            "parallel_tool_calls": True,
        }
        response, _, headers = await respond(url, body)
        assert headers["x-gateway-dropped-tools"] == "web_search, file_search"
        assert response.output_text
        assert [tool.type for tool in response.tools] == ["web_search", "file_search", "web_search"]
    assert set(upstream.last_body) <= {"model", "messages", "stream", "stream_options"}

    # A type that is neither a chat function nor a known hosted tool is still refused.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/responses",
            json={"model": "mock/m", "input": "Hi", "tools": [*HOSTED, {"type": "teleport"}]},
        ) as answer,
    ):
        error = (await answer.json())["error"]
    assert answer.status == 400
    assert (error["param"], error["code"]) == ("tools", "unsupported_parameter")
    assert "'teleport'" in error["message"]

    # A type that is no string at all (found by tests/test_fuzz.py: it was a 500).
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/responses", json={"model": "mock/m", "tools": [{"type": []}]}
        ) as answer,
    ):
        error = (await answer.json())["error"]
    assert (answer.status, error["param"]) == (400, "tools")


async def test_names_past_chat_rules_are_cut_and_map_back(
    upstream: FakeUpstream, start_gateway
) -> None:
    namespace, name = "mcp__docs.example.com", "search_" + "x" * 70
    called = chat_name(name, namespace)
    assert len(called) <= 64 and called.replace("_", "").replace("-", "").isalnum()
    assert called != chat_name(name + "y", namespace)
    url = await start_gateway(_providers(upstream))
    upstream.handler = shell_agent("openai", (called, {"q": "gateways"}))
    tool = {
        "type": "namespace",
        "name": namespace,
        "description": "Docs search.",
        "tools": [
            {"type": "function", "name": name, "parameters": {"type": "object"}},
            {"type": "custom", "name": "raw", "description": "Raw text."},
        ],
    }
    body = {"model": "compat/m", "input": "Hi", "stream": False, "tools": [tool]}
    response, _, _ = await respond(url, body)
    [call] = response.output
    assert (call.type, call.name, call.namespace) == ("function_call", name, namespace)
    functions = {t["function"]["name"]: t["function"] for t in upstream.last_body["tools"]}
    assert set(functions) == {called, chat_name("raw", namespace)}
    raw = functions[chat_name("raw", namespace)]
    assert raw["description"].startswith("Docs search.\n\nRaw text.\n\nCall it with one string")


async def test_a_tool_outputs_images_follow_its_tool_message(
    upstream: FakeUpstream, start_gateway
) -> None:
    url = await start_gateway(_providers(upstream))
    upstream.handler = answering(chat_completion("seen"))
    image = "data:image/png;base64,iVBORw0KGgo="
    body = {
        "model": "compat/m",
        "stream": False,
        "input": [
            {"role": "user", "content": "Look at it."},
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [
                    {"type": "input_text", "text": "the image:"},
                    {"type": "input_image", "image_url": image},
                ],
            },
        ],
        "tools": [{"type": "function", "name": "view_image", "parameters": {"type": "object"}}],
    }
    response, _, _ = await respond(url, body)
    assert response.output_text == "seen"
    assert upstream.last_body["messages"][-2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "the image:"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]},
    ]
