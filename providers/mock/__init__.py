"""The built-in `mock` provider: an OpenAI-compatible server inside the gateway process.

`mock/<anything>` answers with a deterministic reply, streamed token by token, with no network
and no key, so a fresh checkout works with the first README command and a copy-pasted curl.
Its request goes through the same path as a real provider's (built as an OpenAI request, relayed
and normalised), only the transport is in-process, so it also shows what the gateway does.

It is a fair stand-in for an OpenAI server:

- text: `tokens` words (default 10) of a fixed sentence, `delay` seconds apart (default 0.02),
  both from `[providers.mock]`; a non-streamed answer arrives after tokens x delay seconds;
- `max_tokens` / `max_completion_tokens` ask for fewer (finish_reason "length"), and are checked
  as OpenAI checks them (below 1, or below 0 for legacy completions: a 400);
- `tools`: it calls the first offered function (or the one `tool_choice` names) with arguments
  valid for its JSON schema (`providers/mock/schema.py`), finish_reason "tool_calls", unless
  `tool_choice` is "none" or the last message (system messages aside) is a tool result (then
  it answers text);
- `response_format`: `json_object` gives a JSON object, `json_schema` a valid instance;
- `n`: that many choices, streamed interleaved by index as OpenAI does; usage counts them all;
- failures on demand by model name (`status-503`, `error-first`, `cut-after-3`):
  `providers/mock/failures.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import aiohttp
import msgspec
import orjson

from formats.chat.request import FunctionDef, NamedToolChoice, ToolMode
from providers.adapter import Adapter
from providers.declaration import ProviderConfig, ProviderType
from providers.mock import failures, media
from providers.mock.failures import CutAfter, ErrorFirst, Failure, Status
from providers.mock.media import MockReply
from providers.mock.schema import SchemaError, instance
from providers.openai import CHAT_STYLE, PATHS, OpenAIShaped, encode_body
from wire.operations import Operation, RawBody
from wire.upstream import Holder, Upload, Upstream, UpstreamRequest

REPLY = "This is a mock reply from the gateway's built-in provider."
_WORDS = REPLY.split(" ")
_ids = itertools.count(1)
_MAX_CHOICES = 128  # OpenAI's bound on `n`
_MAX_DIMENSIONS = 3072  # text-embedding-3-large's, the most an OpenAI model gives
# A token-like cut of a JSON text: words and runs of punctuation, each with its leading space.
_FRAGMENT = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")


class _Tool(msgspec.Struct, gc=False):
    type: str = "function"
    function: FunctionDef | None = None


class _Message(msgspec.Struct, gc=False):
    role: str = ""


class _MockRequest(msgspec.Struct, gc=False):
    model: str
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    messages: msgspec.Raw = msgspec.Raw()
    prompt: msgspec.Raw = msgspec.Raw()
    tools: list[_Tool] | None = None
    tool_choice: ToolMode | NamedToolChoice | None = None
    response_format: dict[str, Any] | None = None


_decode_request = msgspec.json.Decoder(_MockRequest).decode
_decode_messages = msgspec.json.Decoder(list[_Message]).decode


def reply_tokens(count: int) -> list[str]:
    """The first `count` tokens of the mock reply, repeated as needed: ["This", " is", ...]."""
    return [
        word if i == 0 else " " + word
        for i, word in zip(range(count), itertools.cycle(_WORDS), strict=False)
    ]


class MockProviderConfig(ProviderConfig, frozen=True, tag="mock"):
    """The built-in provider: no network, no key, a deterministic reply token by token."""

    tokens: int = 10  # tokens per reply unless the request's max_tokens asks for fewer
    delay: float = 0.02  # seconds between two tokens

    def problem(self) -> tuple[str, str] | None:
        if self.tokens < 0 or self.delay < 0:
            return "", "tokens and delay must not be negative"
        return super().problem()


class MockProvider(OpenAIShaped, Adapter):
    operations = frozenset(
        {
            Operation.CHAT,
            Operation.COMPLETIONS,
            Operation.EMBEDDINGS,
            Operation.SPEECH,
            Operation.TRANSCRIPTION,
            Operation.TRANSLATION,
        }
    )

    def __init__(self, name: str, config: MockProviderConfig) -> None:
        super().__init__(name, config)
        self.config = config
        self.transport = self  # no sockets: this provider answers its own requests

    def _request(
        self, operation: Operation, body: bytes | AsyncIterable[bytes], headers: dict[str, str]
    ) -> UpstreamRequest:
        # The URL only names what is asked, for messages: the operation says it.
        url = f"mock://{self.name}{PATHS[operation]}"
        return UpstreamRequest("POST", url, headers, body, operation)

    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        payload = encode_body(body, model, stream and operation in CHAT_STYLE)
        return self._request(operation, payload, {"Content-Type": "application/json"})

    def build_upload(self, operation: Operation, model: str, upload: Upload) -> UpstreamRequest:
        headers = {"Content-Type": upload.content_type}
        return self._request(operation, upload.body(model), headers)

    async def send(self, request: UpstreamRequest, timeout: aiohttp.ClientTimeout) -> Upstream:
        operation = request.operation
        if operation in (Operation.TRANSCRIPTION, Operation.TRANSLATION):
            assert not isinstance(request.body, bytes)
            form, size = await media.read_form(request.body, request.headers["Content-Type"])
            model, stream = form.get("model", ""), form.get("stream") == "true"
            failure = failures.parse_failure(model)
            answer = _failure_answer(failure, model, stream)
            if answer is not None:
                return answer
            response_format = form.get("response_format") or "json"
            return media.transcript(size, stream, response_format, self.config.delay, _cut(failure))
        assert isinstance(request.body, bytes)
        if operation in CHAT_STYLE:
            try:
                chat_request = _decode_request(request.body)
            except msgspec.ValidationError as exc:
                return _invalid(None, f"Invalid request: {exc}.", "invalid_type")
            rejected = _check(chat_request, operation)
            if rejected is not None:
                return rejected
            failure = failures.parse_failure(chat_request.model)
            answer = _failure_answer(failure, chat_request.model, bool(chat_request.stream))
            if answer is not None:
                return answer
            try:
                return MockUpstream(operation, chat_request, self.config, _cut(failure))
            except _InvalidSchema as invalid:
                return _invalid(invalid.param, str(invalid), invalid.code)
        fields = orjson.loads(request.body)
        failure = failures.parse_failure(fields["model"])
        answer = _failure_answer(failure, fields["model"], stream=False)  # no event stream
        if answer is not None:
            return answer
        if operation is Operation.EMBEDDINGS:
            return _check_embeddings(fields) or media.embeddings(fields, _cut(failure))
        return media.speech(fields, self.config.delay, _cut(failure))


def _failure_answer(failure: Failure | None, model: str, stream: bool) -> MockReply | None:
    """The answer of a `status-<code>` or `error-first` model, instead of its reply."""
    if isinstance(failure, Status):
        status = failure.code
    elif isinstance(failure, ErrorFirst):
        if stream:
            return MockReply([failures.error_event(model)], "text/event-stream")
        status = failures.ERROR_FIRST_STATUS
    else:
        return None
    return MockReply(
        [failures.error_body(status, model)],
        "application/json",
        status=status,
        headers=failures.error_headers(status),
    )


def _cut(failure: Failure | None) -> int | None:
    return failure.chunks if isinstance(failure, CutAfter) else None


def _invalid(param: str | None, message: str, code: str | None) -> MockReply:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return MockReply([orjson.dumps({"error": error})], "application/json", status=400)


def _check(request: _MockRequest, operation: Operation) -> MockReply | None:
    """OpenAI's 400 for a request it would refuse, or None."""
    # Chat must leave room for a token; legacy completions allow 0 (to echo the prompt).
    floor = 1 if operation is Operation.CHAT else 0
    for name, limit in (
        ("max_tokens", request.max_tokens),
        ("max_completion_tokens", request.max_completion_tokens),
    ):
        if limit is not None and limit < floor:
            return _invalid(
                name,
                f"Invalid '{name}': integer below minimum value. Expected a value >= {floor}, "
                f"but got {limit} instead.",
                "integer_below_min_value",
            )
    if request.n is not None and not 1 <= request.n <= _MAX_CHOICES:
        above = request.n > _MAX_CHOICES
        return _invalid(
            "n",
            f"Invalid 'n': integer {'above maximum' if above else 'below minimum'} value. "
            f"Expected a value {f'<= {_MAX_CHOICES}' if above else '>= 1'}, "
            f"but got {request.n} instead.",
            "integer_above_max_value" if above else "integer_below_min_value",
        )
    choice = request.tool_choice
    names = [tool.function.name for tool in request.tools or () if tool.function is not None]
    if choice == "required" or isinstance(choice, NamedToolChoice):
        if not names:
            return _invalid(
                "tool_choice",
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                None,
            )
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            return _invalid(
                "tool_choice",
                f"Invalid value for 'tool_choice': no function named {choice.function.name!r} "
                "in 'tools'.",
                None,
            )
    return None


