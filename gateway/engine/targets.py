"""What a routing plan is made of: the candidates (`provider/model`) a request may be served
by, each with its provider's targets (one per key). The routing policy makes them
(`gateway.policy.routing`); the dispatcher runs attempts at them."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

import aiohttp
import msgspec

from providers import build_provider
from providers.base import Provider
from providers.declaration import ProviderConfig
from wire.upstream import Transport

T = TypeVar("T")


class Target(msgspec.Struct, frozen=True, gc=False):
    """One provider with one of its keys: everything one attempt needs to reach its upstream."""

    provider: Provider
    transport: Transport
    timeout: aiohttp.ClientTimeout  # non-streamed: aiohttp bounds connect and every read
    stream_timeout: (
        aiohttp.ClientTimeout
    )  # streamed: connect only; gateway.engine.deadline the rest
    timeout_seconds: float
    keepalive: float  # 0: off
    key_id: str  # "<provider>#<n>": what rests when the upstream refuses the key
    weight: float = 1.0
    client_key: bool = False  # the key is the client's own (forward_client_key)


class ProviderGroup:
    """A provider table: its targets, one per key (and per client key, with
    `forward_client_key`)."""

    __slots__ = ("_client_targets", "_config", "forward_client_key", "name", "retries", "targets")

    def __init__(
        self, name: str, targets: tuple[Target, ...], retries: int, config: ProviderConfig
    ) -> None:
        self.name = name
        self.targets = targets
        self.retries = retries
        self._config = config
        self.forward_client_key = bool(getattr(config, "forward_client_key", False))
        self._client_targets: dict[str, Target] = {}  # the latest clients' keys, bounded

    @property
    def provider(self) -> Provider:
        return self.targets[0].provider

    def client_target(self, key: str) -> Target:
        """The target that sends the client's own `key` upstream (bring your own key)."""
        target = self._client_targets.get(key)
        if target is None:
            variant = msgspec.structs.replace(self._config, api_key=key, keys=[])
            base = self.targets[0]
            target = msgspec.structs.replace(
                base,
                provider=build_provider(self.name, variant),
                key_id=f"{self.name}#client",
                client_key=True,
            )
            if len(self._client_targets) >= _CLIENT_TARGETS:
                self._client_targets.pop(next(iter(self._client_targets)))
            self._client_targets[key] = target
        return target


# Client keys whose provider is kept built (a provider bakes its key into its headers).
_CLIENT_TARGETS = 256


class Candidate(msgspec.Struct, frozen=True, gc=False):
    """One `provider/model` a request may be served by."""

    label: str  # "provider/model", as the config or the request names it
    group: ProviderGroup
    model: str  # the name sent upstream (after the first slash, unchanged)
    retries: int  # further attempts at this candidate after a retryable failure


def weighted_order(items: Sequence[T], weight: Callable[[T], float]) -> list[T]:
    """`items` in a random order where each comes first with a chance proportional to its
    weight (Efraimidis-Spirakis: sort by u ** (1 / w))."""
    if len(items) < 2:
        return list(items)
    return sorted(items, key=lambda item: random.random() ** (1.0 / weight(item)), reverse=True)
