"""Google's Gemini API (AI Studio, `type = "gemini"`), translated to and from OpenAI chat.

Requests go to `POST {base}/models/{model}:generateContent`, or for a stream to
`:streamGenerateContent?alt=sse`, with the key in `x-goog-api-key`
(ai.google.dev/api/generate-content). Its answers, streamed or whole, are read into chat
deltas by `formats.gemini.to_chat.GeminiStream`.

How OpenAI's request maps:
- system/developer messages -> `systemInstruction`; user -> role "user"; assistant -> "model";
  tool messages -> `functionResponse` parts (name found from the earlier call's id), merged
  into one turn with their siblings, as Gemini wants one response per call of the turn.
- images: `data:` URLs -> `inlineData`; http(s) URLs -> `fileData` (mime type guessed from the
  URL's extension, image/jpeg when it has none).
- tools -> `functionDeclarations`, their JSON schema cut to the OpenAPI subset Gemini accepts
  (`formats.gemini.schema_cut`); tool_choice -> `toolConfig.functionCallingConfig`.
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
is relayed (`GeminiRelay`, below): as it came when the client asked for SSE too, re-framed
into Gemini's JSON array (`formats.gemini.from_chat.GeminiFraming`) when it asked for that;
watched for an error object (which ends it) and for the last response's finishReason and
usageMetadata. So is countTokens (`Operation.COUNT_GEMINI_TOKENS`), a
`generateContentRequest` in it naming the upstream's model, as Google requires.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

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
from formats.gemini.error_shape import (
    ErrorObject,
    error_from_object,
    gemini_error,
    gemini_error_body,
)
from formats.gemini.framing import GeminiFraming
from formats.gemini.request import THINKING_CONFIGS
from formats.gemini.schema_cut import gemini_schema
from formats.gemini.to_chat import GeminiStream
from formats.translator import ChatSink, StreamTranslator
from providers.adapter import TranslatingProvider
from providers.declaration import HttpProviderConfig, ProviderType
from providers.passthrough import PassThrough
from wire.errors import BadRequest, GatewayError
from wire.finish_reasons import GEMINI, mapped
from wire.operations import Operation, RawBody
from wire.sse import Comment, Event, encode
from wire.upstream import UpstreamRequest
from wire.usage import UsageMetadata, from_usage_metadata

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
        return GeminiRelay(self.name)

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


# --- errors --------------------------------------------------------------------------------


# --- generateContent passed through ---


class _Candidate(msgspec.Struct, rename="camel", gc=False):
    finish_reason: str | None = None


class _PromptFeedback(msgspec.Struct, rename="camel", gc=False):
    block_reason: str | None = None


class _Probe(msgspec.Struct, rename="camel", gc=False):
    """Only what the relay watches in a GenerateContentResponse; msgspec skips the rest."""

    candidates: list[_Candidate] | None = None
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None
    error: ErrorObject | None = None


_decode_probe = msgspec.json.Decoder(_Probe).decode
# Only a response holding one of these is decoded: the others are content, relayed unread.
# (Generated text may hold the words too: such a response is merely decoded for nothing.)
_WATCHED = ('"finishReason"', '"blockReason"', '"error"')


class GeminiRelay(PassThrough):
    """A StreamTranslator that relays Gemini's SSE stream: as the very bytes read when the
    read ends on an event boundary, else re-framed event by event. (A client that asked for
    Gemini's JSON array gets it through `formats.gemini.framing.JsonArray`.)

    The stream ends when the upstream closes it, after a response with a finishReason (or a
    blocked prompt's blockReason): with several candidates, each finishes on its own. An
    error object ends it at once (finished, `failure` set). `usage` is the latest
    usageMetadata of a finishing response.
    """

    terminal = "finishReason"

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self._framing = GeminiFraming(sse=True)
        self._done = False  # a response with a finishReason went out
        # A read that ends in the CR of a CRLF leaves its LF for the next read, which the
        # decoder then skips. Verbatim, the client has the CR and must get that LF; re-framed
        # (a read cut inside an event), the client has the whole CRLF already and must not get
        # it twice.
        self._owed_lf = False
        self._sent_lf = False

    def __repr__(self) -> str:
        return (
            f"<GeminiRelay provider={self.provider!r} "
            f"finished={self.finished} failure={self.failure!r}>"
        )

    def relay(self, data: bytes, items: list[Event | Comment]) -> bytes:
        # A read that ends on an event boundary goes out as the bytes read (SSE to SSE).
        verbatim = self._decoder.aligned
        out: list[bytes] = []
        for position, item in enumerate(items):
            if type(item) is Event:
                self.watch(item)
            if verbatim:
                if not self.finished:
                    continue
                out = [self._frame(i) for i in items[:position]]  # all but the error, framed
            out.append(self._frame(item))
            if self.finished:  # an error object: nothing may follow it
                owed = b"\n" if self._owed_lf and data[:1] == b"\n" else b""
                return owed + b"".join(out) + self._framing.close()
        lf_first = data[:1] == b"\n"
        ends_in_cr = data[-1:] == b"\r"
        if verbatim:
            if self._sent_lf and lf_first:
                data = data[1:]
            self._owed_lf, self._sent_lf = ends_in_cr, False
            return data
        if self._owed_lf and lf_first:
            out.insert(0, b"\n")
        self._owed_lf, self._sent_lf = False, ends_in_cr
        return b"".join(out)

    def end(self) -> bytes:
        if self.finished:
            return b""
        if self._decoder.pending or not self._done:
            return super().end()
        self.finished = True
        return self._framing.close()

    def error_bytes(self, error: GatewayError) -> bytes:
        return self._framing.element(gemini_error_body(error)) + self._framing.close()

    def _frame(self, item: Event | Comment) -> bytes:
        if isinstance(item, Comment):  # a keepalive
            return encode(item)
        data = item.data
        if "\n" in data:  # several data lines: not Gemini's, kept as is
            return encode(item)
        return self._framing.element(data.encode())

    def watch(self, event: Event) -> bool:
        data = event.data
        if not any(key in data for key in _WATCHED):
            return False
        try:
            probe = _decode_probe(data)
        except msgspec.DecodeError:
            return False  # not ours to judge: the client reads the upstream's response as it is
        if probe.error is not None:  # an error object ends the stream at once
            self.finished = True
            self.failure = error_from_object(probe.error, None)
            return True
        feedback = probe.prompt_feedback
        finished = tuple(
            mapped(GEMINI, c.finish_reason) for c in probe.candidates or () if c.finish_reason
        )
        if feedback is not None and feedback.block_reason:
            finished += ("content_filter",)
        if finished:
            self.finish_reasons += finished  # each candidate finishes on its own
            self._done = True  # it ends when the upstream closes it: each candidate finishes
            if probe.usage_metadata is not None:
                self.usage = from_usage_metadata(probe.usage_metadata)
        return False


PROVIDER = ProviderType(
    "gemini",
    GeminiProviderConfig,
    GeminiProvider,
    upstream="Google AI `generateContent` / `streamGenerateContent?alt=sse`",
    base_url="https://generativelanguage.googleapis.com/v1beta",
    api_key="env.GEMINI_API_KEY",
)