def _check_embeddings(fields: dict[str, Any]) -> MockReply | None:
    """OpenAI's 400 for embeddings it would refuse: nothing to embed, or `dimensions` outside
    what its largest model gives (1 to 3072)."""
    inputs = fields["input"]
    if not inputs or (isinstance(inputs, list) and any(item in ("", []) for item in inputs)):
        return _invalid("input", "'$.input' is invalid: it must not be empty.", None)
    dimensions = fields.get("dimensions")
    if dimensions is not None and not 1 <= dimensions <= _MAX_DIMENSIONS:
        above = dimensions > _MAX_DIMENSIONS
        return _invalid(
            "dimensions",
            f"Invalid 'dimensions': integer {'above maximum' if above else 'below minimum'} "
            f"value. Expected a value {f'<= {_MAX_DIMENSIONS}' if above else '>= 1'}, "
            f"but got {dimensions} instead.",
            "integer_above_max_value" if above else "integer_below_min_value",
        )
    return None


class _InvalidSchema(ValueError):
    """OpenAI's 400 for a tool's parameters or a response_format that is no usable schema."""

    def __init__(self, message: str, param: str, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _instance(schema: Any, what: str, param: str, code: str) -> Any:
    try:
        return instance(schema)
    except SchemaError as error:
        raise _InvalidSchema(f"Invalid schema for {what}: {error}.", param, code) from None


class _Choice(msgspec.Struct, gc=False):
    """One choice's answer, before it is cut into chunks."""

    fragments: list[str]  # content tokens, or the tool call's argument fragments
    finish: str
    call_id: str | None = None  # set when the choice calls `call_name`
    call_name: str = ""


def _plan(request: _MockRequest, chat: bool, tokens: int) -> list[_Choice]:
    """What each of the request's choices answers: a tool call, JSON, or the reply's text."""
    function = _function_to_call(request) if chat else None
    json_text = _json_content(request.response_format) if chat else None
    if function is not None:
        parameters = function.parameters or {"type": "object", "properties": {}}
        arguments = _instance(
            parameters, f"function {function.name!r}", "tools", "invalid_function_parameters"
        )
        fragments = _fragments(orjson.dumps(arguments).decode())
        natural = "tool_calls"
    elif json_text is not None:
        fragments, natural = _fragments(json_text), "stop"
    else:
        fragments, natural = reply_tokens(tokens), "stop"
    limit = request.max_completion_tokens
    if limit is None:
        limit = request.max_tokens
    finish = natural
    if limit is not None and limit < len(fragments):
        fragments, finish = fragments[:limit], "length"
    return [
        _Choice(
            fragments,
            finish,
            f"call_mock{next(_ids)}" if function is not None else None,
            function.name if function is not None else "",
        )
        for _ in range(request.n or 1)
    ]


def _function_to_call(request: _MockRequest) -> FunctionDef | None:
    functions = [tool.function for tool in request.tools or () if tool.function is not None]
    choice = request.tool_choice
    if not functions or choice == "none":
        return None
    try:
        messages = _decode_messages(request.messages) if request.messages else []
    except msgspec.ValidationError:
        messages = []  # a malformed conversation: no tool result to be seen
    # System messages after the tool's result (Claude Code appends them) change nothing.
    turns = [message for message in messages if message.role not in ("system", "developer")]
    if turns and turns[-1].role == "tool":
        return None  # the tool answered: the turn ends in text, so an agent loop ends
    if isinstance(choice, NamedToolChoice):
        return next(f for f in functions if f.name == choice.function.name)
    return functions[0]


def _json_content(response_format: dict[str, Any] | None) -> str | None:
    kind = (response_format or {}).get("type")
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema") or {}
        if not isinstance(spec, dict):
            raise _InvalidSchema(
                "Invalid 'response_format.json_schema': expected an object.",
                "response_format",
                "invalid_type",
            )
        schema = spec.get("schema") or {"type": "object"}
        value = _instance(schema, "response_format", "response_format", "invalid_json_schema")
        return orjson.dumps(value).decode()
    if kind == "json_object":
        return orjson.dumps({"reply": REPLY}).decode()
    return None


def _fragments(text: str) -> list[str]:
    return _FRAGMENT.findall(text)


class MockUpstream:
    """What an OpenAI server would answer, chunk for chunk as OpenAI shapes them
    (`cut`: the connection breaks after that many content steps, before the finish)."""

    status = 200
    content_type = "text/event-stream"
    request_id = None
    headers: Mapping[str, str] = {}

    def __init__(
        self,
        operation: Operation,
        request: _MockRequest,
        config: MockProviderConfig,
        cut: int | None = None,
    ) -> None:
        self._chat = operation is Operation.CHAT
        self._request = request
        self._delay = config.delay
        self._cut = cut
        self._choices = _plan(request, self._chat, config.tokens if cut is None else cut)
        self._steps = max(len(choice.fragments) for choice in self._choices)
        self._id = f"{'chatcmpl' if self._chat else 'cmpl'}-mock{next(_ids)}"
        self._created = int(time.time())
        prompt = request.messages if self._chat else request.prompt
        prompt_tokens = max(1, len(prompt) // 4)
        completion_tokens = sum(len(choice.fragments) for choice in self._choices)
        self._usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    async def chunks(self) -> AsyncIterator[bytes]:
        include_usage = bool((self._request.stream_options or {}).get("include_usage"))
        usage_field = {"usage": None} if include_usage else {}
        if self._chat:
            for index, choice in enumerate(self._choices):
                yield self._event(self._choice(index, self._opening(choice), None), usage_field)
        for step in range(self._steps):
            if step == self._cut:
                raise failures.cut()
            if self._delay and step:
                await asyncio.sleep(self._delay)
            for index, choice in enumerate(self._choices):  # n choices: one chunk each, in turn
                if step < len(choice.fragments):
                    content = self._fragment(choice, choice.fragments[step])
                    yield self._event(self._choice(index, content, None), usage_field)
        if self._cut is not None:
            raise failures.cut()
        for index, choice in enumerate(self._choices):
            closing = {} if self._chat else ""
            yield self._event(self._choice(index, closing, choice.finish), usage_field)
        if include_usage:
            yield self._event_with([], {"usage": self._usage})
        yield b"data: [DONE]\n\n"

    async def read(self, holder: Holder | None = None) -> bytes:
        # A real server answers once it has generated every token.
        steps = self._steps if self._cut is None else min(self._cut, self._steps)
        if self._delay and steps:
            await asyncio.sleep(self._delay * steps)
        if self._cut is not None:
            raise failures.cut()
        choices = [
            {
                "index": index,
                **self._whole(choice),
                "logprobs": None,
                "finish_reason": choice.finish,
            }
            for index, choice in enumerate(self._choices)
        ]
        return orjson.dumps(
            {
                **self._head("chat.completion" if self._chat else "text_completion"),
                "choices": choices,
                "usage": self._usage,
            }
        )

    async def finish(self, wait: float) -> None:
        pass

    def close(self) -> None:
        pass

    def _opening(self, choice: _Choice) -> dict[str, Any]:
        """A choice's first delta: the role, and the call's id and name (arguments follow)."""
        if choice.call_id is None:
            return {"role": "assistant", "content": ""}
        call = {
            "index": 0,
            "id": choice.call_id,
            "type": "function",
            "function": {"name": choice.call_name, "arguments": ""},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}

    def _fragment(self, choice: _Choice, fragment: str) -> Any:
        if not self._chat:
            return fragment
        if choice.call_id is None:
            return {"content": fragment}
        return {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}

    def _whole(self, choice: _Choice) -> dict[str, Any]:
        """A choice of the non-streamed answer: its message (or text)."""
        text = "".join(choice.fragments)
        if not self._chat:
            return {"text": text}
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if choice.call_id is not None:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": choice.call_id,
                    "type": "function",
                    "function": {"name": choice.call_name, "arguments": text},
                }
            ]
        return {"message": message}

    def _head(self, kind: str) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": kind,
            "created": self._created,
            "model": self._request.model,
            "system_fingerprint": "fp_mock",
        }

    def _choice(self, index: int, content: Any, finish_reason: str | None) -> dict[str, Any]:
        key = "delta" if self._chat else "text"
        return {"index": index, key: content, "logprobs": None, "finish_reason": finish_reason}

    def _event(self, choice: dict[str, Any], extra: dict[str, Any]) -> bytes:
        return self._event_with([choice], extra)

    def _event_with(self, choices: list[dict[str, Any]], extra: dict[str, Any]) -> bytes:
        kind = "chat.completion.chunk" if self._chat else "text_completion"
        chunk = {**self._head(kind), "choices": choices, **extra}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


PROVIDER = ProviderType(
    "mock",
    MockProviderConfig,
    MockProvider,
    upstream="built in, no network",
    rank=100,
)
