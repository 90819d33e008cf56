"""Anthropic's Messages API for providers that are not Anthropic: translated through chat.

`messages_to_chat` (from `formats.anthropic.request`) turns a `/v1/messages` request into a
chat request; `MessagesFromChat` turns our normalised chat stream into Anthropic's event
stream, event for event as Anthropic sends it
(platform.claude.com/docs/en/build-with-claude/streaming): `message_start`, then per content
block `content_block_start`, its `content_block_delta`s (`text_delta`, `thinking_delta`,
`signature_delta`, `input_json_delta`) and `content_block_stop`, then `message_delta` (the
stop_reason and the usage) and `message_stop`; a failure ends the stream with an `error`
event. Every event has its `event:` line: the anthropic SDK skips an event without one.
`message_from_chat` does the same for a non-streamed answer (platform.claude.com/docs/en/api/
messages, the Message object). Errors in Anthropic's shape: `formats.anthropic.error_shape`.
"""

from __future__ import annotations

from typing import Any

import orjson

from formats.anthropic.error_shape import anthropic_error_event
from formats.chat.bridge import ChatBridge, read_completion
from formats.chat.from_chat import new_id
from wire.errors import GatewayError
from wire.sse import Comment, encode, encode_event
from wire.usage import Usage, from_openai

# finish_reason -> stop_reason (the inverse of formats.anthropic.to_chat's table). Chat cannot
# say which stop sequence matched, so `stop` is always end_turn and `stop_sequence` null.
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def anthropic_usage(usage: Usage | None) -> dict[str, int]:
    """Anthropic's usage: `input_tokens` counts the uncached input only, the cache reads and
    writes are counted apart."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    cache_read = usage.cache_read or 0
    cache_creation = usage.cache_write or 0
    return {
        "input_tokens": max(usage.input - cache_read - cache_creation, 0),
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": usage.output,
    }


def stop_reason(finish_reason: str | None) -> str:
    """Anthropic's stop_reason for a chat finish_reason (unknown ones end the turn)."""
    return _STOP_REASONS.get(finish_reason or "", "end_turn")


def _event(kind: str, **fields: Any) -> bytes:
    """One SSE event as Anthropic frames it: the type on the `event:` line and in the data."""
    return encode_event({"type": kind, **fields})


def _message(id: str, model: str, content: list[Any], stop: str | None, usage: Any) -> Any:
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


class MessagesFromChat(ChatBridge):
    """A ChatSink that writes Anthropic's events.

    Content blocks are numbered in the order they start. A block closes when the next one
    starts: thinking, text and each tool call are blocks of their own, as Anthropic sends them.
    """

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._id = new_id("msg")
        self._started = False
        self._open: tuple[str, int] | None = None  # the open block: its kind and index
        self._blocks = 0  # blocks started so far
        self._tool_blocks: dict[int, int] = {}  # chat tool-call index -> block index

    def _start(self) -> bytes:
        """message_start, once, before the first block: the usage is not known yet (chat
        reports it last), so it comes in message_delta, as cumulative counts do."""
        if self._started:
            return b""
        self._started = True
        usage = {"input_tokens": 0, "output_tokens": 0}
        return _event("message_start", message=_message(self._id, self.model, [], None, usage))

    def _begin(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._start() + self._close()
        index = self._blocks
        self._blocks += 1
        self._open = (kind, index)
        return out + _event("content_block_start", index=index, content_block=block)

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index = self._open[1]
        self._open = None
        return _event("content_block_stop", index=index)

    def _delta(self, kind: str, block: dict[str, Any], delta: dict[str, Any]) -> bytes:
        """A delta for the open block of `kind`, opening one first if another is open."""
        out = b"" if self._open is not None and self._open[0] == kind else self._begin(kind, block)
        assert self._open is not None
        return out + _event("content_block_delta", index=self._open[1], delta=delta)

    def _on_text(self, text: str) -> bytes:
        block = {"type": "text", "text": ""}
        return self._delta("text", block, {"type": "text_delta", "text": text})

    def _on_reasoning(self, text: str) -> bytes:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        return self._delta("thinking", block, {"type": "thinking_delta", "thinking": text})

    def _on_signature(self, signature: str) -> bytes:
        # It belongs to the open thinking block; one with none open (Gemini signs its function
        # calls) gets a thinking block of its own, so the client can send it back.
        block = {"type": "thinking", "thinking": "", "signature": ""}
        delta = {"type": "signature_delta", "signature": signature}
        return self._delta("thinking", block, delta)

    def _on_redacted(self, data: str) -> bytes:
        # A block of its own with no deltas, as Anthropic streams it.
        return self._begin("redacted_thinking", {"type": "redacted_thinking", "data": data})

    def _on_tool_call(self, index: int, id: str, name: str) -> bytes:
        block = {"type": "tool_use", "id": id, "name": name, "input": {}}
        out = self._begin("tool_use", block)
        assert self._open is not None
        self._tool_blocks[index] = self._open[1]
        return out

    def _on_tool_arguments(self, index: int, fragment: str) -> bytes:
        # A fragment for a call whose block was closed (calls streamed interleaved, which no
        # provider of ours does) still names its block: the SDKs accumulate by index.
        delta = {"type": "input_json_delta", "partial_json": fragment}
        return _event("content_block_delta", index=self._tool_blocks[index], delta=delta)

    def _on_finish(self, finish_reason: str, usage: Usage | None) -> bytes:
        delta = {"stop_reason": stop_reason(finish_reason), "stop_sequence": None}
        return (
            self._start()
            + self._close()
            + _event("message_delta", delta=delta, usage=anthropic_usage(usage))
            + _event("message_stop")
        )

    def _on_error(self, error: GatewayError) -> bytes:
        return anthropic_error_event(error)

    def _on_comment(self, text: str) -> bytes:
        return encode(Comment(text))  # an upstream's keepalive keeps the client's alive


def message_from_chat(body: bytes) -> bytes:
    """A non-streamed chat completion as an Anthropic Message, agreeing with the stream:
    thinking, redacted thinking, then text, then one tool_use block per call."""
    completion, choice, message = read_completion(body)
    content: list[dict[str, Any]] = []
    if message.get("reasoning") or message.get("reasoning_signature"):
        content.append(
            {
                "type": "thinking",
                "thinking": message.get("reasoning") or "",
                "signature": message.get("reasoning_signature") or "",
            }
        )
    for data in message.get("reasoning_redacted") or ():
        content.append({"type": "redacted_thinking", "data": data})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_id("call"),
                "name": function.get("name") or "",
                "input": _arguments(function.get("arguments")),
            }
        )
    answer = _message(
        new_id("msg"),
        completion.get("model") or "",
        content,
        stop_reason(choice.get("finish_reason")),
        anthropic_usage(from_openai(completion.get("usage"))),
    )
    return orjson.dumps(answer)


def _arguments(arguments: Any) -> Any:
    """A call's arguments as the object `input` must be. Arguments that are not a JSON object
    (cut short at max_tokens) become {}, the `input` a streamed tool_use block starts with."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
