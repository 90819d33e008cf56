"""The hot path: upstream bytes to the client as they arrive.

One pump loop per stream (as httpcore's `_receive_event`): read whatever the upstream has,
let the provider's sans-IO translator turn it into client bytes (for an OpenAI-compatible
upstream, usually the very same bytes), and `await write()` them, so the client's pace is the
backpressure. No per-chunk logging, no per-chunk task or timer.

After the response has started, a failure can no longer change the status, so it is sent as
a final SSE error event (starlette's `response_started` rule). A client that goes away cancels
the handler (aiohttp's handler_cancellation), and `finally` closes the upstream connection at
once, so the upstream stops generating for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import web

from gateway.deadline import IdleDeadline
from gateway.errors import GatewayError
from gateway.routing import Target
from gateway.uploads import Upload
from gateway.upstream import Upstream, as_gateway_error
from providers.base import StreamTranslator, UpstreamRequest

log = logging.getLogger("gateway")

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # Tell nginx-style proxies in front not to buffer the stream.
    "X-Accel-Buffering": "no",
}
KEEPALIVE_COMMENT = b": keepalive\n\n"
# The upstream's own id for the request, for its support desk (the OpenAI SDK shows it as
# `response._request_id`).
REQUEST_ID = "x-request-id"
# After the terminal event, how long the upstream's end of body is waited for (it usually
# follows within microseconds); past it the connection is closed rather than pooled.
_END_OF_BODY_WAIT = 0.05
_HEAD_BYTES = 1024  # see _head_apart


async def relay_once(
    target: Target,
    upstream_request: UpstreamRequest,
    translate: Callable[[bytes], bytes],
    content_type: str | None = "application/json",
) -> web.Response:
    """A non-streamed request: the upstream's answer, translated, in one response
    (`content_type` None: the upstream's own, e.g. text/plain for a transcript as text)."""
    provider = target.provider
    upstream: Upstream | None = None
    try:
        upstream = await target.transport.send(upstream_request, target.timeout)
        body = await upstream.read()
    except Exception as exc:
        raise _upstream_failure(exc, target) from None
    finally:
        if upstream is not None:
            upstream.close()
    if upstream.status >= 400:
        raise provider.upstream_error(upstream.status, body, upstream.headers)
    response = web.Response(
        body=translate(body), content_type=content_type or upstream.content_type
    )
    if upstream.request_id:
        response.headers[REQUEST_ID] = upstream.request_id
    return response


async def relay_stream(
    request: web.Request,
    target: Target,
    upstream_request: UpstreamRequest,
    translator: StreamTranslator,
    headers: dict[str, str] = SSE_HEADERS,
    upload: Upload | None = None,
) -> web.StreamResponse:
    """A streamed request: relayed chunk by chunk through the provider's translator
    (SSE unless `headers` say otherwise, as for raw audio)."""
    response = web.StreamResponse(headers=headers)
    # Comments keep an SSE stream alive; a raw byte stream (audio) has no such thing.
    sse = headers["Content-Type"].startswith("text/event-stream")
    keepalive = (
        _Keepalive(request, response, target.keepalive) if sse and target.keepalive else None
    )
    upstream: Upstream | None = None
    deadline = IdleDeadline(target.timeout_seconds)
    touch = deadline.touch
    if upload is not None:
        upload.on_progress = touch
    try:
        upstream = await target.transport.send(upstream_request, target.stream_timeout)
        touch()
        if upstream.status >= 400:
            body = await upstream.read()
            raise target.provider.upstream_error(upstream.status, body, upstream.headers)

        async def start() -> None:  # the first bytes out: stop the keepalive, send headers
            if keepalive is not None:
                await keepalive.stop()
            if not response.prepared:
                if not sse and upstream.content_type != "application/octet-stream":
                    response.content_type = upstream.content_type  # e.g. audio/wav
                if upstream.request_id:
                    response.headers[REQUEST_ID] = upstream.request_id
                await response.prepare(request)

        started = False
        async for chunk in upstream.chunks():
            # The first token must not wait while the rest of a large first read (a fast
            # upstream's whole answer) is looked at: the read's head goes out first.
            for piece in (chunk,) if started or not sse else _head_apart(chunk):
                out = translator.feed(piece)
                if out:
                    if not started:
                        await start()
                        started = True
                    deadline.paused = True  # a client slow to take bytes is not upstream silence
                    await response.write(out)
                    deadline.paused = False
                if translator.finished:
                    break
            if translator.finished:
                break
            touch()
        else:
            out = translator.end()
            if out:
                if not started:
                    await start()
                await response.write(out)
        deadline.close()  # the stream is done: nothing may follow its last event
        await upstream.finish(_END_OF_BODY_WAIT)
    except (Exception, asyncio.CancelledError) as exc:
        timed_out = deadline.absorb(exc)
        deadline.close()
        if not timed_out and not isinstance(exc, Exception):
            raise  # the client went away: `finally` closes the upstream at once
        if keepalive is not None:
            await keepalive.stop()
        if _client_gone(request):
            return response  # nobody to tell; `finally` still closes the upstream
        error = _timeout(target) if timed_out else _upstream_failure(exc, target)
        if not response.prepared:
            raise error from None  # still time for a proper status code
        event = translator.error_event(error)
        if event is None:  # no way to say it in-band: cut the body short, so it shows
            if request.transport is not None:
                request.transport.abort()
            return response
        with contextlib.suppress(ConnectionError):
            await response.write(event)
    finally:
        deadline.close()
        if keepalive is not None:
            await keepalive.stop()
        if upstream is not None:
            upstream.close()
    return response


def _head_apart(chunk: bytes) -> tuple[bytes, ...]:
    """`chunk` cut at the first SSE block boundary past its first KiB, when more follows.

    The first content token usually sits in the first few events (after a role chunk, or
    Anthropic's message_start): they go out before the rest of a large first read is looked
    at. Any cut is a valid split for a translator.
    """
    end = chunk.find(b"\n\n", _HEAD_BYTES) + 2
    return (chunk[:end], chunk[end:]) if 1 < end < len(chunk) else (chunk,)


def _timeout(target: Target) -> GatewayError:
    error = as_gateway_error(TimeoutError(), target.provider.name, target.timeout_seconds)
    assert error is not None
    return error


def _upstream_failure(exc: BaseException, target: Target) -> GatewayError:
    error = as_gateway_error(exc, target.provider.name, target.timeout_seconds)
    if error is None:
        log.exception("unexpected error relaying to provider %r", target.provider.name)
        error = GatewayError("The gateway failed while relaying the upstream's answer.")
    return error


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _Keepalive:
    """While a stream waits for its first event, SSE comments every `interval` seconds.

    Reasoning models can think for minutes before their first token, and an idle timeout in
    front of the gateway (a load balancer at 60 s) would cut that healthy stream. The first
    comment commits the response (200, SSE headers); a later failure becomes the error event.
    A timer, not a task, until it first fires: the common fast stream pays one call_later.
    """

    __slots__ = ("_handle", "_interval", "_request", "_response", "_task")

    def __init__(self, request: web.Request, response: web.StreamResponse, interval: float):
        self._request = request
        self._response = response
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = loop.call_later(interval, self._start)

    def _start(self) -> None:
        self._handle = None
        self._task = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        while True:
            if not self._response.prepared:
                await self._response.prepare(self._request)
            await self._response.write(KEEPALIVE_COMMENT)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        """Stop pinging; returns once no ping write is under way."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait((task,))
            if not task.cancelled():
                task.exception()  # a failed write means the client left; the relay sees it too
