"""Gemini's error shape, both ways: `{"error": {"code", "message", "status"}}`.

A Gemini upstream's error (an answer, or an error object inside a stream) as the gateway's
error, and any gateway error as Gemini's error object, for a client that speaks
generateContent (ai.google.dev/gemini-api/docs/troubleshooting#error-codes).
"""

from __future__ import annotations

import msgspec
import orjson

from wire.errors import GatewayError, UpstreamError, error_text, relayed_error

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


class ErrorObject(msgspec.Struct, gc=False):
    """Gemini's error object, `{"code", "message", "status"}` (google.rpc.Status)."""

    code: int | None = None
    message: str = ""
    status: str | None = None


class _ErrorBody(msgspec.Struct, gc=False):
    error: ErrorObject | str | None = None


_decode_error = msgspec.json.Decoder(_ErrorBody).decode


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


# google.rpc status names for HTTP statuses (ai.google.dev/gemini-api/docs/troubleshooting#
# error-codes). 502 has no code of its own: the upstream could not be reached or read, which
# Google says with UNAVAILABLE.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def gemini_status(error: GatewayError) -> str:
    """The google.rpc status name for a gateway error: a Gemini upstream's own (kept as the
    error's type), else the one for its HTTP status."""
    if error.type in STATUS_CODES:
        return error.type
    name = _STATUS_NAMES.get(error.status)
    if name is not None:
        return name
    return "INVALID_ARGUMENT" if 400 <= error.status < 500 else "INTERNAL"


def gemini_error_body(error: GatewayError) -> bytes:
    """`{"error": {"code", "message", "status"}}`: the body of an error answer (with the
    error's own HTTP status), and the object that ends a stream that failed."""
    detail = {"code": error.status, "message": error.message, "status": gemini_status(error)}
    return orjson.dumps({"error": detail})
