"""A Gemini generateContent request as the equivalent OpenAI chat request, for other providers.

The request follows ai.google.dev/api/generate-content (GenerateContentRequest, its fields
named in camelCase by `formats.gemini.fields.camel_case`, whichever spelling the client
sent); it is decoded once into the structs below, so a malformed one is a 400 naming the
field. How it maps (the inverse of `providers.gemini`):

- `systemInstruction` -> one system message (its parts' texts joined by a newline);
- `contents`: role "user" (or none) -> a user message (text, `inlineData` as a `data:` URL:
  an image_url part for images, input_audio for audio, a file part for anything else;
  `fileData` images by their URI), and before it one `tool` message per `functionResponse`
  part; role "model" -> an assistant message: text parts as content, `thought` parts as
  `reasoning`, the first `thoughtSignature` as `reasoning_signature` (but Google's stand-ins
  for none, `skip_thought_signature_validator`, which Gemini CLI sends), `functionCall` parts as
  `tool_calls`. A call without an `id` gets one, and the response that answers it (the next
  `functionResponse` of its name) gets the same;
- `tools[].functionDeclarations` -> functions: `parametersJsonSchema` with its types in lower
  case (`lower_types`), `parameters` (Gemini's OpenAPI-style Schema) as the JSON schema it
  stands for; built-in tools (Google Search, code execution, URL context, ...) are a 400:
  only Gemini runs them;
- `toolConfig.functionCallingConfig`: AUTO/VALIDATED -> auto, NONE -> none, ANY -> required,
  or the named function when `allowedFunctionNames` names one (several: only those tools go);
- `generationConfig`: temperature, topP, maxOutputTokens -> max_tokens, stopSequences -> stop,
  seed, presencePenalty, frequencyPenalty, candidateCount 1, responseMimeType
  application/json (+ responseJsonSchema, types lower-cased, or responseSchema) ->
  response_format, thinkingConfig -> reasoning_effort (see `_reasoning_effort`).

`topK` is dropped, as `top_k` is for Anthropic clients (no chat equivalent), and so are
`safetySettings` and `generationConfig.mediaResolution`, Gemini's own filters and tokenizer
knobs; any other parameter is a 400 naming it.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import msgspec
import orjson

from formats.chat.bridge import validation_error
from formats.chat.request import present
from formats.gemini.schema_cut import json_schema, lower_types
from wire.errors import BadRequest
from wire.operations import RawBody

# --- the request ---------------------------------------------------------------------------


# reasoning_effort -> thinkingConfig (see the module docstring).
THINKING_CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"thinkingBudget": 0},
    "minimal": {"thinkingBudget": 1024, "includeThoughts": True},
    "low": {"thinkingBudget": 1024, "includeThoughts": True},
    "medium": {"thinkingBudget": 8192, "includeThoughts": True},
    "high": {"thinkingBudget": 24576, "includeThoughts": True},
}


class _Blob(msgspec.Struct, rename="camel", gc=False):
    mime_type: str
    data: str


class _FileData(msgspec.Struct, rename="camel", gc=False):
    file_uri: str
    mime_type: str | None = None


class _FunctionCall(msgspec.Struct, gc=False):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class _FunctionResponse(msgspec.Struct, gc=False):
    name: str
    response: dict[str, Any] | None = None
    id: str | None = None
    parts: list[Any] | None = None


class _Part(msgspec.Struct, rename="camel", gc=False):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    inline_data: _Blob | None = None
    file_data: _FileData | None = None
    function_call: _FunctionCall | None = None
    function_response: _FunctionResponse | None = None
    executable_code: Any = None
    code_execution_result: Any = None


class _Content(msgspec.Struct, gc=False):
    parts: list[_Part] = []
    role: str | None = None


class _FunctionDeclaration(msgspec.Struct, rename="camel", gc=False):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None


class _Tool(msgspec.Struct, rename="camel", gc=False):
    function_declarations: list[_FunctionDeclaration] | None = None


class _FunctionCallingConfig(msgspec.Struct, rename="camel", gc=False):
    mode: str | None = None
    allowed_function_names: list[str] | None = None


class _ToolConfig(msgspec.Struct, rename="camel", gc=False):
    function_calling_config: _FunctionCallingConfig | None = None


class _ThinkingConfig(msgspec.Struct, rename="camel", gc=False):
    thinking_budget: int | None = None
    thinking_level: str | None = None
    include_thoughts: bool | None = None


class _GenerationConfig(msgspec.Struct, rename="camel", gc=False):
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_output_tokens: int | None = None
    stop_sequences: list[str] | None = None
    candidate_count: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    response_modalities: list[str] | None = None
    thinking_config: _ThinkingConfig | None = None
    media_resolution: str | None = None


class GenerateContentRequest(msgspec.Struct, rename="camel", gc=False):
    contents: list[_Content]
    system_instruction: _Content | None = None
    tools: list[dict[str, Any]] | None = None
    tool_config: _ToolConfig | None = None
    generation_config: dict[str, Any] | None = None
    safety_settings: list[Any] | None = None
    model: str | None = None  # the path names the model; a body may repeat it


_decoder = msgspec.json.Decoder(GenerateContentRequest)
_KNOWN = frozenset(GenerateContentRequest.__struct_encode_fields__)
_GENERATION_KNOWN = frozenset(_GenerationConfig.__struct_encode_fields__)


def _bad(param: str, message: str, code: str = "invalid_value") -> BadRequest:
    return BadRequest(f"Invalid value for '{param}': {message}", param=param, code=code)


def _decode(value: Any, kind: type[Any], param: str) -> Any:
    """`value` (decoded JSON) as the struct `kind`; a mismatch is a 400 naming the field."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, param) from None


