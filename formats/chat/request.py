"""The OpenAI chat request as typed structs, for the providers that translate it.

The OpenAI pass-through never builds these (it forwards the raw body); a translating provider
decodes the body once into `ChatRequest` and maps its fields to the upstream's format.
A body that does not fit is a 400 naming the field (`messages[2].content`).

The helpers at the end are the checks those providers share: parameters they cannot honour,
text-only messages, tool-call arguments parsed into the object an upstream wants, a choice from
a table (reasoning_effort), and what a response_format asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import msgspec
import orjson

from wire.errors import BadRequest
from wire.operations import RawBody


class ImageURL(msgspec.Struct, gc=False):
    url: str
    detail: str | None = None


class ContentPart(msgspec.Struct, gc=False):
    type: str  # "text", "image_url", "input_audio", "file", ...
    text: str | None = None
    image_url: ImageURL | None = None
    input_audio: dict[str, Any] | None = None
    file: dict[str, Any] | None = None


class FunctionCall(msgspec.Struct, gc=False):
    name: str
    arguments: str = ""  # a JSON text, as OpenAI sends it


class ToolCall(msgspec.Struct, gc=False):
    id: str
    function: FunctionCall
    type: str = "function"


class Message(msgspec.Struct, gc=False):
    role: str  # "system", "developer", "user", "assistant", "tool"
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # A previous answer's reasoning, sent back so the provider can continue from it.
    reasoning: str | None = None
    reasoning_signature: str | None = None
    reasoning_redacted: list[str] | None = None  # redacted thinking blocks' data, in order


class FunctionDef(msgspec.Struct, gc=False):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, gc=False):
    function: FunctionDef
    type: str = "function"


ToolMode = Literal["auto", "none", "required"]


class FunctionName(msgspec.Struct, gc=False):
    name: str


class NamedToolChoice(msgspec.Struct, gc=False):
    """`{"type": "function", "function": {"name": ...}}`: the model must call this tool."""

    function: FunctionName
    type: Literal["function"] = "function"


class ChatRequest(msgspec.Struct, gc=False):
    # Not fields: logprobs, top_logprobs, logit_bias, audio, modalities. No translating provider
    # can give several choices, logprobs or audio; `reject_unsupported` judges them on the raw
    # body, where an "off" value of any JSON type (n: 1.0, logprobs: 0) passes instead of
    # failing a typed decode.
    model: str
    messages: list[Message]
    stream: bool | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolMode | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: Any = None  # any value but 1 is refused first (CHOICES_AND_LOGPROBS); 1 may be passed on

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


_decoder = msgspec.json.Decoder(ChatRequest)


def decode_chat_request(body: RawBody) -> ChatRequest:
    try:
        request = _decoder.decode(msgspec.json.encode(body))
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `$")
        param = where.rstrip("`").lstrip(".") or None
        raise BadRequest(
            f"Invalid value for '{param}': {message}." if param else f"{exc}.",
            param=param,
            code="invalid_value",
        ) from None
    _check_response_format(request.response_format)
    return request


def _check_response_format(response_format: dict[str, Any] | None) -> None:
    """The parts of response_format the adapters read must be objects where OpenAI has them."""
    if response_format is None:
        return
    json_schema = response_format.get("json_schema")
    if json_schema is not None and not isinstance(json_schema, dict):
        param = "response_format.json_schema"
    elif isinstance(json_schema, dict) and not isinstance(json_schema.get("schema", {}), dict):
        param = "response_format.json_schema.schema"
    else:
        return
    raise BadRequest(
        f"Invalid value for '{param}': expected an object.", param=param, code="invalid_value"
    )


def present(**fields: Any) -> dict[str, Any]:
    """The fields that have a value (None: not asked), in order: what an upstream body takes."""
    return {key: value for key, value in fields.items() if value is not None}


def text_of(content: str | list[ContentPart] | None) -> str:
    """The text of a message's content (its text parts joined), for providers that take text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text or "" for part in content if part.type == "text")


# --- shared by the translating providers -----------------------------------------------------

# Whether a parameter's raw JSON value asks for something (False for its "off" values).
Asks = Callable[[Any], bool]


def not_off(value: Any) -> bool:
    """Any value but null, false and 0 asks for something."""
    return value not in (None, False)


