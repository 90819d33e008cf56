"""POST /v1/audio/speech (raw audio or SSE), /v1/audio/transcriptions and /translations."""

from __future__ import annotations

from aiohttp import web

from gateway.app_keys import CONFIG, ROUTER
from gateway.errors import BadRequest
from gateway.parsing import parse_request
from gateway.relay import relay_once, relay_stream
from gateway.uploads import read_upload
from providers.audio_streams import (
    AUDIO_CONTENT_TYPES,
    AudioBytes,
    SpeechEvents,
    TranscriptEvents,
)
from providers.base import Operation


async def speech(request: web.Request) -> web.StreamResponse:
    parsed = parse_request(await request.read(), Operation.SPEECH)
    target, model = request.app[ROUTER].resolve(parsed.model, Operation.SPEECH)
    # The upstream is always asked for plain audio; the gateway frames SSE itself, the same
    # way for every upstream, and relays each chunk the moment it arrives.
    sse = parsed.body.pop("stream_format", None) is not None and (
        parsed.values.get("stream_format") == "sse"
    )
    upstream_request = target.provider.build_request(Operation.SPEECH, model, parsed.body, False)
    if sse:
        return await relay_stream(request, target, upstream_request, SpeechEvents())
    audio_type = AUDIO_CONTENT_TYPES[parsed.values.get("response_format") or "mp3"]
    return await relay_stream(
        request, target, upstream_request, AudioBytes(), headers={"Content-Type": audio_type}
    )


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, Operation.TRANSCRIPTION)


async def translations(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, Operation.TRANSLATION)


async def _transcribe(request: web.Request, operation: Operation) -> web.StreamResponse:
    upload = await read_upload(request, request.app[CONFIG].server.max_upload_bytes)
    model_name = upload.value("model")
    if not model_name:
        raise BadRequest(
            "Missing required parameter: 'model'.",
            param="model",
            code="missing_required_parameter",
        )
    target, model = request.app[ROUTER].resolve(model_name, operation)
    upstream_request = target.provider.build_upload(operation, model, upload)
    if upload.value("stream") == "true":
        translator = TranscriptEvents(target.provider.name)
        return await relay_stream(request, target, upstream_request, translator, upload=upload)
    # json and verbose_json answer JSON; text, srt and vtt answer text: keep the upstream's type.
    return await relay_once(target, upstream_request, lambda body: body, content_type=None)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/translations", translations)
