"""Ollama's native chat API (`type = "ollama"`), translated to and from OpenAI chat.

Requests go to `POST {base}/api/chat` (github.com/ollama/ollama, docs/api.md "Generate a chat
completion"), with `Authorization: Bearer` only when a key is configured (a local server needs
none). Streamed, the answer is NDJSON (docs/api/streaming.mdx): one JSON object per line, each
`{"model", "created_at", "message": {"role", "content", "thinking", "tool_calls"}, "done"}`;
the last has `"done": true`, `done_reason` and the token counts (docs/api/usage.mdx). A line
`{"error": "..."}` is a failure after the stream started (docs/api/errors.mdx). Not streamed,
the answer is one such object with `done: true`.

How OpenAI's request maps:
- messages keep their roles (developer -> system); images (`data:` URLs only: Ollama takes
  base64, it fetches nothing) go in the message's `images`; an assistant's tool calls carry
  their arguments as objects; a tool result names its function (`tool_name`), found from the
  earlier call's id; an assistant's `reasoning` goes back as `thinking`.
- temperature, top_p, max tokens (`num_predict`), stop, seed and the penalties -> `options`.
- response_format json_object -> `"format": "json"`; json_schema -> `"format": <the schema>`.
- reasoning_effort -> `think` (docs/capabilities/thinking.mdx): none -> false; minimal and low
  -> "low"; medium -> "medium"; high -> "high". Models with only on/off thinking take any
  level as on.
- tool_choice: "auto" sends the tools, "none" leaves them out; Ollama cannot force a call, so
  "required" or a named function is a 400.

Tool calls come whole (arguments as an object): each becomes one tool-call delta with its
complete JSON arguments and an id (Ollama's own when it gives one, else a generated one).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
import orjson

from formats.chat.from_chat import AnswerCollector
from formats.chat.request import (
    AUDIO_OUTPUT,
    CHOICES_AND_LOGPROBS,
    Asks,
    ChatRequest,
    ContentPart,
    Message,
    NamedToolChoice,
    Tool,
    ToolMode,
    arguments_object,
    base64_data_url,
    choose,
    function_of,
    json_output,
    present,
    text_of,
)
from formats.translator import ChatSink, EventTranslator, finish_reason
from providers.adapter import TranslatingProvider
from providers.declaration import HttpProviderConfig, ProviderType
from wire.errors import BadRequest, UpstreamProtocolError, upstream_error_from_body
from wire.operations import Operation
from wire.upstream import UpstreamRequest
from wire.usage import Usage

THINK_VALUES: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
}
FINISH_REASONS = {"stop": "stop", "length": "length"}  # others ("load", "unload") just end

# An NDJSON line longer than this is not a chat chunk: stop buffering it.
MAX_LINE_BYTES = 16 * 1024 * 1024


class OllamaProviderConfig(HttpProviderConfig, frozen=True, tag="ollama"):
    pass


class OllamaProvider(TranslatingProvider):
    """Builds Ollama /api/chat requests from OpenAI chat requests, translates the answers."""

    operations = frozenset({Operation.CHAT})
    label = "Ollama"
    # Asked for, these would need what the translated answer cannot carry: a 400 naming them.
    unsupported: ClassVar[Mapping[str, Asks]] = {**CHOICES_AND_LOGPROBS, **AUDIO_OUTPUT}

    def __init__(self, name: str, config: OllamaProviderConfig) -> None:
        super().__init__(name, config)
        self._url = self.base_url + "/api/chat"

    def chat_request(self, request: ChatRequest, model: str, stream: bool) -> UpstreamRequest:
        return self.post(self._url, ollama_body(request, model, stream))

    def chat_translator(self, model: str, sink: ChatSink) -> OllamaStream:
        return OllamaStream(self.name, sink)

    def chat_answer(self, body: bytes, model: str) -> bytes:
        # The whole answer is the stream's last line: read by the same code.
        collector = AnswerCollector(model)
        reader = OllamaStream(self.name, collector)
        reader.line(body, last=True)
        return collector.answer()


# --- the request ---------------------------------------------------------------------------


def ollama_body(request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
    """The /api/chat request for an OpenAI chat request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(request.messages),
        "stream": stream,
    }
    options = _options(request)
    if options:
        body["options"] = options
    if request.tools and _tools_offered(request.tool_choice):
        body["tools"] = [_tool(tool, i) for i, tool in enumerate(request.tools)]
    format_ = _format(request.response_format)
    if format_ is not None:
        body["format"] = format_
    if request.reasoning_effort is not None:
        body["think"] = choose(request.reasoning_effort, THINK_VALUES, "reasoning_effort")
    return body


