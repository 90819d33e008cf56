"""Limits and cooldowns shared through a real Redis by several gateway processes.

Each gateway here is its own `python -m gateway` process, as instances behind a load
balancer are; the Redis is a real `redis-server` (tests/redis_server.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import psutil
import pytest
from aiohttp import web

from gateway.config import StateConfig
from gateway.policy.cooldowns import _MAX_ENTRIES as MAX_ENTRIES
from gateway.policy.redis_link import RedisLink
from gateway.policy.redis_state import RedisCooldowns
from tests.conftest import FakeUpstream, GatewayFactory
from tests.processes import GatewayProcess
from tests.redis_server import RedisServer
from tests.streams import chat_completion

MESSAGES = [{"role": "user", "content": "hi"}]
# Hundreds of access log lines would fill the stderr pipe GatewayProcess reads only at the
# end, and the gateway would block writing them.
QUIET = "[server]\naccess_log = false\n"
MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0\ntokens = 3\n'


def keyed(redis_url: str, limits: str, mock: str = MOCK, **state: str | float) -> str:
    settings = {"redis_url": redis_url, "timeout": 0.3, **state}
    return (
        mock
        + f'[keys.app]\nvalue = "sk-app"\n{limits}\n[state]\n'
        + "".join(f"{name} = {orjson.dumps(value).decode()}\n" for name, value in settings.items())
    )


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        err = process.stop()
        assert "Traceback" not in err, err


async def _post(session: aiohttp.ClientSession, url: str, **body: object) -> int:
    async with session.post(
        f"{url}/v1/chat/completions",
        json={"model": "mock/x", "messages": MESSAGES, **body},
        headers={"Authorization": "Bearer sk-app"},
    ) as response:
        await response.read()
        return response.status


ADMIN = '[admin]\nkey = "sk-admin"\n'


async def _usage_once(url: str, settled: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The key's usage as `url` reads it, once `settled` says the charges landed (polled: they
    are sent after the answers, within 10 ms, by another process)."""
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(
                f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-admin"}
            ) as response:
                usage: dict[str, Any] = (await response.json())["data"][0]
            if settled(usage) or time.monotonic() > deadline:
                return usage
            await asyncio.sleep(0.02)


async def test_two_instances_share_one_rpm_limit_exactly(
    redis_url: str, tmp_path: Path, instances: list[GatewayProcess]
) -> None:
    toml = keyed(redis_url, "rpm = 10")
    instances += [GatewayProcess(toml, tmp_path / "a"), GatewayProcess(toml, tmp_path / "b")]
    async with aiohttp.ClientSession() as session:
        statuses = [await _post(session, instances[i % 2].url) for i in range(15)]
    assert statuses.count(200) == 10 and statuses.count(429) == 5, statuses


async def test_concurrent_requests_on_two_instances_never_pass_the_limit(
    redis_url: str, tmp_path: Path, instances: list[GatewayProcess]
) -> None:
    toml = keyed(redis_url, "rpm = 10")
    instances += [GatewayProcess(toml, tmp_path / "a"), GatewayProcess(toml, tmp_path / "b")]
    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*(_post(session, instances[i % 2].url) for i in range(30)))
    assert statuses.count(200) == 10, statuses


