"""Every client-visible error: one exception kind per error, each knowing its status and body.

An error's body is OpenAI's `{"error": {"message", "type", "param", "code"}}`. Nothing formats
an error body but these classes (and the routes that speak another API's shape): handlers and
translators raise, `gateway.server.error_middleware` answers; once a stream has started, the
relay sends the same body as a final SSE event instead.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import orjson

from wire.redact import redact

# The header the OpenAI and Anthropic SDKs (and Claude Code) read before their own retry rule:
# "false" stops them retrying an answer no retry can fix (a wrong key would otherwise be
# retried for minutes by Claude Code), "true" lets them retry one that may pass next time.
SHOULD_RETRY = "x-should-retry"
# The statuses a retry may fix, as both SDKs count them: a timeout, a conflict, a rate limit;
# and every 5xx.
_RETRYABLE = frozenset({408, 409, 429})


def retry_may_help(status: int) -> bool:
    """Whether the same request sent again may get another answer than `status`."""
    return status in _RETRYABLE or status >= 500


class GatewayError(Exception):
    """Base of every error the client may see; subclasses fix status and type."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool | None = None  # None: as its status says (`retry_may_help`)

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
    ) -> None:
        message = redact(message)  # an upstream may echo the key it was sent
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = {}  # sent with the error answer (Retry-After, ...)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type

    def should_retry(self, status: int | None = None) -> bool:
        """Whether a client may retry this answer, sent with `status` (default: its own)."""
        if self.retryable is not None:
            return self.retryable
        return retry_may_help(self.status if status is None else status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "unknown_url"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class MisdirectedRequest(GatewayError):
    """A Host the gateway does not answer for (DNS rebinding)."""

    status = 421
    type = "invalid_request_error"
    code = "host_not_allowed"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "too_many_connections"


class UpstreamError(GatewayError):
    """The upstream answered with an error: its status and message are relayed as they are."""

    type = "upstream_error"
    # Built from a body not in OpenAI's shape (a framework's `{"detail": ...}`, an HTML
    # page): its message alone names nothing, so the attempt adds who answered what.
    foreign = False


class ProviderAuthError(GatewayError):
    """The gateway's own key for a provider is missing or was refused upstream: a fault of
    the gateway's configuration, not of the client (whose 401 means its gateway key)."""

    status = 502
    type = "upstream_error"
    code = "provider_auth_failed"
    retryable = False  # the gateway's configuration must change first


class UpstreamUnreachable(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamProtocolError(GatewayError):
    """The upstream sent something we cannot read (a malformed event, a cut stream)."""

    status = 502
    type = "upstream_error"
    code = "upstream_protocol_error"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


def drop_tracebacks(exc: BaseException) -> None:
    """Let go of the frames `exc` and every exception chained to it passed through.

    A traceback keeps each frame it passed through, and a frame its locals: an attempt's
    request body, the answer read so far. An exception kept after it was handled (in a list
    of failures, an error noted for the access log) would keep them too, and once one of those
    frames holds whatever keeps the exception, only a full collection frees them, which the
    gateway's collector thresholds make rare. The exceptions themselves are small.
    """
    pending = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def error_text(body: bytes) -> str:
    """An error answer's body as text, for a message (bounded: it may be a whole HTML page)."""
    return body.decode("utf-8", "replace").strip()[:2000]


def relayed_error(status: int, message: str | None, provider: str, **fields: Any) -> UpstreamError:
    """The upstream's error with its status and message (or one naming the status)."""
    return UpstreamError(message or f"{provider} returned HTTP {status}", status=status, **fields)


def upstream_error_from_body(status: int, body: bytes, provider: str) -> UpstreamError:
    """Build the relayed error from an upstream's error answer, keeping its message and fields.

    OpenAI-shaped bodies keep their type/param/code; anything else becomes the message text.
    """
    error: Any = None
    try:
        parsed = orjson.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        pass
    if isinstance(error, dict):
        message = error.get("message")
        return relayed_error(
            status,
            message if isinstance(message, str) else None,
            provider,
            type=_str_or_none(error.get("type")) or UpstreamError.type,
            param=_str_or_none(error.get("param")),
            code=_str_or_none(error.get("code")),
        )
    if isinstance(error, str) and error:  # some servers (vLLM, Ollama) send {"error": "text"}
        relayed = UpstreamError(error, status=status)
    else:
        relayed = relayed_error(status, _foreign_text(body), provider)
    relayed.foreign = True
    return relayed


_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]+>")


def _foreign_text(body: bytes) -> str:
    """What an error body not in OpenAI's shape says: FastAPI's (and vLLM's) `detail`, an
    HTML page's title (or its text), else the text itself, bounded."""
    with contextlib.suppress(orjson.JSONDecodeError):
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and "detail" in parsed:
            detail = parsed["detail"]
            return detail if isinstance(detail, str) else orjson.dumps(detail).decode()[:2000]
    head = body.lstrip()[:1].lower()
    if head == b"<":
        title = _HTML_TITLE.search(body)
        if title is not None:
            return " ".join(title.group(1).decode("utf-8", "replace").split())[:300]
        return " ".join(_HTML_TAG.sub(" ", error_text(body)).split())[:300]
    return error_text(body)


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
