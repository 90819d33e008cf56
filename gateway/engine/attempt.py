"""One attempt: its upstream asked, and its answer read as far as the client may not see yet.

`fetch_whole` reads a non-streamed answer whole and translates it. `open_stream` sends a
streamed attempt's request and reads its answer up to the first content (text, a tool call,
audio, reasoning), holding whatever comes before it (a role chunk, `response.created`, ...).
An error answer, an error event, a cut, a timeout or an end before any content is an
`AttemptFailed`: nothing reached the client, so the dispatcher may try elsewhere. From the
first content on, the stream is its owner's (`gateway.engine.stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from formats.first_content import ContentProbe
from formats.translator import StreamTranslator
from gateway.engine.call import Prepared
from gateway.engine.deadline import IdleDeadline
from gateway.engine.held import HeldBytesExceeded
from gateway.engine.targets import Target
from gateway.engine.transport.upstream_errors import as_gateway_error
from gateway.server.multipart_upload import MultipartUpload
from wire.errors import (
    GatewayError,
    ProviderAuthError,
    UpstreamError,
    UpstreamProtocolError,
    drop_tracebacks,
)
from wire.upstream import Holder, Upstream, UpstreamRequest

log = logging.getLogger("gateway")

# The upstream's own id for the request, for its support desk (the OpenAI SDK shows it as
# `response._request_id`).
REQUEST_ID = "x-request-id"
_HEAD_BYTES = 1024  # see _head_apart
# Client bytes held before the first content; past this the stream is committed anyway.
HOLD_LIMIT = 64 * 1024


class AttemptFailed(Exception):
    """An attempt failed before anything of it reached the client."""

    def __init__(
        self, error: GatewayError, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        # The upstream's own HTTP status when it answered one (Anthropic's 529 stays 529),
        # else the error's: what decides whether to retry or fail over.
        self.status = error.status if status is None else status
        self.retry_after = retry_after


class OpenedStream:
    """An attempt's stream, read up to its first content (or its end), not yet sent."""

    __slots__ = (
        "chunks",
        "deadline",
        "ended",
        "held",
        "request_id",
        "rest",
        "translator",
        "upstream",
    )

    def __init__(
        self,
        upstream: Upstream,
        chunks: AsyncIterator[bytes],
        translator: StreamTranslator,
        deadline: IdleDeadline,
    ) -> None:
        self.upstream = upstream
        self.chunks = chunks
        self.translator = translator
        self.deadline = deadline
        self.held: list[bytes] = []  # client bytes, in order
        self.rest = b""  # the part of the last upstream read not yet translated
        self.ended = False  # the upstream's body ended (the translator's `end` was called)
        self.request_id = upstream.request_id

    def close(self) -> None:
        self.deadline.close()
        self.upstream.close()


async def fetch_whole(target: Target, prepared: Prepared, holder: Holder) -> web.Response:
    """A non-streamed attempt: the upstream's whole answer, translated, in one response;
    `holder` counts the bytes held (`HeldBytesExceeded` ends the request, not the attempt)."""
    assert prepared.translate is not None
    upstream: Upstream | None = None
    try:
        upstream = await target.transport.send(prepared.request, target.timeout)
        body = await upstream.read(holder)
    except HeldBytesExceeded:
        raise
    except Exception as exc:
        raise AttemptFailed(upstream_failure(exc, target)) from None
    finally:
        if upstream is not None:
            upstream.close()
    if upstream.status >= 400:
        raise _refused(target, prepared.request, upstream, body)
    if prepared.content_type == "application/json" and body.lstrip()[:1] not in (b"{", b"["):
        # A proxy's HTML page or a text/plain message in a 200: not an answer (a client's
        # JSON parser would fail on it with nothing said of where it came from).
        raise AttemptFailed(
            UpstreamProtocolError(
                f"Provider {target.provider.name!r} answered {upstream.content_type or 'a body'}"
                " where JSON was expected."
            )
        )
    try:
        answer = prepared.translate(body)
    except GatewayError as error:  # an answer the gateway cannot read
        raise AttemptFailed(error) from None
    except Exception as exc:  # a translator tripped on it: say so, never a traceback
        raise AttemptFailed(upstream_failure(exc, target)) from None
    response = web.Response(
        body=answer, content_type=prepared.content_type or upstream.content_type
    )
    if upstream.request_id:
        response.headers[REQUEST_ID] = upstream.request_id
    return response


