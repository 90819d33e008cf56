"""Stream translators for audio: speech as raw bytes or as SSE, transcripts as SSE.

The gateway frames these itself, for every upstream: speech is always asked for as plain audio
and, when the client wants `stream_format: "sse"`, each chunk is sent base64-encoded the moment
it arrives. Transcripts are relayed event by event, with each delta carrying its text as both
`delta` (OpenAI's clients) and `text` (clients written to Bifrost-style docs); an upstream that
cannot stream (whisper-1 answers JSON) still yields a valid event stream.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import orjson

from formats.chat.from_chat import DONE
from formats.chat.probe import KEEPALIVE_COMMENT
from formats.first_content import event_content, every_byte
from formats.stream_format import SSE_HEADERS, StreamFormat
from formats.translator import StreamEnd, openai_error_event
from wire.errors import GatewayError, UpstreamProtocolError, upstream_error_from_body
from wire.sse import Event, SSEDecoder, SSEProtocolError, encode_data
from wire.usage import Usage

AUDIO_CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


# Speech as SSE and transcripts: OpenAI's SSE events, every one but an error is content.
AUDIO_EVENTS = StreamFormat(SSE_HEADERS, event_content, KEEPALIVE_COMMENT, openai_error_event)


def _cut_short(error: GatewayError) -> None:
    return None  # a byte stream has no error event


def raw_audio(content_type: str) -> StreamFormat:
    """Speech as it comes: every byte is content; the answer's type is the upstream's."""
    return StreamFormat(
        {"Content-Type": content_type}, every_byte, None, _cut_short, upstream_content_type=True
    )


class AudioBytes:
    """Speech as it comes: the upstream's bytes unchanged. A byte stream has no error event."""

    def __init__(self) -> None:
        self.finished = False
        self.failure: GatewayError | None = None  # the error this stream ended with
        self.usage: Usage | None = None  # audio streams report no token usage
        self.finish_reasons: tuple[str, ...] = ()  # nor why they ended

    @property
    def usage_so_far(self) -> Usage | None:
        return None

    def feed(self, data: bytes) -> bytes:
        return data

    def end(self) -> bytes:
        self.finished = True
        return b""

    def error_event(self, error: GatewayError) -> None:
        self.finished = True
        self.failure = error
        return None


class SpeechEvents(StreamEnd):
    """Speech as SSE: `speech.audio.delta` with base64 `audio` per upstream chunk, then
    `speech.audio.done` (usage when known), then `[DONE]`. Decoding and joining every `audio`
    gives exactly the bytes of the non-streamed answer."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: Usage | None = None  # audio streams report no token usage
        self.finish_reasons: tuple[str, ...] = ()  # nor why they ended

    def feed(self, data: bytes) -> bytes:
        audio = base64.b64encode(data).decode()
        return encode_data(orjson.dumps({"type": "speech.audio.delta", "audio": audio}))

    def end(self) -> bytes:
        self.finished = True
        done = {"type": "speech.audio.done", "usage": None}
        return encode_data(orjson.dumps(done)) + DONE


class _TranscriptEvent(msgspec.Struct, gc=False):
    type: str = ""
    delta: str | None = None
    error: Any = None


_decode_event = msgspec.json.Decoder(_TranscriptEvent).decode


# An upstream that answers a streamed transcription with JSON (whisper-1) has its answer held
# until it ends, up to this size (as an SSE event is bounded): a transcript is far smaller.
MAX_JSON_BYTES = 16 * 1024 * 1024


class TranscriptEvents(StreamEnd):
    """A transcript as SSE: `transcript.text.delta` events, one `transcript.text.done` with the
    whole text and usage, then `[DONE]`, from an upstream that streams or one that answers JSON."""

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self.usage: Usage | None = None  # audio streams report no token usage
        self.finish_reasons: tuple[str, ...] = ()  # nor why they ended
        self._decoder = SSEDecoder()
        self._json: bytearray | None = None  # the upstream answered JSON, not a stream
        self._started = False

    def feed(self, data: bytes) -> bytes:
        if not self._started:
            self._started = True
            if data.lstrip()[:1] == b"{":
                self._json = bytearray()
        if self._json is not None:
            if len(self._json) + len(data) > MAX_JSON_BYTES:
                self._json = None  # held no longer: the stream ends here
                return self.error_event(
                    UpstreamProtocolError(
                        f"Provider {self.provider!r} answered a transcript larger than "
                        f"{MAX_JSON_BYTES} bytes."
                    )
                )
            self._json += data
            return b""
        try:
            items = self._decoder.feed(data)
        except SSEProtocolError as exc:
            return self.error_event(UpstreamProtocolError(str(exc)))
        out = []
        for item in items:
            if type(item) is Event and not self.finished:
                out.append(self._event(item.data))
        return b"".join(out)

    def end(self) -> bytes:
        if self.finished:
            return b""
        if self._json is not None:
            return self._from_json(bytes(self._json))
        return self.error_event(
            UpstreamProtocolError("The upstream closed the transcript stream before it finished.")
        )

    def _event(self, data: str) -> bytes:
        if data == "[DONE]":
            return b""  # ours follows the done event
        try:
            event = _decode_event(data)
        except msgspec.DecodeError:
            return self.error_event(
                UpstreamProtocolError(f"The upstream sent a malformed event: {data[:200]!r}")
            )
        if event.error is not None:
            return self.error_event(upstream_error_from_body(502, data.encode(), self.provider))
        if event.type == "transcript.text.delta":
            payload = orjson.loads(data)
            payload["text"] = payload.get("delta", "")
            return encode_data(orjson.dumps(payload))
        if event.type == "transcript.text.done":
            self.finished = True
            return encode_data(data.encode()) + DONE
        return encode_data(data.encode())  # other event types pass as they are

    def _from_json(self, body: bytes) -> bytes:
        self.finished = True
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self.error_event(UpstreamProtocolError("The upstream sent malformed JSON."))
        text = answer.get("text", "") if isinstance(answer, dict) else ""
        delta = {"type": "transcript.text.delta", "delta": text, "text": text, "logprobs": None}
        done = {"type": "transcript.text.done", "text": text, "usage": answer.get("usage")}
        return encode_data(orjson.dumps(delta)) + encode_data(orjson.dumps(done)) + DONE
