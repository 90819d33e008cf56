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

What each model family takes, read from the model id (`providers.model_families`):

- `reasoning_effort` (none, minimal, low, medium, high; "none" sends nothing) goes in
  `additionalModelRequestFields`, as the family names it: Claude before 4.6, `thinking` with a
  budget (as `providers.anthropic`, the budget inside maxTokens); Claude 4.6 and later,
  adaptive `thinking` and Converse's `outputConfig.effort`; Amazon Nova 2, `reasoningConfig`
  with `maxReasoningEffort`; OpenAI's gpt-oss and Moonshot's Kimi, `reasoning_effort`;
  OpenAI's other GPT models, `reasoning.effort` ("minimal" is "low" for all but Claude's
  budgets). Any other family has no effort Converse can pass: none is sent (it reasons as it
  does by default), as a parameter the model does not know would fail the request.
- `response_format` goes as Converse's structured output (`outputConfig.textFormat`, the
  schema as a JSON string) to the models that have it (Claude 4.5 and later, in Claude's
  schema subset; the open-weight families), else through a tool whose input is the answer
  (`formats.json_answer`): Claude before 4.5, Amazon Nova, and `json_object` everywhere;
  the tool is then forced, so Claude is asked for no thinking.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import msgspec
import orjson
import yarl

from formats.chat.from_chat import chat_completion
from formats.chat.request import (
    Asks,
    ChatRequest,
    Message,
    arguments_object,
    base64_data_url,
    choose,
    function_of,
    not_off,
    present,
    text_and_images,
    text_only,
)
from formats.json_answer import (
    JSON_TOOL,
    JSON_TOOL_DESCRIPTION,
    JsonAnswer,
    answered,
    check_tool_names,
    plan,
)
from formats.translator import ChatSink, EventTranslator, finish_reason
from providers.adapter import ApiKey, TranslatingProvider
from providers.anthropic import thinking_and_limit
from providers.declaration import HttpProviderConfig, ProviderType
from providers.message_error import error_message, message_error
from providers.model_families import (
    ADAPTIVE_THINKING,
    STRUCTURED_OUTPUTS,
    bedrock_family,
    claude_at_least,
)
from wire.config_values import ConfigError
from wire.errors import (
    BadRequest,
    GatewayError,
    ProviderAuthError,
    UpstreamError,
    UpstreamProtocolError,
)
from wire.operations import Operation
from wire.upstream import UpstreamRequest
from wire.usage import Usage, from_anthropic

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
# reasoning_effort -> the effort word of the families that take one (Claude 4.6+, Nova 2,
# OpenAI's models); "none" sends nothing.
EFFORTS = {"none": None, "minimal": "low", "low": "low", "medium": "medium", "high": "high"}
# maxTokens with a thinking budget when the request sets no limit: the budget on top of the
# answer's usual room (`providers.anthropic`'s default max_tokens).
DEFAULT_ANSWER_TOKENS = 4096


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


class BedrockProviderConfig(HttpProviderConfig, frozen=True, tag="bedrock"):
    """AWS Bedrock (Converse API). Credentials: these keys if set, else the usual AWS chain."""

    region: str = "us-east-1"
    access_key_id: str | None = None  # "env.NAME" or literal, like api_key
    secret_access_key: str | None = None
    session_token: str | None = None


