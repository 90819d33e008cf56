"""The protocols the engine talks to the policies through; the app plugs the concrete ones in.

- `Planner`: which candidates may answer a model, in order (`gateway.policy.routing`);
- `Cooldowns`: which keys and targets rest, and what an attempt saw (`gateway.policy`'s
  stores, in process or in Redis, watched by the metrics' gauge);
- `Limits`: the request's caller (a gateway key) with its model allow-list, admitted under
  its limits before the first attempt and settled with the tokens and money used after the last
  (`gateway.policy.admission`);
- `Pricing`: what an answer cost, asked once per request an upstream served, after its last
  byte (a whole answer's before it is sent, for its header) (`gateway.policy.pricing`);
- `Cache`: the response cache's ticket for a request: a stored answer, or where the answer
  goes once it is whole (`gateway.cache`);
- `Draining`: whether the gateway is ending the requests still running (`gateway.server.drain`).

The observers (metrics, the access log, the console) are the event hooks of
`gateway.engine.events`. Nothing in the engine imports a concrete policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Sequence
from typing import NamedTuple, Protocol, TypeVar

from aiohttp import web

from gateway.engine.call import Call
from gateway.engine.events import RequestRecord
from gateway.engine.targets import Candidate
from wire.cost import Cost
from wire.errors import GatewayError
from wire.operations import Operation
from wire.usage import Usage

A = TypeVar("A")


class Planner(Protocol):
    def plan(
        self, model: str, operation: Operation, fallbacks: Sequence[str] = ()
    ) -> list[Candidate]:
        """The candidates for `model`, then for each of `fallbacks`, in the order to try them;
        raises the request's error (a 400) when a name serves no one."""
        ...


class Caller(Protocol):
    """Who sent the request, as the policies know them: a gateway key."""

    @property
    def name(self) -> str: ...

    def check_models(self, names: list[str], param: str = "model") -> None:
        """Raise the 403 for the first of `names` the caller may not use."""
        ...


class Limits(Protocol[A]):
    """The caller's limits: admitted (an `A`) before any upstream is called, settled after."""

    def caller(self, request: web.Request) -> Caller | None:
        """The request's gateway key; None when the gateway asks for none."""
        ...

    def client_key(self, request: web.Request) -> str | None:
        """A provider key the client sent of its own (for a provider that forwards it)."""
        ...

    async def admit(self, request: web.Request, call: Call, plan: Sequence[Candidate]) -> A:
        """Let the caller's request through (raises its 429 or 503), holding what it may
        spend on any of `plan`'s candidates until it settles."""
        ...

    def rate_headers(self, admission: A) -> dict[str, str]:
        """What every answer to the request carries (OpenAI's x-ratelimit-*)."""
        ...

    def settle(self, admission: A, record: RequestRecord) -> None:
        """The request ended (`record`: who served it, the usage it reported): charge its
        tokens and its cost; it is no longer in flight."""
        ...


class Pricing(Protocol):
    def cost(self, served: str, asked: str, usage: Usage | None) -> Cost:
        """What `usage` cost at `served`'s price (`asked`: the model as the client named it,
        an alias maybe); its `usd` is None when the price is unknown."""
        ...


class Rest(NamedTuple):
    since: float  # when the rest began: of several resting candidates, the longest rested goes
    until: float


class Cooldowns(Protocol):
    # Plain methods returning awaitables: a wrapper may hand on a store's bound coroutine
    # functions as they are (gateway.observability.cooldown_watch).
    def resting(self, ids: Collection[str]) -> Awaitable[dict[str, Rest]]:
        """The rests among `ids` that have not ended yet."""
        ...

    def rest(self, id: str, seconds: float) -> Awaitable[None]:
        """`id` rests for `seconds` from now (a longer rest already running is kept)."""
        ...

    def failed(self, id: str, threshold: int, seconds: float) -> Awaitable[bool]:
        """Count a failure of target `id`; at `threshold` failures in a row it rests for
        `seconds` (and the count starts again). True when it now rests."""
        ...

    def succeeded(self, id: str) -> None:
        """`id` answered: its failures in a row are forgotten. Never waits (asked on every
        request: a store that must talk to a server does so in the background)."""
        ...


class CacheTicket(Protocol):
    """One request's dealings with the response cache."""

    @property
    def state(self) -> str:
        """ "hit", "miss" or "bypass": what the answer's x-gateway-cache header says."""
        ...

    @property
    def hit(self) -> tuple[str, bytes] | None:
        """The candidate's label and its stored answer (`formats.stored_answer`)."""
        ...

    @property
    def saved_usd(self) -> float | None: ...

    @property
    def keeps(self) -> int:
        """Bytes of the answer to keep to fill the cache; 0: it is not filled."""
        ...

    def fill(self, label: str, stored: bytes) -> None:
        """`label` answered `stored`, whole and well: keep it (never waits)."""
        ...


class Cache(Protocol):
    async def ticket(
        self, request: web.Request, call: Call, plan: Sequence[Candidate]
    ) -> CacheTicket | None:
        """The request's ticket, after its admission; None when its route stores no answers.
        Never raises for the store's sake: a store that is down is a miss."""
        ...


class Draining(Protocol):
    @property
    def cutting(self) -> bool:
        """The drain's time is up: the requests still running are being ended."""
        ...

    def ended_error(self) -> GatewayError:
        """What a request ended by the drain tells its client."""
        ...
