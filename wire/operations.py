"""The operations a client request asks for, and its body decoded one level deep."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from wire.errors import BadRequest

# A request body decoded one level deep: the top-level keys, each value still raw JSON bytes.
# Fields the gateway does not know are forwarded untouched (tools, response_format, seed, ...).
RawBody = dict[str, msgspec.Raw]


class Operation(StrEnum):
    CHAT = "chat.completions"
    COMPLETIONS = "completions"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    SPEECH = "audio.speech"
    TRANSCRIPTION = "audio.transcriptions"
    TRANSLATION = "audio.translations"
    # The client's own format, passed through to a provider that speaks it (Anthropic, Gemini).
    MESSAGES = "messages"
    COUNT_TOKENS = "messages.count_tokens"
    GENERATE_CONTENT = "generateContent"
    COUNT_GEMINI_TOKENS = "countTokens"


def decode_field(name: str, raw: msgspec.Raw, decoder: msgspec.json.Decoder[Any]) -> Any:
    """One raw field of a request body, typed; a value of the wrong type is a 400 naming it."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        detail = str(exc).replace(" - at `$`", "").replace("Expected", "expected")
        raise BadRequest(
            f"Invalid type for '{name}': {detail}.", param=name, code="invalid_type"
        ) from None
