"""Anthropic's `count_tokens` answered by the gateway itself, for a provider that has none.

No model is called: the count is an estimate from `wire.tokens` (a documented heuristic), of
what Anthropic counts (platform.claude.com/docs/en/build-with-claude/token-counting):

- the system prompt, and every message's content, `PER_MESSAGE` tokens each for its framing
  (a `system` message inside `messages` counts as any other);
- text as text; a tool_use block its name and input; a tool_result its content;
- thinking blocks only in the current assistant turn (after the last user message that is not
  only tool results): Anthropic drops earlier turns' thinking from the context. A
  redacted_thinking block's content is encrypted: it is not counted;
- an image `IMAGE_TOKENS` (Anthropic's cost of an image scaled to its limit, about
  width x height / 750 at 1.15 megapixels); a PDF `PDF_PAGE_TOKENS` a page (pages counted in
  the file, 1 when it is not inline); a text document its text;
- with tools: each tool's name, description and schema (any other tool: its JSON), plus the
  system prompt Anthropic adds for tool use (`TOOL_PROMPT`: 346 tokens with tool_choice auto
  or none, 313 with any or tool, as most Claude models count it);
- any other block: its JSON.

Fields are read leniently: anything Anthropic takes is counted, never refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import msgspec

from wire.operations import RawBody
from wire.tokens import PER_MESSAGE, PER_REQUEST, estimate_json, estimate_text

IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 3000
TOOL_PROMPT = {"auto": 346, "none": 346, "any": 313, "tool": 313}
_PAGE = re.compile(rb"/Type\s*/Page(?![a-z])")
# Keys that carry no content the model reads.
_NOT_CONTENT = frozenset({"type", "cache_control", "id", "tool_use_id", "citations"})


def estimate_input_tokens(body: RawBody) -> int:
    """The input tokens of a Messages (or count_tokens) request, estimated."""
    fields = {key: _decode(body[key]) for key in ("system", "messages", "tools") if key in body}
    choice = _decode(body["tool_choice"]) if "tool_choice" in body else None
    messages = fields.get("messages")
    messages = messages if isinstance(messages, list) else []
    tokens = PER_REQUEST + _content(fields.get("system"), thinking=False)
    current = _current_turn(messages)
    for i, message in enumerate(messages):
        if isinstance(message, dict):
            tokens += PER_MESSAGE + _content(message.get("content"), thinking=i > current)
    tools = fields.get("tools")
    if isinstance(tools, list) and tools:
        kind = choice.get("type") if isinstance(choice, dict) else "auto"
        tokens += TOOL_PROMPT.get(str(kind), TOOL_PROMPT["auto"])
        tokens += sum(_tool(tool) for tool in tools)
    return tokens


def _decode(raw: msgspec.Raw) -> Any:
    return msgspec.json.decode(raw)


def _current_turn(messages: list[Any]) -> int:
    """The index of the last user message that is more than tool results (-1: none): the
    thinking of assistant turns after it is still in the context."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else [content]
        if any(not _is_block(block, "tool_result") for block in blocks):
            return i
    return -1


def _is_block(block: Any, kind: str) -> bool:
    return isinstance(block, dict) and block.get("type") == kind


def _content(content: Any, *, thinking: bool) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return estimate_text(content)
    if isinstance(content, list):
        return sum(_block(block, thinking=thinking) for block in content)
    return estimate_json(content)


def _block(block: Any, *, thinking: bool) -> int:
    if not isinstance(block, dict):
        return estimate_json(block)
    kind = block.get("type")
    if kind == "text":
        return estimate_text(str(block.get("text", "")))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        return _document(block)
    if kind in ("tool_use", "server_tool_use"):
        return estimate_text(str(block.get("name", ""))) + estimate_json(block.get("input"))
    if kind == "tool_result":
        return _content(block.get("content"), thinking=thinking)
    if kind == "thinking":
        return estimate_text(str(block.get("thinking", ""))) if thinking else 0
    if kind == "redacted_thinking":
        return 0
    return estimate_json({k: v for k, v in block.items() if k not in _NOT_CONTENT})


def _document(block: dict[str, Any]) -> int:
    source = block.get("source")
    if not isinstance(source, dict):
        return PDF_PAGE_TOKENS
    kind = source.get("type")
    if kind == "text":
        return estimate_text(str(source.get("data", "")))
    if kind == "content":
        return _content(source.get("content"), thinking=False)
    if kind == "base64":
        try:
            pdf = base64.b64decode(str(source.get("data", "")), validate=False)
        except (binascii.Error, ValueError):
            pdf = b""
        return PDF_PAGE_TOKENS * max(1, len(_PAGE.findall(pdf)))
    return PDF_PAGE_TOKENS


def _tool(tool: Any) -> int:
    if not isinstance(tool, dict):
        return estimate_json(tool)
    if tool.get("type") in (None, "custom"):
        return (
            estimate_text(str(tool.get("name", "")))
            + estimate_text(str(tool.get("description", "")))
            + estimate_json(tool.get("input_schema"))
        )
    return estimate_json({k: v for k, v in tool.items() if k != "cache_control"})
