"""The Responses API for providers that only speak chat: their chat answers as Responses.

(The request goes the other way: `formats.responses.request`.) `ResponsesFromChat` is the sink
a provider's chat translator writes its deltas to, and writes the Responses event stream from
them, event for event as OpenAI sends it (`response.created`, `response.output_item.added`,
`response.output_text.delta`, ..., `response.completed` with usage), so the OpenAI SDK's
`responses.stream()` helper works against any provider; `response_from_chat` does the same for
a non-streamed answer. Both echo the request's settings (`ResponseEcho`, from `response_echo`)
as OpenAI's Response object does. Sans-IO, like every translation: deltas in, bytes out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
import orjson

from formats.chat.bridge import ChatBridge, read_completion
from formats.chat.from_chat import new_id
from formats.responses.error_shape import error_fields
from formats.responses.tools import ClientTools
from wire.errors import GatewayError
from wire.operations import RawBody, decode_field
from wire.sse import encode_event
from wire.usage import Usage, from_openai


def response_usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read or 0,
            "cache_write_tokens": usage.cache_write or 0,
        },
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning or 0},
        "total_tokens": usage.total,
    }


# finish_reason -> the Response's incomplete_details.reason; any other finish completes it.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _default_text() -> dict[str, Any]:
    return {"format": {"type": "text"}}


class ResponseEcho(msgspec.Struct, frozen=True, gc=False):
    """The request's settings a Response object repeats, with OpenAI's defaults for those the
    request left out (or sent as null)."""

    tools: list[Any] = msgspec.field(default_factory=list)
    tool_choice: Any = "auto"
    instructions: Any = None  # a string (OpenAI also echoes a prompt's items here)
    temperature: float = 1.0
    top_p: float = 1.0
    max_output_tokens: int | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    parallel_tool_calls: bool = True
    text: dict[str, Any] = msgspec.field(default_factory=_default_text)


_ECHO_DECODERS = {
    field.name: msgspec.json.Decoder(field.type | None)
    for field in msgspec.structs.fields(ResponseEcho)
}


def response_echo(body: RawBody) -> ResponseEcho:
    """What a Responses request's Response will echo; a wrongly typed field is a 400."""
    given = {}
    for name, decoder in _ECHO_DECODERS.items():
        raw = body.get(name)
        value = None if raw is None else decode_field(name, raw, decoder)
        if value is not None:
            given[name] = value
    return ResponseEcho(**given)


def _response(
    id: str,
    created: int,
    model: str,
    status: str,
    output: list[Any],
    usage: Any,
    echo: ResponseEcho,
    incomplete: str | None = None,
) -> dict[str, Any]:
    """The Response object; `incomplete`: why the answer stopped short (the status is then
    "incomplete", whatever `status` says)."""
    return {
        "id": id,
        "object": "response",
        "created_at": created,
        "status": "incomplete" if incomplete else status,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "error": None,
        "model": model,
        "output": output,
        **msgspec.structs.asdict(echo),
        "usage": usage,
    }


def _message_item(id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _reasoning_item(id: str, text: str, signature: str | None) -> dict[str, Any]:
    return {
        "id": id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}],
        "encrypted_content": signature,
    }


def response_from_chat(body: bytes, echo: ResponseEcho, tools: ClientTools | None = None) -> bytes:
    """A non-streamed chat completion as a Responses API response; its tool calls as the
    client declared the tools (`tools`)."""
    tools = tools or ClientTools()
    completion, choice, message = read_completion(body)
    output: list[dict[str, Any]] = []
    if message.get("reasoning"):
        output.append(
            _reasoning_item(new_id("rs"), message["reasoning"], message.get("reasoning_signature"))
        )
    if message.get("content"):
        output.append(_message_item(new_id("msg"), message["content"]))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            tools.call_item(
                call.get("id"), function.get("name"), function.get("arguments", ""), "completed"
            )
        )
    incomplete = _INCOMPLETE.get(choice.get("finish_reason") or "")
    if incomplete and output and "status" in output[-1]:
        output[-1]["status"] = "incomplete"  # the item the answer stopped in
    return orjson.dumps(
        _response(
            new_id("resp"),
            completion.get("created") or int(time.time()),
            completion.get("model", ""),
            "completed",
            output,
            response_usage(from_openai(completion.get("usage"))),
            echo,
            incomplete,
        )
    )


class _Textual(NamedTuple):
    """An output item made of text, and the events that stream it: a message's output_text
    (its `content_index`) or a reasoning item's summary_text (its `summary_index`)."""

    name: str
    id_prefix: str
    item: Callable[[str], dict[str, Any]]  # the item as it opens, for its id
    part: Callable[[str], dict[str, Any]]  # its part, with the text so far
    text_event: str
    part_event: str
    index_key: str
    extra: dict[str, Any]  # what the text events carry besides


_MESSAGE = _Textual(
    "message",
    "msg",
    lambda id: {
        "id": id,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    },
    lambda text: {"type": "output_text", "text": text, "annotations": [], "logprobs": []},
    "response.output_text",
    "response.content_part",
    "content_index",
    {"logprobs": []},
)
_REASONING = _Textual(
    "reasoning",
    "rs",
    lambda id: {"id": id, "type": "reasoning", "summary": []},
    lambda text: {"type": "summary_text", "text": text},
    "response.reasoning_summary_text",
    "response.reasoning_summary_part",
    "summary_index",
    {},
)
_TEXTUAL = {kind.name: kind for kind in (_MESSAGE, _REASONING)}


