"""The mock provider's answers beyond chat: embeddings, speech (a short valid WAV) and
transcripts (a fixed text), each deterministic, shaped as OpenAI shapes them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import struct
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

import orjson

from providers.mock import failures
from wire.upstream import Holder

TRANSCRIPT = "The quick brown fox jumps over the lazy dog."
_SAMPLE_RATE = 24_000
SPEECH_CHUNK = 4096  # bytes of audio per streamed chunk


class MockReply:
    """An upstream answer made in-process: status, content type, and its body in chunks
    (`cut_after`: the connection breaks after that many chunks, and a whole read breaks)."""

    def __init__(
        self,
        body: list[bytes],
        content_type: str,
        *,
        status: int = 200,
        delay: float = 0.0,
        headers: Mapping[str, str] | None = None,
        cut_after: int | None = None,
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.request_id: str | None = None
        self.headers: Mapping[str, str] = headers or {}
        self._body = body
        self._delay = delay
        self._cut_after = cut_after

    async def chunks(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._body):
            if i == self._cut_after:
                raise failures.cut()
            if self._delay and i:
                await asyncio.sleep(self._delay)
            yield chunk
        if self._cut_after is not None:
            raise failures.cut()

    async def read(self, holder: Holder | None = None) -> bytes:
        if self._cut_after is not None:
            raise failures.cut()
        return b"".join(self._body)

    async def finish(self, wait: float) -> None:
        pass

    def close(self) -> None:
        pass


def embeddings(request: dict[str, Any], cut_after: int | None = None) -> MockReply:
    inputs = request["input"]
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    dimensions = request.get("dimensions") or 16
    as_base64 = request.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(inputs):
        vector = _vector(orjson.dumps(text), dimensions)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(len(orjson.dumps(text)) // 4 + 1 for text in inputs)
    answer = {
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return MockReply([orjson.dumps(answer)], "application/json", cut_after=cut_after)


def _vector(seed: bytes, dimensions: int) -> list[float]:
    """A unit vector drawn from the input's hash: the same input, the same embedding."""
    digest = b""
    counter = 0
    while len(digest) < dimensions * 4:
        digest += hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        counter += 1
    raw = [
        value / 2**31 - 1.0 for value in struct.unpack(f"<{dimensions}I", digest[: dimensions * 4])
    ]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    # float32-exact, so float and base64 answers decode to the same numbers
    return [struct.unpack("<f", struct.pack("<f", value / norm))[0] for value in raw]


def speech_wav(text: str, seconds_per_char: float = 0.01) -> bytes:
    """A short mono 16-bit WAV: a soft 440 Hz tone as long as the text is (0.1 s at least)."""
    frames = max(int(_SAMPLE_RATE * 0.1), int(_SAMPLE_RATE * seconds_per_char * len(text)))
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / _SAMPLE_RATE)))
        for i in range(frames)
    )
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(samples),
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        _SAMPLE_RATE,
        _SAMPLE_RATE * 2,
        2,
        16,
        b"data",
        len(samples),
    )
    return header + samples


def speech(request: dict[str, Any], delay: float, cut_after: int | None = None) -> MockReply:
    audio = speech_wav(request.get("input", ""))
    chunks = [audio[i : i + SPEECH_CHUNK] for i in range(0, len(audio), SPEECH_CHUNK)]
    return MockReply(chunks, "audio/wav", delay=delay, cut_after=cut_after)


async def read_form(body: AsyncIterable[bytes], content_type: str) -> tuple[dict[str, str], int]:
    """Read a whole multipart upload, as a real server does before it answers: the text
    fields before the file part (a server streams the file past), and the upload's size."""
    boundary = b"--" + content_type.partition("boundary=")[2].strip('"').encode()
    head: list[bytes] = []  # the upload up to the file part's headers
    fields: dict[str, str] | None = None
    size = 0
    async for chunk in body:
        size += len(chunk)
        if fields is None:
            head.append(chunk)
            if b"filename=" in chunk or b"filename=" in b"".join(head[-2:]):
                fields = _fields(b"".join(head), boundary)
                head = []
    return (_fields(b"".join(head), boundary) if fields is None else fields), size


def _fields(head: bytes, boundary: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in head.split(boundary)[1:]:
        headers, blank, value = part.partition(b"\r\n\r\n")
        name = _NAME.search(headers)
        if not blank or name is None or b"filename=" in headers:
            break
        fields[name[1].decode()] = value.removesuffix(b"\r\n").decode("utf-8", "replace")
    return fields


_NAME = re.compile(rb'name="((?:[^"\\]|\\.)*)"')


def transcript(
    size: int,
    stream: bool,
    response_format: str,
    delay: float,
    cut_after: int | None = None,
) -> MockReply:
    """The transcript of an upload of `size` bytes."""
    words = TRANSCRIPT.split(" ")
    usage = {
        "type": "tokens",
        "input_tokens": max(1, size // 1000),
        "output_tokens": len(words),
        "total_tokens": max(1, size // 1000) + len(words),
    }
    if stream:
        events = [
            b"data: "
            + orjson.dumps(
                {
                    "type": "transcript.text.delta",
                    "delta": word if i == 0 else " " + word,
                    "logprobs": None,
                }
            )
            + b"\n\n"
            for i, word in enumerate(words)
        ]
        done = {"type": "transcript.text.done", "text": TRANSCRIPT, "usage": usage}
        events.append(b"data: " + orjson.dumps(done) + b"\n\n")
        if cut_after is not None:
            cut_after = min(cut_after, len(words))  # never past the deltas: done ends the stream
        return MockReply(events, "text/event-stream", delay=delay, cut_after=cut_after)
    if response_format in ("text", "srt", "vtt"):
        return MockReply([_as_text(response_format).encode()], "text/plain", cut_after=cut_after)
    answer: dict[str, Any] = {"text": TRANSCRIPT, "usage": usage}
    if response_format == "verbose_json":
        answer = {
            "task": "transcribe",
            "language": "english",
            "duration": 2.0,
            **answer,
            "segments": [{"id": 0, "start": 0.0, "end": 2.0, "text": TRANSCRIPT}],
        }
    return MockReply([orjson.dumps(answer)], "application/json", cut_after=cut_after)


def _as_text(response_format: str) -> str:
    if response_format == "srt":
        return f"1\n00:00:00,000 --> 00:00:02,000\n{TRANSCRIPT}\n\n"
    if response_format == "vtt":
        return f"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\n{TRANSCRIPT}\n\n"
    return TRANSCRIPT
