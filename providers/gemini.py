"""Google's Gemini API (AI Studio, `type = "gemini"`), translated to and from OpenAI chat.

Requests go to `POST {base}/models/{model}:generateContent`, or for a stream to
`:streamGenerateContent?alt=sse`, with the key in `x-goog-api-key`
(ai.google.dev/api/generate-content). A stream is data-only SSE: each event is a whole
GenerateContentResponse, there is no `[DONE]`, and the event that carries `finishReason` (and
the final `usageMetadata`) is the last one. The non-streamed answer is the same object once, so
both go through `GeminiReader`, which keeps the stream and the whole answer in agreement.

How OpenAI's request maps:
- system/developer messages -> `systemInstruction`; user -> role "user"; assistant -> "model";
  tool messages -> `functionResponse` parts (name found from the earlier call's id), merged
  into one turn with their siblings, as Gemini wants one response per call of the turn.
- images: `data:` URLs -> `inlineData`; http(s) URLs -> `fileData` (mime type guessed from the
  URL's extension, image/jpeg when it has none).
- tools -> `functionDeclarations`, their JSON schema cut to the OpenAPI subset Gemini accepts
  (`providers.gemini_schema`); tool_choice -> `toolConfig.functionCallingConfig`.
- reasoning_effort -> `thinkingConfig`, as Google's own OpenAI compatibility layer maps it
  (ai.google.dev/gemini-api/docs/openai#thinking): none -> thinkingBudget 0; minimal and low ->
  1024; medium -> 8192; high -> 24576; every level but none also asks for thought summaries
  (`includeThoughts`), which come back as `reasoning` deltas.
- a previous answer's `reasoning_signature` goes back as the `thoughtSignature` of its first
  function call (or of its last part when it made none), where Gemini put it.

Gemini sends whole function calls, not argument deltas: each becomes one tool-call delta with
its complete JSON arguments and an id (Gemini's own when it gives one, else a generated one).

A client that speaks generateContent itself (`Operation.GENERATE_CONTENT`) is passed through:
its body goes out unchanged, to `:streamGenerateContent?alt=sse` for any stream, and the stream
is relayed (`providers.gemini_relay`). So is countTokens (`Operation.COUNT_GEMINI_TOKENS`), a
`generateContentRequest` in it naming the upstream's model, as Google requires.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import msgspec
import orjson

from formats.chat.from_chat import AnswerCollector, usage
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
from formats.translator import ChatSink, EventTranslator, StreamTranslator, finish_reason
from providers.adapter import TranslatingProvider
from providers.declaration import HttpProviderConfig, ProviderType
from providers.gemini_schema import gemini_schema
from wire.errors import BadRequest, GatewayError, UpstreamError, error_text, relayed_error
from wire.operations import Operation, RawBody
from wire.sse import Comment, Event, SSEDecoder
from wire.upstream import UpstreamRequest

# ai.google.dev/api/generate-content#FinishReason; the rest (OTHER, MALFORMED_FUNCTION_CALL,
# LANGUAGE, ...) end the answer too, with nothing more specific to say in OpenAI's terms.
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}

# google.rpc canonical codes as Gemini names them in `error.status`
# (ai.google.dev/gemini-api/docs/troubleshooting#error-codes).
STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

# reasoning_effort -> thinkingConfig (see the module docstring).
THINKING_CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"thinkingBudget": 0},
    "minimal": {"thinkingBudget": 1024, "includeThoughts": True},
    "low": {"thinkingBudget": 1024, "includeThoughts": True},
    "medium": {"thinkingBudget": 8192, "includeThoughts": True},
    "high": {"thinkingBudget": 24576, "includeThoughts": True},
}

_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


class GeminiProviderConfig(HttpProviderConfig, frozen=True, tag="gemini"):
    pass


class GeminiProvider(TranslatingProvider):
    """Builds Gemini requests from OpenAI chat requests and translates the answers back."""

    operations = frozenset(
        {Operation.CHAT, Operation.GENERATE_CONTENT, Operation.COUNT_GEMINI_TOKENS}
    )
    label = "Gemini"
    key_header = "x-goog-api-key"
    key_prefix = ""
    # Asked for, these would need what the translated answer cannot carry (several choices,
    # logprobs, audio): a 400 naming the parameter rather than a silently different answer.
    unsupported: ClassVar[Mapping[str, Asks]] = {**CHOICES_AND_LOGPROBS, **AUDIO_OUTPUT}

    def _url(self, model: str, stream: bool, method: str = "generateContent") -> str:
        path = quote(model.removeprefix("models/"), safe="")
        method = "streamGenerateContent?alt=sse" if stream else method
        return f"{self.base_url}/models/{path}:{method}"

    def pass_through(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        # The client's own body; the URL names the model, so a `model` in the body (the name
        # the client routed by) stays here.
        passed: dict[str, Any] = {key: value for key, value in body.items() if key != "model"}
        if operation is Operation.COUNT_GEMINI_TOKENS:
            inner = passed.get("generateContentRequest")
            if inner is not None:  # it must name the model counted for, as the URL does
                request = msgspec.json.decode(inner)
                if isinstance(request, dict):
                    passed["generateContentRequest"] = {**request, "model": f"models/{model}"}
            url = self._url(model, False, "countTokens")
            return self.post(url, msgspec.json.encode(passed))
        return self.post(self._url(model, stream), msgspec.json.encode(passed))

    def chat_request(self, request: ChatRequest, model: str, stream: bool) -> UpstreamRequest:
        # n = 1 (any other n was refused) goes on as candidateCount, as it was asked.
        n = 1 if request.n == 1 else None
        return self.post(self._url(model, stream), gemini_body(request, n))

    def relay(self, operation: Operation, model: str) -> StreamTranslator:
        # Imported here: the relay reads this module's structs.
        from providers.gemini_relay import GeminiRelay

        return GeminiRelay(self.name)  # SSE to SSE; GeminiRelay(name, sse=False) re-frames

    def chat_translator(self, model: str, sink: ChatSink) -> GeminiStream:
        return GeminiStream(self.name, sink)

    def chat_answer(self, body: bytes, model: str) -> bytes:
        collector = AnswerCollector(model)
        reader = GeminiStream(self.name, collector)
        reader.response(body)
        if not reader.finished:  # a whole answer always ends, even without a finishReason
            reader.end_response(None, reader.usage_metadata)
        return collector.answer()

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return gemini_error(status, body, self.name)


# --- the request ---------------------------------------------------------------------------


def gemini_body(request: ChatRequest, n: int | None = None) -> dict[str, Any]:
    """The GenerateContentRequest for an OpenAI chat request."""
    system, contents = _contents(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        body["tools"] = [{"functionDeclarations": _declarations(request.tools)}]
    if request.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
    config = _generation_config(request, n)
    if config:
        body["generationConfig"] = config
    return body


def _contents(messages: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents), with adjacent turns of one role merged."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool call id -> function name, for the tool results
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.role
        if role in ("system", "developer"):
            text = text_of(message.content)
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            turn, parts = "user", _user_parts(message.content, where)
        elif role == "assistant":
            turn, parts = "model", _assistant_parts(message, call_names, where)
        elif role == "tool":
            turn, parts = "user", [_tool_result(message, call_names, where)]
        else:
            raise BadRequest(
                f"Invalid value for '{where}.role': {role!r} is not supported by Gemini.",
                param=f"{where}.role",
                code="invalid_value",
            )
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def _user_parts(content: str | list[ContentPart] | None, where: str) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"text": content}]
    return [_content_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]


def _content_part(part: ContentPart, where: str) -> dict[str, Any]:
    if part.type == "text":
        return {"text": part.text or ""}
    if part.type == "image_url" and part.image_url is not None:
        return _image_part(part.image_url.url, f"{where}.image_url.url")
    if part.type == "input_audio" and part.input_audio and part.input_audio.get("data"):
        audio = part.input_audio
        mime = f"audio/{audio.get('format') or 'wav'}"
        return {"inlineData": {"mimeType": mime, "data": audio["data"]}}
    if part.type == "file" and part.file is not None and part.file.get("file_data"):
        mime, data = _data_url(str(part.file["file_data"]), f"{where}.file.file_data")
        return {"inlineData": {"mimeType": mime, "data": data}}
    raise BadRequest(
        f"Invalid value for '{where}.type': content parts of type {part.type!r} are not "
        "supported by Gemini.",
        param=f"{where}.type",
        code="invalid_value",
    )


def _image_part(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        mime, data = _data_url(url, where)
        return {"inlineData": {"mimeType": mime, "data": data}}
    if urlsplit(url).scheme not in ("http", "https", "gs"):
        raise BadRequest(
            f"Invalid value for '{where}': expected a data: URL or an http(s) URL.",
            param=where,
            code="invalid_value",
        )
    mime = mimetypes.guess_type(urlsplit(url).path)[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _data_url(url: str, where: str) -> tuple[str, str]:
    """(mime type, base64 data) of a base64 `data:` URL."""
    inline = base64_data_url(url)
    if inline is None:
        raise BadRequest(
            f"Invalid value for '{where}': expected a base64 data URL "
            "('data:<mime type>;base64,<data>').",
            param=where,
            code="invalid_value",
        )
    mime, data = inline
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise BadRequest(
            f"Invalid value for '{where}': the data is not valid base64.",
            param=where,
            code="invalid_value",
        ) from None
    return mime, data


def _assistant_parts(
    message: Message, call_names: dict[str, str], where: str
) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text = text_of(message.content)
    if text:
        parts.append({"text": text})
    first_call: dict[str, Any] | None = None
    for j, call in enumerate(message.tool_calls or ()):
        call_names[call.id] = call.function.name
        args = arguments_object(
            call.function.arguments, f"{where}.tool_calls[{j}].function.arguments"
        )
        part = {"functionCall": {"name": call.function.name, "args": args}}
        first_call = first_call or part
        parts.append(part)
    if message.reasoning_signature and parts:
        (first_call or parts[-1])["thoughtSignature"] = message.reasoning_signature
    return parts


def _tool_result(message: Message, call_names: dict[str, str], where: str) -> dict[str, Any]:
    name = call_names.get(message.tool_call_id or "") or message.name
    if not name:
        raise BadRequest(
            f"Invalid value for '{where}.tool_call_id': no earlier assistant message made a tool "
            f"call with the id {message.tool_call_id!r}.",
            param=f"{where}.tool_call_id",
            code="invalid_value",
        )
    text = text_of(message.content)
    try:
        result = orjson.loads(text)
    except orjson.JSONDecodeError:
        result = None
    # Gemini's `response` must be an object: a JSON object result as is, anything else wrapped.
    response = result if isinstance(result, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def _declarations(tools: list[Tool]) -> list[dict[str, Any]]:
    declarations = []
    for i, tool in enumerate(tools):
        function = function_of(tool, i, "Gemini")
        declaration: dict[str, Any] = {"name": function.name}
        if function.description:
            declaration["description"] = function.description
        parameters = gemini_schema(function.parameters, f"tools[{i}].function.parameters")
        # Gemini rejects an OBJECT schema with no properties: a tool without arguments has none.
        if parameters and (parameters.get("type") != "object" or parameters.get("properties")):
            declaration["parameters"] = parameters
        declarations.append(declaration)
    return declarations


def _calling_config(choice: ToolMode | NamedToolChoice) -> dict[str, Any]:
    if isinstance(choice, str):
        return {"mode": _TOOL_MODES[choice]}
    return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}


def _generation_config(request: ChatRequest, n: int | None) -> dict[str, Any]:
    config = present(
        temperature=request.temperature,
        topP=request.top_p,
        maxOutputTokens=request.token_limit,
        stopSequences=request.stop_list or None,
        seed=request.seed,
        presencePenalty=request.presence_penalty,
        frequencyPenalty=request.frequency_penalty,
        candidateCount=n,
    )
    config.update(_response_format(request.response_format))
    if request.reasoning_effort is not None:
        thinking = choose(request.reasoning_effort, THINKING_CONFIGS, "reasoning_effort")
        config["thinkingConfig"] = dict(thinking)
    return config


def _response_format(response_format: dict[str, Any] | None) -> dict[str, Any]:
    json, schema = json_output(response_format)
    if not json:
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if schema:
        config["responseSchema"] = gemini_schema(schema, "response_format.json_schema.schema")
    return config


# --- the answer ----------------------------------------------------------------------------


class _FunctionCall(msgspec.Struct, gc=False):
    name: str = ""
    args: dict[str, Any] | None = None
    id: str | None = None


class _Part(msgspec.Struct, rename="camel", gc=False):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: _FunctionCall | None = None


class _Content(msgspec.Struct, gc=False):
    parts: list[_Part] = []


class _Candidate(msgspec.Struct, rename="camel", gc=False):
    content: _Content | None = None
    finish_reason: str | None = None


class UsageMetadata(msgspec.Struct, rename="camel", gc=False):
    """A response's `usageMetadata`: the counts OpenAI's usage is made of."""

    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int | None = None
    cached_content_token_count: int | None = None
    tool_use_prompt_token_count: int = 0


class _PromptFeedback(msgspec.Struct, rename="camel", gc=False):
    block_reason: str | None = None


class ErrorObject(msgspec.Struct, gc=False):
    """Gemini's error object, `{"code", "message", "status"}` (google.rpc.Status)."""

    code: int | None = None
    message: str = ""
    status: str | None = None


