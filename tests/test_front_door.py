"""The front door: every per-request concern in one middleware and one response-head hook,
in the order they had as a stack (ids and observation, connection, drain, errors, CORS, Host,
Content-Type, key)."""

from __future__ import annotations

import aiohttp

from gateway import app as gateway_app
from gateway.config import parse
from tests.conftest import GatewayFactory

MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0\n'
EVERYTHING = (
    '[server]\ncors_origins = ["https://app.example"]\nallowed_hosts = ["gw.example"]\n'
    + MOCK
    + '[keys.k]\nvalue = "sk-k"\nrpm = 1000\n'
)
BODY = {"model": "mock/x", "messages": [{"role": "user", "content": "hi"}]}


def test_every_feature_on_is_one_middleware_and_one_head_hook() -> None:
    app = gateway_app.create_app(parse(EVERYTHING, "test.toml"), "127.0.0.1")
    assert len(app.middlewares) == 1
    assert len(app.on_response_prepare) == 1


async def test_the_checks_run_in_their_order_and_every_answer_is_stamped(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(EVERYTHING)
    origin = {"Origin": "https://app.example"}
    async with aiohttp.ClientSession() as session:
        # CORS first: a preflight carries no key and is answered before the key check.
        async with session.options(
            f"{url}/v1/chat/completions",
            headers={**origin, "Access-Control-Request-Method": "POST", "Host": "gw.example"},
        ) as preflight:
            assert preflight.status == 204
            assert preflight.headers["x-gateway-request-id"]
        # Host before the key: a wrong name and no key is the Host's 421.
        async with session.post(
            f"{url}/v1/chat/completions", json=BODY, headers={**origin, "Host": "evil.example"}
        ) as misdirected:
            assert misdirected.status == 421
            assert (await misdirected.json())["error"]["message"].startswith("This gateway")
            assert misdirected.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert misdirected.headers["Server"] == "gateway"
        # Content-Type before the key: a form body and no key is the 415.
        async with session.post(
            f"{url}/v1/chat/completions", data={"a": "b"}, headers={"Host": "gw.example"}
        ) as unsupported:
            assert unsupported.status == 415
        async with session.post(
            f"{url}/v1/chat/completions",
            json=BODY,
            headers={"Host": "gw.example", "x-request-id": "mine-1"},
        ) as unauthenticated:
            assert unauthenticated.status == 401
            assert unauthenticated.headers["x-gateway-request-id"] == "mine-1"
        async with session.post(
            f"{url}/v1/chat/completions",
            json={**BODY, "stream": True},
            headers={**origin, "Host": "gw.example", "Authorization": "Bearer sk-k"},
        ) as served:
            assert served.status == 200
            assert served.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert served.headers["x-ratelimit-limit-requests"] == "1000"
            assert (await served.read()).endswith(b"data: [DONE]\n\n")
