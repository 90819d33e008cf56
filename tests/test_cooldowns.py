"""The in-process cooldown store: what the dispatcher asks of it, with a clock we move."""

from __future__ import annotations

import pytest

from gateway.policy import cooldowns
from gateway.policy.cooldowns import LocalCooldowns


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
    assert rests["a"].since == 4600.0
    # When all rest, the one resting longest is tried: b, not the key just refused.
    assert min(rests, key=lambda id: rests[id].since) == "b"


async def test_a_running_rest_keeps_its_start_when_extended(clock: Clock) -> None:
    store = LocalCooldowns()
    await store.rest("a", 60)
    clock.now += 10
    await store.rest("a", 120)
    assert (await store.resting(["a"]))["a"].since == 1000.0