class _Response(msgspec.Struct, rename="camel", gc=False):
    """A GenerateContentResponse: only what the translation reads; msgspec skips the rest."""

    candidates: list[_Candidate] = []
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    prompt_feedback: _PromptFeedback | None = None
    error: ErrorObject | None = None


class _ErrorBody(msgspec.Struct, gc=False):
    error: ErrorObject | str | None = None


_decode_response = msgspec.json.Decoder(_Response).decode
_decode_error = msgspec.json.Decoder(_ErrorBody).decode


class GeminiStream(EventTranslator[Event | Comment]):
    """GenerateContentResponses as deltas: a stream's SSE events, or (`response`) the whole
    answer, which is the same object once, read by the same code."""

    terminal = "finishReason"

    def __init__(self, provider: str, sink: ChatSink) -> None:
        super().__init__(provider, sink, SSEDecoder())
        self._calls = 0
        self._signed = False
        self.usage_metadata: UsageMetadata | None = None  # the latest seen

    def handle(self, item: Event | Comment) -> bytes:
        return self.response(item.data) if type(item) is Event else b""

    def response(self, data: str | bytes) -> bytes:
        """The client bytes for one GenerateContentResponse."""
        try:
            response = _decode_response(data)
        except msgspec.DecodeError:
            return self.malformed("response", data)
        if response.error is not None:
            return self.error_event(error_from_object(response.error, None))
        if response.model_version:
            self.sink.named(response.model_version)
        self.usage_metadata = response.usage_metadata or self.usage_metadata
        candidate = response.candidates[0] if response.candidates else None
        out = self._parts(candidate.content.parts) if candidate and candidate.content else b""
        if candidate is not None and candidate.finish_reason:
            return out + self.end_response(candidate.finish_reason, response.usage_metadata)
        feedback = response.prompt_feedback
        if candidate is None and feedback is not None and feedback.block_reason:
            # The prompt was blocked.
            return out + self.end_response("SAFETY", response.usage_metadata)
        return out

    def end_response(self, reason: str | None, meta: UsageMetadata | None) -> bytes:
        finish = finish_reason(FINISH_REASONS, reason, called=self._calls > 0)
        return self.finish(finish, chat_usage(meta))

    def _parts(self, parts: list[_Part]) -> bytes:
        sink = self.sink
        out = []
        for part in parts:
            # One signature per answer: for parallel calls Gemini signs only the first one. It
            # goes out before its part, while the thought it signs is still the open block
            # for a bridge (an Anthropic thinking block, a Responses reasoning item).
            if part.thought_signature and not self._signed:
                self._signed = True
                out.append(sink.reasoning_signature(part.thought_signature))
            call = part.function_call
            if call is not None:
                call_id = call.id or f"call_{secrets.token_hex(12)}"
                arguments = orjson.dumps(call.args or {}).decode()
                out.append(sink.tool_call(self._calls, call_id, call.name, arguments))
                self._calls += 1
            elif part.text:
                out.append(sink.reasoning(part.text) if part.thought else sink.content(part.text))
        return b"".join(out)


