"""Anthropic's answers as ours: the Messages API event stream and the whole Message.

The stream (platform.claude.com/docs/en/build-with-claude/streaming) is `message_start`, then
for each content block `content_block_start`, `content_block_delta`s and `content_block_stop`,
then `message_delta` (stop_reason and cumulative usage) and `message_stop`; `ping` may come
anywhere, `error` ends a stream that already answered 200, and event types added later are
ignored, as the docs ask. Each event names its type on the SSE `event:` line, so events are
dispatched through a table keyed by that name, each decoded by its own small msgspec struct.

Anthropic numbers every content block; OpenAI numbers only tool calls. So tool calls get our own
index (0, 1, ... in the order their `tool_use` blocks start), whatever blocks come between.
A call of `JSON_TOOL` (the tool that carries a JSON answer, `formats.json_answer`) is no tool
call: its input is the message's text, and an answer that ended for it alone has stopped.
"""

from __future__ import annotations

from typing import Any

import msgspec

from formats.anthropic.error_shape import ErrorBody, decode_error, stream_error
from formats.chat.from_chat import chat_completion
from formats.json_answer import JSON_TOOL, answered
from formats.translator import ChatSink, EventTranslator, finish_reason
from wire.errors import UpstreamProtocolError
from wire.finish_reasons import ANTHROPIC
from wire.sse import Comment, Event, SSEDecoder
from wire.usage import Usage, from_anthropic

FINISH_REASONS = ANTHROPIC  # stop_reason -> finish_reason