# Parameters asking for what a translated answer cannot carry (several choices, logprobs, token
# biases, audio), with the values that ask for it: null, n=1, false, 0 and ["text"] ask nothing.
CHOICES_AND_LOGPROBS: dict[str, Asks] = {
    "n": lambda v: v not in (None, 1),
    "logprobs": bool,
    "top_logprobs": lambda v: v not in (None, 0),
    "logit_bias": bool,
}
AUDIO_OUTPUT: dict[str, Asks] = {
    "audio": lambda v: v is not None,
    "modalities": lambda v: v not in (None, ["text"]),
}


def reject_unsupported(
    body: RawBody, unsupported: Mapping[str, Asks], provider: str, label: str
) -> None:
    """A 400 `unsupported_parameter` for the first parameter of `unsupported` (in its order)
    whose value asks for something, naming it, the provider and its upstream (`label`). Judged
    on the raw body, before it is decoded, so that any JSON value is read and the "off" ones
    pass."""
    for param, asks_for_it in unsupported.items():
        raw = body.get(param)
        if raw is not None and asks_for_it(msgspec.json.decode(raw)):
            raise BadRequest(
                f"Parameter '{param}' is not supported by provider {provider!r} ({label}).",
                param=param,
                code="unsupported_parameter",
            )


def text_and_images(
    parts: list[ContentPart],
    where: str,
    label: str,
    text: Callable[[str], dict[str, Any] | None],
    image: Callable[[ImageURL, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The upstream's blocks for a message's text and image parts: `text` (None leaves the
    part out) and `image` (given the part's own `where`). Any other part is a 400 naming it."""
    blocks = []
    for j, part in enumerate(parts):
        if part.type == "text":
            block = text(part.text or "")
        elif part.type == "image_url" and part.image_url is not None:
            block = image(part.image_url, f"{where}[{j}]")
        else:
            raise BadRequest(
                f"Content parts of type {part.type!r} are not supported by {label}.",
                param=f"{where}[{j}].type",
                code="invalid_value",
            )
        if block is not None:
            blocks.append(block)
    return blocks


def function_of(tool: Tool, i: int, label: str) -> FunctionDef:
    """The function of `tools[i]`: a tool of any other type is a 400 naming it."""
    if tool.type != "function":
        raise BadRequest(
            f"Invalid value for 'tools[{i}].type': {label} supports only function tools.",
            param=f"tools[{i}].type",
            code="invalid_value",
        )
    return tool.function


def text_only(message: Message, i: int) -> str:
    """The text of `messages[i]`, for a role the upstream takes as text only: any other part is
    a 400 naming it."""
    if isinstance(message.content, list):
        for j, part in enumerate(message.content):
            if part.type != "text":
                raise BadRequest(
                    f"A {message.role} message takes text only; messages[{i}].content[{j}] "
                    f"is {part.type!r}.",
                    param=f"messages[{i}].content[{j}]",
                    code="invalid_value",
                )
    return text_of(message.content)


def arguments_object(arguments: str, where: str) -> dict[str, Any]:
    """A tool call's `arguments` (a JSON text) as the object an upstream takes; blank is {}.
    Anything but a JSON object is a 400 naming `where`."""
    if not arguments.strip():
        return {}
    try:
        args = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise BadRequest(
            f"Invalid value for '{where}': expected a JSON object.",
            param=where,
            code="invalid_value",
        )
    return args


T = TypeVar("T")


def choose(value: str, choices: Mapping[str, T], param: str) -> T:
    """`choices[value]`; any other value is a 400 for `param` listing the choices."""
    if value not in choices:
        raise BadRequest(
            f"Invalid value for '{param}': {value!r} (expected one of {', '.join(choices)}).",
            param=param,
            code="invalid_value",
        )
    return choices[value]


def json_output(response_format: dict[str, Any] | None) -> tuple[bool, Any]:
    """Whether `response_format` asks for JSON, and its json_schema's `schema` (None if none).
    No response_format, or type "text", asks for none; an unknown type is a 400."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return False, None
    if kind == "json_object":
        return True, None
    if kind == "json_schema":
        assert response_format is not None
        return True, (response_format.get("json_schema") or {}).get("schema")
    raise BadRequest(
        f"Invalid value for 'response_format.type': {kind!r}.",
        param="response_format.type",
        code="invalid_value",
    )


def base64_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>[;params];base64,<data>` URL; None for any
    other URL, so each provider can say in its own words what it takes instead."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    media_type = header.split(";", 1)[0]
    if not (comma and media_type and data and header.endswith(";base64")):
        return None
    return media_type, data
