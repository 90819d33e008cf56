"""The base of the bridges that answer in another client's format from our chat stream.

A bridge wraps the provider's chat translator, whose output is our normalised OpenAI chat SSE
(`providers.chunks.ChatStreamWriter`: content, `reasoning`, `reasoning_signature` and tool-call
deltas, then one last chunk with finish_reason and usage, then `data: [DONE]`), reads that
output back chunk by chunk and calls one hook per delta; the subclass turns each into its
client's events (`providers.messages_bridge` for Anthropic, `providers.gemini_bridge` for
Gemini). Sans-IO like every translation: bytes in, bytes out.

Besides the StreamTranslator contract (`feed`, `end`, `error_event`, `finished`), a bridge
exposes `failure` (the GatewayError its final error event reported, None until then) and
`usage` (OpenAI's usage object, from the last chunk) for limits and metrics.
`validation_error` is the 400 both bridges answer a request that does not fit their structs.
"""

from __future__ import annotations

from typing import Any

import msgspec

from providers.anthropic_stream import STATUS_BY_TYPE
from providers.base import StreamTranslator
from providers.chunks import new_id
from providers.gemini import STATUS_CODES
from wire.errors import BadRequest, GatewayError, UpstreamProtocolError
from wire.sse import Comment, Event, SSEDecoder, SSEProtocolError


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


# --- the chunk, only the fields a bridge reads (msgspec skips the rest) ---


class _FunctionDelta(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(msgspec.Struct, gc=False):
    index: int = 0
    id: str | None = None
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None
    reasoning: str | None = None
    reasoning_signature: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct, gc=False):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct, gc=False):
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: dict[str, Any] | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode

# An error event carries no status. Our own codes and the upstreams' error types tell it;
# anything else failed upstream: 502.
_STATUS_BY_CODE: dict[str, int] = {
    **STATUS_BY_TYPE,
    **STATUS_CODES,
    "upstream_timeout": 504,
    "upstream_unreachable": 502,
    "upstream_protocol_error": 502,
}


def error_from_event(error: Any) -> GatewayError:
    """The GatewayError an error event of our chat stream (`{"error": {...}}`) describes."""
    if not isinstance(error, dict):
        return UpstreamProtocolError(str(error) if error else "The upstream failed.")
    code, kind = error.get("code"), error.get("type")
    status = _STATUS_BY_CODE.get(str(code)) or _STATUS_BY_CODE.get(str(kind)) or 502
    return GatewayError(
        str(error.get("message") or "The upstream failed."),
        status=status,
        type=str(kind) if kind else "upstream_error",
        code=str(code) if code is not None else None,
        param=error.get("param"),
    )


class ChatBridge:
    """A StreamTranslator: the provider's chat translator inside, the subclass's format outside.

    Subclasses implement the `_on_*` hooks, each returning the client bytes for one delta.
    """

    def __init__(self, chat: StreamTranslator, model: str) -> None:
        self.finished = False
        self.failure: GatewayError | None = None
        self.usage: dict[str, Any] | None = None
        self.model = model  # the upstream's model name once a chunk names it
        self._chat = chat
        self._decoder = SSEDecoder()
        self._calls: set[int] = set()  # the chat tool-call indexes that started

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} model={self.model!r} finished={self.finished} "
            f"calls={len(self._calls)} failure={self.failure!r}>"
        )

    def feed(self, data: bytes) -> bytes:
        return self._read(self._chat.feed(data))

    def end(self) -> bytes:
        return self._read(self._chat.end())

    def error_event(self, error: GatewayError) -> bytes:
        self.finished = True
        self.failure = error
        return self._on_error(error)

    def _read(self, chat: bytes) -> bytes:
        if self.finished:
            return b""
        out: list[bytes] = []
        try:
            items = self._decoder.feed(chat) if chat else []
        except SSEProtocolError as exc:
            return self.error_event(UpstreamProtocolError(str(exc)))
        for item in items:
            if type(item) is Comment:
                out.append(self._on_comment(item))
            elif type(item) is Event and item.data != "[DONE]":
                out.append(self._chunk(item.data))
                if self.finished:
                    break
        if self._chat.finished and not self.finished:
            error = UpstreamProtocolError("The upstream stream ended without finishing.")
            out.append(self.error_event(error))
        return b"".join(out)

    def _chunk(self, data: str) -> bytes:
        try:
            chunk = _decode_chunk(data)
        except msgspec.DecodeError:
            error = UpstreamProtocolError(f"The upstream sent a malformed chunk: {data[:200]!r}")
            return self.error_event(error)
        if chunk.error is not None:
            # The inner translator reported the failure: keep its GatewayError when it has
            # one (status and all), else read the event.
            failure = getattr(self._chat, "failure", None)
            if not isinstance(failure, GatewayError):
                failure = error_from_event(chunk.error)
            return self.error_event(failure)
        if chunk.model:
            self.model = chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        out: list[bytes] = []
        for choice in chunk.choices or ():
            if choice.index != 0:  # a bridge asks for one choice
                continue
            delta = choice.delta
            if delta is not None:
                if delta.reasoning:
                    out.append(self._on_reasoning(delta.reasoning))
                if delta.reasoning_signature:
                    out.append(self._on_signature(delta.reasoning_signature))
                if delta.content:
                    out.append(self._on_text(delta.content))
                for call in delta.tool_calls or ():
                    out.append(self._tool_call(call))
            if choice.finish_reason is not None:
                self.finished = True
                out.append(self._on_finish(choice.finish_reason, chunk.usage))
        return b"".join(out)

    def _tool_call(self, call: _ToolCallDelta) -> bytes:
        function = call.function or _FunctionDelta()
        out = b""
        if call.index not in self._calls:
            self._calls.add(call.index)
            call_id = call.id or new_id("call")
            out = self._on_tool_call(call.index, call_id, function.name or "")
        if function.arguments:
            out += self._on_tool_arguments(call.index, function.arguments)
        return out

    # --- the hooks ---

    def _on_text(self, text: str) -> bytes:
        raise NotImplementedError

    def _on_reasoning(self, text: str) -> bytes:
        raise NotImplementedError

    def _on_signature(self, signature: str) -> bytes:
        raise NotImplementedError

    def _on_tool_call(self, index: int, id: str, name: str) -> bytes:
        raise NotImplementedError

    def _on_tool_arguments(self, index: int, fragment: str) -> bytes:
        raise NotImplementedError

    def _on_finish(self, finish_reason: str, usage: dict[str, Any] | None) -> bytes:
        raise NotImplementedError

    def _on_error(self, error: GatewayError) -> bytes:
        raise NotImplementedError

    def _on_comment(self, comment: Comment) -> bytes:
        raise NotImplementedError
