"""A Responses API request as the equivalent chat request, for a provider that only speaks chat.

The input items become chat messages (function calls and their outputs become tool calls and
tool messages), the tools the chat API can run become functions (`formats.responses.tools`),
and `reasoning.effort`, `instructions` and `text.format` their chat equivalents; fields chat
has no place for are not sent.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from formats.responses.tools import ClientTools, chat_call, tool_output
from wire.errors import BadRequest
from wire.operations import RawBody, decode_field


def _raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(orjson.dumps(value))


class _Part(msgspec.Struct, gc=False):
    type: str


class _Item(msgspec.Struct, gc=False):
    type: str = "message"
    role: str = "user"
    content: str | list[_Part] | None = None


class _Text(msgspec.Struct, gc=False):
    format: dict[str, Any] | None = None


# The fields the bridge reads into a chat request, typed as far as it reads them (the rest of
# each item and part passes unread): a wrongly typed one is a 400 naming it, not a 500 where
# the bridge meets it. (instructions, tools and reasoning are typed in gateway.server.parsing.)
_READ_DECODERS = {
    "input": msgspec.json.Decoder(str | list[_Item] | None),
    "text": msgspec.json.Decoder(_Text | None),
}


def responses_to_chat(body: RawBody, provider: str) -> RawBody:
    """A Responses request body as the equivalent chat request body."""
    return bridge_request(body, provider)[0]


def bridge_request(body: RawBody, provider: str) -> tuple[RawBody, ClientTools]:
    """A Responses request body as the equivalent chat request body, and the client's tools
    as the chat functions it offers (`formats/responses/tools.py`)."""
    for name, decoder in _READ_DECODERS.items():
        if name in body:
            decode_field(name, body[name], decoder)
    fields = {key: msgspec.json.decode(value) for key, value in body.items()}
    if fields.get("previous_response_id"):
        raise BadRequest(
            f"previous_response_id is not supported for provider {provider!r}: the gateway "
            "stores no responses; send the whole conversation in `input`.",
            param="previous_response_id",
            code="unsupported_parameter",
        )
    tools = ClientTools.read(fields.get("tools"), fields.get("input"), provider)
    messages: list[dict[str, Any]] = []
    if fields.get("instructions"):
        messages.append({"role": "system", "content": fields["instructions"]})
    messages += _input_messages(fields.get("input"))
    chat: dict[str, Any] = {"model": fields["model"], "messages": messages}
    if fields.get("stream"):
        chat["stream"] = True
    for name in ("temperature", "top_p", "user", "metadata"):
        if fields.get(name) is not None:
            chat[name] = fields[name]
    if fields.get("max_output_tokens") is not None:
        chat["max_tokens"] = fields["max_output_tokens"]
    effort = (fields.get("reasoning") or {}).get("effort")
    if effort:  # asked for; `reasoning: {"summary": ...}` alone asks for no effort
        chat["reasoning_effort"] = effort
    text_format = (fields.get("text") or {}).get("format")
    if text_format and text_format.get("type") == "json_schema":
        schema = {k: v for k, v in text_format.items() if k != "type"}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif text_format and text_format.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if tools.functions:  # chat refuses tool_choice and parallel_tool_calls without tools
        chat["tools"] = tools.functions
        choice = tools.chat_choice(fields.get("tool_choice"))
        if choice is not None:
            chat["tool_choice"] = choice
        if fields.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = fields["parallel_tool_calls"]
    return {key: _raw(value) for key, value in chat.items()}, tools


_PART_TYPES = {"input_text": "text", "output_text": "text", "text": "text"}


def _input_messages(items: Any) -> list[dict[str, Any]]:
    if items is None:
        return []
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise BadRequest("`input` must be a string or a list of items.", param="input")
    messages: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []  # tool outputs' images: a tool message takes none
    signature = None  # a reasoning item's, for the assistant turn it led to
    for item in items:
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if images and kind not in _OUTPUTS:  # after the tool messages of one turn
            messages.append({"role": "user", "content": images})
            images = []
        if kind == "message":
            role = item.get("role", "user")
            # Every chat server takes "system"; OpenAI's reads it as "developer" where it should.
            role = "system" if role == "developer" else role
            messages.append({"role": role, "content": _content(item)})
        elif kind in ("function_call", "custom_tool_call"):
            call = chat_call(item)
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant":
                # parallel calls, and the text said before them, share one assistant turn
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in _OUTPUTS:
            content, carried = tool_output(item.get("output"))
            images += carried
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": content}
            )
        elif kind == "additional_tools":
            continue  # read apart, with the request's tools
        elif kind == "reasoning":
            # Its text is not replayed through chat, but its signature (encrypted_content)
            # goes back with the turn it led to: Gemini checks its thought signatures.
            signature = item.get("encrypted_content") or signature
            continue
        else:
            raise BadRequest(f"Unsupported input item type {kind!r}.", param="input")
        last = messages[-1] if messages else None
        if signature and last is not None and last["role"] == "assistant":
            last["reasoning_signature"] = signature
            signature = None
    if images:
        messages.append({"role": "user", "content": images})
    return messages


_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})


def _content(item: dict[str, Any]) -> Any:
    content = item.get("content")
    if isinstance(content, str) or content is None:
        return content or ""
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind in _PART_TYPES:
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            url = part.get("image_url") or part.get("file_id")
            image = {"url": url}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise BadRequest(f"Unsupported content part type {kind!r}.", param="input")
    return parts
