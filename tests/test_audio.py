"""Speech (raw audio and SSE) and transcription/translation uploads, through the OpenAI SDK."""

from __future__ import annotations

import asyncio
import base64
import io
import math
import struct
import wave

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from providers.audio_streams import MAX_JSON_BYTES, TranscriptEvents
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import answering, streaming
from wire.sse import Event, SSEDecoder


def make_wav(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    """A real small WAV file: a 440 Hz tone."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(9000 * math.sin(2 * math.pi * 440 * i / rate)))
            for i in range(int(seconds * rate))
        )
        wav.writeframes(frames)
    return buffer.getvalue()


AUDIO = bytes(range(256)) * 64  # 16 KiB standing in for mp3 bytes


def audio_upstream(pieces: list[bytes], gate: asyncio.Event | None = None):
    """Streams audio bytes; with `gate`, waits after the first piece until the test opens it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await response.prepare(request)
        for i, piece in enumerate(pieces):
            await response.write(piece)
            if gate is not None and i == 0:
                await asyncio.wait_for(gate.wait(), timeout=5)
        return response

    return handler


SPEECH = {"model": "fake/gpt-4o-mini-tts", "voice": "alloy", "input": "Hello there"}


async def test_speech_audio_is_relayed_as_it_arrives_never_buffered_whole(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    gate = asyncio.Event()
    pieces = [AUDIO[:4096], AUDIO[4096:]]
    upstream.handler = audio_upstream(pieces, gate)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway_url}/v1/audio/speech", json=SPEECH) as response,
    ):
        assert response.headers["Content-Type"] == "audio/mpeg"
        assert "Content-Length" not in response.headers  # chunked: relayed, not buffered
        first = await response.content.readexactly(4096)
        assert first == AUDIO[:4096]  # arrived while the upstream was still holding the rest
        gate.set()
        rest = await response.read()
    assert first + rest == AUDIO
    assert "stream_format" not in upstream.last_body
    assert upstream.last_body["model"] == "gpt-4o-mini-tts"


