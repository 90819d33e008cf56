"""Reading a request, in each wire format the fake serves, into a `Turn` (bench.agents.script).

Tolerant by design: a field of an unexpected shape is read as absent, so that the fake answers
whatever a client or a translation sends and the harness reports what the client then did.
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.agents.script import Tool, Turn


def _texts(content: Any) -> list[str]:
    """The texts of a content value: a string, or a list of parts with a `text`."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if isinstance(part, dict) and "text" in part]
    return []


def _output_text(output: Any) -> str:
    texts = _texts(output)
    return "".join(texts) if texts or not output else orjson.dumps(output).decode()


def read_chat(body: dict[str, Any]) -> Turn:
    """OpenAI Chat Completions."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    turn = Turn(text="\n".join(t for m in messages for t in _texts(m.get("content"))))
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            turn.tools.append(Tool(function.get("name", ""), function.get("parameters")))
    if messages and messages[-1].get("role") == "tool":
        turn.tool_output = _output_text(messages[-1].get("content"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        turn.forced = choice["function"].get("name")
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        turn.schema = (response_format.get("json_schema") or {}).get("schema", {})
    return turn


def read_messages(body: dict[str, Any]) -> Turn:
    """Anthropic Messages."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts = _texts(body.get("system"))
    texts += [t for m in messages for t in _texts(m.get("content"))]
    turn = Turn(text="\n".join(texts))
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and "input_schema" in tool:  # not a server tool
            turn.tools.append(Tool(tool.get("name", ""), tool["input_schema"]))
    last = messages[-1].get("content") if messages else None
    results = [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []
    if results:
        turn.tool_output = _output_text(results[-1].get("content"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        turn.forced = choice.get("name")
    output_format = body.get("output_format") or (body.get("output_config") or {}).get("format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        turn.schema = output_format.get("schema", {})
    return turn


def read_gemini(body: dict[str, Any]) -> Turn:
    """Gemini generateContent (camelCase, and proto-JSON's snake_case as Google accepts)."""
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    system = _get(body, "systemInstruction") or {}
    texts = _texts(system.get("parts")) if isinstance(system, dict) else []
    texts += [t for c in contents for t in _texts(c.get("parts"))]
    turn = Turn(text="\n".join(texts))
    for tool in body.get("tools") or []:
        for function in _get(tool, "functionDeclarations") or []:
            schema = _get(function, "parametersJsonSchema") or function.get("parameters")
            turn.tools.append(Tool(function.get("name", ""), schema))
    parts = contents[-1].get("parts") if contents else None
    responses = [_get(p, "functionResponse") for p in parts or [] if isinstance(p, dict)]
    responses = [r for r in responses if isinstance(r, dict)]
    if responses:
        response = responses[-1].get("response")
        if isinstance(response, dict) and len(response) == 1:  # {"output": ...}, {"result": ...}
            response = next(iter(response.values()))
        turn.tool_output = response if isinstance(response, str) else _output_text(response)
    config = _get(body, "generationConfig") or {}
    schema = _get(config, "responseJsonSchema") or _get(config, "responseSchema")
    if schema is not None:
        turn.schema = schema
    return turn


def _get(obj: Any, camel: str) -> Any:
    """A Gemini field in either spelling."""
    if not isinstance(obj, dict):
        return None
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return obj.get(camel, obj.get(snake))


def read_responses(body: dict[str, Any]) -> Turn:
    """OpenAI Responses, with Codex's namespaces, custom tools and `additional_tools` item."""
    items = body.get("input")
    items = [{"type": "message", "content": items}] if isinstance(items, str) else items or []
    items = [item for item in items if isinstance(item, dict)]
    texts = _texts(body.get("instructions"))
    texts += [
        t
        for item in items
        if item.get("type", "message") == "message"
        for t in _texts(item.get("content"))
    ]
    turn = Turn(text="\n".join(texts))
    tools = list(body.get("tools") or [])
    for item in items:
        if item.get("type") == "additional_tools":
            tools += item.get("tools") or []
    turn.tools = _responses_tools(tools, None)
    if items and items[-1].get("type") in ("function_call_output", "custom_tool_call_output"):
        turn.tool_output = _output_text(items[-1].get("output"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        turn.forced = choice.get("name")
    text_format = (body.get("text") or {}).get("format") or {}
    if text_format.get("type") == "json_schema":
        turn.schema = text_format.get("schema", {})
    return turn


def _responses_tools(tools: list[Any], namespace: str | None) -> list[Tool]:
    found = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        if kind == "namespace":
            found += _responses_tools(tool.get("tools") or [], tool.get("name"))
        elif kind == "function":
            found.append(Tool(tool.get("name", ""), tool.get("parameters"), namespace=namespace))
        elif kind == "custom":
            found.append(Tool(tool.get("name", ""), freeform=True, namespace=namespace))
    return found
