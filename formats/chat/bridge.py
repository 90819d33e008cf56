"""The base of the bridges that answer in another client's format from a chat stream.

A bridge is the `ChatSink` the provider's chat translator writes its deltas to (content,
reasoning and its signature, tool calls, then the finish with its usage, or an error): instead
of OpenAI's chunks it makes its client's events (`formats.responses.from_chat` for the Responses
API, `formats.anthropic.from_chat` for Anthropic, `formats.gemini.from_chat` for Gemini). The
translator keeps the stream's state (`finished`, `failure`, `usage`); the bridge only writes.
`validation_error` is the 400 the bridges answer a request that does not fit their structs.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from formats.chat.from_chat import new_id
from wire.errors import BadRequest, GatewayError, UpstreamProtocolError
from wire.usage import Usage


def validation_error(exc: msgspec.ValidationError, prefix: str = "") -> BadRequest:
    """The 400 for a client body that does not fit a bridge's request structs, naming the
    field: msgspec says "<problem> - at `$.path`" ("Object missing required field `x`" for a
    missing one, which is then the field named)."""
    problem, at, where = str(exc).rpartition(" - at `$")
    if not at:
        problem, where = str(exc), ""
    path = prefix + where.rstrip("`")
    code = "invalid_value"
    if problem.startswith("Object missing required field `"):
        path += "." + problem.removeprefix("Object missing required field `").rstrip("`")
        code = "missing_required_parameter"
    param = path.lstrip(".") or None
    message = f"Invalid value for '{param}': {problem}." if param else f"{problem}."
    return BadRequest(message, param=param, code=code)


def read_completion(body: bytes) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A non-streamed chat completion, for a bridge to answer in its format: the completion,
    its first choice and that choice's message (an unreadable answer is a 502)."""
    try:
        completion = orjson.loads(body)
        choice = (completion.get("choices") or [{}])[0]
        message = choice.get("message") or {}
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        raise UpstreamProtocolError(
            f"The upstream sent an answer we cannot read: {body[:200]!r}"
        ) from None
    return completion, choice, message


class ChatBridge:
    """A `ChatSink` that answers in another client's format.

    The provider's chat translator writes its deltas here, as it would to the chat writer;
    subclasses implement the `_on_*` hooks, each returning the client bytes for one delta.
    Tool calls arrive started once (`_on_tool_call`, with an id even when the upstream gave
    none), then their argument fragments.
    """

    def __init__(self, model: str) -> None:
        self.model = model  # the upstream's model name once it names one
        self._calls: set[int] = set()  # the chat tool-call indexes that started

    def __repr__(self) -> str:
        return f"<{type(self).__name__} model={self.model!r} calls={len(self._calls)}>"

    def opening(self) -> bytes:
        return b""

    def named(self, model: str, id: str | None = None) -> None:
        self.model = model

    def content(self, text: str) -> bytes:
        return self._on_text(text) if text else b""

    def reasoning(self, text: str) -> bytes:
        return self._on_reasoning(text) if text else b""

    def reasoning_signature(self, signature: str) -> bytes:
        return self._on_signature(signature) if signature else b""

    def reasoning_redacted(self, data: str) -> bytes:
        return self._on_redacted(data) if data else b""

    def tool_call(self, index: int, id: str, name: str, arguments: str = "") -> bytes:
        out = b""
        if index not in self._calls:
            self._calls.add(index)
            out = self._on_tool_call(index, id or new_id("call"), name)
        return out + self.tool_arguments(index, arguments)

    def tool_arguments(self, index: int, fragment: str) -> bytes:
        if index not in self._calls:  # arguments of a call never started: start it
            return self.tool_call(index, "", "", fragment)
        return self._on_tool_arguments(index, fragment) if fragment else b""

    def finish(self, finish_reason: str, usage: Usage | None) -> bytes:
        return self._on_finish(finish_reason, usage)

    def error(self, error: GatewayError) -> bytes:
        return self._on_error(error)

    def comment(self, text: str) -> bytes:
        return self._on_comment(text)

    # --- the hooks ---

    def _on_text(self, text: str) -> bytes:
        raise NotImplementedError

    def _on_reasoning(self, text: str) -> bytes:
        raise NotImplementedError

    def _on_signature(self, signature: str) -> bytes:
        raise NotImplementedError

    def _on_redacted(self, data: str) -> bytes:
        return b""  # a format with no redacted thinking of its own has nothing to show

    def _on_tool_call(self, index: int, id: str, name: str) -> bytes:
        raise NotImplementedError

    def _on_tool_arguments(self, index: int, fragment: str) -> bytes:
        raise NotImplementedError

    def _on_finish(self, finish_reason: str, usage: Usage | None) -> bytes:
        raise NotImplementedError

    def _on_error(self, error: GatewayError) -> bytes:
        raise NotImplementedError

    def _on_comment(self, text: str) -> bytes:
        raise NotImplementedError