def decode_gemini_request(body: RawBody) -> GenerateContentRequest:
    """The request's structs; an unknown parameter or a malformed field is a 400 naming it."""
    for key in body:
        if key not in _KNOWN:
            raise _bad(key, "not a GenerateContentRequest field.", "unsupported_parameter")
    try:
        return _decoder.decode(msgspec.json.encode(body))
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


# --- the chat request ----------------------------------------------------------------------


def gemini_to_chat(body: RawBody, model: str, stream: bool) -> RawBody:
    """A generateContent request body as the equivalent chat request body.

    Args:
        body: The client's body (the model is not in it: the URL names it).
        model: The model the chat request names (`provider/model` or the alias, as routed).
        stream: Whether the client called streamGenerateContent.
    """
    request = decode_gemini_request(body)
    messages: list[dict[str, Any]] = []
    if request.system_instruction is not None:
        text = "\n".join(part.text or "" for part in request.system_instruction.parts)
        if text:
            messages.append({"role": "system", "content": text})
    messages += _Conversation().messages(request.contents)
    chat: dict[str, Any] = {"model": model, "messages": messages}
    if stream:
        chat["stream"] = True
    names: list[str] = []
    if request.tools:
        chat["tools"] = _tools(request.tools)
        names = [tool["function"]["name"] for tool in chat["tools"]]
    if request.tool_config is not None and request.tool_config.function_calling_config:
        chat.update(_tool_choice(request.tool_config.function_calling_config, chat, names))
    if request.generation_config:
        chat.update(_generation(request.generation_config))
    return {key: msgspec.Raw(orjson.dumps(value)) for key, value in chat.items()}


