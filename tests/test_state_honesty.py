"""What the gateway says of its shared state when Redis is down: the usage route and the
readiness probe tell the truth, and an unreachable `redis_url` is said at start. A real
redis-server (tests/redis_server.py), stopped as an outage stops it."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from gateway.config import parse, warn_missing_keys
from tests.conftest import GatewayFactory
from tests.redis_server import RedisServer

MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0\n'
KEYS = '[keys.app]\nvalue = "sk-app"\nrpm = 100\n[admin]\nkey = "sk-admin"\n'


def _config(redis_url: str, policy: str) -> str:
    state = f'[state]\nredis_url = "{redis_url}"\ntimeout = 0.3\non_redis_error = "{policy}"\n'
    return MOCK + KEYS + state


async def _get(url: str, path: str, key: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}{path}", headers=headers) as response,
    ):
        return response.status, orjson.loads(await response.read())


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


async def test_the_usage_route_is_503_naming_redis_when_it_cannot_read_it(
    start_gateway: GatewayFactory, redis: RedisServer
) -> None:
    url = await start_gateway(_config(redis.url, "open"))
    status, body = await _get(url, "/v1/keys/usage", "sk-admin")
    assert status == 200 and body["object"] == "list"
    redis.stop()
    status, body = await _get(url, "/v1/keys/usage", "sk-admin")
    assert status == 503  # before: 200 with every counter at 0
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "usage_unavailable"
    assert "Redis ([state] redis_url)" in error["message"]


@pytest.mark.parametrize(("policy", "ready"), [("closed", 503), ("open", 200)])
async def test_ready_is_503_while_redis_is_down_and_requests_need_it(
    start_gateway: GatewayFactory, redis: RedisServer, policy: str, ready: int
) -> None:
    url = await start_gateway(_config(redis.url, policy))
    assert (await _get(url, "/ready"))[0] == 200
    redis.stop()
    status, body = await _get(url, "/ready")
    assert status == ready
    if ready == 503:  # before: 200, while every request was a 503
        assert body["status"] == "redis_unavailable"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_redis_url_is_a_warning_at_start(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway")
    await start_gateway(_config(f"redis://127.0.0.1:{_closed_port()}/0", "open"))
    said = [
        r.getMessage() for r in caplog.records if "redis_url cannot be reached" in r.getMessage()
    ]
    assert len(said) == 1, caplog.text
    assert 'served without limits (on_redis_error = "open")' in said[0]


async def test_metrics_can_be_closed_with_a_key_of_their_own(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(MOCK + KEYS + '[metrics]\nkey = "sk-scraper"\n')
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics") as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "invalid_api_key"
        for wrong in ("sk-app", "sk-admin"):  # neither a gateway key nor the admin key
            headers = {"Authorization": f"Bearer {wrong}"}
            async with session.get(f"{url}/metrics", headers=headers) as response:
                assert response.status == 401
        headers = {"Authorization": "Bearer sk-scraper"}
        async with session.get(f"{url}/metrics", headers=headers) as response:
            assert response.status == 200
            assert "gateway_responses_total" in await response.text()


async def test_health_is_a_plain_200_and_its_detail_is_for_the_admin_key(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(MOCK + KEYS)
    status, body = await _get(url, "/health")
    assert status == 200
    assert set(body) == {"status", "pid"}  # no providers, no key names
    status, body = await _get(url, "/health", "sk-app")
    assert set(body) == {"status", "pid"}  # a gateway key is no admin
    status, body = await _get(url, "/health", "sk-admin")
    assert body["providers"] == ["mock"] and body["keys"] == ["app"]


def test_a_metrics_key_whose_variable_is_unset_is_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GATEWAY_TEST_METRICS_KEY", raising=False)
    config = parse(MOCK + '[metrics]\nkey = "env.GATEWAY_TEST_METRICS_KEY"\n', "t.toml")
    said = warn_missing_keys(config)
    assert any("metrics.key: environment variable GATEWAY_TEST_METRICS_KEY" in w for w in said)
