"""Who may ask and in what form: the wrong media type is a 415, a foreign Host (DNS rebinding)
a 421, both in OpenAI's shape; and no answer names the server's software."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.app import create_app, serve_app
from gateway.config import parse
from gateway.server.guards import exposure_warning
from tests.conftest import GatewayFactory
from tests.raw_requests import JSON_ROUTES, MESSAGES, error_of, send_raw

UPLOAD_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/translations")


# --- media types ---


@pytest.mark.parametrize("path", list(JSON_ROUTES))
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_a_json_route_refuses_other_media_types_with_415(
    mock_url: str, path: str, content_type: str
) -> None:
    body = orjson.dumps(JSON_ROUTES[path])
    status, raw, _ = await send_raw(mock_url, path, body, {"Content-Type": content_type})
    assert status == 415
    error = error_of(raw)
    assert error["code"] == "unsupported_media_type" and "application/json" in error["message"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_with_any_parameters_is_accepted(mock_url: str, content_type: str) -> None:
    body = orjson.dumps(JSON_ROUTES["/v1/chat/completions"])
    status, _, _ = await send_raw(
        mock_url, "/v1/chat/completions", body, {"Content-Type": content_type}
    )
    assert status == 200


async def test_no_content_type_is_json_unless_a_browser_sent_it(mock_url: str) -> None:
    body = orjson.dumps(JSON_ROUTES["/v1/chat/completions"])
    status, _, _ = await send_raw(mock_url, "/v1/chat/completions", body)
    assert status == 200  # requests and httpx send raw bytes with no Content-Type
    status, raw, _ = await send_raw(
        mock_url, "/v1/chat/completions", body, {"Origin": "https://evil.example"}
    )
    assert status == 415 and "none" in error_of(raw)["message"]


@pytest.mark.parametrize("path", UPLOAD_ROUTES)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_an_upload_route_takes_multipart_only(
    mock_url: str, path: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, raw, _ = await send_raw(mock_url, path, b'{"model": "mock/w"}', headers)
    assert status == 415
    assert "multipart/form-data" in error_of(raw)["message"]


async def test_an_unknown_route_is_still_a_404_whatever_its_type(mock_url: str) -> None:
    status, raw, _ = await send_raw(mock_url, "/v1/nothing", b"x", {"Content-Type": "text/plain"})
    assert status == 404 and error_of(raw)["code"] == "unknown_url"


# --- Host names (DNS rebinding) ---


async def _with_host(url: str, host: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v1/models", headers={"Host": host}) as response,
    ):
        return response.status, await response.read()


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:80", "LOCALHOST"],
)
async def test_bound_to_loopback_loopback_names_are_answered(mock_url: str, host: str) -> None:
    status, _ = await _with_host(mock_url, host)
    assert status == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "10.0.0.1", "localhost.evil"]
)
async def test_bound_to_loopback_a_foreign_host_is_a_421(mock_url: str, host: str) -> None:
    status, raw = await _with_host(mock_url, host)
    assert status == 421
    error = error_of(raw)
    assert error["code"] == "host_not_allowed" and "allowed_hosts" in error["message"]


async def test_configured_allowed_hosts_replace_the_default(start_gateway: GatewayFactory) -> None:
    url = await start_gateway(
        "[server]\nallowed_hosts = ['gw.example', '*.corp.example']\n[providers.mock]\n"
    )
    assert (await _with_host(url, "gw.example:443"))[0] == 200
    assert (await _with_host(url, "a.b.corp.example"))[0] == 200
    assert (await _with_host(url, "corp.example"))[0] == 421
    assert (await _with_host(url, "localhost"))[0] == 421


@pytest.fixture
async def serve_as() -> AsyncIterator[Callable[[str, str], Awaitable[str]]]:
    """The gateway built as if bound to `host`, served on 127.0.0.1 (never beyond)."""
    runners: list[web.AppRunner] = []

    async def start(toml: str, host: str) -> str:
        config = parse(toml, "test.toml")
        runner, url = await serve_app(create_app(config, host), config, "127.0.0.1", 0)
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_bound_beyond_loopback_any_host_is_answered_unless_configured(serve_as) -> None:
    url = await serve_as("[providers.mock]\n", "0.0.0.0")
    assert (await _with_host(url, "evil.example"))[0] == 200
    url = await serve_as("[server]\nallowed_hosts = ['gw.example']\n[providers.mock]\n", "0.0.0.0")
    assert (await _with_host(url, "evil.example"))[0] == 421
    assert (await _with_host(url, "gw.example"))[0] == 200


def test_listening_beyond_loopback_is_warned_about() -> None:
    assert exposure_warning("127.0.0.1") is None and exposure_warning("::1") is None
    assert exposure_warning("localhost") is None
    warning = exposure_warning("0.0.0.0")
    assert warning is not None and "does not authenticate" in warning


# --- no Server header with versions ---


async def test_no_response_names_the_server_software(mock_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for method, path, body in [
            ("GET", "/health", None),
            ("GET", "/v1/nothing", None),
            ("POST", "/v1/chat/completions", {"model": "mock/m", "messages": MESSAGES}),
            ("POST", "/v1/chat/completions", {"model": "mock/m"}),
        ]:
            async with session.request(method, mock_url + path, json=body) as response:
                await response.read()
                assert response.headers["Server"] == "gateway", (path, response.status)