class BedrockProvider(TranslatingProvider):
    """Bedrock's Converse API, streamed and not."""

    operations = frozenset({Operation.CHAT})
    label = "Bedrock"
    # OpenAI fields Converse has no place for: a 400 rather than a silently different answer.
    # Their "off" values (null, false, 0, n=1, response_format text) are accepted.
    unsupported: ClassVar[Mapping[str, Asks]] = {
        "n": lambda v: not_off(v) and v != 1,
        **dict.fromkeys(("logprobs", "top_logprobs", "logit_bias", "seed"), not_off),
        **dict.fromkeys(("presence_penalty", "frequency_penalty"), not_off),
        **dict.fromkeys(("audio", "modalities"), not_off),
    }

    def __init__(self, name: str, config: BedrockProviderConfig) -> None:
        super().__init__(name, config)  # a configured api_key is sent as a Bearer token
        self._aws = _import_botocore(name)
        self._region = config.region
        self.base_url = self.base_url or f"https://bedrock-runtime.{config.region}.amazonaws.com"
        self._keys: list[ApiKey] = []  # the configured secrets: each request checks them
        self._credentials: Any = None  # botocore credentials, when signing with SigV4
        if config.api_key is not None:
            self._keys = [self.key]
        elif config.access_key_id is not None or config.secret_access_key is not None:
            self._keys = [
                ApiKey(config.access_key_id),
                ApiKey(config.secret_access_key),
                ApiKey(config.session_token),
            ]
            self._credentials = self._configured_credentials(*self._keys)
        else:  # the AWS chain: environment, shared files, SSO, container or instance roles
            self._credentials = self._aws.Session().get_credentials()

    def _configured_credentials(self, access_key: ApiKey, secret_key: ApiKey, token: ApiKey) -> Any:
        if not access_key.value or not secret_key.value or token.missing_env:
            return None  # a missing variable is answered 401 per request, naming it
        return self._aws.Credentials(access_key.value, secret_key.value, token.value)

    def check_key(self) -> None:
        for key in self._keys:
            key.check(self.name, "AWS credentials")

    def chat_request(self, request: ChatRequest, model: str, stream: bool) -> UpstreamRequest:
        payload = orjson.dumps(converse_body(request, model))
        action = "converse-stream" if stream else "converse"
        # Signed as it goes on the wire: aiohttp sends `yarl.URL(url)`, which turns `%3A` (in
        # `...-v1:0`) back into `:`, and the signature must cover the path AWS receives.
        url = str(yarl.URL(f"{self.base_url}/model/{quote(model, safe='')}/{action}"))
        headers = dict(self.headers)
        if stream:
            headers["Accept"] = "application/vnd.amazon.eventstream"
        if "Authorization" not in headers:
            headers = self._sign(url, headers, payload)
        return self.post(url, payload, headers)

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

    def chat_translator(self, model: str, sink: ChatSink) -> BedrockStream:
        return BedrockStream(self.name, sink, self._aws)

    def chat_answer(self, body: bytes, model: str) -> bytes:
        try:
            answer = _decode_answer(body)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocolError(f"Bedrock sent an unreadable answer: {exc}") from None
        return answer_to_completion(answer, model)

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return error_from_body(status, body, self.name, headers.get("x-amzn-ErrorType"))


# --- request -------------------------------------------------------------------------------


def converse_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The Converse request body for an OpenAI chat request to `model` (which goes in the URL;
    its family decides how thinking and JSON answers are asked for)."""
    system, messages = _messages(request.messages)
    payload: dict[str, Any] = {"messages": messages}
    if system:
        payload["system"] = system
    json = plan(request.response_format, _structured_outputs(model), strict=_strict(model))
    # Through the answer's tool, which must be called, no thinking: Claude forces a tool only
    # without it, and the JSON the client parses comes first (the effort is a preference).
    reasoning = _Effort.of(request, model, thinks=json is None or json.native)
    inference = present(
        maxTokens=reasoning.max_tokens or request.token_limit,
        temperature=request.temperature,
        topP=request.top_p,
        stopSequences=request.stop_list or None,
    )
    if inference:
        payload["inferenceConfig"] = inference
    tool_config = _tool_config(request, json)
    if tool_config:
        payload["toolConfig"] = tool_config
    output: dict[str, Any] = {}
    if json is not None and json.native:
        output["textFormat"] = _text_format(json)
    if reasoning.effort is not None:
        output["effort"] = reasoning.effort
    if output:
        payload["outputConfig"] = output
    if reasoning.fields:
        payload["additionalModelRequestFields"] = reasoning.fields
    return payload


@dataclass(frozen=True)
class _Effort:
    """What reasoning_effort becomes for one model: its `additionalModelRequestFields`, an
    `outputConfig.effort`, and the maxTokens a thinking budget needs (None: the request's)."""

    fields: dict[str, Any]
    effort: str | None = None
    max_tokens: int | None = None

    @classmethod
    def of(cls, request: ChatRequest, model: str, thinks: bool) -> _Effort:
        """`thinks`: Claude's thinking may be asked for (not with a tool that must be
        called)."""
        asked = request.reasoning_effort
        if asked is None:
            return cls({})
        effort = choose(asked, EFFORTS, "reasoning_effort")  # a 400 naming them if none
        family = bedrock_family(model)
        if effort is None:
            return cls({})
        if family == "claude" and claude_at_least(model, ADAPTIVE_THINKING):
            return cls({"thinking": {"type": "adaptive"}} if thinks else {}, effort=effort)
        if family == "claude":
            max_tokens, thinking = thinking_and_limit(request, DEFAULT_ANSWER_TOKENS, thinks)
            if thinking is None:
                return cls({})
            return cls({"thinking": thinking}, max_tokens=max_tokens)
        if family == "nova-2":
            return cls({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort}})
        if family in ("gpt-oss", "moonshot"):
            return cls({"reasoning_effort": effort})
        if family == "openai":
            return cls({"reasoning": {"effort": effort}})
        return cls({})  # no effort this family takes through Converse


