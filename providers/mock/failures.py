"""The mock's failures on demand, chosen by the model name after `mock/`, so that routing and
fallback examples run offline. The names, for every operation the mock serves:

- `status-<code>` (a 4xx or 5xx code: `status-503`, `status-429`, `status-401`, `status-404`):
  that HTTP status with OpenAI's error body (`{"error": {"message", "type", "param", "code"}}`,
  type and code as OpenAI gives them for that status); a 429 carries `Retry-After: 1`.
- `error-first`: streamed, a 200 event stream whose first event is an error event (the server
  is overloaded), then the stream ends; not streamed (and for speech and embeddings, which have
  no event stream), a 503.
- `cut-after-<n>` (n up to 9999): streamed, n content chunks (tokens, argument fragments, audio
  chunks or transcript deltas), then the connection breaks mid-body; not streamed, the read
  breaks. Either way the relay sees aiohttp's `ClientPayloadError`, as from a real upstream.

Any other name is an ordinary model.
"""

from __future__ import annotations

import re
from http import HTTPStatus

import aiohttp
import msgspec
import orjson


class Status(msgspec.Struct, frozen=True, gc=False):
    code: int


class ErrorFirst(msgspec.Struct, frozen=True, gc=False):
    pass


class CutAfter(msgspec.Struct, frozen=True, gc=False):
    chunks: int


Failure = Status | ErrorFirst | CutAfter

_STATUS = re.compile(r"status-([45]\d\d)")
_CUT = re.compile(r"cut-after-(\d{1,4})")
ERROR_FIRST_STATUS = 503  # what `error-first` answers when there is no stream to put it in
RETRY_AFTER = "1"  # seconds, on a 429

# OpenAI's error type, code and message per status; any other code gets the generic pair.
_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "The request was invalid."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "request_forbidden",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported.",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "service_unavailable_error",
        "server_is_overloaded",
        "The server is overloaded. Please try again later.",
    ),
}


def parse_failure(model: str) -> Failure | None:
    """The failure a mock model name asks for (`status-503`, `error-first`, `cut-after-3`),
    or None for an ordinary model."""
    if model == "error-first":
        return ErrorFirst()
    if match := _STATUS.fullmatch(model):
        return Status(int(match[1]))
    if match := _CUT.fullmatch(model):
        return CutAfter(int(match[1]))
    return None


def error_body(status: int, model: str) -> bytes:
    """OpenAI's error JSON for `status`, saying which mock model failed on purpose."""
    kind, code, message = _OPENAI_ERRORS.get(status) or _generic(status)
    return orjson.dumps(
        {
            "error": {
                "message": f"{message.format(model=model)} (mock/{model} fails on purpose)",
                "type": kind,
                "param": None,
                "code": code,
            }
        }
    )


def error_headers(status: int) -> dict[str, str]:
    return {"Retry-After": RETRY_AFTER} if status == 429 else {}


def error_event(model: str) -> bytes:
    """The error event that opens an `error-first` stream: the server is overloaded."""
    return b"data: " + error_body(ERROR_FIRST_STATUS, model) + b"\n\n"


def cut() -> aiohttp.ClientPayloadError:
    """What aiohttp raises when an upstream's connection breaks mid-body."""
    return aiohttp.ClientPayloadError(
        "Response payload is not completed: the mock broke the connection on purpose"
    )


def _generic(status: int) -> tuple[str, str | None, str]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return ("server_error" if status >= 500 else "invalid_request_error", None, f"{phrase}.")
