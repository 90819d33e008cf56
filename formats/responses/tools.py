"""The Responses API's tools for a chat upstream, and the upstream's tool calls back.

A chat API knows only function tools. `ClientTools.read` makes them from what a Responses
request offers, and remembers what each became, so that a call goes back to the client as the
client declared the tool:

- `function` tools go as they are;
- `namespace` tools (a group of tools, in `tools` or in an `additional_tools` input item, as
  Codex sends them) become their tools, each named `namespace__name`; a call comes back as a
  `function_call` with `name` and `namespace` apart, as Codex looks it up. The namespace
  `functions` is the one OpenAI's models see every function tool in (harmony's
  `namespace functions {...}`), so its tools keep their own names (Codex's shell, `exec`, is
  `exec` to the upstream's model, as to OpenAI's);
- `custom` (freeform) tools become functions taking one string, `{"input": ...}`, their grammar
  told in the description; a call comes back as a `custom_tool_call` with that `input`;
- tools a chat upstream cannot run (OpenAI's hosted `web_search`, `file_search`, ..., and the
  client-run built-ins with call items of their own: `computer_use_preview`, `local_shell`, ...)
  are left out, and named in `dropped` (the route says so in a header).

A name that breaks chat's rules (letters, digits, `_`, `-`; at most 64) is cut and given a hash
tail. The next turn's calls and outputs become chat tool calls and tool messages the same way
(`chat_call`, `tool_output`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, NamedTuple

import msgspec
import orjson

from formats.chat.from_chat import new_id
from wire.errors import BadRequest

# Tool types a chat upstream has no way to run: left out of its request.
UNRUNNABLE = frozenset(
    {
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "image_generation",
        "mcp",
        "tool_search",
        "computer",
        "computer_use",
        "computer_use_preview",
        "local_shell",
        "shell",
        "apply_patch",
        "programmatic_tool_calling",
    }
)
DROPPED_TOOLS_HEADER = "x-gateway-dropped-tools"

_CHAT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input."}},
    "required": ["input"],
    "additionalProperties": False,
}


# The namespace function tools are in for OpenAI's models: no prefix needed.
DEFAULT_NAMESPACE = "functions"


def chat_name(name: str, namespace: str | None = None) -> str:
    """The chat function name of a tool: `namespace__name` (`name` in the default
    namespace), within chat's rules."""
    flat = f"{namespace}__{name}" if namespace and namespace != DEFAULT_NAMESPACE else name
    if _CHAT_NAME.fullmatch(flat):
        return flat
    digest = hashlib.sha256(flat.encode()).hexdigest()[:8]
    return f"{_NOT_NAME.sub('_', flat)[:55]}_{digest}"


class Declared(NamedTuple):
    """A tool as the client declared it, for a call to go back as it expects."""

    kind: str  # "function" | "custom"
    name: str
    namespace: str | None


