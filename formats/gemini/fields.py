"""Gemini requests in either spelling of proto JSON, read as camelCase.

Google's API reads requests as proto3 JSON, whose parsers take a field by its JSON name
(lowerCamelCase, `generationConfig`) or by its proto name (snake_case, `generation_config`)
(protobuf.dev/programming-guides/json), and clients send both, often mixed in one body:
google-genai 3.x sends a Python function's schema as `parameters_json_schema` and its
`thinking_config` fields as `thinking_budget`; litellm sends `function_declarations`.
`camel_case` renames the fields of a request once, as it is decoded, so that everything after
it (the translation to chat, a Gemini upstream, the token estimate) reads one spelling.

Only a message's fields are renamed, at any depth, following the request's message tree
below. What is the client's own data keeps its keys as sent: a map's keys (a Schema's
`properties`) and every google.protobuf.Struct or Value (a function call's `args`, a
response's `response`, `parametersJsonSchema`, `responseJsonSchema`, a Schema's `default`
and `example`). A field the tree does not list is renamed and its value kept as it is: it is
a scalar, or data, or a field newer than this table (which Google reads in either spelling).

One object naming a field in both spellings is a 400: the ProtoJSON conformance suite
recommends refusing it (FieldNameDuplicateDifferentCasing), as protobuf's Python parser does;
keeping either value would silently drop the other.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from wire.errors import BadRequest
from wire.operations import RawBody


class Message:
    """A proto message: its fields that hold messages (by JSON name), and what each holds."""

    __slots__ = ("fields",)

    def __init__(self, **fields: Message | MapOf) -> None:
        self.fields = fields


class MapOf:
    """A `map<string, Message>` field: its keys are data, its values messages."""

    __slots__ = ("values",)

    def __init__(self, values: Message) -> None:
        self.values = values


# The message tree of a GenerateContentRequest (ai.google.dev/api/generate-content,
# ai.google.dev/api/caching): every message whose fields a client may spell either way.
# Fields holding scalars or data are not listed (see the module docstring).
SCHEMA = Message()
SCHEMA.fields.update(items=SCHEMA, anyOf=SCHEMA, properties=MapOf(SCHEMA))
_BLOB = Message()  # mimeType, data
_FILE_DATA = Message()  # mimeType, fileUri
PART = Message(
    inlineData=_BLOB,
    fileData=_FILE_DATA,
    functionCall=Message(),  # id, name; args is data
    functionResponse=Message(parts=Message(inlineData=_BLOB, fileData=_FILE_DATA)),
    executableCode=Message(),
    codeExecutionResult=Message(),
    videoMetadata=Message(),
    mediaResolution=Message(),
)
CONTENT = Message(parts=PART)
_VOICE = Message(prebuiltVoiceConfig=Message())
TOOL = Message(
    functionDeclarations=Message(parameters=SCHEMA, response=SCHEMA),
    googleSearchRetrieval=Message(dynamicRetrievalConfig=Message()),
    googleSearch=Message(timeRangeFilter=Message()),
    codeExecution=Message(),
    urlContext=Message(),
    computerUse=Message(),
    fileSearch=Message(),
    googleMaps=Message(),
)
GENERATION_CONFIG = Message(
    responseSchema=SCHEMA,
    thinkingConfig=Message(),
    speechConfig=Message(
        voiceConfig=_VOICE,
        multiSpeakerVoiceConfig=Message(speakerVoiceConfigs=Message(voiceConfig=_VOICE)),
    ),
    imageConfig=Message(),
)
GENERATE_CONTENT_REQUEST = Message(
    contents=CONTENT,
    systemInstruction=CONTENT,
    tools=TOOL,
    toolConfig=Message(
        functionCallingConfig=Message(),
        retrievalConfig=Message(latLng=Message()),
    ),
    safetySettings=Message(),
    generationConfig=GENERATION_CONFIG,
)
# models.countTokens (ai.google.dev/api/tokens): the contents, or a whole request.
COUNT_TOKENS_REQUEST = Message(contents=CONTENT, generateContentRequest=GENERATE_CONTENT_REQUEST)

_PROTO_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
# A snake_case key anywhere in a raw value: only then is the value decoded and renamed (a
# key in data or an escaped quote in a string may match too: it costs a decode, no more).
_MAY_HOLD_PROTO_NAME = re.compile(rb'"[a-z][a-z0-9]*_[a-z0-9_]*"\s*:')


def json_name(name: str) -> str:
    """The JSON name of a field spelt either way: `max_output_tokens` -> `maxOutputTokens`."""
    if not _PROTO_NAME.fullmatch(name):
        return name
    first, *rest = name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def camel_case(body: RawBody, message: Message) -> RawBody:
    """A request body with its fields named as camelCase at every depth.

    Args:
        body: The request's top-level fields, raw.
        message: The request's message (`GENERATE_CONTENT_REQUEST`, `COUNT_TOKENS_REQUEST`).

    Raises:
        BadRequest: a field is named in both spellings in one object.
    """
    out: RawBody = {}
    for key, raw in body.items():
        name = _renamed(key, out, "")
        kind = message.fields.get(name)
        if kind is not None and _MAY_HOLD_PROTO_NAME.search(raw):
            value = msgspec.json.decode(raw)
            renamed = _field(value, kind, name)
            if renamed != value:  # else the client's bytes go on as they came
                raw = msgspec.Raw(msgspec.json.encode(renamed))
        out[name] = raw
    return out


def _renamed(key: str, seen: dict[str, Any], where: str) -> str:
    name = json_name(key)
    if name in seen:
        param = f"{where}.{name}" if where else name
        proto_name = re.sub(r"[A-Z]", lambda upper: "_" + upper.group().lower(), name)
        raise BadRequest(
            f"Invalid value for '{param}': set twice, as '{proto_name}' and as '{name}'; "
            "proto JSON reads both spellings as one field, so send it once.",
            param=param,
            code="invalid_value",
        )
    return name


def _field(value: Any, kind: Message | MapOf, where: str) -> Any:
    if isinstance(value, list):  # a repeated field: each element is one
        return [_field(item, kind, f"{where}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value  # not an object: left for the reader to refuse
    if isinstance(kind, MapOf):
        return {key: _field(item, kind.values, f"{where}.{key}") for key, item in value.items()}
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _renamed(key, out, where)
        child = kind.fields.get(name)
        out[name] = item if child is None else _field(item, child, f"{where}.{name}")
    return out
