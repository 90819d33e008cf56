"""The OpenAI chat request as typed structs, for the providers that translate it.

The OpenAI pass-through never builds these (it forwards the raw body); a translating provider
decodes the body once into `ChatRequest` and maps its fields to the upstream's format.
A body that does not fit is a 400 naming the field (`messages[2].content`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import BadRequest
from providers.base import RawBody


class ImageURL(msgspec.Struct, gc=False):
    url: str
    detail: str | None = None


class ContentPart(msgspec.Struct, gc=False):
    type: str  # "text", "image_url", "input_audio", "file", ...
    text: str | None = None
    image_url: ImageURL | None = None
    input_audio: dict[str, Any] | None = None
    file: dict[str, Any] | None = None


class FunctionCall(msgspec.Struct, gc=False):
    name: str
    arguments: str = ""  # a JSON text, as OpenAI sends it


class ToolCall(msgspec.Struct, gc=False):
    id: str
    function: FunctionCall
    type: str = "function"


class Message(msgspec.Struct, gc=False):
    role: str  # "system", "developer", "user", "assistant", "tool"
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # A previous answer's reasoning, sent back so the provider can continue from it.
    reasoning: str | None = None
    reasoning_signature: str | None = None


class FunctionDef(msgspec.Struct, gc=False):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, gc=False):
    function: FunctionDef
    type: str = "function"


class ChatRequest(msgspec.Struct, gc=False):
    model: str
    messages: list[Message]
    stream: bool | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


_decoder = msgspec.json.Decoder(ChatRequest)


def decode_chat_request(body: RawBody) -> ChatRequest:
    try:
        return _decoder.decode(msgspec.json.encode(body))
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `$")
        param = where.rstrip("`").lstrip(".") or None
        raise BadRequest(
            f"Invalid value for '{param}': {message}." if param else f"{exc}.",
            param=param,
            code="invalid_value",
        ) from None


def text_of(content: str | list[ContentPart] | None) -> str:
    """The text of a message's content (its text parts joined), for providers that take text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text or "" for part in content if part.type == "text")