def _structured_outputs(model: str) -> bool:
    """Converse's structured output: Claude 4.5 and later, and the open-weight families (not
    Amazon Nova, not an older Claude)."""
    family = bedrock_family(model)
    if family == "claude":
        return claude_at_least(model, STRUCTURED_OUTPUTS)
    return family not in ("nova", "nova-2")


def _strict(model: str) -> bool:
    """Claude's structured outputs take a subset of JSON Schema; other models the schema."""
    return bedrock_family(model) == "claude"


def _text_format(json: JsonAnswer) -> dict[str, Any]:
    definition: dict[str, Any] = {"schema": orjson.dumps(json.schema).decode(), "name": json.name}
    if json.description:
        definition["description"] = json.description
    return {"type": "json_schema", "structure": {"jsonSchema": definition}}


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
                code="missing_required_parameter",
            )
        result = {"toolUseId": message.tool_call_id, "content": [{"text": text_only(message, i)}]}
        return "user", [{"toolResult": result}]
    raise BadRequest(
        f"Invalid value for 'messages[{i}].role': {message.role!r}.",
        param=f"messages[{i}].role",
        code="invalid_value",
    )


def _user_blocks(message: Message, i: int) -> list[dict[str, Any]]:
    content = message.content
    if not isinstance(content, list):
        return [{"text": content or ""}]
    return text_and_images(
        content,
        f"messages[{i}].content",
        "Bedrock",
        lambda text: {"text": text},
        lambda image, at: {"image": _image(image.url, at)},
    )


def _image(url: str, param: str) -> dict[str, Any]:
    """A `data:image/...;base64,` URL as a Converse image block (its bytes, base64 in JSON)."""
    inline = base64_data_url(url)
    if inline is None or not inline[0].startswith("image/"):
        raise BadRequest(
            f"Provider type 'bedrock' takes images as base64 data URLs only ({param}).",
            param=param,
            code="invalid_value",
        )
    media, data = inline
    kind = media.removeprefix("image/")
    if kind not in IMAGE_FORMATS:
        raise BadRequest(
            f"Unsupported image type {media!r} ({param}).", param=param, code="invalid_value"
        )
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise BadRequest(
            f"The image data is not valid base64 ({param}).", param=param, code="invalid_value"
        ) from None
    return {"format": IMAGE_FORMATS[kind], "source": {"bytes": data}}


def _assistant_blocks(message: Message, i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.reasoning and message.reasoning_signature:
        # A signed thinking block goes back first and unchanged, as Claude requires.
        signed = {"text": message.reasoning, "signature": message.reasoning_signature}
        blocks.append({"reasoningContent": {"reasoningText": signed}})
    for data in message.reasoning_redacted or ():
        blocks.append({"reasoningContent": {"redactedContent": data}})
    text = text_only(message, i)
    if text:
        blocks.append({"text": text})
    for j, call in enumerate(message.tool_calls or []):
        where = f"messages[{i}].tool_calls[{j}].function.arguments"
        arguments = arguments_object(call.function.arguments, where)
        blocks.append(
            {"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": arguments}}
        )
    return blocks


