"""Chat deltas as OpenAI chat chunks: the chat format written, by every provider that
translates (Anthropic, Gemini, Ollama, ...) for a chat client.

`ChatStreamWriter` emits the client's SSE bytes for one stream in OpenAI's chunk shape, already
normalised the way the gateway promises: content, reasoning and tool-call deltas in the chunks
before the last; `finish_reason` and `usage` only in the last chunk; then `data: [DONE]`.
`chat_completion()` builds the matching non-streamed answer, so that the concatenated stream
and the whole answer agree for every provider.

Reasoning (Anthropic "thinking", Gemini "thought" parts) travels as `delta.reasoning` text, and
the block's signature as `delta.reasoning_signature`, so a client can send both back on the
assistant message of its next turn (`reasoning`, `reasoning_signature`). A redacted thinking
block (its content encrypted) travels as `delta.reasoning_redacted: [data]`, a list the OpenAI
SDK's accumulator extends, and goes back the same way (`reasoning_redacted: [data, ...]`).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import orjson

from formats.translator import openai_error_event
from wire.errors import GatewayError
from wire.sse import Comment, encode, encode_data
from wire.usage import Usage

DONE = b"data: [DONE]\n\n"
# What follows a chunk's delta, and ends its event.
_CHUNK_TAIL = b',"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
_ids = itertools.count(1)


def new_id(prefix: str = "chatcmpl") -> str:
    """A unique id shaped as OpenAI's: `chatcmpl-...`, and `resp_...`, `msg_...`, `fc_...`
    for the Responses API's objects."""
    separator = "-" if prefix == "chatcmpl" else "_"
    return f"{prefix}{separator}{os.getpid():x}{next(_ids):08x}{int(time.time()):x}"