async def _burst(urls: list[str], count: int) -> Counter[int]:
    """`count` requests sent at once, each on its own connection, spread over `urls`."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        statuses = await asyncio.gather(
            *(_post(session, urls[i % len(urls)]) for i in range(count))
        )
    return Counter(statuses)


@pytest.mark.parametrize("concurrency", [300, 1000])
async def test_hundreds_of_admissions_at_once_keep_the_rpm_exact(
    redis_url: str, tmp_path: Path, instances: list[GatewayProcess], concurrency: int
) -> None:
    """More checks at once in each process than redis-py's pool had connections (100): the
    requests past it were served uncounted, taken for a Redis outage."""
    toml = keyed(redis_url, "rpm = 50") + QUIET
    instances += [GatewayProcess(toml, tmp_path / "a"), GatewayProcess(toml, tmp_path / "b")]
    statuses = await _burst([instance.url for instance in instances], concurrency)
    assert statuses == {200: 50, 429: concurrency - 50}


async def test_closed_refuses_nothing_while_redis_answers_hundreds_of_checks_at_once(
    redis_url: str, tmp_path: Path, instances: list[GatewayProcess]
) -> None:
    toml = keyed(redis_url, "rpm = 1000000", on_redis_error="closed") + QUIET
    instances.append(GatewayProcess(toml, tmp_path))
    assert await _burst([instances[0].url], 300) == {200: 300}


async def test_limits_hold_after_redis_forgets_its_scripts(
    redis_server: RedisServer, redis_url: str, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(keyed(redis_url, "rpm = 3", on_redis_error="closed"))
    async with aiohttp.ClientSession() as session:
        assert await _post(session, url) == 200
        assert redis_server.command(b"SCRIPT FLUSH").startswith(b"+OK")  # as a restart does
        assert [await _post(session, url) for _ in range(3)] == [200, 200, 429]


async def test_tokens_charged_by_one_instance_count_on_the_other(
    redis_url: str, tmp_path: Path, instances: list[GatewayProcess]
) -> None:
    toml = keyed(redis_url, "budget = 10") + ADMIN
    instances += [GatewayProcess(toml, tmp_path / "a"), GatewayProcess(toml, tmp_path / "b")]
    async with openai.AsyncOpenAI(
        base_url=f"{instances[0].url}/v1", api_key="sk-app", max_retries=0
    ) as client:
        answer = await client.chat.completions.create(model="mock/x", messages=MESSAGES)
    assert answer.usage is not None and answer.usage.total_tokens >= 10
    await _usage_once(instances[1].url, lambda usage: usage["budget_spent"] >= 10)
    async with openai.AsyncOpenAI(
        base_url=f"{instances[1].url}/v1", api_key="sk-app", max_retries=0
    ) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="mock/x", messages=MESSAGES)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "insufficient_quota"


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
@pytest.mark.parametrize(("policy", "expected"), [("open", 200), ("closed", 503)])
async def test_redis_stopped_mid_run_serves_or_refuses_but_never_hangs(
    start_gateway: GatewayFactory, policy: str, expected: int, fault: str
) -> None:
    server = RedisServer()
    server.start()
    assert server.process is not None
    try:
        url = await start_gateway(keyed(server.url, "rpm = 1000", on_redis_error=policy))
        async with aiohttp.ClientSession() as session:
            assert await _post(session, url) == 200
            if fault == "stopped":
                server.stop()  # Redis goes away mid-run: connections refused
            else:
                server.process.send_signal(signal.SIGSTOP)  # connected, never answering
            for stream in (False, True):
                started = time.monotonic()
                status = await asyncio.wait_for(_post(session, url, stream=stream), 10)
                assert status == expected
                assert time.monotonic() - started < 3  # bounded by [state] timeout, not hung
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.close()


# Streams of 100,000 tokens 50 ms apart: they run until the test ends them.
ENDLESS = '[providers.mock]\ntype = "mock"\ndelay = 0.05\ntokens = 100000\n'
LEASE = 2.0  # [state] in_flight_lease


async def _hold(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    """A stream admitted and left running: it holds one of the key's max_parallel slots."""
    response = await session.post(
        f"{url}/v1/chat/completions",
        json={"model": "mock/x", "messages": MESSAGES, "stream": True},
        headers={"Authorization": "Bearer sk-app"},
    )
    assert response.status == 200
    await response.content.readline()  # its first event came: it is running
    return response


async def test_a_killed_workers_slots_free_within_its_lease_and_live_ones_stay_held(
    redis_url: str, tmp_path: Path, instances: list[GatewayProcess]
) -> None:
    toml = keyed(redis_url, "max_parallel = 3", mock=ENDLESS, in_flight_lease=LEASE) + ADMIN + QUIET
    survivor = GatewayProcess(toml, tmp_path / "survivor")
    doomed = GatewayProcess(toml, tmp_path / "doomed", "--workers", "2")
    instances += [survivor, doomed]
    async with aiohttp.ClientSession() as session:
        held = [await _hold(session, survivor.url)]
        held += [await _hold(session, doomed.url) for _ in range(2)]
        try:
            # Streams outlive several leases: their processes renew them, so every slot stays
            # taken.
            await asyncio.sleep(3 * LEASE)
            assert await _post(session, survivor.url, max_tokens=1) == 429
            for worker in psutil.Process(doomed.process.pid).children():
                worker.send_signal(signal.SIGKILL)  # kill -9, its two streams running
            statuses = []
            deadline = time.monotonic() + 30  # the most a dead worker's slots may stay taken
            while time.monotonic() < deadline and 200 not in statuses:
                statuses.append(await _post(session, survivor.url, max_tokens=1))
                await asyncio.sleep(0.1)
            assert statuses[-1] == 200, statuses
            # The dead workers' two slots came back, not the survivor's: it still streams.
            usage = await _usage_once(survivor.url, lambda usage: usage["in_flight"] == 1)
            assert usage["in_flight"] == 1
            held += [await _hold(session, survivor.url) for _ in range(2)]
            assert await _post(session, survivor.url, max_tokens=1) == 429
        finally:
            for response in held:
                response.close()


