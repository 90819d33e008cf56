"""The stream deadline: silence of `seconds` cancels the task; activity keeps it alive."""

from __future__ import annotations

import asyncio

import pytest

from gateway.engine.deadline import IdleDeadline
from tests.clock import ManualClock


async def _expires_after_five_seconds(clock: ManualClock, deadline: IdleDeadline) -> None:
    """Silence of just under 5 s is nothing; past 5 s the task is cancelled, and the deadline
    takes its own cancellation back."""
    clock.advance(4.9)
    assert not deadline.expired
    clock.advance(0.2)
    assert deadline.expired
    with pytest.raises(asyncio.CancelledError) as caught:
        await asyncio.sleep(1)
    assert deadline.absorb(caught.value)


async def test_silence_cancels_the_task_and_absorb_takes_the_cancellation_back() -> None:
    clock = ManualClock()
    deadline = IdleDeadline(5, clock)
    await _expires_after_five_seconds(clock, deadline)
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    deadline.close()


async def test_steady_activity_is_never_cut() -> None:
    clock = ManualClock()
    deadline = IdleDeadline(5, clock)
    for _ in range(100):  # 200 s in all, never 5 s of silence
        clock.advance(2)
        deadline.touch()
    assert not deadline.expired
    deadline.close()


async def test_a_pause_restarts_the_silence_when_it_ends() -> None:
    clock = ManualClock()
    deadline = IdleDeadline(5, clock)
    deadline.paused = True  # a slow client, not a silent upstream
    clock.advance(60)
    assert not deadline.expired
    deadline.paused = False
    await _expires_after_five_seconds(clock, deadline)


async def test_closed_deadline_never_fires() -> None:
    clock = ManualClock()
    deadline = IdleDeadline(5, clock)
    deadline.close()
    clock.advance(60)
    assert not deadline.expired


async def test_a_cancellation_from_elsewhere_is_not_absorbed() -> None:
    deadline = IdleDeadline(10)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().call_soon(task.cancel)
    with pytest.raises(asyncio.CancelledError) as caught:
        await asyncio.sleep(1)
    assert not deadline.absorb(caught.value)
    task.uncancel()
    deadline.close()


async def test_an_expiry_and_a_client_cancel_in_the_same_turn_is_a_cancellation() -> None:
    deadline = IdleDeadline(10)
    deadline.close()  # its timer is driven by hand below, so both land in one loop turn
    deadline.last -= 20  # ten seconds of silence are over
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.call_soon(deadline._check)  # the deadline fires ...
    loop.call_soon(task.cancel)  # ... and the client goes away in the same turn
    with pytest.raises(asyncio.CancelledError) as caught:
        await asyncio.sleep(1)
    assert deadline.expired
    assert not deadline.absorb(caught.value)  # not a timeout: the cancellation stands
    assert task.cancelling() == 1
    task.uncancel()
