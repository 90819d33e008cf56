"""Cohere (`type = "cohere"`): the v2 Chat API, `POST {base_url}/chat`.

Requests are translated from OpenAI's shape (docs.cohere.com/reference/chat): system, user,
assistant (with `tool_calls`, and `tool_plan` from the message's `reasoning`) and tool
messages; tools keep OpenAI's `{"type": "function", "function": {...}}` shape; `top_p` is `p`,
`stop` is `stop_sequences`. Streams are Cohere's SSE events (docs.cohere.com/docs/streaming,
docs.cohere.com/docs/tool-use-streaming): each is decoded with a small typed struct chosen by
its `type`, and written out with `ChatStreamWriter`. `message-end` is the terminal event.

Reasoning: a reasoning model's `thinking` content and the tool plan (`tool-plan-delta`, the
model's words before its tool calls) both travel as `delta.reasoning`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from formats.chat.from_chat import chat_completion
from formats.chat.request import (
    Asks,
    ChatRequest,
    ImageURL,
    Message,
    function_of,
    not_off,
    present,
    text_and_images,
    text_only,
)
from formats.translator import ChatSink, EventTranslator, finish_reason
from providers.adapter import TranslatingProvider
from providers.declaration import HttpProviderConfig, ProviderType
from providers.message_error import message_error
from wire.errors import BadRequest, GatewayError, UpstreamError, UpstreamProtocolError
from wire.operations import Operation
from wire.sse import Comment, Event, SSEDecoder
from wire.upstream import UpstreamRequest
from wire.usage import Usage

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


class CohereProviderConfig(HttpProviderConfig, frozen=True, tag="cohere"):
    pass


class CohereProvider(TranslatingProvider):
    """Cohere v2 chat, streamed and not."""

    operations = frozenset({Operation.CHAT})
    label = "Cohere"
    # OpenAI fields Cohere's chat has no equivalent for: a 400 rather than a silent change.
    unsupported: ClassVar[Mapping[str, Asks]] = {
        "n": lambda v: not_off(v) and v != 1,
        **dict.fromkeys(("logprobs", "top_logprobs", "logit_bias", "audio", "modalities"), not_off),
    }

    def __init__(self, name: str, config: CohereProviderConfig) -> None:
        super().__init__(name, config)
        self._url = self.base_url + "/chat"
        self._stream_headers = {**self.headers, "Accept": "text/event-stream"}

    def chat_request(self, request: ChatRequest, model: str, stream: bool) -> UpstreamRequest:
        headers = self._stream_headers if stream else self.headers
        return self.post(self._url, chat_body(request, model, stream), headers)

    def chat_translator(self, model: str, sink: ChatSink) -> CohereStream:
        return CohereStream(self.name, sink)

    def chat_answer(self, body: bytes, model: str) -> bytes:
        try:
            answer = _decode_response(body)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(f"Cohere sent an unreadable answer: {exc}") from None
        return response_to_completion(answer, model)

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return message_error(status, body, self.name)


# --- request -------------------------------------------------------------------------------


def chat_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """The Cohere v2 chat body for an OpenAI chat request."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": [_message(message, i) for i, message in enumerate(request.messages)],
        "stream": stream,
    }
    tools, tool_choice = _tools(request)
    if tools:
        payload["tools"] = tools
    if tool_choice:
        payload["tool_choice"] = tool_choice
    payload.update(
        present(
            max_tokens=request.token_limit,
            temperature=request.temperature,
            p=request.top_p,
            seed=request.seed,
            frequency_penalty=request.frequency_penalty,
            presence_penalty=request.presence_penalty,
            stop_sequences=request.stop_list or None,
            response_format=_response_format(request.response_format),
            thinking=_thinking(request.reasoning_effort),
        )
    )
    return payload


def _message(message: Message, i: int) -> dict[str, Any]:
    role = message.role
    if role in ("system", "developer"):
        return {"role": "system", "content": text_only(message, i)}
    if role == "user":
        return {"role": "user", "content": _user_content(message, i)}
    if role == "assistant":
        return _assistant(message, i)
    if role == "tool":
        if not message.tool_call_id:
            raise BadRequest(
                f"messages[{i}].tool_call_id is required for a tool message.",
                param=f"messages[{i}].tool_call_id",
                code="missing_required_parameter",
            )
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": text_only(message, i),
        }
    raise BadRequest(
        f"Invalid value for 'messages[{i}].role': {role!r}.",
        param=f"messages[{i}].role",
        code="invalid_value",
    )


