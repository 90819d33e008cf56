"""What the fake model answers: the same script in every wire format.

A request is first read into a `Turn` (its text, the tools it offers, the tool output it ends
with, the JSON schema it asks for) by `bench.agents.reading`; `decide` picks the `Reply`; the
format's writer (`bench.agents.writing`) sends it. The script, in order:

0. the request forces a call of one of its tools (a `tool_choice` naming it): that call, with
   arguments valid for the tool's schema, as the API guarantees (Anthropic's and OpenAI's
   forced tool choice; a JSON answer asked through a tool, as the gateway asks older Claudes);
1. a JSON schema is asked for (Gemini CLI's routing call, a next-speaker check): a valid
   instance of it, as a model under structured output gives (a number with no lower bound is
   1, not 0: inside the ranges such schemas state only in their descriptions, "1-100");
2. the conversation ends in a tool's output: "The shell printed: <that output>". "42" in an
   agent's final answer therefore proves the tool ran and its result came back;
3. the prompt holds `MARKER` and the request offers a shell tool (picked by name, as a model
   would): a call of that tool running `COMMAND`, with arguments built from the tool's own
   declared schema (a tool that arrives without its parameters gets `{}`, as a real model
   would call it);
4. otherwise a short greeting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.mock.schema import instance

MARKER = "AGENT-ROUNDTRIP"
COMMAND = "expr 40 + 2"
PROMPT = f"{MARKER}: run `{COMMAND}` with your shell tool and tell me what it printed."
GREETING = "Hello from the fake upstream."
# Each client's own shell tool, by name: Claude Code, Gemini CLI, Codex (a model it has no
# metadata for), older Codex, Codex's code-mode `exec` (freeform JavaScript), our SDK rows.
SHELL_TOOLS = ("Bash", "run_shell_command", "exec_command", "shell_command", "shell", "exec")
# Codex's `exec` takes JavaScript that calls its nested tools.
EXEC_SOURCE = f'text(await tools.exec_command({{cmd: "{COMMAND}"}}))'
_COMMAND_PARAMETERS = ("command", "cmd")


@dataclass
class Tool:
    name: str
    schema: Any = None  # its parameters' JSON schema, as received
    freeform: bool = False  # a `custom` tool: its input is raw text, not JSON arguments
    namespace: str | None = None  # Codex groups tools in namespaces


@dataclass
class Turn:
    text: str = ""  # every text of the conversation, joined
    tools: list[Tool] = field(default_factory=list)
    tool_output: str | None = None  # the output the conversation ends with, if it does
    schema: Any = None  # the JSON schema the answer must follow, if one is asked for
    forced: str | None = None  # the tool the request makes the model call, if it names one


@dataclass
class Call:
    tool: Tool
    arguments: dict[str, Any] = field(default_factory=dict)  # for a function tool
    input: str = ""  # for a freeform tool

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


@dataclass
class Reply:
    text: str = ""
    call: Call | None = None


def decide(turn: Turn) -> Reply:
    forced = next((tool for tool in turn.tools if tool.name == turn.forced), None)
    if forced is not None:
        arguments = instance(_model_like(forced.schema or {"type": "object"}))
        return Reply(call=Call(forced, arguments if isinstance(arguments, dict) else {}))
    if turn.schema is not None:
        return Reply(text=orjson.dumps(instance(_model_like(turn.schema))).decode())
    if turn.tool_output is not None:
        return Reply(text=f"The shell printed: {turn.tool_output.strip()}")
    shell = shell_tool(turn.tools)
    if MARKER in turn.text and shell is not None:
        return Reply(call=shell_call(shell))
    return Reply(text=GREETING)


def shell_tool(tools: list[Tool]) -> Tool | None:
    by_name = {tool.name: tool for tool in tools}
    return next((by_name[name] for name in SHELL_TOOLS if name in by_name), None)


def shell_call(tool: Tool) -> Call:
    source = EXEC_SOURCE if tool.name == "exec" else COMMAND
    if tool.freeform:
        return Call(tool, input=source)
    properties = tool.schema.get("properties") if isinstance(tool.schema, dict) else None
    if not isinstance(properties, dict):
        return Call(tool)  # no parameters declared: nothing a model could fill in
    name = next((n for n in _COMMAND_PARAMETERS if n in properties), None)
    if name is None:  # one string parameter (a freeform tool turned into a function)
        strings = [n for n, s in properties.items() if _type(s) == "string"]
        name = strings[0] if len(strings) == 1 else None
    if name is None:
        return Call(tool)
    if _type(properties[name]) == "array":  # Codex's older `shell`: an argv
        return Call(tool, {name: ["bash", "-lc", source]})
    return Call(tool, {name: source})


def _type(schema: Any) -> str:
    kind = schema.get("type") if isinstance(schema, dict) else None
    return kind.lower() if isinstance(kind, str) else ""


def _model_like(schema: Any) -> Any:
    """The schema with Gemini's upper-case types ("OBJECT") in JSON Schema's lower case, and a
    lower bound of 1 on unbounded numbers."""
    if isinstance(schema, list):
        return [_model_like(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _model_like(value) for key, value in schema.items() if key != "type"}
    if "type" in schema:
        out["type"] = _model_like_type(schema["type"])
    if out.get("type") in ("integer", "number") and "minimum" not in out:
        out["minimum"] = 1
    return out


def _model_like_type(kind: Any) -> Any:
    if isinstance(kind, str):
        return kind.lower()
    if isinstance(kind, list):  # ["STRING", "NULL"]
        return [k.lower() if isinstance(k, str) else k for k in kind]
    return kind
