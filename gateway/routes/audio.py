"""POST /v1/audio/speech (raw audio or SSE), /v1/audio/transcriptions and /translations."""

from __future__ import annotations

from aiohttp import web

from gateway.engine.call import Call, Prepared, unchanged
from gateway.engine.dispatcher import DISPATCHER
from gateway.server.bodies import read_body
from gateway.server.config_key import CONFIG
from gateway.server.multipart_upload import read_upload
from gateway.server.parsing import parse_request
from providers.audio_streams import (
    AUDIO_CONTENT_TYPES,
    AUDIO_EVENTS,
    AudioBytes,
    SpeechEvents,
    TranscriptEvents,
    raw_audio,
)
from providers.base import Provider
from wire.errors import BadRequest
from wire.operations import Operation


async def speech(request: web.Request) -> web.StreamResponse:
    parsed = parse_request(await read_body(request), Operation.SPEECH)
    # The upstream is always asked for plain audio; the gateway frames SSE itself, the same
    # way for every upstream, and relays each chunk the moment it arrives.
    sse = parsed.body.pop("stream_format", None) is not None and (
        parsed.values.get("stream_format") == "sse"
    )

    def prepare(provider: Provider, model: str) -> Prepared:
        upstream_request = provider.build_request(Operation.SPEECH, model, parsed.body, False)
        return Prepared(upstream_request, SpeechEvents() if sse else AudioBytes())

    audio_type = AUDIO_CONTENT_TYPES[parsed.values.get("response_format") or "mp3"]
    call = Call(
        Operation.SPEECH,
        parsed.model,
        True,
        prepare,
        parsed.fallbacks,
        upstream_models=parsed.upstream_models,
        stream_format=AUDIO_EVENTS if sse else raw_audio(audio_type),
    )
    return await request.app[DISPATCHER].dispatch(request, call)


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
    stream = upload.value("stream") == "true"

    def prepare(provider: Provider, model: str) -> Prepared:
        upstream_request = provider.build_upload(operation, model, upload)
        if stream:
            return Prepared(upstream_request, TranscriptEvents(provider.name))
        # json and verbose_json answer JSON; text, srt and vtt answer text: the upstream's type.
        return Prepared(upstream_request, translate=unchanged, content_type=None)

    call = Call(operation, model_name, stream, prepare, stream_format=AUDIO_EVENTS, upload=upload)
    return await request.app[DISPATCHER].dispatch(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/translations", translations)
