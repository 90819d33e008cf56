"""AWS Bedrock (`type = "bedrock"`): the Converse and ConverseStream APIs.

`POST {endpoint}/model/{modelId}/converse` (and `/converse-stream`), endpoint
`https://bedrock-runtime.{region}.amazonaws.com` unless `base_url` is set
(docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html). Requests are
signed with SigV4 (service `bedrock`) by botocore, from the configured keys or, when none are
set, botocore's usual credential chain; a configured `api_key` (a Bedrock API key) is sent as
`Authorization: Bearer` instead.

ConverseStream answers in the AWS event-stream binary framing
(`application/vnd.amazon.eventstream`), parsed incrementally by botocore's
`EventStreamBuffer`. Its events (API_runtime_ConverseStreamOutput.html): messageStart,
contentBlockStart (a tool call's id and name), contentBlockDelta (text, tool input fragments,
reasoning), contentBlockStop, messageStop (stopReason), then `metadata` (usage), the terminal
event, where our last chunk goes out. Exception frames become our error event.

botocore is an optional dependency (`pip install 'gateway[bedrock]'`), imported only when a
bedrock provider is configured.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec
import orjson
import yarl

from gateway.config import BedrockProviderConfig
from providers.base import ApiKey
from providers.chat_request import (
    Asks,
    ChatRequest,
    Message,
    base64_data_url,
    decode_chat_request,
    not_off,
    reject_unsupported,
    text_only,
)
from providers.chunks import ChatStreamWriter, chat_completion, usage
from wire.config import ConfigError
from wire.errors import (
    BadRequest,
    GatewayError,
    ProviderAuthError,
    UpstreamError,
    UpstreamProtocolError,
)
from wire.operations import Operation, RawBody
from wire.upstream import UpstreamRequest

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# HTTP status -> the Bedrock exception that answers with it (botocore's bedrock-runtime model),
# for an answer without x-amzn-ErrorType (which names the exception exactly).
HTTP_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
# Exception frames of a ConverseStream (`:exception-type`) -> status and code.
STREAM_EXCEPTIONS = {
    "throttlingException": (429, "ThrottlingException"),
    "validationException": (400, "ValidationException"),
    "internalServerException": (500, "InternalServerException"),
    "modelStreamErrorException": (424, "ModelStreamErrorException"),
    "serviceUnavailableException": (503, "ServiceUnavailableException"),
}
IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
# OpenAI fields Converse has no place for: a 400 rather than a silently different answer.
# Their "off" values (null, false, 0, n=1, response_format text) are accepted.
_UNSUPPORTED: dict[str, Asks] = {
    "n": lambda v: not_off(v) and v != 1,
    **dict.fromkeys(("logprobs", "top_logprobs", "logit_bias", "seed"), not_off),
    **dict.fromkeys(("presence_penalty", "frequency_penalty"), not_off),
    "response_format": lambda v: (
        not_off(v) and not (isinstance(v, dict) and v.get("type") == "text")
    ),
    **dict.fromkeys(("reasoning_effort", "audio", "modalities"), not_off),
}
_UNSUPPORTED_MESSAGE = "Provider type 'bedrock' does not support '{param}'."


@dataclass(frozen=True)
class _Botocore:
    """The few botocore classes this module uses, imported when a provider is built."""

    SigV4Auth: Any
    AWSRequest: Any
    Credentials: Any
    EventStreamBuffer: Any
    ParserError: type[Exception]
    Session: Any


def _import_botocore(provider: str) -> _Botocore:
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        from botocore.eventstream import EventStreamBuffer, ParserError
        from botocore.session import Session
    except ImportError:
        raise ConfigError(
            f"providers.{provider}: type 'bedrock' needs botocore, which is not installed: "
            "pip install 'gateway[bedrock]'"
        ) from None
    return _Botocore(SigV4Auth, AWSRequest, Credentials, EventStreamBuffer, ParserError, Session)


class BedrockProvider:
    """Bedrock's Converse API, streamed and not."""

    operations = frozenset({Operation.CHAT})

    def __init__(self, name: str, config: BedrockProviderConfig) -> None:
        self.name = name
        self.config = config
        self._aws = _import_botocore(name)
        self._region = config.region
        base = config.base_url or f"https://bedrock-runtime.{config.region}.amazonaws.com"
        self._endpoint = base.rstrip("/")
        self._headers = {"Content-Type": "application/json", **config.headers}
        self._keys: list[ApiKey] = []  # the configured secrets: each request checks them
        self._credentials: Any = None  # botocore credentials, when signing with SigV4
        if config.api_key is not None:
            api_key = ApiKey(config.api_key)
            self._keys = [api_key]
            if api_key.value:
                self._headers["Authorization"] = f"Bearer {api_key.value}"
        elif config.access_key_id is not None or config.secret_access_key is not None:
            self._keys = [
                ApiKey(config.access_key_id),
                ApiKey(config.secret_access_key),
                ApiKey(config.session_token),
            ]
            self._credentials = self._configured_credentials(*self._keys)
        else:  # the AWS chain: environment, shared files, SSO, container or instance roles
            self._credentials = self._aws.Session().get_credentials()

    def __repr__(self) -> str:
        return f"<BedrockProvider {self.name!r} {self._endpoint}>"

    def _configured_credentials(self, access_key: ApiKey, secret_key: ApiKey, token: ApiKey) -> Any:
        if not access_key.value or not secret_key.value or token.missing_env:
            return None  # a missing variable is answered 401 per request, naming it
        return self._aws.Credentials(access_key.value, secret_key.value, token.value)

    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        for key in self._keys:
            key.check(self.name, "AWS credentials")
        reject_unsupported(body, _UNSUPPORTED, _UNSUPPORTED_MESSAGE, self.name)
        payload = orjson.dumps(converse_body(decode_chat_request(body)))
        action = "converse-stream" if stream else "converse"
        # Signed as it goes on the wire: aiohttp sends `yarl.URL(url)`, which turns `%3A` (in
        # `...-v1:0`) back into `:`, and the signature must cover the path AWS receives.
        url = str(yarl.URL(f"{self._endpoint}/model/{quote(model, safe='')}/{action}"))
        headers = dict(self._headers)
        if stream:
            headers["Accept"] = "application/vnd.amazon.eventstream"
        if "Authorization" not in headers:
            headers = self._sign(url, headers, payload)
        return UpstreamRequest("POST", url, headers, payload)

    def _sign(self, url: str, headers: dict[str, str], payload: bytes) -> dict[str, str]:
        """SigV4 headers (Authorization, X-Amz-Date, X-Amz-Security-Token) for this request."""
        if self._credentials is None:
            raise ProviderAuthError(
                f"Provider {self.name!r} has no AWS credentials: set access_key_id and "
                "secret_access_key, or configure the AWS credential chain on the gateway.",
                code="provider_key_missing",
            )
        # Frozen per request: refreshable credentials (roles, SSO) renew themselves here.
        credentials = self._credentials.get_frozen_credentials()
        request = self._aws.AWSRequest(method="POST", url=url, data=payload, headers=headers)
        self._aws.SigV4Auth(credentials, "bedrock", self._region).add_auth(request)
        return dict(request.headers.items())

    def stream_translator(self, operation: Operation, model: str) -> BedrockStream:
        return BedrockStream(model, self._aws)

    def translate_response(self, operation: Operation, model: str, body: bytes) -> bytes:
        try:
            answer = _decode_answer(body)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(f"Bedrock sent an unreadable answer: {exc}") from None
        return answer_to_completion(answer, model)

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return error_from_body(status, body, self.name, headers.get("x-amzn-ErrorType"))