def _tool_config(request: ChatRequest, json: JsonAnswer | None) -> dict[str, Any] | None:
    check_tool_names(request.tools)
    choice = request.tool_choice
    offered = request.tools if choice != "none" else None  # Converse cannot forbid calls
    tools = []
    for i, tool in enumerate(offered or ()):
        function = function_of(tool, i, "Bedrock")
        schema = function.parameters or {"type": "object", "properties": {}}
        tools.append(_tool_spec(function.name, function.description, schema))
    config: dict[str, Any] = {"tools": tools}
    if json is not None and not json.native:  # the answer comes as this tool's input
        about = f"{JSON_TOOL_DESCRIPTION}\n\n{json.description}" if json.description else None
        tools.append(_tool_spec(JSON_TOOL, about or JSON_TOOL_DESCRIPTION, json.schema))
        if not offered:
            config["toolChoice"] = {"tool": {"name": JSON_TOOL}}
        elif choice is not None and not isinstance(choice, str):
            config["toolChoice"] = {"tool": {"name": choice.function.name}}
        else:  # one of the request's tools, or the answer
            config["toolChoice"] = {"any": {}}
        return config
    if not tools:
        return None
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and not isinstance(choice, str):
        config["toolChoice"] = {"tool": {"name": choice.function.name}}
    return config


def _tool_spec(name: str, description: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name}
    if description:
        spec["description"] = description
    spec["inputSchema"] = {"json": schema}
    return {"toolSpec": spec}


# --- usage and errors ----------------------------------------------------------------------


class _Usage(msgspec.Struct, gc=False):
    inputTokens: int = 0
    outputTokens: int = 0
    cacheReadInputTokens: int | None = None
    cacheWriteInputTokens: int | None = None


def _usage(raw: _Usage | None) -> Usage | None:
    """Bedrock counts cached input apart from `inputTokens`, as Anthropic does."""
    if raw is None:
        return None
    return from_anthropic(
        raw.inputTokens, raw.outputTokens, raw.cacheReadInputTokens, raw.cacheWriteInputTokens
    )


def error_from_body(
    status: int, body: bytes, provider: str, error_type: str | None = None
) -> UpstreamError:
    """Bedrock's `{"message": ...}` error answer as ours, with its status (a model timeout,
    408 from Bedrock, becomes 504: the gateway's client did nothing late) and the exception
    named by `x-amzn-ErrorType` ("ThrottlingException:http://...") or else by the status."""
    name = (error_type or "").partition(":")[0] or HTTP_ERRORS.get(status)
    return message_error(504 if status == 408 else status, body, provider, code=name)


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
    redactedContent: str | None = None  # base64: a redacted thinking block's data


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


def _text_of(block: _Block) -> str:
    """A block's text; a call of JSON_TOOL is the answer itself, its input the text."""
    if block.text is not None:
        return block.text
    if block.toolUse is not None and block.toolUse.name == JSON_TOOL:
        return orjson.dumps(block.toolUse.input or {}).decode()
    return ""