def _user_content(message: Message, i: int) -> str | list[dict[str, Any]]:
    content = message.content
    if not isinstance(content, list):
        return content or ""
    return text_and_images(
        content,
        f"messages[{i}].content",
        "Cohere",
        lambda text: {"type": "text", "text": text},
        lambda image, _: {"type": "image_url", "image_url": _image_url(image)},
    )


def _image_url(image: ImageURL) -> dict[str, Any]:
    return {"url": image.url, "detail": image.detail} if image.detail else {"url": image.url}


def _assistant(message: Message, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant"}
    text = text_only(message, i)
    if text:
        out["content"] = text
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
        if message.reasoning:  # our reasoning of a tool-calling turn is Cohere's tool plan
            out["tool_plan"] = message.reasoning
    return out


def _tools(request: ChatRequest) -> tuple[list[dict[str, Any]], str | None]:
    functions = [function_of(tool, i, "Cohere") for i, tool in enumerate(request.tools or [])]
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "function": present(
                name=function.name,
                description=function.description,
                parameters=function.parameters,
            ),
        }
        for function in functions
    ]
    choice = request.tool_choice
    if choice is None or choice == "auto":
        return tools, None
    if choice == "required":
        return tools, "REQUIRED"
    if choice == "none":
        return tools, "NONE"
    # Cohere cannot name the tool: offer only that one, and require a call.
    name = choice.function.name
    named = [tool for tool in tools if tool["function"]["name"] == name]
    if not named:
        raise BadRequest(
            f"Invalid value for 'tool_choice': no tool is named {name!r}.",
            param="tool_choice",
            code="invalid_value",
        )
    return named, "REQUIRED"


def _response_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if response_format is None or response_format.get("type") == "text":
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    raise BadRequest(
        f"Invalid value for 'response_format.type': {kind!r}.",
        param="response_format",
        code="invalid_value",
    )


def _thinking(effort: str | None) -> dict[str, str] | None:
    """OpenAI's reasoning_effort as Cohere's switch: "none"/"minimal" off, any other on."""
    if effort is None:
        return None
    return {"type": "disabled" if effort in ("none", "minimal") else "enabled"}


# --- errors --------------------------------------------------------------------------------


def _finish_error(detail: str | None) -> UpstreamError:
    return UpstreamError(
        detail or "Cohere stopped the answer with finish_reason ERROR.",
        status=502,
        code="generation_error",
    )


# --- usage ---------------------------------------------------------------------------------


class _Tokens(msgspec.Struct, gc=False):
    input_tokens: float = 0  # Cohere's schema says number; they are whole
    output_tokens: float = 0


class _Usage(msgspec.Struct, gc=False):
    billed_units: _Tokens | None = None
    tokens: _Tokens | None = None


def _usage(raw: _Usage | None) -> Usage | None:
    """`tokens` counts what the model read and wrote; `billed_units` only when it is absent."""
    if raw is None:
        return None
    counts = raw.tokens or raw.billed_units
    if counts is None:
        return None
    return Usage(int(counts.input_tokens), int(counts.output_tokens))


# --- non-streamed answer -------------------------------------------------------------------


class _Function(msgspec.Struct, gc=False):
    name: str = ""
    arguments: str = ""


class _ToolCall(msgspec.Struct, gc=False):
    id: str = ""
    function: _Function = msgspec.field(default_factory=_Function)


class _Content(msgspec.Struct, gc=False):
    type: str = "text"
    text: str | None = None
    thinking: str | None = None


class _AnswerMessage(msgspec.Struct, gc=False):
    content: list[_Content] = []
    tool_plan: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Answer(msgspec.Struct, gc=False):
    id: str | None = None
    finish_reason: str | None = None
    message: _AnswerMessage = msgspec.field(default_factory=_AnswerMessage)
    usage: _Usage | None = None


_decode_response = msgspec.json.Decoder(_Answer).decode


