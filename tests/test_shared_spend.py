"""`max_spend` held in a real Redis by several gateway processes: two instances, and one gateway
with `--workers 2`, each a `python -m gateway` process (tests/processes.py), under 50 requests
at once; and a dead process's reservations freed with its leases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.processes import GatewayProcess
from tests.test_spend import ADMIN, PRICED_BODY, RESERVATION_BOUND, SPEND_MOCK, spend_in_waves


def shared(redis_url: str, max_spend: float, lease: float = 10) -> str:
    return (
        SPEND_MOCK
        + f'[keys.k]\nvalue = "sk-k"\nmax_spend = {max_spend}\n'
        + ADMIN
        + f'[state]\nredis_url = "{redis_url}"\ntimeout = 0.3\nin_flight_lease = {lease}\n'
    )


@pytest.fixture
def processes() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        err = process.stop()
        assert "Traceback" not in err, err


async def test_two_instances_under_50_requests_at_once_overspend_by_one_reservation_at_most(
    redis_url: str, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    toml = shared(redis_url, 0.15)
    processes += [GatewayProcess(toml, tmp_path / "a"), GatewayProcess(toml, tmp_path / "b")]
    report = await spend_in_waves([p.url for p in processes], 50)
    assert 0.15 <= report["spend_usd"] <= 0.15 + RESERVATION_BOUND
    assert report["spend_by_model"] == {"mock/x": report["spend_usd"]}
    # The other instance reads the same spend.
    other = await _usage(processes[1].url)
    assert other["spend_usd"] == report["spend_usd"]


async def test_two_workers_under_50_requests_at_once_overspend_by_one_reservation_at_most(
    redis_url: str, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    processes.append(GatewayProcess(shared(redis_url, 0.15), tmp_path, "--workers", "2"))
    report = await spend_in_waves([processes[0].url], 50)
    assert 0.15 <= report["spend_usd"] <= 0.15 + RESERVATION_BOUND


async def test_a_killed_instances_reservations_end_with_its_leases(
    redis_url: str, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    """A process that dies mid-request holds its reservations no longer than its in-flight
    leases, even while another process's requests on the same key keep the key's leases (and
    reservations) renewed: the spend is not blocked by money nobody will settle."""
    slow = shared(redis_url, 0.1, lease=1).replace("delay = 0.02", "delay = 30")
    processes += [GatewayProcess(slow, tmp_path / "a"), GatewayProcess(slow, tmp_path / "b")]
    dying, living = processes
    async with aiohttp.ClientSession() as session:
        # Streams (their first token at once, the next 30 s later) each hold ~0.038 USD: two
        # on the process that dies, one on the other, and the fourth is refused.
        held = []
        for url in (dying.url, dying.url, living.url):
            target, body, headers = _streamed(url)
            held.append(await session.post(target, data=body, headers=headers))
        assert [response.status for response in held] == [200, 200, 200]
        assert await _admitted(session, living.url) == 429
        dying.process.kill()
        started = time.monotonic()
        while await _admitted(session, living.url) == 429:
            assert time.monotonic() - started < 10, "the dead process's reservations stayed"
            await asyncio.sleep(0.1)
        for response in held:
            response.close()
    # The living process's two streams were left early: their usage unknown, each is charged
    # what it held (never free), once the gateway saw the client leave.
    for _ in range(250):
        report = await _usage(living.url)
        if report["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    assert 0 < report["spend_usd"] <= 2 * RESERVATION_BOUND
    assert report["spend_held_usd"] == 0


def _streamed(url: str) -> tuple[str, bytes, dict[str, str]]:
    body = PRICED_BODY[:-1] + b',"stream":true}'
    headers = {"Authorization": "Bearer sk-k", "Content-Type": "application/json"}
    return f"{url}/v1/chat/completions", body, headers


async def _admitted(session: aiohttp.ClientSession, url: str) -> int:
    """A streamed request's status, its stream left at once."""
    target, body, headers = _streamed(url)
    async with session.post(target, data=body, headers=headers) as response:
        return response.status


async def _usage(url: str) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-admin"}) as r,
    ):
        report: dict[str, float] = (await r.json())["data"][0]
        return report