async def open_stream(
    target: Target,
    prepared: Prepared,
    has_content: ContentProbe,
    sse: bool,
    holder: Holder,
    upload: MultipartUpload | None = None,
) -> OpenedStream:
    """Send a streamed attempt and read it up to its first content; raises AttemptFailed
    (or `HeldBytesExceeded`: an error answer too large to hold now)."""
    translator = prepared.translator
    assert translator is not None
    deadline = IdleDeadline(target.timeout_seconds)
    if upload is not None:
        upload.on_progress = deadline.touch  # an upload in progress is not upstream silence
    upstream: Upstream | None = None
    try:
        upstream = await target.transport.send(prepared.request, target.stream_timeout)
        deadline.touch()
        if upstream.status >= 400:
            raise _refused(target, prepared.request, upstream, await upstream.read(holder))
        opened = OpenedStream(upstream, aiter(upstream.chunks()), translator, deadline)
        held = opened.held
        size = 0
        while True:
            try:
                chunk = await anext(opened.chunks)
            except StopAsyncIteration:
                opened.ended = True
                out = translator.end()
                # An error event after content in the same bytes still commits the stream.
                if translator.failure is not None and not (out and has_content(out)):
                    raise AttemptFailed(translator.failure) from None
                held.append(out)
                return opened
            deadline.touch()
            # The first token must not wait while the rest of a large read (a fast
            # upstream's whole answer) is looked at: the read's head is translated first.
            pieces = _head_apart(chunk) if sse else (chunk,)
            for i, piece in enumerate(pieces):
                out = translator.feed(piece)
                content = bool(out) and has_content(out)
                if translator.failure is not None and not content:
                    raise AttemptFailed(translator.failure)
                if out:
                    held.append(out)
                    size += len(out)
                if content or translator.finished or size > HOLD_LIMIT:
                    opened.rest = b"".join(pieces[i + 1 :])
                    return opened
    except (AttemptFailed, HeldBytesExceeded):
        deadline.close()
        if upstream is not None:
            upstream.close()
        raise
    except (Exception, asyncio.CancelledError) as exc:
        timed_out = deadline.absorb(exc)
        deadline.close()
        if upstream is not None:
            upstream.close()
        if not timed_out and not isinstance(exc, Exception):
            raise  # the client went away
        error = timeout_error(target) if timed_out else upstream_failure(exc, target)
        raise AttemptFailed(error) from None


def _refused(
    target: Target, request: UpstreamRequest, upstream: Upstream, body: bytes
) -> AttemptFailed:
    """The failed attempt for an upstream's error answer.

    The upstream refusing the gateway's own key (401, 403) is the gateway's configuration at
    fault, not the client's: a 502 naming the provider, so that a client's 401 always means
    its gateway key. A key the client brought itself is the client's: its status stays.
    """
    status = upstream.status
    error = target.provider.upstream_error(status, body, upstream.headers)
    if isinstance(error, UpstreamError) and error.foreign:
        # Not OpenAI's shape ("Not Found" from vLLM's FastAPI, a proxy's HTML page): with
        # several providers, the message alone would not say which one answered, nor to what.
        asked = urllib.parse.urlsplit(request.url).path  # never the query: it may hold a key
        error.message = (
            f"Provider {target.provider.name!r} answered HTTP {status} to {request.method} "
            f"{asked}: {error.message}"
        )
    if status in (401, 403) and not target.client_key:
        error = ProviderAuthError(
            f"Provider {target.provider.name!r} refused the gateway's key ({status}): "
            f"{error.message}"
        )
    return AttemptFailed(error, status, retry_after(upstream.headers))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked to wait: `retry-after-ms` (OpenAI), else `Retry-After` as
    seconds or an HTTP date. Header names in any case: not every upstream's headers are a
    case-insensitive mapping (the mock's are a plain dict, `Retry-After`)."""
    value = _header(headers, "retry-after-ms")
    if value is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(value) / 1000)
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """`headers`' value for lower-case `name`, whatever the case it was sent in (an error
    answer's few headers: looked through once, off the streaming path)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, found in headers.items():
        if key.lower() == name:
            return found
    return None


def _head_apart(chunk: bytes) -> tuple[bytes, ...]:
    """`chunk` cut at the first SSE block boundary past its first KiB, when more follows.

    The first content token usually sits in the first few events (after a role chunk, or
    Anthropic's message_start): they go out before the rest of a large first read is looked
    at. Any cut is a valid split for a translator.
    """
    end = chunk.find(b"\n\n", _HEAD_BYTES) + 2
    return (chunk[:end], chunk[end:]) if 1 < end < len(chunk) else (chunk,)


def timeout_error(target: Target) -> GatewayError:
    error = as_gateway_error(TimeoutError(), target.provider.name, target.timeout_seconds)
    assert error is not None
    return error


def upstream_failure(exc: BaseException, target: Target) -> GatewayError:
    error = as_gateway_error(exc, target.provider.name, target.timeout_seconds)
    if error is None:
        log.exception("unexpected error relaying to provider %r", target.provider.name)
        error = GatewayError("The gateway failed while relaying the upstream's answer.")
    # Mapped: the frames it passed through (aiohttp's, holding the request body it sent, or
    # the answer read so far) are not kept by whatever keeps `exc` (its own cycles).
    drop_tracebacks(exc)
    return error
