"""The response cache's policy: which requests it answers, under which key, and the ticket
each request carries through the engine (`gateway.engine.ports.Cache`).

A request is looked up and filled only when everything allows it (else `bypass`): the cache
is on, the route stores answers (chat, Messages, Responses, generateContent), the gateway key
is in (`[cache] all_keys`, or its own `cache = true`; `cache = false` opts it out), the model
is in (`[cache] models`, not in `skip_models`: globs over the name the client used,
`provider/model` or an alias, and over its provider), the request does not sample unless
`[cache] sampled` (a `temperature` above 0, or none: every API's default is 1), asks for one
answer (`n`, Gemini's `candidateCount`) and names no stored state (`previous_response_id`, or
a Responses request that a provider with its own Responses API would store: `store` unset or
true). The client's own `Cache-Control` says the rest: `no-cache` skips the lookup (the
answer refreshes the entry: `bypass`), `no-store` keeps the answer out of the cache (a hit is
still served).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

import msgspec
from aiohttp import web

from gateway.cache.key import SHARED_SCOPE, body_digest, cache_key, sampling_of
from gateway.cache.stores import Store
from gateway.config import CacheConfig
from gateway.engine.call import Call
from gateway.engine.targets import Candidate
from gateway.policy.keys import GATEWAY_KEY, GatewayKey
from gateway.policy.pricing import Prices
from wire.operations import Operation
from wire.usage import usage_of

_NO_SCOPE = "-"  # no gateway keys configured: one scope


class Ticket:
    """One request's dealings with the cache: what it found, and where its answer goes."""

    __slots__ = ("_keys", "_store", "fills", "hit", "keeps", "saved_usd", "state")

    def __init__(self, state: str, store: Store, keys: dict[str, str], keeps: int) -> None:
        self.state = state  # "hit", "miss" or "bypass": the x-gateway-cache header
        self.hit: tuple[str, bytes] | None = None  # the label that answered, its answer
        self.saved_usd: float | None = None  # what a hit would have cost upstream
        self.keeps = keeps  # bytes of an answer kept to fill; 0: not filled
        self._store = store
        self._keys = keys  # each candidate's label -> its key

    def fill(self, label: str, stored: bytes) -> None:
        key = self._keys.get(label)
        if key is not None and self.keeps and len(stored) <= self.keeps:
            self._store.put(key, stored)


class ResponseCache:
    def __init__(self, config: CacheConfig, store: Store, prices: Prices | None) -> None:
        self.config = config
        self.store = store
        self.prices = prices
        self._models = _globs(config.models or ["*"])
        self._skipped = _globs(config.skip_models)

    async def ticket(
        self, request: web.Request, call: Call, plan: Sequence[Candidate]
    ) -> Ticket | None:
        """The request's ticket; None when its route stores no answers."""
        if call.stored is None or call.body is None:
            return None
        config = self.config
        key: GatewayKey | None = request.get(GATEWAY_KEY)
        directives = _directives(request.headers.get("Cache-Control", ""))
        if not self._allows(call, key, plan):
            return Ticket("bypass", self.store, {}, 0)
        scope = SHARED_SCOPE if config.shared else (key.name if key is not None else _NO_SCOPE)
        digest = body_digest(call.body)
        route = call.operation.value
        keys = {c.label: cache_key(scope, route, c.label, digest) for c in plan}
        keeps = 0 if "no-store" in directives else config.max_entry_bytes
        ticket = Ticket("miss", self.store, keys, keeps)
        if "no-cache" in directives:
            ticket.state = "bypass"
            return ticket
        found = await self.store.first(list(keys.values()))
        if found is not None:
            position, answer = found
            label = plan[position].label
            ticket.state, ticket.hit = "hit", (label, answer)
            ticket.saved_usd = self._cost(label, call.model, answer)
        return ticket

    def _allows(self, call: Call, key: GatewayKey | None, plan: Sequence[Candidate]) -> bool:
        config = self.config
        if key is not None:
            opted = key.config.cache
            if not (config.all_keys if opted is None else opted):
                return False
        provider = call.model.partition("/")[0]
        if not (self._models.fullmatch(call.model) or self._models.fullmatch(provider)):
            return False
        if self._skipped.fullmatch(call.model) or self._skipped.fullmatch(provider):
            return False
        body = call.body
        assert body is not None
        temperature, n = sampling_of(body)
        if not config.sampled and not (isinstance(temperature, int | float) and temperature <= 0):
            return False
        if call.operation is Operation.RESPONSES and _stored_upstream(body, plan):
            return False
        return n in (1, None) and "previous_response_id" not in body

    def _cost(self, label: str, model: str, answer: bytes) -> float | None:
        if self.prices is None:
            return None
        usd = self.prices.cost(label, model, usage_of(answer)).usd
        return None if usd is None else float(usd)


def _stored_upstream(body: dict[str, msgspec.Raw], plan: Sequence[Candidate]) -> bool:
    """A Responses request a provider with a Responses API of its own may store (`store`
    unset or true): a hit's response id would be one it never stored, so that a later
    `previous_response_id` naming it would fail."""
    if "store" in body and msgspec.json.decode(body["store"]) is False:
        return False
    return any(Operation.RESPONSES in c.group.provider.operations for c in plan)


def _directives(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(",") if part.strip()}


def _globs(patterns: Sequence[str]) -> re.Pattern[str]:
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))
