"""The in-process cooldown store: what the dispatcher asks of it, with a clock we move; and
what the dispatcher chooses by its answers."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.policy import cooldowns
from gateway.policy.cooldowns import LocalCooldowns
from tests.conftest import FakeUpstream, GatewayFactory
from tests.streams import answering

BODY = {"model": "p/m", "messages": [{"role": "user", "content": "hi"}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    monkeypatch.setattr(cooldowns, "time", moved)  # the module's `time.time()` reads it
    return moved


async def test_a_rest_after_an_ended_one_starts_from_now(clock: Clock) -> None:
    store = LocalCooldowns()
    await store.rest("a", 60)  # t=1000, ended at 1060, never looked at since
    clock.now = 4000.0
    await store.rest("b", 900)  # b rests from t=4000
    clock.now = 4600.0
    await store.rest("a", 60)  # a is refused again: it rests from now, not from t=1000
    rests = await store.resting(["a", "b"])
    assert rests["a"].since == 4600.0 and rests["b"].since == 4000.0


async def test_when_every_key_rests_the_one_resting_longest_is_tried_first(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """The dispatcher's choice, not the store's figures: both keys of a provider refused
    (429, so both rest), the next request goes first to the key that rested first."""
    upstream.handler = answering({"error": {"message": "slow down"}}, status=429)
    url = await start_gateway(
        f'[providers.p]\ntype = "openai"\nbase_url = "{upstream.url}"\n'
        'keys = [{ value = "sk-1" }, { value = "sk-2" }]\n'
    )
    tried = []
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            upstream.requests.clear()
            async with session.post(f"{url}/v1/chat/completions", json=BODY) as response:
                assert response.status == 429
            tried.append([request["headers"]["Authorization"] for request in upstream.requests])
    first, second = tried[0][:2]  # the first request's order (by weight, at random)
    assert {first, second} == {"Bearer sk-1", "Bearer sk-2"}
    assert tried[1][0] == first  # both rest now: the longest rested goes first


async def test_a_running_rest_keeps_its_start_when_extended(clock: Clock) -> None:
    store = LocalCooldowns()
    await store.rest("a", 60)
    clock.now += 10
    await store.rest("a", 120)
    assert (await store.resting(["a"]))["a"].since == 1000.0
