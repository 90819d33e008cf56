"""The one middleware that answers every error, in the shape of the API the route speaks.

The errors themselves (`GatewayError` and its kinds) live in `wire.errors`, below the providers
that raise them too. A route that speaks another API's format (Anthropic's, Gemini's) registers
how to render an error in its shape (`ERROR_SHAPES`); every other answer is OpenAI's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from wire.errors import (
    SHOULD_RETRY,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    drop_tracebacks,
)

log = logging.getLogger("gateway")


def error_response(
    error: GatewayError, body: bytes | None = None, status: int | None = None
) -> web.Response:
    """`error` as an error answer: its status, OpenAI's JSON, its headers (Retry-After,
    x-should-retry); or another API's `body` and `status` for it."""
    status = error.status if status is None else status
    headers = {**error.headers, SHOULD_RETRY: should_retry_value(error, status)}
    return web.Response(
        body=error.to_json() if body is None else body,
        status=status,
        content_type="application/json",
        headers=headers,
    )


def should_retry_value(error: GatewayError, status: int) -> str:
    """The x-should-retry header's value for `error` answered with `status`."""
    return "true" if error.should_retry(status) else "false"


# aiohttp raises these for routing and body-size problems before our handlers run.
_HTTP_EXCEPTIONS: dict[int, Callable[[web.Request], GatewayError]] = {
    404: lambda r: NotFound(f"Unknown request URL: {r.method} {r.path}."),
    405: lambda r: MethodNotAllowed(f"Method {r.method} is not allowed for {r.path}."),
    413: lambda r: PayloadTooLarge(
        f"Request body is larger than the limit of {r.client_max_size} bytes."
    ),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that speak another API's format answer errors in its shape: (path prefix, the
# function that renders a GatewayError as that API's error answer), set up by the app. Those
# routes are all POSTs: `GET /v1/models/{id}` is OpenAI's though Gemini's prefix covers it.
ErrorShapes = tuple[tuple[str, Callable[[GatewayError], web.Response]], ...]
ERROR_SHAPES = web.AppKey("error_shapes", ErrorShapes)


def error_answer(request: web.Request, error: GatewayError) -> web.Response:
    """`error` in the shape of the API the request's route speaks (OpenAI's by default)."""
    if request.method == "POST":
        for prefix, render in request.app.get(ERROR_SHAPES, ()):
            if request.path.startswith(prefix):
                return render(error)
    return error_response(error)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error in OpenAI's shape; log the unexpected ones once."""
    try:
        return await handler(request)
    except GatewayError as error:
        answer = error_answer(request, error)
        # The error may outlive the request (the access log's record keeps it), not the
        # frames it was raised through (the request, its body).
        drop_tracebacks(error)
        return answer
    except web.HTTPException as http_error:
        make = _HTTP_EXCEPTIONS.get(http_error.status)
        if make is not None:
            return error_answer(request, make(request))
        if http_error.status < 400:
            raise
        other = GatewayError(
            http_error.reason, status=http_error.status, type="invalid_request_error"
        )
        return error_answer(request, other)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_answer(request, GatewayError("The gateway failed to handle the request."))