def response_to_completion(answer: _Answer, model: str) -> bytes:
    """Cohere's non-streamed chat answer as OpenAI's `chat.completion`."""
    if answer.finish_reason == "ERROR":
        raise _finish_error(None)
    message = answer.message
    text = "".join(part.text or "" for part in message.content if part.type == "text")
    thinking = "".join(part.thinking or "" for part in message.content if part.type == "thinking")
    calls = [
        {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
        for call in message.tool_calls or []
    ]
    return chat_completion(
        model=model,
        content=text or (None if calls else ""),
        finish_reason=finish_reason(FINISH_REASONS, answer.finish_reason),
        usage=_usage(answer.usage),
        tool_calls=calls or None,
        reasoning=(thinking + (message.tool_plan or "")) or None,
    )


# --- stream --------------------------------------------------------------------------------


class _TypeProbe(msgspec.Struct, gc=False):
    type: str = ""


class _ContentDeltaBody(msgspec.Struct, gc=False):
    text: str | None = None
    thinking: str | None = None


class _ContentDeltaMessage(msgspec.Struct, gc=False):
    content: _ContentDeltaBody | None = None


class _ContentDeltaDelta(msgspec.Struct, gc=False):
    message: _ContentDeltaMessage | None = None


class _ContentDelta(msgspec.Struct, gc=False):
    delta: _ContentDeltaDelta | None = None


class _ToolPlanMessage(msgspec.Struct, gc=False):
    tool_plan: str = ""


class _ToolPlanDelta(msgspec.Struct, gc=False):
    message: _ToolPlanMessage | None = None


class _ToolPlan(msgspec.Struct, gc=False):
    delta: _ToolPlanDelta | None = None


class _ToolCallMessage(msgspec.Struct, gc=False):
    tool_calls: _ToolCall | None = None  # one call per event, not a list


class _ToolCallDeltaDelta(msgspec.Struct, gc=False):
    message: _ToolCallMessage | None = None


class _ToolCallEvent(msgspec.Struct, gc=False):
    delta: _ToolCallDeltaDelta | None = None


class _MessageEndDelta(msgspec.Struct, gc=False):
    finish_reason: str | None = None
    usage: _Usage | None = None
    error: str | None = None


class _MessageEnd(msgspec.Struct, gc=False):
    delta: _MessageEndDelta = msgspec.field(default_factory=_MessageEndDelta)


_probe = msgspec.json.Decoder(_TypeProbe).decode


def _call_of(event: _ToolCallEvent) -> _ToolCall | None:
    message = event.delta.message if event.delta else None
    return message.tool_calls if message else None


class CohereStream(EventTranslator[Event | Comment]):
    """One Cohere SSE stream as deltas. Events we do not show (message-start,
    content-start/end, citations, tool-call-end) are read and dropped."""

    terminal = "message-end event"

    def __init__(self, provider: str, sink: ChatSink) -> None:
        super().__init__(provider, sink, SSEDecoder())
        self._tool_calls = 0  # tool calls started so far: the next one's index

    def __repr__(self) -> str:
        return f"<CohereStream finished={self.finished} tool_calls={self._tool_calls}>"

    def handle(self, item: Event | Comment) -> bytes:
        if type(item) is not Event or not item.data or item.data == "[DONE]":
            return b""
        try:
            kind = _probe(item.data).type
        except msgspec.DecodeError:
            return self.malformed("event", item.data)
        return self.decode(kind, item.data)

    def _content(self, event: _ContentDelta) -> bytes:
        message = event.delta.message if event.delta else None
        content = message.content if message else None
        if content is None:
            return b""
        return self.sink.reasoning(content.thinking or "") + self.sink.content(content.text or "")

    def _tool_plan(self, event: _ToolPlan) -> bytes:
        message = event.delta.message if event.delta else None
        return self.sink.reasoning(message.tool_plan) if message else b""

    def _tool_start(self, event: _ToolCallEvent) -> bytes:
        call = _call_of(event)
        if call is None:
            return b""
        index = self._tool_calls
        self._tool_calls += 1
        return self.sink.tool_call(index, call.id, call.function.name, call.function.arguments)

    def _tool_delta(self, event: _ToolCallEvent) -> bytes:
        call = _call_of(event)
        if call is None or not self._tool_calls:
            return b""
        return self.sink.tool_arguments(self._tool_calls - 1, call.function.arguments)

    def _message_end(self, event: _MessageEnd) -> bytes:
        delta = event.delta
        if delta.finish_reason == "ERROR":
            return self.error_event(_finish_error(delta.error))
        return self.finish(finish_reason(FINISH_REASONS, delta.finish_reason), _usage(delta.usage))


CohereStream.events = {
    "content-delta": (msgspec.json.Decoder(_ContentDelta).decode, CohereStream._content),
    "tool-plan-delta": (msgspec.json.Decoder(_ToolPlan).decode, CohereStream._tool_plan),
    "tool-call-start": (msgspec.json.Decoder(_ToolCallEvent).decode, CohereStream._tool_start),
    "tool-call-delta": (msgspec.json.Decoder(_ToolCallEvent).decode, CohereStream._tool_delta),
    "message-end": (msgspec.json.Decoder(_MessageEnd).decode, CohereStream._message_end),
}

PROVIDER = ProviderType(
    "cohere",
    CohereProviderConfig,
    CohereProvider,
    upstream="v2 chat",
    base_url="https://api.cohere.com/v2",
    api_key="env.COHERE_API_KEY",
)