def _tool(tool: Tool, i: int) -> dict[str, Any]:
    function = msgspec.to_builtins(function_of(tool, i, "Ollama"))
    return {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool call id -> function name, for the tool results
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.role
        if role in ("system", "developer"):
            out.append({"role": "system", "content": text_of(message.content)})
        elif role == "user":
            out.append(_user(message.content, where))
        elif role == "assistant":
            out.append(_assistant(message, call_names, where))
        elif role == "tool":
            result = {"role": "tool", "content": text_of(message.content)}
            name = call_names.get(message.tool_call_id or "") or message.name
            if name:
                result["tool_name"] = name
            out.append(result)
        else:
            raise BadRequest(
                f"Invalid value for '{where}.role': {role!r} is not supported by Ollama.",
                param=f"{where}.role",
                code="invalid_value",
            )
    return out


def _user(content: str | list[ContentPart] | None, where: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", "content": text_of(content)}
    if isinstance(content, list):
        images = [_image(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
        if any(images):
            message["images"] = [image for image in images if image]
    return message


def _image(part: ContentPart, where: str) -> str:
    """The base64 data of an image part ("" for a text part)."""
    if part.type == "text":
        return ""
    if part.type != "image_url" or part.image_url is None:
        raise BadRequest(
            f"Invalid value for '{where}.type': content parts of type {part.type!r} are not "
            "supported by Ollama.",
            param=f"{where}.type",
            code="invalid_value",
        )
    inline = base64_data_url(part.image_url.url)
    if inline is None:
        raise BadRequest(
            f"Invalid value for '{where}.image_url.url': Ollama takes images as base64 data "
            "URLs ('data:image/png;base64,...'); it does not fetch URLs.",
            param=f"{where}.image_url.url",
            code="invalid_value",
        )
    return inline[1]


def _assistant(message: Message, call_names: dict[str, str], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": text_of(message.content)}
    if message.reasoning:
        out["thinking"] = message.reasoning
    calls = []
    for j, call in enumerate(message.tool_calls or ()):
        call_names[call.id] = call.function.name
        args = arguments_object(
            call.function.arguments, f"{where}.tool_calls[{j}].function.arguments"
        )
        calls.append({"function": {"name": call.function.name, "arguments": args}})
    if calls:
        out["tool_calls"] = calls
    return out


def _options(request: ChatRequest) -> dict[str, Any]:
    return present(
        temperature=request.temperature,
        top_p=request.top_p,
        num_predict=request.token_limit,
        stop=request.stop_list or None,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )


def _tools_offered(choice: ToolMode | NamedToolChoice | None) -> bool:
    if choice is None or choice == "auto":
        return True
    if choice == "none":
        return False
    raise BadRequest(
        "Invalid value for 'tool_choice': Ollama cannot force a tool call; use 'auto' or 'none'.",
        param="tool_choice",
        code="unsupported_value",
    )


def _format(response_format: dict[str, Any] | None) -> str | dict[str, Any] | None:
    json, schema = json_output(response_format)
    if not json:
        return None
    return schema if isinstance(schema, dict) else "json"


# --- the answer ----------------------------------------------------------------------------


class _Function(msgspec.Struct, gc=False):
    name: str = ""
    arguments: dict[str, Any] | str | None = None


class _ToolCall(msgspec.Struct, gc=False):
    function: _Function
    id: str | None = None


class _Message(msgspec.Struct, gc=False):
    content: str = ""
    thinking: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Chunk(msgspec.Struct, gc=False):
    """One NDJSON line (or the whole answer): only what the translation reads."""

    model: str | None = None
    message: _Message | None = None
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: Any = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def _tool_calls(message: _Message) -> list[tuple[str, str, str]]:
    """(id, name, JSON arguments) of each tool call in a message."""
    calls = []
    for call in message.tool_calls or ():
        arguments = call.function.arguments
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        calls.append((call.id or f"call_{secrets.token_hex(12)}", call.function.name, arguments))
    return calls


def _finish_reason(chunk: _Chunk, called: bool) -> str:
    return finish_reason(FINISH_REASONS, chunk.done_reason, called=called)


def _usage(chunk: _Chunk) -> Usage:
    return Usage(chunk.prompt_eval_count, chunk.eval_count)


class _Lines:
    """NDJSON framing: bytes in, whole lines out. Lines are split on the LF byte, which never
    occurs inside a UTF-8 sequence, so a character cut between two reads stays whole; an
    unfinished line is kept as chunks joined once, when its LF arrives."""

    __slots__ = ("_size", "_tail")

    def __init__(self) -> None:
        self._tail: list[bytes] = []
        self._size = 0

    @property
    def rest(self) -> bytes:
        """The unfinished last line (b"" when the data ended with a line feed)."""
        return b"".join(self._tail)

    @property
    def pending(self) -> bool:
        return bool(self._tail)

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            self._keep(data)
            return []
        lines = data.split(b"\n")
        rest = lines.pop()
        if self._tail:
            self._tail.append(lines[0])
            lines[0] = b"".join(self._tail)
            self._tail, self._size = [], 0
        self._keep(rest)
        return lines

    def _keep(self, data: bytes) -> None:
        if data:
            self._tail.append(data)
            self._size += len(data)
            if self._size > MAX_LINE_BYTES:
                raise UpstreamProtocolError(
                    f"The upstream sent a line longer than {MAX_LINE_BYTES} bytes without a "
                    "line feed."
                )


class OllamaStream(EventTranslator[bytes]):
    """One streamed answer: NDJSON lines in, deltas out."""

    unit = "a line"
    terminal = '"done" line'

    def __init__(self, provider: str, sink: ChatSink) -> None:
        super().__init__(provider, sink, _Lines())
        self._calls = 0

    def handle(self, item: bytes) -> bytes:
        return self.line(item)

    def ended(self) -> bytes:
        rest = self._lines.rest
        if rest.strip():  # a last line without its LF: whole, or the stream was cut in it
            try:
                _decode_chunk(rest)
            except msgspec.DecodeError:
                return super().ended()
            out = self.line(rest)
            if self.finished:
                return out
        return self.error_event(
            UpstreamProtocolError(
                f"Provider {self.provider!r} closed the stream before it finished "
                f"(no {self.terminal})."
            )
        )

    @property
    def _lines(self) -> _Lines:
        framing = self._framing
        assert isinstance(framing, _Lines)
        return framing

    def line(self, raw: bytes, *, last: bool = False) -> bytes:
        """The client bytes for one NDJSON line (`last`: the whole answer, done or not)."""
        if not raw.strip():
            return b""
        try:
            chunk = _decode_chunk(raw)
        except msgspec.DecodeError:
            return self.malformed("line", raw)
        if chunk.error is not None:
            return self.error_event(upstream_error_from_body(502, raw, self.provider))
        sink = self.sink
        if chunk.model:
            sink.named(chunk.model)
        out = []
        message = chunk.message
        if message is not None:
            out.append(sink.reasoning(message.thinking or ""))
            out.append(sink.content(message.content))
            for call_id, name, arguments in _tool_calls(message):
                out.append(sink.tool_call(self._calls, call_id, name, arguments))
                self._calls += 1
        if chunk.done or last:
            out.append(self.finish(_finish_reason(chunk, self._calls > 0), _usage(chunk)))
        return b"".join(out)


PROVIDER = ProviderType(
    "ollama",
    OllamaProviderConfig,
    OllamaProvider,
    upstream="native `/api/chat` (NDJSON)",
    base_url="http://127.0.0.1:11434",
    notes="no key",
)