def usage_object(usage: Usage | None) -> dict[str, Any] | None:
    """OpenAI's usage object. `prompt_tokens` counts every input token, cached ones included."""
    if usage is None:
        return None
    result: dict[str, Any] = {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.total,
    }
    if usage.cache_read is not None or usage.cache_write is not None:
        details: dict[str, int] = {"cached_tokens": usage.cache_read or 0}
        if usage.cache_write is not None:
            details["cache_creation_tokens"] = usage.cache_write
        result["prompt_tokens_details"] = details
    if usage.reasoning is not None:
        result["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning}
    return result


class ChatStreamWriter:
    """The chat sink: one translated stream's OpenAI chunks. The delta methods are called as
    the upstream's events arrive, then `finish()` once; `error()` ends the stream instead."""

    def __init__(self, model: str, *, id: str | None = None, created: int | None = None) -> None:
        self.id = id or new_id()
        self.model = model
        self.created = created or int(time.time())
        self._role_sent = False
        self._head: bytes | None = None  # rendered at the first chunk

    def _chunk_head(self) -> bytes:
        """Every chunk's event up to its delta (the same for the whole stream, so rendered
        once): `data: {"id":..,"object":..,"created":..,"model":..,"choices":[{"index":0,
        "delta":`, byte for byte as orjson renders the whole chunk."""
        return (
            b'data: {"id":'
            + orjson.dumps(self.id)
            + b',"object":"chat.completion.chunk","created":'
            + orjson.dumps(self.created)
            + b',"model":'
            + orjson.dumps(self.model)
            + b',"choices":[{"index":0,"delta":'
        )

    def opening(self) -> bytes:
        return b""  # the first delta carries the role

    def named(self, model: str, id: str | None = None) -> None:
        self.model = model
        if id:
            self.id = id
        self._head = None

    def comment(self, text: str) -> bytes:
        return encode(Comment(text))  # an upstream's keepalive keeps the client's alive

    def content(self, text: str) -> bytes:
        return self._chunk({"content": text}) if text else b""

    def reasoning(self, text: str) -> bytes:
        return self._chunk({"reasoning": text}) if text else b""

    def reasoning_signature(self, signature: str) -> bytes:
        return self._chunk({"reasoning_signature": signature}) if signature else b""

    def reasoning_redacted(self, data: str) -> bytes:
        return self._chunk({"reasoning_redacted": [data]}) if data else b""

    def tool_call(self, index: int, id: str, name: str, arguments: str = "") -> bytes:
        """The start of tool call `index` (0, 1, ... in the order the calls began)."""
        call = {
            "index": index,
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return self._chunk({"content": None, "tool_calls": [call]})

    def tool_arguments(self, index: int, fragment: str) -> bytes:
        if not fragment:
            return b""
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def finish(self, finish_reason: str, usage: Usage | None) -> bytes:
        """The last chunk (finish_reason and usage, empty delta) and `[DONE]`."""
        head = self._chunk({"role": "assistant", "content": ""}) if not self._role_sent else b""
        last = self._envelope(
            [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}],
            usage_object(usage),
        )
        return head + encode_data(orjson.dumps(last)) + DONE

    def error(self, error: GatewayError) -> bytes:
        return openai_error_event(error)

    def _chunk(self, delta: dict[str, Any]) -> bytes:
        if not self._role_sent:  # OpenAI's first delta carries the role
            self._role_sent = True
            delta = {"role": "assistant", **delta}
        # Only the delta is encoded per chunk: the envelope around it is fixed per stream.
        head = self._head
        if head is None:
            head = self._head = self._chunk_head()
        return head + orjson.dumps(delta) + _CHUNK_TAIL

    def _envelope(self, choices: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage,
        }


def chat_completion(
    *,
    model: str,
    content: str | None,
    finish_reason: str,
    usage: Usage | None,
    tool_calls: list[dict[str, Any]] | None = None,
    reasoning: str | None = None,
    reasoning_signature: str | None = None,
    reasoning_redacted: list[str] | None = None,
    id: str | None = None,
    created: int | None = None,
) -> bytes:
    """The non-streamed answer. `tool_calls` items: {"id", "name", "arguments" (a JSON string)}."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reasoning:
        message["reasoning"] = reasoning
    if reasoning_signature:
        message["reasoning_signature"] = reasoning_signature
    if reasoning_redacted:
        message["reasoning_redacted"] = reasoning_redacted
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in tool_calls
        ]
    return orjson.dumps(
        {
            "id": id or new_id(),
            "object": "chat.completion",
            "created": created or int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
            ],
            "usage": usage_object(usage),
        }
    )


class AnswerCollector:
    """A sink that builds the non-streamed answer, so that a whole answer shaped as the
    stream's events (Gemini's, Ollama's) is read by the very code that reads the stream."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._signature = ""
        self._redacted: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self._finish = "stop"
        self._usage: Usage | None = None

    def opening(self) -> bytes:
        return b""

    def named(self, model: str, id: str | None = None) -> None:
        self.model = model

    def content(self, text: str) -> bytes:
        self._text.append(text)
        return b""

    def reasoning(self, text: str) -> bytes:
        self._reasoning.append(text)
        return b""

    def reasoning_signature(self, signature: str) -> bytes:
        self._signature += signature
        return b""

    def reasoning_redacted(self, data: str) -> bytes:
        self._redacted.append(data)
        return b""

    def tool_call(self, index: int, id: str, name: str, arguments: str = "") -> bytes:
        self._calls.append({"id": id, "name": name, "arguments": arguments})
        return b""

    def tool_arguments(self, index: int, fragment: str) -> bytes:
        self._calls[index]["arguments"] += fragment
        return b""

    def finish(self, finish_reason: str, usage: Usage | None) -> bytes:
        self._finish, self._usage = finish_reason, usage
        return b""

    def error(self, error: GatewayError) -> bytes:
        raise error

    def comment(self, text: str) -> bytes:
        return b""

    def answer(self) -> bytes:
        text = "".join(self._text)
        return chat_completion(
            model=self.model,
            content=text or (None if self._calls else ""),
            finish_reason=self._finish,
            usage=self._usage,
            tool_calls=self._calls,
            reasoning="".join(self._reasoning) or None,
            reasoning_signature=self._signature or None,
            reasoning_redacted=self._redacted or None,
        )
