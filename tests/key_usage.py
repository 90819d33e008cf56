"""The usage route read as the admin, and waiting on it for a charge to land.

A request is charged once it ended: after the client's last byte, and after up to
`END_OF_BODY_WAIT` for the upstream's end of body. A test that needs the charge waits for it
to show, not for a time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

POLLS = 500  # 10 ms apart: 5 s at most for a charge that usually lands in under 50 ms


async def key_usage(url: str, admin: str = "sk-admin") -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v1/keys/usage", headers={"Authorization": f"Bearer {admin}"}) as got,
    ):
        assert got.status == 200, await got.text()
        data: list[dict[str, Any]] = (await got.json())["data"]
        return data


async def spent_beyond(url: str, spent: float, admin: str = "sk-admin") -> float:
    """The first key's `budget_spent` once it is above `spent` (`spent` itself if no charge
    lands within POLLS)."""
    for _ in range(POLLS):
        now = float((await key_usage(url, admin))[0]["budget_spent"])
        if now > spent:
            return now
        await asyncio.sleep(0.01)
    return spent