class MessagesUsage(msgspec.Struct, gc=False):
    """Anthropic's usage: `input_tokens` excludes the cached ones, counted apart."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    def updated(self, later: MessagesUsage) -> MessagesUsage:
        """This usage with every field `later` reports (message_delta's counts are totals)."""
        return MessagesUsage(
            *(
                new if new is not None else old
                for old, new in zip(
                    msgspec.structs.astuple(self), msgspec.structs.astuple(later), strict=True
                )
            )
        )


def read_usage(reported: MessagesUsage | None) -> Usage | None:
    """The tokens Anthropic's usage counts (its input_tokens leave the cache out)."""
    if reported is None:
        return None
    return from_anthropic(
        reported.input_tokens or 0,
        reported.output_tokens or 0,
        reported.cache_read_input_tokens,
        reported.cache_creation_input_tokens,
    )


def reported_so_far(reported: MessagesUsage | None, delta_came: bool) -> Usage | None:
    """The counts of a stream cut before message_stop: the output's is not known (`estimated`)
    until message_delta came."""
    usage = read_usage(reported)
    if usage is None or delta_came:
        return usage
    return msgspec.structs.replace(usage, estimated=True)


# --- the stream's events: only the fields we use; msgspec skips the rest ---


class _Message(msgspec.Struct, gc=False):
    id: str = ""
    model: str = ""
    usage: MessagesUsage | None = None


class _MessageStart(msgspec.Struct, gc=False):
    message: _Message


class _Block(msgspec.Struct, gc=False):
    type: str
    id: str = ""
    name: str = ""
    text: str = ""
    thinking: str = ""
    signature: str = ""
    data: str = ""  # a redacted_thinking block's


class _BlockStart(msgspec.Struct, gc=False):
    index: int
    content_block: _Block


class _Delta(msgspec.Struct, gc=False):
    type: str
    text: str = ""
    partial_json: str = ""
    thinking: str = ""
    signature: str = ""


class _BlockDelta(msgspec.Struct, gc=False):
    index: int
    delta: _Delta


class _BlockStop(msgspec.Struct, gc=False):
    index: int


class _StopDelta(msgspec.Struct, gc=False):
    stop_reason: str | None = None


class _MessageDelta(msgspec.Struct, gc=False):
    delta: _StopDelta | None = None
    usage: MessagesUsage | None = None


class _MessageStop(msgspec.Struct, gc=False):
    pass


class _TypeProbe(msgspec.Struct, gc=False):
    type: str = ""


_probe = msgspec.json.Decoder(_TypeProbe)


class _ToolBlock:
    """A tool_use block being streamed: our index for it, and whether it sent arguments."""

    __slots__ = ("index", "sent_arguments")

    def __init__(self, index: int) -> None:
        self.index = index
        self.sent_arguments = False


class MessagesStream(EventTranslator[Event | Comment]):
    """One Anthropic stream translated to deltas (the provider's chat translator)."""

    terminal = "message_stop event"

    def __init__(self, provider: str, model: str, sink: ChatSink) -> None:
        super().__init__(provider, sink, SSEDecoder())
        self._model = model
        self._tools: dict[int, _ToolBlock] = {}  # Anthropic's block index -> our tool call
        self._answers: dict[int, bool] = {}  # JSON_TOOL blocks -> whether they wrote text
        self._stop_reason: str | None = None
        self._usage: MessagesUsage | None = None

    def __repr__(self) -> str:
        return (
            f"<MessagesStream provider={self.provider!r} finished={self.finished} "
            f"tools={len(self._tools)} stop_reason={self._stop_reason!r}>"
        )

    @property
    def usage_so_far(self) -> Usage | None:
        """message_start's counts (the input's), and message_delta's if it came: Anthropic
        counts the output only there (message_start's output_tokens is not yet the answer's)."""
        return reported_so_far(self._usage, self._stop_reason is not None)

    def handle(self, item: Event | Comment) -> bytes:
        if type(item) is Comment:
            return self.sink.comment(item.text)
        assert type(item) is Event
        return self.decode(item.event or event_type(item.data), item.data)

    def _on_message_start(self, start: _MessageStart) -> bytes:
        message = start.message
        self.sink.named(message.model or self._model, message.id or None)
        self._usage = message.usage
        return b""

    def _on_block_start(self, start: _BlockStart) -> bytes:
        block = start.content_block
        sink = self.sink
        if block.type == "text":
            return sink.content(block.text)
        if block.type == "thinking":
            return sink.reasoning(block.thinking) + sink.reasoning_signature(block.signature)
        if block.type == "tool_use":
            if block.name == JSON_TOOL:  # the answer itself, written as the tool's input
                self._answers[start.index] = False
                return b""
            tool = self._tools[start.index] = _ToolBlock(len(self._tools))
            return sink.tool_call(tool.index, block.id, block.name)
        if block.type == "redacted_thinking":  # opaque, but needed back in a tool loop
            return sink.reasoning_redacted(block.data)
        # server_tool_use / web_search_tool_result ran at Anthropic: nothing an OpenAI client
        # can act on.
        return b""

    def _on_block_delta(self, event: _BlockDelta) -> bytes:
        delta = event.delta
        kind = delta.type
        if kind == "text_delta":
            return self.sink.content(delta.text)
        if kind == "input_json_delta":
            if event.index in self._answers and delta.partial_json:
                self._answers[event.index] = True
                return self.sink.content(delta.partial_json)
            tool = self._tools.get(event.index)
            if tool is None or not delta.partial_json:
                return b""
            tool.sent_arguments = True
            return self.sink.tool_arguments(tool.index, delta.partial_json)
        if kind == "thinking_delta":
            return self.sink.reasoning(delta.thinking)
        if kind == "signature_delta":
            return self.sink.reasoning_signature(delta.signature)
        return b""  # citations_delta and later kinds

    def _on_block_stop(self, stop: _BlockStop) -> bytes:
        if self._answers.get(stop.index) is False:  # an answer without input: an empty object
            self._answers[stop.index] = True
            return self.sink.content("{}")
        tool = self._tools.get(stop.index)
        if tool is not None and not tool.sent_arguments:
            # A call without parameters streams no JSON; clients json.loads the arguments.
            tool.sent_arguments = True
            return self.sink.tool_arguments(tool.index, "{}")
        return b""

    def _on_message_delta(self, event: _MessageDelta) -> bytes:
        if event.delta is not None and event.delta.stop_reason is not None:
            self._stop_reason = event.delta.stop_reason
        if event.usage is not None:
            self._usage = event.usage if self._usage is None else self._usage.updated(event.usage)
        return b""

    def _on_message_stop(self, _: _MessageStop) -> bytes:
        stop = answered(self._stop_reason, bool(self._answers), bool(self._tools))
        return self.finish(finish_reason(FINISH_REASONS, stop), read_usage(self._usage))

    def _on_error(self, body: ErrorBody) -> bytes:
        return self.error_event(stream_error(body))


def event_type(data: str) -> str:
    """An event without an `event:` line: its JSON's `type` says what it is."""
    try:
        return _probe.decode(data).type
    except msgspec.DecodeError:
        return ""


# The events a pass-through (`providers.anthropic.MessagesRelay`) reads too.
decode_message_start = msgspec.json.Decoder(_MessageStart).decode
decode_message_delta = msgspec.json.Decoder(_MessageDelta).decode

MessagesStream.events = {
    "message_start": (decode_message_start, MessagesStream._on_message_start),
    "content_block_start": (
        msgspec.json.Decoder(_BlockStart).decode,
        MessagesStream._on_block_start,
    ),
    "content_block_delta": (
        msgspec.json.Decoder(_BlockDelta).decode,
        MessagesStream._on_block_delta,
    ),
    "content_block_stop": (msgspec.json.Decoder(_BlockStop).decode, MessagesStream._on_block_stop),
    "message_delta": (decode_message_delta, MessagesStream._on_message_delta),
    "message_stop": (msgspec.json.Decoder(_MessageStop).decode, MessagesStream._on_message_stop),
    "error": (decode_error, MessagesStream._on_error),
}


# --- the whole Message (a non-streamed answer) ---


class _ContentBlock(msgspec.Struct, gc=False):
    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input: msgspec.Raw = msgspec.Raw(b"{}")
    thinking: str = ""
    signature: str = ""
    data: str = ""


class _Answer(msgspec.Struct, gc=False):
    id: str = ""
    model: str = ""
    content: list[_ContentBlock] = []
    stop_reason: str | None = None
    usage: MessagesUsage | None = None


_answer_decoder = msgspec.json.Decoder(_Answer)


def translate_message(body: bytes, provider: str, model: str) -> bytes:
    """A Messages API answer as our chat.completion JSON, agreeing with the streamed chunks:
    text blocks joined, tool_use blocks as tool calls, thinking as reasoning and signature."""
    try:
        answer = _answer_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocolError(
            f"Provider {provider!r} sent an answer we cannot read: {exc}"
        ) from None
    texts: list[str] = []
    thoughts: list[str] = []
    signatures: list[str] = []
    redacted: list[str] = []
    calls: list[dict[str, Any]] = []
    answers = False
    for block in answer.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "thinking":
            thoughts.append(block.thinking)
            signatures.append(block.signature)
        elif block.type == "redacted_thinking":
            redacted.append(block.data)
        elif block.type == "tool_use":
            arguments = bytes(block.input).decode() or "{}"
            if block.name == JSON_TOOL:  # the answer, as JSON text
                texts.append(arguments)
                answers = True
                continue
            calls.append({"id": block.id, "name": block.name, "arguments": arguments})
    stop = answered(answer.stop_reason, answers, bool(calls))
    return chat_completion(
        model=answer.model or model,
        content="".join(texts) if texts else None,
        finish_reason=finish_reason(FINISH_REASONS, stop),
        usage=read_usage(answer.usage),
        tool_calls=calls or None,
        reasoning="".join(thoughts) or None,
        reasoning_signature="".join(signatures) or None,
        reasoning_redacted=redacted or None,
        id=answer.id or None,
    )
