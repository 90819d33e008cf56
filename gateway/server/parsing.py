"""Request bodies: decoded once, one level deep, checked field by field.

The body becomes `{key: msgspec.Raw}`: the top-level keys with their values still as JSON bytes,
so fields the gateway does not know (tools, response_format, seed, ...) are forwarded as the
client wrote them, and a long conversation is never rebuilt as Python objects. Only the few
fields the gateway acts on, or whose type would otherwise fail upstream, are decoded and typed.
"""

from __future__ import annotations

import codecs
from typing import Any, Literal

import msgspec

from wire.errors import BadRequest
from wire.jsondepth import MAX_DEPTH, too_deep
from wire.jsonints import INT_MAX, INT_MIN, out_of_range
from wire.operations import Operation, RawBody, decode_field

_body_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_UTF8_SLICE = 1024 * 1024  # checked a slice at a time: no copy of a large body as text

_SAMPLING: dict[str, Any] = {
    "model": str,
    "stream": bool | None,
    "temperature": float | None,
    "top_p": float | None,
}
_COMMON: dict[str, Any] = {
    **_SAMPLING,
    "stream_options": dict[str, Any] | None,
    "n": int | None,
    "max_tokens": int | None,
}
# Per operation: the typed fields, and which of them must be present.
_FIELDS: dict[Operation, dict[str, Any]] = {
    Operation.CHAT: {
        **_COMMON,
        "messages": list[msgspec.Raw],
        "max_completion_tokens": int | None,
    },
    Operation.COMPLETIONS: {**_COMMON, "prompt": str | list[Any]},
    Operation.RESPONSES: {
        **_SAMPLING,
        "input": str | list[dict[str, Any]] | None,
        "instructions": str | None,
        "max_output_tokens": int | None,
        "previous_response_id": str | None,
        "store": bool | None,
        "tools": list[dict[str, Any]] | None,
        "reasoning": dict[str, Any] | None,
    },
    Operation.EMBEDDINGS: {
        "model": str,
        # A string, or a list of strings, of token ids, or of token-id lists.
        "input": str | list[str | int | list[int]],
        "encoding_format": Literal["float", "base64"] | None,
        "dimensions": int | None,
    },
    Operation.SPEECH: {
        "model": str,
        "input": str,
        "voice": str | dict[str, Any],
        "response_format": Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] | None,
        "speed": float | None,
        "instructions": str | None,
        "stream_format": Literal["audio", "sse"] | None,
    },
}
# Anthropic's Messages API (inbound): only what the gateway routes by; the rest is
# translated or passed through by formats/anthropic/from_chat.py.
_FIELDS[Operation.MESSAGES] = {
    "model": str,
    "stream": bool | None,
    "max_tokens": int,
    "messages": list[msgspec.Raw],
}
_FIELDS[Operation.COUNT_TOKENS] = {"model": str, "messages": list[msgspec.Raw]}

_REQUIRED: dict[Operation, tuple[str, ...]] = {
    Operation.MESSAGES: ("model", "messages", "max_tokens"),
    Operation.COUNT_TOKENS: ("model", "messages"),
    Operation.CHAT: ("model", "messages"),
    Operation.COMPLETIONS: ("model", "prompt"),
    Operation.RESPONSES: ("model",),
    Operation.EMBEDDINGS: ("model", "input"),
    Operation.SPEECH: ("model", "input", "voice"),
}
_DECODERS = {
    operation: {name: msgspec.json.Decoder(kind) for name, kind in fields.items()}
    for operation, fields in _FIELDS.items()
}


class ParsedRequest(msgspec.Struct, frozen=True, gc=False):
    body: RawBody
    model: str
    stream: bool
    values: dict[str, Any]  # the typed fields that were present
    # The request's own fallbacks (Bifrost's field): the gateway's, never sent upstream.
    fallbacks: list[str] = []
    # Models the body asks the upstream itself to choose from (`MODEL_LISTS`): sent upstream,
    # and checked against the key's allow-list as the upstream will read them.
    upstream_models: list[str] = []


def parse_request(data: bytes, operation: Operation) -> ParsedRequest:
    """Decode and check a request body, or raise `BadRequest` naming the field at fault."""
    body = decode_object(data)
    for name in _REQUIRED[operation]:
        if name not in body:
            raise BadRequest(
                f"Missing required parameter: '{name}'.",
                param=name,
                code="missing_required_parameter",
            )
    values: dict[str, Any] = {}
    for name, decoder in _DECODERS[operation].items():
        raw = body.get(name)
        if raw is not None:
            values[name] = decode_field(name, raw, decoder)
    fallbacks = body.pop("fallbacks", None)
    upstream_models = [
        model
        for name in MODEL_LISTS
        if name in body
        for model in decode_field(name, body[name], _models_decoder) or ()
    ]
    return ParsedRequest(
        body,
        values["model"],
        bool(values.get("stream")),
        values,
        decode_field("fallbacks", fallbacks, _models_decoder) or [] if fallbacks else [],
        upstream_models,
    )


# Body fields an upstream reads as more models to use: OpenRouter's `models` (its fallback
# list). Forwarded as they are, so a key's allow-list must cover what they name.
MODEL_LISTS = ("models",)
_models_decoder = msgspec.json.Decoder(list[str] | None)


def decode_object(data: bytes) -> RawBody:
    if not data.strip():
        raise BadRequest("The request body is empty; expected a JSON object.")
    # Checked for the whole body here, so that no decoder down the line (a provider reading
    # `messages`, say) meets what it cannot read: raw values are not checked by msgspec.
    if too_deep(data):
        raise BadRequest(
            f"The JSON body of your request nests deeper than {MAX_DEPTH} levels.",
            code="json_too_deep",
        )
    if not _is_utf8(data):
        raise BadRequest("The request body is not valid UTF-8 (JSON must be UTF-8).")
    try:
        body = _body_decoder.decode(data)
    except msgspec.ValidationError:
        raise BadRequest("The request body must be a JSON object.") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(
            f"We could not parse the JSON body of your request: {exc}. The body must be valid JSON."
        ) from None
    number = out_of_range(data)  # valid JSON now: a number outside 64 bits is one for sure
    if number is not None:
        shown = str(number) if len(str(number)) <= 40 else f"{str(number)[:40]}..."
        raise BadRequest(
            f"The request body holds the integer {shown}, outside the 64-bit range the gateway "
            f"and its providers read ({INT_MIN} to {INT_MAX}).",
            code="integer_out_of_range",
        )
    return body


def _is_utf8(data: bytes) -> bool:
    if data.isascii():  # most bodies: JSON escapes non-ASCII text by default
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for start in range(0, len(view), _UTF8_SLICE):
            decoder.decode(view[start : start + _UTF8_SLICE])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True
