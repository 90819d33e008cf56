"""Memory stays flat while a large upload or a long audio stream passes through the gateway.

The gateway runs as its own process so that its resident memory can be read on its own; the
peak is sampled while the bytes pass. This measures memory, not time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.processes import GatewayProcess, peak_growth

MB = 1024 * 1024
STREAM_BYTES = 48 * MB
UPLOAD_BYTES = 24 * MB
ALLOWED_GROWTH = 16 * MB  # a fraction of what passes: nothing is held whole


async def _speech(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
    await response.prepare(request)
    chunk = b"\x55" * (64 * 1024)
    for _ in range(STREAM_BYTES // len(chunk)):
        await response.write(chunk)
    return response


async def _transcribe(request: web.Request) -> web.Response:
    size = 0
    async for chunk in request.content.iter_any():  # read and drop, as a real server would
        size += len(chunk)
    return web.json_response({"text": f"{size} bytes"})


@pytest.fixture
async def audio_upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/audio/speech", _speech)
    app.router.add_post("/v1/audio/transcriptions", _transcribe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


@pytest.fixture
async def gateway_process(audio_upstream: str, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    gateway = GatewayProcess(
        f"[server]\nmax_upload_bytes = {UPLOAD_BYTES * 2}\n"
        f'[providers.fake]\ntype = "openai"\nbase_url = "{audio_upstream}"\n',
        tmp_path,
    )
    yield gateway.url, gateway.process.pid
    gateway.stop()


async def test_memory_stays_flat_while_long_audio_streams(gateway_process) -> None:
    url, pid = gateway_process
    body = {"model": "fake/tts-1", "voice": "alloy", "input": "long"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/audio/speech", json=body) as warm:
            await warm.read()  # first request: imports, buffers and pools are set up

        async def stream() -> None:
            received = 0
            async with session.post(f"{url}/v1/audio/speech", json=body) as response:
                async for chunk in response.content.iter_any():
                    received += len(chunk)
            assert received == STREAM_BYTES

        growth = await peak_growth(pid, stream)
    assert growth < ALLOWED_GROWTH, f"RSS grew {growth / MB:.1f} MB for {STREAM_BYTES // MB} MB"


async def test_memory_stays_flat_while_a_large_upload_passes(gateway_process) -> None:
    url, pid = gateway_process

    def form(size: int) -> aiohttp.FormData:
        async def chunks() -> AsyncIterator[bytes]:
            piece = b"\x00" * (64 * 1024)
            for _ in range(size // len(piece)):
                yield piece

        data = aiohttp.FormData()
        data.add_field("model", "fake/whisper-1")
        data.add_field("file", chunks(), filename="big.wav", content_type="audio/wav")
        return data

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/audio/transcriptions", data=form(MB)) as warm:
            assert warm.status == 200

        async def upload() -> None:
            async with session.post(
                f"{url}/v1/audio/transcriptions", data=form(UPLOAD_BYTES)
            ) as response:
                answer = await response.json()
            assert response.status == 200, answer
            assert int(answer["text"].split()[0]) > UPLOAD_BYTES  # the file and its framing

        growth = await peak_growth(pid, upload)
    assert growth < ALLOWED_GROWTH, f"RSS grew {growth / MB:.1f} MB for {UPLOAD_BYTES // MB} MB"