async def test_a_client_gone_while_its_check_is_out_leaves_no_slot_taken(
    start_gateway: GatewayFactory,
) -> None:
    server = RedisServer()  # its own: it is frozen for a moment
    server.start()
    assert server.process is not None
    try:
        toml = keyed(server.url, "max_parallel = 1", timeout=2, in_flight_lease=60) + ADMIN
        url = await start_gateway(toml)
        async with aiohttp.ClientSession() as session:
            assert await _post(session, url) == 200
            await _usage_once(url, lambda usage: usage["in_flight"] == 0)  # it was settled
            server.process.send_signal(signal.SIGSTOP)  # the next check waits for Redis...
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(_post(session, url), 0.5)  # ...and its client leaves
            server.process.send_signal(signal.SIGCONT)
        # The check ran once Redis woke (the request counted); its mark did not stay.
        usage = await _usage_once(
            url, lambda usage: usage["requests_last_minute"] == 2 and usage["in_flight"] == 0
        )
        assert (usage["requests_last_minute"], usage["in_flight"]) == (2, 0)
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.close()


async def test_the_usage_route_reads_the_shared_counters(
    redis_url: str, start_gateway: GatewayFactory
) -> None:
    toml = keyed(redis_url, "rpm = 100\nbudget = 1000") + ADMIN
    first, second = await start_gateway(toml), await start_gateway(toml)
    async with aiohttp.ClientSession() as session:
        for url in (first, second, second):
            assert await _post(session, url) == 200
    usage = await _usage_once(
        first, lambda usage: usage["in_flight"] == 0 and usage["budget_spent"] > 0
    )
    assert usage["requests_last_minute"] == 3
    assert usage["budget_spent"] > 0 and usage["in_flight"] == 0


async def test_a_key_rested_by_one_instance_is_skipped_by_the_other(
    redis_url: str, upstream: FakeUpstream, tmp_path: Path, instances: list[GatewayProcess]
) -> None:
    toml = (
        f'[providers.p]\ntype = "openai"\nbase_url = "{upstream.url}"\n'
        'keys = [{ value = "sk-bad", weight = 1000 }, { value = "sk-good", weight = 1 }]\n'
        f'[state]\nredis_url = "{redis_url}"\n'
    )

    async def by_key(request: web.Request) -> web.Response:
        if request.headers["Authorization"] == "Bearer sk-bad":
            return web.json_response({"error": {"message": "revoked"}}, status=401)
        return web.json_response(chat_completion("ok"))

    upstream.handler = by_key
    instances += [GatewayProcess(toml, tmp_path / "a"), GatewayProcess(toml, tmp_path / "b")]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{instances[0].url}/v1/chat/completions",
            json={"model": "p/m", "messages": MESSAGES},
        ) as response:
            assert response.status == 200
        assert [r["headers"]["Authorization"] for r in upstream.requests] == [
            "Bearer sk-bad",
            "Bearer sk-good",
        ]
        upstream.requests.clear()
        for _ in range(3):  # the other instance never tries the key the first one rested
            async with session.post(
                f"{instances[1].url}/v1/chat/completions",
                json={"model": "p/m", "messages": MESSAGES},
            ) as response:
                assert response.status == 200
    assert {r["headers"]["Authorization"] for r in upstream.requests} == {"Bearer sk-good"}


async def test_the_targets_redis_cooldowns_saw_fail_are_remembered_bounded(redis_url: str) -> None:
    """What a process remembers of the targets it saw fail (to reset their count on success)
    is bounded as the in-process store is: a target id is a model name, and a request's
    `fallbacks` may name any. It used to grow with every name a client made up."""
    link = RedisLink(StateConfig(redis_url=redis_url, prefix="bounded:"))
    store = RedisCooldowns(link)
    try:
        names = [f"p/made-up-{n}" for n in range(MAX_ENTRIES + 2_000)]
        for start in range(0, len(names), 1_000):  # pipelined a thousand at a time
            await asyncio.gather(*(store.failed(name, 99, 60) for name in names[start:][:1_000]))
        assert len(store._failing) <= MAX_ENTRIES
        assert "p/made-up-0" not in store._failing and names[-1] in store._failing
    finally:
        await store.close()
        await link.close()