# --- request -------------------------------------------------------------------------------


def converse_body(request: ChatRequest) -> dict[str, Any]:
    """The Converse request body for an OpenAI chat request (the model goes in the URL)."""
    system, messages = _messages(request.messages)
    payload: dict[str, Any] = {"messages": messages}
    if system:
        payload["system"] = system
    inference = {
        "maxTokens": request.token_limit,
        "temperature": request.temperature,
        "topP": request.top_p,
        "stopSequences": request.stop_list or None,
    }
    inference = {key: value for key, value in inference.items() if value is not None}
    if inference:
        payload["inferenceConfig"] = inference
    tool_config = _tool_config(request)
    if tool_config:
        payload["toolConfig"] = tool_config
    return payload


def _messages(messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks, and the conversation with same-role neighbours merged (Converse wants
    user and assistant turns to alternate, and tool results are user content)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if message.role in ("system", "developer"):
            system.append({"text": text_only(message, i)})
            continue
        role, blocks = _turn(message, i)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _turn(message: Message, i: int) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "user":
        return "user", _user_blocks(message, i)
    if message.role == "assistant":
        return "assistant", _assistant_blocks(message, i)
    if message.role == "tool":
        if not message.tool_call_id:
            raise BadRequest(
                f"messages[{i}].tool_call_id is required for a tool message.",
                param=f"messages[{i}].tool_call_id",
            )
        result = {"toolUseId": message.tool_call_id, "content": [{"text": text_only(message, i)}]}
        return "user", [{"toolResult": result}]
    raise BadRequest(
        f"Invalid value for 'messages[{i}].role': {message.role!r}.", param=f"messages[{i}].role"
    )


def _user_blocks(message: Message, i: int) -> list[dict[str, Any]]:
    content = message.content
    if not isinstance(content, list):
        return [{"text": content or ""}]
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if part.type == "text":
            blocks.append({"text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None:
            blocks.append({"image": _image(part.image_url.url, f"messages[{i}].content[{j}]")})
        else:
            raise BadRequest(
                f"Provider type 'bedrock' does not support content parts of type "
                f"{part.type!r} (messages[{i}].content[{j}]).",
                param=f"messages[{i}].content[{j}]",
            )
    return blocks


def _image(url: str, param: str) -> dict[str, Any]:
    """A `data:image/...;base64,` URL as a Converse image block (its bytes, base64 in JSON)."""
    inline = base64_data_url(url)
    if inline is None or not inline[0].startswith("image/"):
        raise BadRequest(
            f"Provider type 'bedrock' takes images as base64 data URLs only ({param}).",
            param=param,
        )
    media, data = inline
    kind = media.removeprefix("image/")
    if kind not in IMAGE_FORMATS:
        raise BadRequest(f"Unsupported image type {media!r} ({param}).", param=param)
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise BadRequest(f"The image data is not valid base64 ({param}).", param=param) from None
    return {"format": IMAGE_FORMATS[kind], "source": {"bytes": data}}


def _assistant_blocks(message: Message, i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.reasoning and message.reasoning_signature:
        # A signed thinking block goes back first and unchanged, as Claude requires.
        text = {"text": message.reasoning, "signature": message.reasoning_signature}
        blocks.append({"reasoningContent": {"reasoningText": text}})
    text = text_only(message, i)
    if text:
        blocks.append({"text": text})
    for j, call in enumerate(message.tool_calls or []):
        try:
            arguments = orjson.loads(call.function.arguments or "{}")
        except orjson.JSONDecodeError:
            param = f"messages[{i}].tool_calls[{j}].function.arguments"
            raise BadRequest(f"{param} is not valid JSON.", param=param) from None
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}}
        )
    return blocks


def _tool_config(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if not request.tools or choice == "none":  # Converse cannot forbid calls: offer no tools
        return None
    tools = []
    for tool in request.tools:
        spec: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description:
            spec["description"] = tool.function.description
        schema = tool.function.parameters or {"type": "object", "properties": {}}
        spec["inputSchema"] = {"json": schema}
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None:
        config["toolChoice"] = {"tool": {"name": choice.function.name}}
    return config


# --- usage and errors ----------------------------------------------------------------------


class _Usage(msgspec.Struct, gc=False):
    inputTokens: int = 0
    outputTokens: int = 0
    cacheReadInputTokens: int | None = None
    cacheWriteInputTokens: int | None = None


def _usage(raw: _Usage | None) -> dict[str, Any] | None:
    """Bedrock counts cached input apart from `inputTokens`; OpenAI's prompt_tokens has all."""
    if raw is None:
        return None
    read, write = raw.cacheReadInputTokens, raw.cacheWriteInputTokens
    return usage(
        raw.inputTokens + (read or 0) + (write or 0),
        raw.outputTokens,
        cached_tokens=read,
        cache_creation_tokens=write,
    )


class _ErrorBody(msgspec.Struct, gc=False):
    message: str | None = None
    Message: str | None = None  # some AWS front ends capitalise it


_decode_error = msgspec.json.Decoder(_ErrorBody).decode


def _error_message(body: bytes) -> str | None:
    try:
        parsed = _decode_error(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace").strip()[:2000] or None
    return parsed.message or parsed.Message


def error_from_body(
    status: int, body: bytes, provider: str, error_type: str | None = None
) -> UpstreamError:
    """Bedrock's `{"message": ...}` error answer as ours, with its status (a model timeout,
    408 from Bedrock, becomes 504: the gateway's client did nothing late) and the exception
    named by `x-amzn-ErrorType` ("ThrottlingException:http://...") or else by the status."""
    name = (error_type or "").partition(":")[0] or HTTP_ERRORS.get(status)
    return UpstreamError(
        _error_message(body) or f"{provider} returned HTTP {status}",
        status=504 if status == 408 else status,
        code=name,
    )


# --- non-streamed answer -------------------------------------------------------------------


class _ToolUse(msgspec.Struct, gc=False):
    toolUseId: str = ""
    name: str = ""
    input: Any = None


class _ReasoningText(msgspec.Struct, gc=False):
    text: str = ""
    signature: str | None = None


class _Reasoning(msgspec.Struct, gc=False):
    reasoningText: _ReasoningText | None = None


class _Block(msgspec.Struct, gc=False):
    text: str | None = None
    toolUse: _ToolUse | None = None
    reasoningContent: _Reasoning | None = None


class _Message(msgspec.Struct, gc=False):
    content: list[_Block] = []


class _Output(msgspec.Struct, gc=False):
    message: _Message = msgspec.field(default_factory=_Message)


class _Answer(msgspec.Struct, gc=False):
    output: _Output = msgspec.field(default_factory=_Output)
    stopReason: str | None = None
    usage: _Usage | None = None


_decode_answer = msgspec.json.Decoder(_Answer).decode


def answer_to_completion(answer: _Answer, model: str) -> bytes:
    """A Converse answer as OpenAI's `chat.completion`."""
    blocks = answer.output.message.content
    text = "".join(block.text for block in blocks if block.text is not None)
    reasoning = [b.reasoningContent.reasoningText for b in blocks if b.reasoningContent]
    thoughts = [r for r in reasoning if r is not None]
    calls = [
        {
            "id": block.toolUse.toolUseId,
            "name": block.toolUse.name,
            "arguments": orjson.dumps(block.toolUse.input or {}).decode(),
        }
        for block in blocks
        if block.toolUse is not None
    ]
    return chat_completion(
        model=model,
        content=text or (None if calls else ""),
        finish_reason=STOP_REASONS.get(answer.stopReason or "", "stop"),
        usage=_usage(answer.usage),
        tool_calls=calls or None,
        reasoning="".join(t.text for t in thoughts) or None,
        reasoning_signature=next((t.signature for t in thoughts if t.signature), None),
    )


# --- stream --------------------------------------------------------------------------------


class _ToolStart(msgspec.Struct, gc=False):
    toolUseId: str = ""
    name: str = ""


class _Start(msgspec.Struct, gc=False):
    toolUse: _ToolStart | None = None


class _BlockStart(msgspec.Struct, gc=False):
    contentBlockIndex: int = 0
    start: _Start = msgspec.field(default_factory=_Start)


class _ToolInput(msgspec.Struct, gc=False):
    input: str = ""


class _ReasoningDelta(msgspec.Struct, gc=False):
    text: str | None = None
    signature: str | None = None


class _Delta(msgspec.Struct, gc=False):
    text: str | None = None
    toolUse: _ToolInput | None = None
    reasoningContent: _ReasoningDelta | None = None


class _BlockDelta(msgspec.Struct, gc=False):
    contentBlockIndex: int = 0
    delta: _Delta = msgspec.field(default_factory=_Delta)


class _MessageStop(msgspec.Struct, gc=False):
    stopReason: str | None = None


class _Metadata(msgspec.Struct, gc=False):
    usage: _Usage | None = None


_decode_start = msgspec.json.Decoder(_BlockStart).decode
_decode_delta = msgspec.json.Decoder(_BlockDelta).decode
_decode_stop = msgspec.json.Decoder(_MessageStop).decode
_decode_metadata = msgspec.json.Decoder(_Metadata).decode


def _stream_exception(kind: str | None, payload: bytes) -> UpstreamError:
    status, code = STREAM_EXCEPTIONS.get(kind or "", (502, kind or "BedrockException"))
    message = _error_message(payload) or f"Bedrock sent {kind or 'an exception'} mid-stream."
    return UpstreamError(message, status=status, code=code)


class BedrockStream:
    """One ConverseStream's event-stream frames as our chunks."""

    def __init__(self, model: str, aws: _Botocore) -> None:
        self.finished = False
        self.failure: GatewayError | None = None  # the error this stream ended with
        self._writer = ChatStreamWriter(model)
        self._buffer = aws.EventStreamBuffer()
        self._parser_error = aws.ParserError
        self._tool_blocks: dict[int, int] = {}  # contentBlockIndex -> our tool call index
        self._finish_reason: str | None = None  # from messageStop, sent with metadata
        self._handlers = {
            "contentBlockStart": self._block_start,
            "contentBlockDelta": self._block_delta,
            "messageStop": self._message_stop,
            "metadata": self._metadata,
        }

    def __repr__(self) -> str:
        return (
            f"<BedrockStream finished={self.finished} tool_calls={len(self._tool_blocks)} "
            f"finish_reason={self._finish_reason!r}>"
        )

    @property
    def usage(self) -> dict[str, Any] | None:
        """OpenAI's usage object, once the stream finished with one."""
        return self._writer.usage

    def feed(self, data: bytes) -> bytes:
        self._buffer.add_data(data)
        out = []
        try:
            for message in self._buffer:
                out.append(self._frame(message.headers, message.payload))
                if self.finished:
                    break
        except self._parser_error as exc:
            out.append(self.error_event(UpstreamProtocolError(f"Bedrock sent a bad frame: {exc}")))
        return b"".join(out)

    def end(self) -> bytes:
        if self.finished:
            return b""
        if self._finish_reason is not None:  # the answer is whole; only its usage is missing
            self.finished = True
            return self._writer.finish(self._finish_reason, None)
        return self.error_event(
            UpstreamProtocolError("Bedrock closed the stream before its messageStop event.")
        )

    def error_event(self, error: GatewayError) -> bytes:
        self.finished = True
        self.failure = error
        return self._writer.error(error)

    def _frame(self, headers: dict[str, Any], payload: bytes) -> bytes:
        kind = headers.get(":message-type")
        if kind == "exception":
            return self.error_event(_stream_exception(headers.get(":exception-type"), payload))
        if kind == "error":
            message = headers.get(":error-message") or "Bedrock sent an error mid-stream."
            return self.error_event(
                UpstreamError(message, status=502, code=headers.get(":error-code"))
            )
        handler = self._handlers.get(headers.get(":event-type", ""))
        if handler is None:  # messageStart, contentBlockStop, and events added later
            return b""
        try:
            return handler(payload)
        except msgspec.DecodeError:
            return self.error_event(
                UpstreamProtocolError(f"Bedrock sent a malformed event: {payload[:200]!r}")
            )

    def _block_start(self, payload: bytes) -> bytes:
        event = _decode_start(payload)
        tool = event.start.toolUse
        if tool is None:
            return b""
        index = self._tool_blocks[event.contentBlockIndex] = len(self._tool_blocks)
        return self._writer.tool_call(index, tool.toolUseId, tool.name)

    def _block_delta(self, payload: bytes) -> bytes:
        event = _decode_delta(payload)
        delta = event.delta
        if delta.text is not None:
            return self._writer.content(delta.text)
        if delta.toolUse is not None:
            index = self._tool_blocks.get(event.contentBlockIndex)
            return b"" if index is None else self._writer.tool_arguments(index, delta.toolUse.input)
        reasoning = delta.reasoningContent
        if reasoning is not None:  # redactedContent has no text to show
            return self._writer.reasoning(reasoning.text or "") + self._writer.reasoning_signature(
                reasoning.signature or ""
            )
        return b""

    def _message_stop(self, payload: bytes) -> bytes:
        self._finish_reason = STOP_REASONS.get(_decode_stop(payload).stopReason or "", "stop")
        return b""

    def _metadata(self, payload: bytes) -> bytes:
        self.finished = True
        return self._writer.finish(
            self._finish_reason or "stop", _usage(_decode_metadata(payload).usage)
        )
