"""An upstream's error answer whose body is `{"message": ...}` (Cohere, Bedrock), as ours."""

from __future__ import annotations

import msgspec

from wire.errors import UpstreamError, error_text, relayed_error


class _MessageBody(msgspec.Struct, gc=False):
    message: str | None = None
    Message: str | None = None  # some AWS front ends capitalise it


_decode_message = msgspec.json.Decoder(_MessageBody).decode


def error_message(body: bytes) -> str | None:
    """The `message` of a `{"message": ...}` body, else the body's text."""
    try:
        parsed = _decode_message(body)
    except msgspec.DecodeError:
        return error_text(body) or None
    return parsed.message or parsed.Message


def message_error(
    status: int, body: bytes, provider: str, *, code: str | None = None
) -> UpstreamError:
    """A `{"message": ...}` error answer as ours, its status relayed."""
    return relayed_error(status, error_message(body), provider, code=code)
