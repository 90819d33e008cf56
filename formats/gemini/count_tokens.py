"""countTokens answered offline, for a model whose provider is not Gemini.

The body is models.countTokens' (ai.google.dev/api/tokens): `contents`, or a whole
`generateContentRequest` (its system instruction and tools count too), in camelCase
(`formats.gemini.fields`). The answer is CountTokensResponse's `{"totalTokens": n}`,
estimated with `wire.tokens`: text, function names with their arguments and results, tool
declarations with their schemas; each turn adds `PER_MESSAGE`. A media part (inline data or a
file) counts 258 tokens, what Gemini counts for an image up to 384 pixels a side
(ai.google.dev/gemini-api/docs/tokens#multimodal-tokens): its size is unknown without decoding.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from formats.chat.bridge import validation_error
from wire.errors import BadRequest
from wire.operations import RawBody
from wire.tokens import PER_MESSAGE, PER_REQUEST, estimate_json, estimate_text

MEDIA_TOKENS = 258


class _Content(msgspec.Struct, gc=False):
    parts: list[dict[str, Any]] = []


class _Request(msgspec.Struct, rename="camel", gc=False):
    contents: list[_Content] = []
    system_instruction: _Content | None = None
    tools: list[dict[str, Any]] = []


class _CountTokensRequest(msgspec.Struct, rename="camel", gc=False):
    contents: list[_Content] | None = None
    generate_content_request: _Request | None = None


_decoder = msgspec.json.Decoder(_CountTokensRequest)


def estimate_count_tokens(body: RawBody) -> bytes:
    """The CountTokensResponse for a countTokens body, estimated."""
    try:
        request = _decoder.decode(msgspec.json.encode(body))
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    inner = request.generate_content_request
    if (request.contents is None) == (inner is None):
        raise BadRequest(
            "Invalid value for 'contents': send either contents or generateContentRequest.",
            param="contents",
            code="invalid_value",
        )
    whole = inner if inner is not None else _Request(contents=request.contents or [])
    return orjson.dumps({"totalTokens": _tokens(whole)})


def _tokens(request: _Request) -> int:
    turns = list(request.contents)
    if request.system_instruction is not None:
        turns.append(request.system_instruction)
    total = PER_REQUEST + sum(PER_MESSAGE + _parts(turn.parts) for turn in turns)
    return total + sum(estimate_json(tool) for tool in request.tools)


def _parts(parts: list[dict[str, Any]]) -> int:
    tokens = 0
    for part in parts:
        text = part.get("text")
        if isinstance(text, str):
            tokens += estimate_text(text)
        elif "inlineData" in part or "fileData" in part:
            tokens += MEDIA_TOKENS
        else:  # a function call or response, code and its result: their JSON
            tokens += estimate_json({k: v for k, v in part.items() if k != "thoughtSignature"})
    return tokens
