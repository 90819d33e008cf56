"""An OpenAI-compatible chat stream read into deltas, for a bridge to another client format.

The chat clients of an OpenAI-compatible upstream get its bytes through `ChunkNormaliser`
(`formats.chat.normaliser`), which parses as little as it can. A bridge (Responses, Anthropic's
Messages, Gemini's generateContent) needs the deltas themselves: `ChatChunkReader` decodes each
chunk once and writes its deltas to the bridge, holding the finish_reason back until `[DONE]`
(or the end of the stream), where the usage chunk has come too, as the normaliser does.
"""

from __future__ import annotations

from typing import Any

import msgspec

from formats.translator import ChatSink, EventTranslator
from wire.errors import UpstreamProtocolError, upstream_error_from_body
from wire.sse import Comment, Event, SSEDecoder
from wire.usage import from_openai


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
    reasoning_redacted: list[str] | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct, gc=False):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct, gc=False):
    """Only the fields a bridge reads; msgspec skips the rest."""

    model: str | None = None
    choices: list[_Choice] | None = None
    usage: dict[str, Any] | None = None
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


class ChatChunkReader(EventTranslator[Event | Comment]):
    """OpenAI chat chunks in, their first choice's deltas out to `sink`."""

    terminal = "[DONE]"

    def __init__(self, provider: str, sink: ChatSink) -> None:
        super().__init__(provider, sink, SSEDecoder())
        self._calls: set[int] = set()  # the tool-call indexes that started
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def handle(self, item: Event | Comment) -> bytes:
        if type(item) is Comment:
            return self.sink.comment(item.text)
        assert type(item) is Event
        data = item.data
        if data == "[DONE]":
            return self._done()
        try:
            chunk = _decode_chunk(data)
        except msgspec.DecodeError:
            return self.malformed("event", data)
        except RecursionError:
            return self.nested_too_deep()
        if chunk.error is not None:
            return self.error_event(upstream_error_from_body(502, data.encode(), self.provider))
        if chunk.model:
            self.sink.named(chunk.model)
        if chunk.usage is not None:
            self._usage = chunk.usage
        out = []
        for choice in chunk.choices or ():
            if choice.index != 0:  # a bridge asks for one choice
                continue
            if choice.delta is not None:
                out.append(self._delta(choice.delta))
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return b"".join(out)

    def ended(self) -> bytes:
        if self._finish is not None and not self._framing.pending:
            return self._done()  # some servers never send [DONE]; the stream did finish
        return super().ended()

    def _delta(self, delta: _Delta) -> bytes:
        sink = self.sink
        out = []
        if delta.reasoning:
            out.append(sink.reasoning(delta.reasoning))
        if delta.reasoning_signature:
            out.append(sink.reasoning_signature(delta.reasoning_signature))
        for data in delta.reasoning_redacted or ():
            out.append(sink.reasoning_redacted(data))
        if delta.content:
            out.append(sink.content(delta.content))
        for call in delta.tool_calls or ():
            function = call.function or _FunctionDelta()
            arguments = function.arguments or ""
            if call.index in self._calls:
                out.append(sink.tool_arguments(call.index, arguments))
            else:
                self._calls.add(call.index)
                out.append(
                    sink.tool_call(call.index, call.id or "", function.name or "", arguments)
                )
        return b"".join(out)

    def _done(self) -> bytes:
        if self._finish is None:
            return self.error_event(
                UpstreamProtocolError("The upstream stream ended without finishing.")
            )
        return self.finish(self._finish, from_openai(self._usage))