def chat_usage(meta: UsageMetadata | None) -> dict[str, Any] | None:
    """OpenAI's usage for a usageMetadata: thoughts count as completion tokens."""
    if meta is None:
        return None
    thoughts = meta.thoughts_token_count
    return usage(
        meta.prompt_token_count + meta.tool_use_prompt_token_count,
        meta.candidates_token_count + (thoughts or 0),
        cached_tokens=meta.cached_content_token_count,
        reasoning_tokens=thoughts,
    )


# --- errors --------------------------------------------------------------------------------


def gemini_error(status: int, body: bytes, provider: str) -> UpstreamError:
    """`{"error": {"code", "message", "status"}}` as our error: the HTTP status kept, the
    google.rpc status string (RESOURCE_EXHAUSTED, ...) as type and code."""
    try:
        error = _decode_error(body).error
    except msgspec.DecodeError:
        error = None
    if isinstance(error, ErrorObject):
        return error_from_object(error, status)
    text = error if isinstance(error, str) else error_text(body)
    return relayed_error(status, text, provider)


def error_from_object(error: ErrorObject, status: int | None) -> UpstreamError:
    """`status` is the HTTP one when there is one; mid-stream, it comes from the error."""
    kind = error.status or None
    if status is None or status < 400:
        status = STATUS_CODES.get(kind or "", error.code or 502)
    return UpstreamError(
        error.message or f"Gemini returned {kind or status}",
        status=status,
        type=kind or UpstreamError.type,
        code=kind,
    )


PROVIDER = ProviderType(
    "gemini",
    GeminiProviderConfig,
    GeminiProvider,
    upstream="Google AI `generateContent` / `streamGenerateContent?alt=sse`",
    base_url="https://generativelanguage.googleapis.com/v1beta",
    api_key="env.GEMINI_API_KEY",
)
