"""CORS: a browser app on a listed origin can call the gateway; others cannot read it."""

from __future__ import annotations

import aiohttp

from tests.conftest import GatewayFactory

MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0\n'
BODY = {"model": "mock/x", "messages": [{"role": "user", "content": "hi"}]}


async def test_preflight_and_answers_for_a_listed_origin(start_gateway: GatewayFactory) -> None:
    url = await start_gateway('[server]\ncors_origins = ["https://app.example"]\n' + MOCK)
    async with aiohttp.ClientSession() as session:
        async with session.options(
            f"{url}/v1/chat/completions",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
            },
        ) as preflight:
            assert preflight.status == 204
            assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
            assert "x-stainless-os" in preflight.headers["Access-Control-Allow-Headers"]
        for stream in (False, True):
            async with session.post(
                f"{url}/v1/chat/completions",
                json={**BODY, "stream": stream},
                headers={"Origin": "https://app.example"},
            ) as answer:
                assert answer.status == 200
                assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
                assert "x-gateway-model" in answer.headers["Access-Control-Expose-Headers"]
                await answer.read()


async def test_an_origin_not_listed_gets_no_cors_headers(start_gateway: GatewayFactory) -> None:
    url = await start_gateway('[server]\ncors_origins = ["https://app.example"]\n' + MOCK)
    async with aiohttp.ClientSession() as session:
        async with session.options(
            f"{url}/v1/chat/completions",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        ) as preflight:
            assert preflight.status == 403
            assert (await preflight.json())["error"]["code"] == "cors_origin_not_allowed"
            assert "Access-Control-Allow-Origin" not in preflight.headers
        async with session.post(
            f"{url}/v1/chat/completions", json=BODY, headers={"Origin": "https://evil.example"}
        ) as answer:
            assert "Access-Control-Allow-Origin" not in answer.headers


async def test_star_allows_any_origin_and_off_by_default(start_gateway: GatewayFactory) -> None:
    star = await start_gateway('[server]\ncors_origins = ["*"]\n' + MOCK)
    off = await start_gateway(MOCK)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{star}/v1/chat/completions", json=BODY, headers={"Origin": "https://any.example"}
        ) as answer:
            assert answer.headers["Access-Control-Allow-Origin"] == "*"
        async with session.options(
            f"{off}/v1/chat/completions",
            headers={"Origin": "https://any.example", "Access-Control-Request-Method": "POST"},
        ) as preflight:
            assert "Access-Control-Allow-Origin" not in preflight.headers