class ClientTools:
    """The chat functions made of a Responses request's tools, and what each one was."""

    def __init__(self) -> None:
        self.functions: list[dict[str, Any]] = []  # the chat request's `tools`
        self.declared: dict[str, Declared] = {}  # chat name -> the client's tool, if renamed
        self.dropped: list[str] = []  # the types left out, each once

    @classmethod
    def read(cls, tools: Any, items: Any, provider: str) -> ClientTools:
        """From `tools` and the `additional_tools` items of `input`."""
        read = cls()
        for tool in tools if isinstance(tools, list) else ():
            read._add(tool, provider)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and item.get("type") == "additional_tools":
                for tool in _listed(item.get("tools")):
                    read._add(tool, provider)
        return read

    def _add(self, tool: Any, provider: str) -> None:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "namespace":
            namespace, about = tool.get("name"), _text(tool.get("description"))
            if not isinstance(namespace, str) or not namespace:
                raise BadRequest("A namespace tool needs a `name`.", param="tools")
            for inner in _listed(tool.get("tools")):
                inner_kind = inner.get("type") if isinstance(inner, dict) else None
                if inner_kind not in ("function", "custom"):
                    raise BadRequest(
                        f"Tool type {inner_kind!r} is not supported inside namespace "
                        f"{namespace!r} (function and custom tools are).",
                        param="tools",
                    )
                self._function(inner, namespace, about)
        elif kind in ("function", "custom"):
            self._function(tool, None, "")
        elif isinstance(kind, str) and kind in UNRUNNABLE:
            if kind not in self.dropped:
                self.dropped.append(kind)
        else:
            raise BadRequest(
                f"Tool type {kind!r} is not supported for provider {provider!r}: its chat API "
                "takes function, custom and namespace tools; hosted tools are left out.",
                param="tools",
                code="unsupported_parameter",
            )

    def _function(self, tool: dict[str, Any], namespace: str | None, about: str) -> None:
        kind, name = tool["type"], tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"A {kind} tool needs a `name`.", param="tools")
        called = chat_name(name, namespace)
        if any(function["function"]["name"] == called for function in self.functions):
            raise BadRequest(f"Two tools are named {called!r} for a chat API.", param="tools")
        description = "\n\n".join(text for text in (about, _text(tool.get("description"))) if text)
        function: dict[str, Any] = {"name": called}
        if kind == "custom":
            function["description"] = _freeform(description, tool.get("format"))
            function["parameters"] = _INPUT_SCHEMA
        else:
            if description:
                function["description"] = description
            function |= {key: tool[key] for key in ("parameters", "strict") if key in tool}
        self.functions.append({"type": "function", "function": function})
        if kind == "custom" or called != name or namespace:
            self.declared[called] = Declared(kind, name, namespace)

    def chat_choice(self, choice: Any) -> Any:
        """`tool_choice` for the chat request; None when it names a tool left out, or none
        is left (chat refuses a choice without tools)."""
        if not self.functions:
            return None
        if isinstance(choice, str):
            return choice
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind == "allowed_tools":
            return choice.get("mode")
        if kind not in ("function", "custom"):
            return None
        name, namespace = choice.get("name"), choice.get("namespace")
        called = chat_name(name, namespace) if isinstance(name, str) else name
        if kind == "custom" and namespace is None:  # a custom choice names no namespace
            found = [chat for chat, tool in self.declared.items() if tool[:2] == (kind, name)]
            called = found[0] if found else called
        return {"type": "function", "function": {"name": called}}

    def call_item(
        self, call_id: str | None, name: str | None, arguments: str, status: str, id: str = ""
    ) -> dict[str, Any]:
        """The Responses output item of the upstream's call of chat function `name`: a
        `custom_tool_call` or a `function_call`, named (and namespaced) as declared."""
        tool = self.declared.get(name or "") or Declared("function", name or "", None)
        custom = tool.kind == "custom"
        item: dict[str, Any] = {
            "id": id or new_id("ctc" if custom else "fc"),
            "type": "custom_tool_call" if custom else "function_call",
            "status": status,
            "call_id": call_id,
            "name": tool.name,
        }
        if tool.namespace:
            item["namespace"] = tool.namespace
        if custom:
            item["input"] = custom_input(arguments)
        else:
            item["arguments"] = arguments
        return item


def _json(value: Any) -> str:
    """Any decoded JSON value as text again (msgspec: integers past 64 bits too)."""
    return msgspec.json.encode(value).decode()


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _freeform(description: str, format: Any) -> str:
    """A custom tool's description, telling the model how its one string is written."""
    how = "Call it with one string, `input`: the tool's raw input, as free text (not JSON)."
    if isinstance(format, dict) and format.get("type") == "grammar":
        syntax = format.get("syntax") or "lark"
        how += f" That input must match this {syntax} grammar:\n{format.get('definition', '')}"
    return f"{description}\n\n{how}" if description else how


def custom_input(arguments: str) -> str:
    """A custom tool's input from the chat arguments the upstream wrote for it: `{"input":
    ...}`, or whatever else it wrote, as it is."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return str(value["input"])
    return value if isinstance(value, str) else arguments


def chat_call(item: dict[str, Any]) -> dict[str, Any]:
    """A `function_call` or `custom_tool_call` input item as the chat tool call it was."""
    name, namespace = item.get("name"), item.get("namespace")
    if isinstance(name, str) and (namespace is None or isinstance(namespace, str)):
        name = chat_name(name, namespace)
    if item.get("type") == "custom_tool_call":
        arguments = _json({"input": item.get("input", "")})
    else:
        arguments = item.get("arguments", "")
    return {
        "id": item.get("call_id"),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def tool_output(output: Any) -> tuple[str, list[dict[str, Any]]]:
    """A tool output (a string, or a list of `input_text` / `input_image` parts) as a chat
    tool message's text, and the images it carried (a tool message takes none)."""
    if isinstance(output, str):
        return output, []
    if not isinstance(output, list):
        return _json(output), []
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for part in output:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "input_image" and (part.get("image_url") or part.get("file_id")):
            image = {"url": part.get("image_url") or part.get("file_id")}
            if part.get("detail"):
                image["detail"] = part["detail"]
            images.append({"type": "image_url", "image_url": image})
        else:
            texts.append(_json(part))
    return "\n".join(texts), images