class ResponsesFromChat(ChatBridge):
    """A ChatSink that writes the Responses API's events, as OpenAI sends them."""

    def __init__(self, model: str, echo: ResponseEcho, tools: ClientTools | None = None) -> None:
        super().__init__(model)
        self._echo = echo
        self._tools = tools or ClientTools()  # what each chat function was to the client
        self._id = new_id("resp")
        self._created = int(time.time())
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # finished items, in output order
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._items: dict[int, dict[str, Any]] = {}  # chat tool-call index -> its item

    def opening(self) -> bytes:
        response = _response(
            self._id, self._created, self.model, "in_progress", [], None, self._echo
        )
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def _on_text(self, text: str) -> bytes:
        return self._textual(_MESSAGE, text)

    def _on_reasoning(self, text: str) -> bytes:
        return self._textual(_REASONING, text)

    def _on_signature(self, signature: str) -> bytes:
        if self._open and self._open["kind"] == "reasoning":
            self._open["signature"] = signature
        return b""

    def _on_tool_call(self, index: int, id: str, name: str) -> bytes:
        out = self._close()
        item = self._tools.call_item(id, name, "", "in_progress")
        self._open = {"kind": item["type"], "item": item, "text": "", "called": name}
        self._items[index] = self._open
        return out + self._event("response.output_item.added", output_index=self._index, item=item)

    def _on_tool_arguments(self, index: int, fragment: str) -> bytes:
        state = self._items[index]
        state["text"] += fragment
        if state["kind"] == "custom_tool_call":
            return b""  # its input is in the JSON arguments: told whole when the call ends
        return self._event(
            "response.function_call_arguments.delta",
            item_id=state["item"]["id"],
            output_index=self._position(state),
            delta=fragment,
        )

    def _on_finish(self, finish_reason: str, usage: Usage | None) -> bytes:
        incomplete = _INCOMPLETE.get(finish_reason)
        return self._close("incomplete" if incomplete else "completed") + self._finish(
            incomplete, usage
        )

    def _on_error(self, error: GatewayError) -> bytes:
        return self._event("error", **error_fields(error))

    def _on_comment(self, text: str) -> bytes:
        return b""  # the Responses events carry no comments

    def _textual(self, kind: _Textual, text: str) -> bytes:
        """A delta of a message's text or a reasoning summary, opening its item first."""
        out = b""
        if not self._open or self._open["kind"] != kind.name:
            out += self._close()
            item = kind.item(new_id(kind.id_prefix))
            self._open = {"kind": kind.name, "item": item, "text": "", "signature": None}
            out += self._event("response.output_item.added", output_index=self._index, item=item)
            at = {"item_id": item["id"], "output_index": self._index, kind.index_key: 0}
            out += self._event(f"{kind.part_event}.added", **at, part=kind.part(""))
        self._open["text"] += text
        at = {"item_id": self._open["item"]["id"], "output_index": self._index, kind.index_key: 0}
        return out + self._event(f"{kind.text_event}.delta", **at, delta=text, **kind.extra)

    @property
    def _index(self) -> int:
        """The output index of the open item (it comes after every finished one)."""
        return len(self._output)

    def _position(self, state: dict[str, Any]) -> int:
        return self._index if state is self._open else self._output.index(state["final"])

    def _close(self, status: str = "completed") -> bytes:
        """Finish the open item: its `.done` events, then `response.output_item.done` (with
        `status`: "incomplete" when the answer stopped inside it)."""
        state, self._open = self._open, None
        if state is None:
            return b""
        index, item, text = len(self._output), state["item"], state["text"]
        out = b""
        kind = _TEXTUAL.get(state["kind"])
        if kind is not None:
            at = {"item_id": item["id"], "output_index": index, kind.index_key: 0}
            out += self._event(f"{kind.text_event}.done", **at, text=text, **kind.extra)
            out += self._event(f"{kind.part_event}.done", **at, part=kind.part(text))
            if kind is _MESSAGE:
                final = _message_item(item["id"], text, status)
            else:
                final = _reasoning_item(item["id"], text, state["signature"])
        else:
            final = self._tools.call_item(
                item["call_id"], state["called"], text, status, item["id"]
            )
            out += self._call_done(final, index)
        state["final"] = final
        self._output.append(final)
        return out + self._event("response.output_item.done", output_index=index, item=final)

    def _call_done(self, call: dict[str, Any], index: int) -> bytes:
        """The events that end a call's arguments, or a custom tool call's input (sent whole,
        since the upstream wrote it inside JSON), before its `output_item.done`."""
        at = {"item_id": call["id"], "output_index": index}
        if call["type"] == "function_call":
            arguments = call["arguments"]
            return self._event("response.function_call_arguments.done", **at, arguments=arguments)
        given = call["input"]
        delta = self._event("response.custom_tool_call_input.delta", **at, delta=given)
        return (delta if given else b"") + self._event(
            "response.custom_tool_call_input.done", **at, input=given
        )

    def _finish(self, incomplete: str | None, usage: Usage | None) -> bytes:
        response = _response(
            self._id,
            self._created,
            self.model,
            "completed",
            self._output,
            response_usage(usage),
            self._echo,
            incomplete,
        )
        kind = "response.incomplete" if incomplete else "response.completed"
        return self._event(kind, response=response)

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return encode_event(payload)
