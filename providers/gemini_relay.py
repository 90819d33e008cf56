"""Gemini's generateContent passed through to a Gemini provider (`Operation.GENERATE_CONTENT`).

The client already speaks the upstream's format: its body goes out unchanged
(`providers.gemini`) and the gateway always asks for `streamGenerateContent?alt=sse`. The
stream comes back as Gemini sent it when the client asked for SSE too; when it asked for the
JSON array stream (no `alt=sse`), each event's response is re-framed into the array
(`providers.gemini_bridge.GeminiFraming`). `GeminiRelay` watches the stream for an error
object (which ends it) and for the last response's finishReason and usageMetadata.
"""

from __future__ import annotations

import msgspec

from providers.gemini import ErrorObject, UsageMetadata, chat_usage, error_from_object
from providers.gemini_bridge import GeminiFraming, gemini_error_body
from providers.passthrough import PassThrough
from wire.errors import GatewayError
from wire.sse import Comment, Event, encode


class _Candidate(msgspec.Struct, rename="camel", gc=False):
    finish_reason: str | None = None


class _PromptFeedback(msgspec.Struct, rename="camel", gc=False):
    block_reason: str | None = None


class _Probe(msgspec.Struct, rename="camel", gc=False):
    """Only what the relay watches in a GenerateContentResponse; msgspec skips the rest."""

    candidates: list[_Candidate] | None = None
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None
    error: ErrorObject | None = None


_decode_probe = msgspec.json.Decoder(_Probe).decode
# Only a response holding one of these is decoded: the others are content, relayed unread.
# (Generated text may hold the words too: such a response is merely decoded for nothing.)
_WATCHED = ('"finishReason"', '"blockReason"', '"error"')


class GeminiRelay(PassThrough):
    """A StreamTranslator that relays Gemini's SSE stream: as the very bytes read when
    `sse` and the read ends on an event boundary, else re-framed event by event.

    The stream ends when the upstream closes it, after a response with a finishReason (or a
    blocked prompt's blockReason): with several candidates, each finishes on its own. An
    error object ends it at once (finished, `failure` set). `usage` is OpenAI's usage object
    for the latest usageMetadata of a finishing response.
    """

    terminal = "finishReason"

    def __init__(self, provider: str, sse: bool = True) -> None:
        super().__init__(provider)
        self._framing = GeminiFraming(sse)
        self._done = False  # a response with a finishReason went out
        # A read that ends in the CR of a CRLF leaves its LF for the next read, which the
        # decoder then skips. Verbatim, the client has the CR and must get that LF; re-framed,
        # the client has the whole CRLF already and must not get it twice.
        self._owed_lf = False
        self._sent_lf = False

    def __repr__(self) -> str:
        return (
            f"<GeminiRelay provider={self.provider!r} sse={self._framing.sse} "
            f"finished={self.finished} failure={self.failure!r}>"
        )

    def relay(self, data: bytes, items: list[Event | Comment]) -> bytes:
        # A read that ends on an event boundary goes out as the bytes read (SSE to SSE).
        verbatim = self._framing.sse and self._decoder.aligned
        out: list[bytes] = []
        for position, item in enumerate(items):
            if type(item) is Event:
                self.watch(item)
            if verbatim:
                if not self.finished:
                    continue
                out = [self._frame(i) for i in items[:position]]  # all but the error, framed
            out.append(self._frame(item))
            if self.finished:  # an error object: nothing may follow it
                owed = b"\n" if self._owed_lf and data[:1] == b"\n" else b""
                return owed + b"".join(out) + self._framing.close()
        lf_first = data[:1] == b"\n"
        ends_in_cr = data[-1:] == b"\r"
        if verbatim:
            if self._sent_lf and lf_first:
                data = data[1:]
            self._owed_lf, self._sent_lf = ends_in_cr, False
            return data
        if self._owed_lf and lf_first:
            out.insert(0, b"\n")
        self._owed_lf, self._sent_lf = False, ends_in_cr
        return b"".join(out)

    def end(self) -> bytes:
        if self.finished:
            return b""
        if self._decoder.pending or not self._done:
            return super().end()
        self.finished = True
        return self._framing.close()

    def error_bytes(self, error: GatewayError) -> bytes:
        return self._framing.element(gemini_error_body(error)) + self._framing.close()

    def _frame(self, item: Event | Comment) -> bytes:
        if isinstance(item, Comment):  # a keepalive: SSE can carry it, the JSON array cannot
            return encode(item) if self._framing.sse else b""
        data = item.data
        if self._framing.sse and "\n" in data:  # several data lines: not Gemini's, kept as is
            return encode(item)
        return self._framing.element(data.encode())

    def watch(self, event: Event) -> bool:
        data = event.data
        if not any(key in data for key in _WATCHED):
            return False
        try:
            probe = _decode_probe(data)
        except msgspec.DecodeError:
            return False  # not ours to judge: the client reads the upstream's response as it is
        if probe.error is not None:  # an error object ends the stream at once
            self.finished = True
            self.failure = error_from_object(probe.error, None)
            return True
        feedback = probe.prompt_feedback
        if any(c.finish_reason for c in probe.candidates or ()) or (
            feedback is not None and feedback.block_reason
        ):
            self._done = True  # it ends when the upstream closes it: each candidate finishes
            if probe.usage_metadata is not None:
                self.usage = chat_usage(probe.usage_metadata)
        return False
