"""Every error answered in the shape of the API the route speaks (`answer_exception`, which
the front door, `gateway.server.front_door`, calls for whatever a handler raised).

The errors themselves (`GatewayError` and its kinds) live in `wire.errors`, below the providers
that raise them too. A route that speaks another API's format (Anthropic's, Gemini's) is added
with how to render an error in its shape (`add_route`); every other answer is OpenAI's, and so
is the answer to a request no route matched.
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

# How an API renders a GatewayError as its error answer.
ErrorShape = Callable[[GatewayError], web.Response]
# The routes that speak another API's format, by their resource: how each answers errors.
ERROR_SHAPES: web.AppKey[dict[web.AbstractResource, ErrorShape]] = web.AppKey("error_shapes")


def add_route(
    app: web.Application,
    method: str,
    path: str,
    handler: Handler,
    error_shape: ErrorShape | None = None,
) -> web.AbstractRoute:
    """Add a route whose errors are answered in `error_shape` (OpenAI's when None)."""
    route = app.router.add_route(method, path, handler)
    if error_shape is not None:
        app.setdefault(ERROR_SHAPES, {})[route.resource] = error_shape
    return route


async def unknown_path(request: web.Request) -> web.StreamResponse:
    """The handler of an API's catch-all route (after its own): a path under the API's that
    no route of it serves is a 404 in that API's shape, which its SDK reads."""
    raise _HTTP_EXCEPTIONS[404](request)


def error_answer(request: web.Request, error: GatewayError) -> web.Response:
    """`error` in the shape of the API the request's route speaks (OpenAI's by default)."""
    resource = request.match_info.route.resource
    if resource is not None:
        render = request.app.get(ERROR_SHAPES, {}).get(resource)
        if render is not None:
            return render(error)
    return error_response(error)


def answer_exception(request: web.Request, exception: Exception) -> web.Response:
    """The answer to an exception a handler raised, in its route's API shape; logs the
    unexpected ones once (call it from the `except` block). An HTTPException below 400 (a
    redirect) is not an error: it is raised again."""
    if isinstance(exception, GatewayError):
        answer = error_answer(request, exception)
        # The error may outlive the request (the access log's record keeps it), not the
        # frames it was raised through (the request, its body).
        drop_tracebacks(exception)
        return answer
    if isinstance(exception, web.HTTPException):
        make = _HTTP_EXCEPTIONS.get(exception.status)
        if make is not None:
            return error_answer(request, make(request))
        if exception.status < 400:
            raise exception
        other = GatewayError(
            exception.reason, status=exception.status, type="invalid_request_error"
        )
        return error_answer(request, other)
    log.exception("unhandled error in %s %s", request.method, request.path)
    return error_answer(request, GatewayError("The gateway failed to handle the request."))