# What a client sends as the thoughtSignature of a call that has none (one a model without
# Gemini's signatures made): Google's documented stand-ins, which Gemini CLI sends. They are no
# signature, so nothing goes on to another provider.
_NO_SIGNATURES = frozenset(
    {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
)


class _Conversation:
    """The chat messages for `contents`, pairing each function response with its call's id."""

    def __init__(self) -> None:
        self._pending: dict[str, list[str]] = {}  # function name -> ids of unanswered calls
        self._ids = 0

    def messages(self, contents: list[_Content]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for i, content in enumerate(contents):
            where = f"contents[{i}]"
            if content.role == "model":
                messages.append(self._assistant(content.parts, where))
            elif content.role in (None, "", "user", "function"):
                messages += self._user(content.parts, where)
            else:
                raise _bad(f"{where}.role", f"{content.role!r} (expected user or model).")
        return messages

    def _assistant(self, parts: list[_Part], where: str) -> dict[str, Any]:
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        signature: str | None = None
        for j, part in enumerate(parts):
            if part.thought_signature not in _NO_SIGNATURES:
                signature = signature or part.thought_signature
            call = part.function_call
            if call is not None:
                call_id = call.id or self._new_id()
                self._pending.setdefault(call.name, []).append(call_id)
                arguments = orjson.dumps(call.args or {}).decode()
                function = {"name": call.name, "arguments": arguments}
                calls.append({"id": call_id, "type": "function", "function": function})
            elif part.text is not None:
                (thoughts if part.thought else texts).append(part.text)
            elif part.thought_signature is None:
                raise _unsupported_part(part, f"{where}.parts[{j}]")
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
        }
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning"] = "".join(thoughts)
        if signature:
            message["reasoning_signature"] = signature
        return message

    def _user(self, parts: list[_Part], where: str) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        content: list[dict[str, Any]] = []
        for j, part in enumerate(parts):
            here = f"{where}.parts[{j}]"
            if part.function_response is not None:
                tools.append(self._tool_message(part.function_response, here))
            elif part.text is not None:
                content.append({"type": "text", "text": part.text})
            elif part.inline_data is not None:
                content.append(_inline(part.inline_data))
            elif part.file_data is not None:
                content.append(_file(part.file_data, f"{here}.fileData"))
            else:
                raise _unsupported_part(part, here)
        if content:
            only_text = len(content) == 1 and content[0]["type"] == "text"
            tools.append({"role": "user", "content": content[0]["text"] if only_text else content})
        return tools

    def _tool_message(self, response: _FunctionResponse, where: str) -> dict[str, Any]:
        if response.parts:
            raise _bad(
                f"{where}.functionResponse.parts",
                "multimodal function responses are only read by Gemini.",
                "unsupported_parameter",
            )
        pending = self._pending.get(response.name) or []
        if response.id:
            call_id = response.id
            if call_id in pending:
                pending.remove(call_id)
        elif pending:
            call_id = pending.pop(0)
        else:
            raise _bad(
                f"{where}.functionResponse.name",
                f"no earlier functionCall of {response.name!r} is waiting for this response.",
            )
        content = orjson.dumps(response.response or {}).decode()
        return {"role": "tool", "tool_call_id": call_id, "content": content}

    def _new_id(self) -> str:
        self._ids += 1
        return f"call_{self._ids}"


def _unsupported_part(part: _Part, where: str) -> BadRequest:
    if part.executable_code is not None or part.code_execution_result is not None:
        return _bad(where, "code execution parts are only read by Gemini.", "unsupported_parameter")
    return _bad(where, "a part needs text, inlineData, fileData, functionCall or functionResponse.")


# The formats chat's `input_audio` takes (platform.openai.com/docs/api-reference/chat/create).
_AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}


def _inline(blob: _Blob) -> dict[str, Any]:
    if blob.mime_type.startswith("image/"):
        url = f"data:{blob.mime_type};base64,{blob.data}"
        return {"type": "image_url", "image_url": {"url": url}}
    audio_format = _AUDIO_FORMATS.get(blob.mime_type)
    if audio_format is not None:
        return {"type": "input_audio", "input_audio": {"data": blob.data, "format": audio_format}}
    # OpenAI wants a filename with inline file data.
    name = "file" + (mimetypes.guess_extension(blob.mime_type) or "")
    url = f"data:{blob.mime_type};base64,{blob.data}"
    return {"type": "file", "file": {"filename": name, "file_data": url}}


def _file(file: _FileData, where: str) -> dict[str, Any]:
    mime = file.mime_type or "image/"
    if mime.startswith("image/") and file.file_uri.startswith(("http://", "https://")):
        return {"type": "image_url", "image_url": {"url": file.file_uri}}
    raise _bad(
        where,
        "only images at an http(s) URI can be sent by URI when the provider is not Gemini "
        "(inline the data instead).",
        "unsupported_parameter",
    )


# --- tools ---------------------------------------------------------------------------------


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    functions: list[dict[str, Any]] = []
    for i, raw in enumerate(tools):
        others = [key for key in raw if key != "functionDeclarations"]
        if others:
            raise _bad(
                f"tools[{i}].{others[0]}",
                "built-in tools are run by Gemini only; send functionDeclarations.",
                "unsupported_parameter",
            )
        tool: _Tool = _decode(raw, _Tool, f"tools[{i}]")
        for j, declaration in enumerate(tool.function_declarations or ()):
            where = f"tools[{i}].functionDeclarations[{j}]"
            if declaration.parameters_json_schema is not None:
                parameters = lower_types(declaration.parameters_json_schema)
            elif declaration.parameters is not None:
                parameters = json_schema(declaration.parameters, f"{where}.parameters")
            else:
                parameters = {"type": "object", "properties": {}}
            function = {"name": declaration.name, "parameters": parameters}
            if declaration.description:
                function["description"] = declaration.description
            functions.append({"type": "function", "function": function})
    return functions


