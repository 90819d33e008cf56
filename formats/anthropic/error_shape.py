"""Anthropic's error shape, both ways: `{"type": "error", "error": {"type", "message"}}`.

An Anthropic upstream's error (an answer, or an `error` event inside a stream) as the gateway's
error, and any gateway error as Anthropic's body, status and stream event, for a client that
speaks the Messages API (platform.claude.com/docs/en/api/errors).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from wire.errors import GatewayError, UpstreamError
from wire.sse import encode_event

# Anthropic's error types and their statuses (platform.claude.com/docs/en/api/errors), for an
# `error` event that arrives mid-stream with no status of its own. `overloaded_error` is
# Anthropic's non-standard 529; we answer 503, the standard "overloaded, try again later" that
# HTTP clients, SDKs and proxies know to retry, where an unknown 5xx may be treated as fatal.
STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 503,
}


_OVERLOADED = 529


def overloaded_as_503(status: int) -> int:
    """Anthropic's non-standard 529 "overloaded" as the standard 503; any other as it is."""
    return 503 if status == _OVERLOADED else status


def anthropic_error(status: int | None, error_type: str, message: str) -> UpstreamError:
    """Our error for Anthropic's `{"type": error_type, "message": message}`.

    Args:
        status: The HTTP status it came with (see `overloaded_as_503`), kept; None for
            an `error` event inside a stream, whose status then follows from its type.
    """
    if error_type == "overloaded_error":
        status = 503
    elif status is None:
        status = STATUS_BY_TYPE.get(error_type, 502)
    return UpstreamError(
        message or f"Anthropic returned {error_type}",
        status=status,
        type=error_type,
        code=error_type,
    )


class _ErrorDetail(msgspec.Struct, gc=False):
    type: str = "api_error"
    message: str = ""


class ErrorBody(msgspec.Struct, gc=False):
    """`{"type": "error", "error": {"type", "message"}}`, as an answer or a stream event."""

    error: _ErrorDetail | None = None


def stream_error(body: ErrorBody) -> UpstreamError:
    """The failure an `error` event of a Messages stream says."""
    detail = body.error or _ErrorDetail()
    return anthropic_error(None, detail.type, detail.message)


decode_error = msgspec.json.Decoder(ErrorBody).decode


# Anthropic's error type for each HTTP status (platform.claude.com/docs/en/api/errors; 402
# billing_error and 504 timeout_error as the anthropic SDK types them). A 503 is overloaded:
# Anthropic says that with 529, which its SDK and Claude Code know to retry.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(error: GatewayError) -> str:
    """Anthropic's error type for a gateway error: by its status, else the upstream's own
    Anthropic type, else invalid_request_error for a 4xx ("we may also use this error type
    for other 4XX status codes") and api_error for the rest."""
    kind = _ERROR_TYPES.get(error.status)
    if kind is not None:
        return kind
    if error.type in STATUS_BY_TYPE:
        return error.type
    return "invalid_request_error" if 400 <= error.status < 500 else "api_error"


def anthropic_error_status(error: GatewayError) -> int:
    """The HTTP status to answer a gateway error with: its own, but 529 when overloaded."""
    return _OVERLOADED if anthropic_error_type(error) == "overloaded_error" else error.status


def _error_payload(error: GatewayError) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": anthropic_error_type(error), "message": error.message},
    }


def anthropic_error_body(error: GatewayError) -> bytes:
    """`{"type": "error", "error": {"type", "message"}}`: the body of an error answer, and
    the data of a stream's `error` event."""
    return orjson.dumps(_error_payload(error))


def anthropic_error_event(error: GatewayError) -> bytes:
    """A Messages stream's final `error` event."""
    return encode_event(_error_payload(error))