def answer_to_completion(answer: _Answer, model: str) -> bytes:
    """A Converse answer as OpenAI's `chat.completion`."""
    blocks = answer.output.message.content
    text = "".join(map(_text_of, blocks))
    reasoning = [b.reasoningContent.reasoningText for b in blocks if b.reasoningContent]
    thoughts = [r for r in reasoning if r is not None]
    calls = [
        {
            "id": block.toolUse.toolUseId,
            "name": block.toolUse.name,
            "arguments": orjson.dumps(block.toolUse.input or {}).decode(),
        }
        for block in blocks
        if block.toolUse is not None and block.toolUse.name != JSON_TOOL
    ]
    answers = any(b.toolUse is not None and b.toolUse.name == JSON_TOOL for b in blocks)
    stop = answered(answer.stopReason, answers, bool(calls))
    return chat_completion(
        model=model,
        content=text or (None if calls else ""),
        finish_reason=finish_reason(STOP_REASONS, stop),
        usage=_usage(answer.usage),
        tool_calls=calls or None,
        reasoning="".join(t.text for t in thoughts) or None,
        reasoning_signature=next((t.signature for t in thoughts if t.signature), None),
        reasoning_redacted=[
            b.reasoningContent.redactedContent
            for b in blocks
            if b.reasoningContent and b.reasoningContent.redactedContent
        ]
        or None,
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
    redactedContent: str | None = None


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


def _stream_exception(kind: str | None, payload: bytes) -> UpstreamError:
    status, code = STREAM_EXCEPTIONS.get(kind or "", (502, kind or "BedrockException"))
    message = error_message(payload) or f"Bedrock sent {kind or 'an exception'} mid-stream."
    return UpstreamError(message, status=status, code=code)


class _Frames:
    """AWS event-stream framing, by botocore's `EventStreamBuffer`: (headers, payload)."""

    __slots__ = ("_buffer", "_parser_error")

    def __init__(self, aws: _Botocore) -> None:
        self._buffer = aws.EventStreamBuffer()
        self._parser_error = aws.ParserError

    @property
    def pending(self) -> bool:
        return False  # a cut frame is only a missing terminal event

    def feed(self, data: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
        self._buffer.add_data(data)
        try:
            for message in self._buffer:
                yield message.headers, message.payload
        except self._parser_error as exc:
            raise UpstreamProtocolError(f"Bedrock sent a bad frame: {exc}") from None


class BedrockStream(EventTranslator[tuple[dict[str, Any], bytes]]):
    """One ConverseStream's event-stream frames as deltas."""

    terminal = "messageStop event"

    def __init__(self, provider: str, sink: ChatSink, aws: _Botocore) -> None:
        super().__init__(provider, sink, _Frames(aws))
        self._tool_blocks: dict[int, int] = {}  # contentBlockIndex -> our tool call index
        self._answers: set[int] = set()  # JSON_TOOL blocks: their input is the text
        self._finish_reason: str | None = None  # from messageStop, sent with metadata

    def __repr__(self) -> str:
        return (
            f"<BedrockStream finished={self.finished} tool_calls={len(self._tool_blocks)} "
            f"finish_reason={self._finish_reason!r}>"
        )

    def ended(self) -> bytes:
        if self._finish_reason is not None:  # the answer is whole; only its usage is missing
            return self.finish(self._finish_reason, None)
        return super().ended()

    def handle(self, item: tuple[dict[str, Any], bytes]) -> bytes:
        headers, payload = item
        kind = headers.get(":message-type")
        if kind == "exception":
            return self.error_event(_stream_exception(headers.get(":exception-type"), payload))
        if kind == "error":
            message = headers.get(":error-message") or "Bedrock sent an error mid-stream."
            return self.error_event(
                UpstreamError(message, status=502, code=headers.get(":error-code"))
            )
        # messageStart, contentBlockStop, and events added later are skipped.
        return self.decode(headers.get(":event-type", ""), payload)

    def _block_start(self, event: _BlockStart) -> bytes:
        tool = event.start.toolUse
        if tool is None:
            return b""
        if tool.name == JSON_TOOL:
            self._answers.add(event.contentBlockIndex)
            return b""
        index = self._tool_blocks[event.contentBlockIndex] = len(self._tool_blocks)
        return self.sink.tool_call(index, tool.toolUseId, tool.name)

    def _block_delta(self, event: _BlockDelta) -> bytes:
        delta = event.delta
        sink = self.sink
        if delta.text is not None:
            return sink.content(delta.text)
        if delta.toolUse is not None:
            if event.contentBlockIndex in self._answers:
                return sink.content(delta.toolUse.input)
            index = self._tool_blocks.get(event.contentBlockIndex)
            return b"" if index is None else sink.tool_arguments(index, delta.toolUse.input)
        reasoning = delta.reasoningContent
        if reasoning is not None:  # redactedContent has no text to show, but goes back
            return (
                sink.reasoning(reasoning.text or "")
                + sink.reasoning_signature(reasoning.signature or "")
                + sink.reasoning_redacted(reasoning.redactedContent or "")
            )
        return b""

    def _message_stop(self, event: _MessageStop) -> bytes:
        stop = answered(event.stopReason, bool(self._answers), bool(self._tool_blocks))
        self._finish_reason = finish_reason(STOP_REASONS, stop)
        return b""

    def _metadata(self, event: _Metadata) -> bytes:
        return self.finish(self._finish_reason or "stop", _usage(event.usage))


BedrockStream.events = {
    "contentBlockStart": (msgspec.json.Decoder(_BlockStart).decode, BedrockStream._block_start),
    "contentBlockDelta": (msgspec.json.Decoder(_BlockDelta).decode, BedrockStream._block_delta),
    "messageStop": (msgspec.json.Decoder(_MessageStop).decode, BedrockStream._message_stop),
    "metadata": (msgspec.json.Decoder(_Metadata).decode, BedrockStream._metadata),
}

PROVIDER = ProviderType(
    "bedrock",
    BedrockProviderConfig,
    BedrockProvider,
    upstream="Converse / ConverseStream (SigV4; needs `pip install -e '.[bedrock]'`)",
    notes="keys from `access_key_id` / `secret_access_key` / `session_token` or the AWS chain",
)