def _tool_choice(
    config: _FunctionCallingConfig, chat: dict[str, Any], names: list[str]
) -> dict[str, Any]:
    mode = (config.mode or "AUTO").upper()
    if mode in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
        return {"tool_choice": "auto"} if names else {}
    if mode == "NONE":
        return {"tool_choice": "none"} if names else {}
    if mode != "ANY":
        raise _bad("toolConfig.functionCallingConfig.mode", f"{config.mode!r}.")
    allowed = config.allowed_function_names or []
    if len(allowed) == 1:
        return {"tool_choice": {"type": "function", "function": {"name": allowed[0]}}}
    if allowed:  # a call of one of these: chat cannot say so but by offering only them
        tools = chat.get("tools", [])
        chat["tools"] = [tool for tool in tools if tool["function"]["name"] in allowed]
    return {"tool_choice": "required"}


# --- generationConfig ----------------------------------------------------------------------


def _generation(raw: dict[str, Any]) -> dict[str, Any]:
    for key in raw:
        if key not in _GENERATION_KNOWN:
            raise _bad(
                f"generationConfig.{key}",
                "not supported when the provider is not Gemini.",
                "unsupported_parameter",
            )
    config: _GenerationConfig = _decode(raw, _GenerationConfig, "generationConfig")
    chat: dict[str, Any] = {}
    if config.candidate_count not in (None, 1):
        raise _bad(
            "generationConfig.candidateCount",
            "only 1 candidate can be asked for when the provider is not Gemini.",
            "unsupported_parameter",
        )
    if config.response_modalities not in (None, [], ["TEXT"]):
        raise _bad(
            "generationConfig.responseModalities",
            "only TEXT answers can be asked for when the provider is not Gemini.",
            "unsupported_parameter",
        )
    chat.update(
        present(
            temperature=config.temperature,
            top_p=config.top_p,
            seed=config.seed,
            presence_penalty=config.presence_penalty,
            frequency_penalty=config.frequency_penalty,
            max_tokens=config.max_output_tokens,
            stop=config.stop_sequences,
        )
    )
    chat.update(_response_format(config))
    effort = _reasoning_effort(config.thinking_config)
    if effort is not None:
        chat["reasoning_effort"] = effort
    return chat


def _response_format(config: _GenerationConfig) -> dict[str, Any]:
    mime = config.response_mime_type
    if mime in (None, "", "text/plain"):
        return {}
    if mime != "application/json":
        raise _bad(
            "generationConfig.responseMimeType",
            f"{mime!r} (expected text/plain or application/json when the provider is not Gemini).",
        )
    schema = lower_types(config.response_json_schema)
    if schema is None and config.response_schema is not None:
        schema = json_schema(config.response_schema, "generationConfig.responseSchema")
    if schema is None:
        return {"response_format": {"type": "json_object"}}
    json_format = {"name": "response", "schema": schema}
    return {"response_format": {"type": "json_schema", "json_schema": json_format}}


# thinkingConfig -> reasoning_effort, only when the client asked for thinking: a thinkingLevel
# of LOW and above, or a thinkingBudget above 0, bucketed at the budgets `providers.gemini`
# gives each effort (low 1024, medium 8192, high 24576). Google's docs give the rest no effort
# to ask for: a budget of 0 turns thinking off, MINIMAL "matches the no thinking setting for
# most queries", -1 (dynamic) leaves it to the model; with no thinkingConfig at all these send
# no reasoning_effort, so the provider does what it does by default and a model that cannot
# think is not sent a parameter it would refuse.
_LEVELS = {
    "THINKING_LEVEL_UNSPECIFIED": None,
    "MINIMAL": None,
    "LOW": "low",
    "MEDIUM": "medium",
    "HIGH": "high",
    "XHIGH": "high",
}


def _reasoning_effort(thinking: _ThinkingConfig | None) -> str | None:
    if thinking is None:
        return None
    if thinking.thinking_level is not None:
        level = thinking.thinking_level.upper()
        if level not in _LEVELS:
            param = "generationConfig.thinkingConfig.thinkingLevel"
            raise _bad(param, f"{thinking.thinking_level!r}.")
        return _LEVELS[level]
    budget = thinking.thinking_budget
    if budget is None or budget <= 0:
        return None
    # The budgets Gemini's own mapping asks for each effort, read back (so the two agree).
    if budget >= THINKING_CONFIGS["high"]["thinkingBudget"]:
        return "high"
    return "medium" if budget >= THINKING_CONFIGS["medium"]["thinkingBudget"] else "low"