async def test_speech_in_all_three_modes_gives_the_same_bytes(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    pieces = [AUDIO[i : i + 1000] for i in range(0, len(AUDIO), 1000)]
    upstream.handler = audio_upstream(pieces)
    plain = (await client.audio.speech.create(**SPEECH)).content
    async with client.audio.speech.with_streaming_response.create(
        **SPEECH, stream_format="audio"
    ) as response:
        streamed = await response.read()
    async with client.audio.speech.with_streaming_response.create(
        **SPEECH, stream_format="sse"
    ) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [e for e in SSEDecoder().feed(await response.read()) if isinstance(e, Event)]
    assert events[-1].data == "[DONE]"
    payloads = [orjson.loads(e.data) for e in events[:-1]]
    assert payloads[-1]["type"] == "speech.audio.done"
    deltas = payloads[:-1]
    assert all(d["type"] == "speech.audio.delta" for d in deltas)
    from_sse = b"".join(base64.b64decode(d["audio"]) for d in deltas)  # reads only `audio`
    assert plain == streamed == from_sse == AUDIO


async def test_speech_upstream_error_is_relayed(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = answering(
        {
            "error": {
                "message": "Invalid voice",
                "type": "invalid_request_error",
                "param": "voice",
                "code": None,
            }
        },
        status=400,
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await client.audio.speech.create(**SPEECH)
    assert "Invalid voice" in caught.value.message


@pytest.mark.parametrize(("field", "value"), [("response_format", "ogg"), ("voice", 3)])
async def test_speech_bad_field_is_400_naming_it(gateway_url: str, field: str, value) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway_url}/v1/audio/speech", json={**SPEECH, field: value}) as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"]["param"] == field


def transcription_upstream(record: dict):
    """Reads the multipart upload like OpenAI would; answers JSON, text or a stream."""

    async def handler(request: web.Request) -> web.StreamResponse:
        form: dict[str, list[str]] = {}
        record["form"] = form
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            value = await part.read()  # type: ignore[union-attr]
            if part.filename:  # type: ignore[union-attr]
                record["file"] = (part.filename, part.headers.get("Content-Type"), value)  # type: ignore[union-attr]
            else:
                form.setdefault(part.name, []).append(value.decode())  # type: ignore[union-attr]
        if form.get("stream") == ["true"]:
            words = ["Hello", " world", "."]
            events = [
                b"data: " + orjson.dumps({"type": "transcript.text.delta", "delta": w}) + b"\n\n"
                for w in words
            ]
            usage = {"type": "tokens", "input_tokens": 14, "output_tokens": 3, "total_tokens": 17}
            done = {"type": "transcript.text.done", "text": "Hello world.", "usage": usage}
            events.append(b"data: " + orjson.dumps(done) + b"\n\n")
            return await streaming(events)(request)
        if form.get("response_format") == ["text"]:
            return web.Response(text="Hello world.\n", content_type="text/plain")
        return web.json_response(
            {"text": "Hello world.", "usage": {"type": "duration", "seconds": 1}}
        )

    return handler


async def test_transcription_upload_reaches_upstream_intact(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    record: dict = {}
    upstream.handler = transcription_upstream(record)
    wav = make_wav()
    answer = await client.audio.transcriptions.create(
        model="fake/gpt-4o-transcribe",
        file=("speech.wav", wav, "audio/wav"),
        language="en",
        prompt="A greeting.",
        temperature=0.2,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert answer.text == "Hello world."
    assert record["file"] == ("speech.wav", "audio/wav", wav)
    form = record["form"]
    assert form["model"] == ["gpt-4o-transcribe"]
    assert form["language"] == ["en"] and form["prompt"] == ["A greeting."]
    assert form["timestamp_granularities[]"] == ["word", "segment"]
    assert upstream.requests[-1]["path"] == "/v1/audio/transcriptions"


async def test_transcription_as_text_keeps_the_upstreams_content_type(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = transcription_upstream({})
    text = await client.audio.transcriptions.create(
        model="fake/whisper-1", file=("a.wav", make_wav(), "audio/wav"), response_format="text"
    )
    assert text.strip() == "Hello world."


# The SDK marks translations deprecated; the route still serves clients that call it.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_translation_route_reaches_the_translation_endpoint(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = transcription_upstream({})
    answer = await client.audio.translations.create(
        model="fake/whisper-1", file=("a.wav", make_wav(), "audio/wav")
    )
    assert answer.text == "Hello world."
    assert upstream.requests[-1]["path"] == "/v1/audio/translations"


async def test_streamed_transcription_deltas_carry_delta_and_text(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, gateway_url: str
) -> None:
    upstream.handler = transcription_upstream({})
    stream = await client.audio.transcriptions.create(
        model="fake/gpt-4o-transcribe", file=("a.wav", make_wav(), "audio/wav"), stream=True
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == ["transcript.text.delta"] * 3 + ["transcript.text.done"]
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == "Hello world."
    assert events[-1].usage is not None

    form = aiohttp.FormData()
    form.add_field("model", "fake/gpt-4o-transcribe")
    form.add_field("stream", "true")
    form.add_field("file", make_wav(), filename="a.wav", content_type="audio/wav")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway_url}/v1/audio/transcriptions", data=form) as response,
    ):
        raw = [e for e in SSEDecoder().feed(await response.read()) if isinstance(e, Event)]
    assert raw[-1].data == "[DONE]"
    first = orjson.loads(raw[0].data)
    assert first["delta"] == first["text"] == "Hello"


async def test_upstream_that_cannot_stream_still_gives_an_event_stream(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.handler = answering({"text": "Hello world."})  # whisper-1 ignores stream=true
    stream = await client.audio.transcriptions.create(
        model="fake/whisper-1", file=("a.wav", make_wav(), "audio/wav"), stream=True
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == ["transcript.text.delta", "transcript.text.done"]
    assert events[-1].text == "Hello world."


def test_a_transcript_answered_as_json_is_held_only_up_to_its_bound() -> None:
    """An upstream that answers a streamed transcription with JSON has it held until it ends:
    past MAX_JSON_BYTES the stream ends with an error event, the bytes let go (they used to
    grow without bound)."""
    events = TranscriptEvents("fake")
    piece = b" " * (1 << 20)
    out = events.feed(b'{"text": "')
    fed = 0
    while not events.finished and fed <= MAX_JSON_BYTES:
        out += events.feed(piece)
        fed += len(piece)
    assert events.finished and fed <= MAX_JSON_BYTES + len(piece)
    assert events.failure is not None and events.failure.status == 502
    error = orjson.loads(SSEDecoder().feed(out)[-1].data)["error"]
    assert error["code"] == "upstream_protocol_error" and "larger than" in error["message"]
    assert events.feed(piece) == b"" and events.end() == b""


async def test_upload_over_the_limit_is_413_before_the_upstream_is_called(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway("[server]\nmax_upload_bytes = 10000\n" + provider_toml(upstream.url))
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.audio.transcriptions.create(
            model="fake/whisper-1", file=("a.wav", make_wav(seconds=1), "audio/wav")
        )
    await sdk.close()
    assert caught.value.status_code == 413
    assert upstream.requests == []


@pytest.mark.parametrize("missing", ["file", "model"])
async def test_missing_file_or_model_is_400_naming_it(
    upstream: FakeUpstream, gateway_url: str, missing: str
) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    if missing != "model":
        form.add_field("model", "fake/whisper-1")
    if missing != "file":
        form.add_field("file", make_wav(), filename="a.wav", content_type="audio/wav")
    else:
        form.add_field("language", "en")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway_url}/v1/audio/transcriptions", data=form) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == missing
    assert upstream.requests == []


async def test_mock_provider_answers_speech_and_transcription(client: openai.AsyncOpenAI) -> None:
    audio = (await client.audio.speech.create(model="mock/tts", voice="alloy", input="Hi")).content
    with wave.open(io.BytesIO(audio)) as wav:  # a valid WAV
        assert wav.getnframes() > 0
    async with client.audio.speech.with_streaming_response.create(
        model="mock/tts", voice="alloy", input="Hi", stream_format="sse"
    ) as response:
        events = [e for e in SSEDecoder().feed(await response.read()) if isinstance(e, Event)]
    decoded = b"".join(
        base64.b64decode(orjson.loads(e.data)["audio"])
        for e in events
        if e.data != "[DONE]" and orjson.loads(e.data)["type"] == "speech.audio.delta"
    )
    assert decoded == audio

    text = await client.audio.transcriptions.create(model="mock/whisper", file=("a.wav", audio))
    stream = await client.audio.transcriptions.create(
        model="mock/whisper", file=("a.wav", audio), stream=True
    )
    streamed = [event async for event in stream]
    assert "".join(e.delta for e in streamed[:-1]) == streamed[-1].text == text.text


async def test_slow_upload_of_a_streamed_transcription_is_not_cut_by_the_timeout(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    # 16 pieces 0.1 s apart (about 1.6 s) under a 1 s timeout: the upload is activity (ten
    # times the gap, so a loaded machine that sends a piece late is still in time).
    url = await start_gateway(provider_toml(upstream.url, timeout=1))
    upstream.handler = transcription_upstream({})
    wav = make_wav(seconds=1)

    async def slowly():
        for i in range(16):
            await asyncio.sleep(0.1)
            yield wav[i * len(wav) // 16 : (i + 1) * len(wav) // 16]

    form = aiohttp.FormData()
    form.add_field("model", "fake/gpt-4o-transcribe")
    form.add_field("stream", "true")
    form.add_field("file", slowly(), filename="a.wav", content_type="audio/wav")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/audio/transcriptions", data=form) as response,
    ):
        events = [e for e in SSEDecoder().feed(await response.read()) if isinstance(e, Event)]
    assert events[-1].data == "[DONE]"
    assert orjson.loads(events[-2].data)["type"] == "transcript.text.done"


async def test_chunked_upload_found_too_large_while_streamed_is_413(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    # No Content-Length to check in advance: the limit is found while the file streams.
    url = await start_gateway("[server]\nmax_upload_bytes = 20000\n" + provider_toml(upstream.url))
    upstream.handler = transcription_upstream({})

    async def chunks():
        for _ in range(10):
            yield b"\x00" * 4096

    for stream in ("false", "true"):
        form = aiohttp.FormData()
        form.add_field("model", "fake/whisper-1")
        form.add_field("stream", stream)
        form.add_field("file", chunks(), filename="a.wav", content_type="audio/wav")
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/v1/audio/transcriptions", data=form) as response,
        ):
            assert response.status == 413, await response.text()
            assert (await response.json())["error"]["code"] == "request_too_large"
