"""The one owner of a client's stream: from its first keepalive to its last byte.

`ClientStream` makes the client's `StreamResponse` (the format's headers, and every answer's
rate headers), runs the keepalive while no attempt has content yet, commits the stream to the
attempt that first has content (its headers, the bytes it held), pumps that attempt's upstream
through its translator to the end, and ends the stream: normally, or with a final error event
in the client's own format (the attempt's translator's; the format's own when no attempt made
one, keepalives having committed the stream). On every exit (the end, the client gone, the
upstream silent past its timeout, the drain, an upstream failure) it records the tokens the
translator saw.

The upstream's idle deadline is the attempt's until the stream is committed (a silence before
the first content is an attempt that failed, which the dispatcher may retry elsewhere) and the
stream's after; it does not run while the stream commits (stopping the keepalive, sending the
headers: the gateway's own work, not the upstream's silence, which counts again from the end
of the commit). A deadline that had already fired when the content arrived fails the attempt
as a timeout: nothing of it was sent yet.

One pump loop per stream (as httpcore's `_receive_event`): read whatever the upstream has,
let the sans-IO translator turn it into client bytes (for an OpenAI-compatible upstream,
usually the very same bytes), and `await write()` them, so the client's pace is the
backpressure. No per-chunk logging, no per-chunk task or timer. A client that goes away
cancels the handler (aiohttp's handler_cancellation), and `finally` closes the upstream
connection at once, so the upstream stops generating for nobody. After the first content
nothing switches upstreams (starlette's `response_started` rule): no token is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence

import msgspec
from aiohttp import web

from formats.first_content import content_start
from formats.stream_format import StreamFormat
from formats.translator import StreamTranslator
from gateway.engine.attempt import (
    REQUEST_ID,
    AttemptFailed,
    OpenedStream,
    timeout_error,
    upstream_failure,
)
from gateway.engine.events import Attempt, Hooks, RequestRecord
from gateway.engine.keepalive import Keepalive
from gateway.engine.targets import Target
from wire.errors import GatewayError
from wire.tokens import estimate_streamed
from wire.usage import Usage

# After the terminal event, how long the upstream's end of body is waited for (it usually
# follows within microseconds); past it the connection is closed rather than pooled.
END_OF_BODY_WAIT = 0.05


class ClientStream:
    """One streamed request's answer, whichever attempt ends up serving it."""

    __slots__ = (
        "_event_size",
        "_first_write",
        "_format",
        "_hooks",
        "_input_tokens",
        "_record",
        "_relayed_end",
        "_relayed_from",
        "_request",
        "keepalive",
        "response",
        "translator",
    )

    def __init__(
        self,
        request: web.Request,
        record: RequestRecord,
        hooks: Sequence[Hooks],
        stream_format: StreamFormat,
        headers: Mapping[str, str],
        keepalive: float,
        input_tokens: int = 0,
    ) -> None:
        self._request = request
        self._record = record
        self._hooks = hooks
        self._format = stream_format
        # With the key's x-ratelimit-*: a keepalive comment may send the headers first.
        self.response = web.StreamResponse(headers={**stream_format.headers, **headers})
        self.keepalive: Keepalive | None = None
        if keepalive and stream_format.keepalive is not None:
            self.keepalive = Keepalive(request, self.response, keepalive, stream_format.keepalive)
        self.translator: StreamTranslator | None = None  # the latest attempt's
        # What a stream cut before its usage is charged (`_estimated_usage`): the request's
        # input estimate (wire.ask), and what the relay sent, by aiohttp's count of bytes
        # written (`_relayed_from`: its count before the first content; `_relayed_end`: before
        # a final error event) in events the size of the first content one (`_event_size`).
        self._input_tokens = input_tokens
        self._event_size = 0
        # A whole answer's one write, measured only if it is charged an estimate (`close`).
        self._first_write: bytes | None = None
        self._relayed_from: int | None = None
        self._relayed_end: int | None = None

    async def serve(
        self, opened: OpenedStream, target: Target, attempt: Attempt, headers: Mapping[str, str]
    ) -> GatewayError | None:
        """The attempt `opened` has its first content: the stream is its. Send it to the end;
        the error it ended with, if it failed (the client got it as the final event).

        Raises AttemptFailed when the attempt failed before anything of it was sent.
        """
        try:
            await self._commit(opened, target, attempt, headers)
        except BaseException:
            opened.close()  # failed, or the client left before the pump took the stream
            raise
        return await self._pump(opened, target)

    def opening(self, translator: StreamTranslator) -> None:
        """An attempt is about to open its upstream, through `translator`."""
        self.translator = translator

    async def _commit(
        self, opened: OpenedStream, target: Target, attempt: Attempt, headers: Mapping[str, str]
    ) -> None:
        deadline = opened.deadline
        deadline.paused = True  # the gateway's own work: not the upstream's silence
        try:
            await self._stop_keepalive()
            response = self.response
            record = self._record
            record.first_content = time.perf_counter()
            for hook in self._hooks:
                hook.first_content(record, attempt)
            if not response.prepared:
                response.headers.update(headers)
                if opened.request_id:
                    response.headers[REQUEST_ID] = opened.request_id
                upstream_type = opened.upstream.content_type
                if self._format.upstream_content_type and (
                    upstream_type != "application/octet-stream"
                ):
                    response.content_type = upstream_type  # e.g. audio/wav
                await response.prepare(self._request)
            # (Else a keepalive comment went first: the headers are gone.)
            record.served = attempt.label
        except asyncio.CancelledError as exc:
            if not deadline.absorb(exc):
                raise  # the client went away
            # The deadline had fired as the content came: nothing of it was sent yet.
            raise AttemptFailed(timeout_error(target)) from None
        finally:
            deadline.paused = False
            deadline.touch()  # the upstream's silence counts from here

    async def _pump(self, opened: OpenedStream, target: Target) -> GatewayError | None:
        """Send a committed stream: the held bytes, then the rest as it arrives."""
        request, response = self._request, self.response
        translator = opened.translator
        deadline = opened.deadline
        try:
            # The stream's last bytes go out with its end of body, in one write: with a whole
            # answer in one upstream read (0 ms bursts) that is one send per stream, not two.
            out = b"".join(opened.held)
            if opened.rest and not translator.finished:
                out += translator.feed(opened.rest)
            if translator.finished or opened.ended:
                # The whole answer goes out in one write: where its content starts is asked
                # only if it ends without its usage (probing it here was ~10 us per stream
                # of a 0 ms burst, nearly always for nothing).
                self._first_write = out
            else:
                # Once per stream: where its content starts, and one content event's size on
                # the wire (what a stream cut before its usage is charged is counted in those).
                start, self._event_size = self._content_start(out)
                if out:
                    deadline.paused = True  # a client slow to take bytes is not upstream silence
                    await response.write(out)
                    deadline.paused = False
                    # Counted from the first content event: the headers and the preamble went
                    # before it, in the same write.
                    content = on_the_wire(len(out), request) - start
                    self._relayed_from = request.writer.output_size - content
                out = b""
                async for chunk in opened.chunks:
                    out = translator.feed(chunk)
                    if translator.finished:
                        break
                    if out:
                        deadline.paused = True
                        await response.write(out)
                        deadline.paused = False
                    deadline.touch()
                else:
                    out = translator.end()
            deadline.close()  # the stream is done: nothing may follow its last event
            # The client's end of body first; then the upstream's, so its connection is pooled.
            await response.write_eof(out)
            self._record.ended = time.perf_counter()  # the client's last byte is out
            await opened.upstream.finish(END_OF_BODY_WAIT)
            return translator.failure
        except (Exception, asyncio.CancelledError) as exc:
            timed_out = deadline.absorb(exc)
            deadline.close()
            if not timed_out and not isinstance(exc, Exception):
                raise  # the client went away, or the drain: `finally` closes the upstream
            if client_gone(request):
                return None  # nobody to tell; `finally` still closes the upstream
            error = timeout_error(target) if timed_out else upstream_failure(exc, target)
            await self._send_error(error)
            return error
        finally:
            opened.close()

    async def fail(self, error: GatewayError) -> web.StreamResponse:
        """End the request with `error`: a status while nothing was sent (raised, for the error
        middleware), else the stream's final error event."""
        if not self.response.prepared:
            raise error
        # Keepalive comments committed the stream before every attempt failed.
        await self._stop_keepalive()
        if not client_gone(self._request):
            await self._send_error(error)
        return self.response

    async def close(self) -> None:
        """The request is over, however it ended: the keepalive stops, and the tokens and
        finish reasons the last attempt's translator saw are the request's; when it saw no
        tokens (a stream cut by the client, a timeout, the drain or an upstream failure before
        the usage came), an estimate of what was relayed: no answer is free."""
        await self._stop_keepalive()
        translator = self.translator
        if translator is not None:
            self._record.usage = translator.usage or self._estimated_usage(translator.usage_so_far)
            self._record.finish_reasons = translator.finish_reasons

    def _estimated_usage(self, so_far: Usage | None) -> Usage | None:
        """What the upstream had counted by the cut (`so_far`: its input counts, and its
        output's when it knew them); else the request's input estimate, and the output its
        relayed bytes hold (wire.tokens.estimate_streamed). None when no content was relayed."""
        if self._first_write is not None:
            self._event_size = self._content_start(self._first_write)[1]
            self._first_write = None
        if not self._event_size:
            return None  # no attempt had content: nothing was sent
        if so_far is not None and not so_far.estimated and so_far.output:
            return so_far  # the upstream's own counts (Gemini's, as of its latest response)
        start = self._relayed_from
        if start is None:  # the first write did not complete
            relayed = self._event_size
        else:
            end = self._relayed_end
            relayed = (self._request.writer.output_size if end is None else end) - start
        output = estimate_streamed(relayed, self._event_size)
        if so_far is not None:  # the upstream's input counts (Anthropic's message_start)
            return msgspec.structs.replace(so_far, output=output, reasoning=None, estimated=True)
        return Usage(self._input_tokens, output, estimated=True)

    def _content_start(self, out: bytes) -> tuple[int, int]:
        """Where the first content event of the first write `out` begins, and that event's
        size on the wire (`formats.first_content.content_start`)."""
        start, event = content_start(out, self._format.probe())
        return start, on_the_wire(event, self._request)

    async def _stop_keepalive(self) -> None:
        if self.keepalive is not None:
            await self.keepalive.stop()
            self.keepalive = None

    async def _send_error(self, error: GatewayError) -> None:
        """The final error event: the translator's, else the format's own (a byte stream
        without one is cut short, so the failure shows)."""
        translator = self.translator
        event = (
            translator.error_event(error)
            if translator is not None
            else self._format.error_event(error)
        )
        if self._relayed_end is None and self._relayed_from is not None:
            self._relayed_end = self._request.writer.output_size  # the error is not content
        if event is None:
            if self._request.transport is not None:
                self._request.transport.abort()
            return
        with contextlib.suppress(ConnectionError):
            await self.response.write(event)


def on_the_wire(size: int, request: web.Request) -> int:
    """What a write of `size` bytes adds to aiohttp's count of bytes written: its chunk
    framing too (`1a2\r\n` ... `\r\n`) on a chunked response."""
    if size and getattr(request.writer, "chunked", False):
        return size + len(f"{size:x}") + 4
    return size


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
