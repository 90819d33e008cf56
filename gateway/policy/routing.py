"""Which upstreams may answer a model name, in which order: the routing plan.

A client names a model as `provider/model`, or by an alias from `[models.NAME]`. An alias has
targets in priority tiers: a tier is tried in a weighted random order, and the next tier only
after every target of the one before failed. A request's own `fallbacks` come after that.
Each target is a provider table, whose `keys` (or its one `api_key`) give one `Target` each.
`gateway.engine.dispatcher` runs the attempts; this module only plans them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec
from aiohttp import web

from gateway.config import Config
from gateway.engine.targets import Candidate, ProviderGroup, Target, weighted_order
from gateway.engine.transport.upstream_errors import client_timeout
from providers import build_provider
from providers.base import Provider
from providers.declaration import ProviderConfig
from wire.errors import BadRequest
from wire.operations import Operation
from wire.upstream import Transport


class _AliasTarget(msgspec.Struct, frozen=True, gc=False):
    label: str
    weight: float


# Client formats any chat provider serves through the gateway's translation (a bridge).
BRIDGED = frozenset({Operation.RESPONSES, Operation.MESSAGES, Operation.GENERATE_CONTENT})


def supports(provider: Provider, operation: Operation) -> bool:
    """Served natively, or (Responses, Messages, generateContent) through its chat API."""
    operations = provider.operations
    return operation in operations or (operation in BRIDGED and Operation.CHAT in operations)


class Router:
    def __init__(self, config: Config, http: Transport) -> None:
        self.groups: dict[str, ProviderGroup] = {
            name: _group(name, provider_config, config, http)
            for name, provider_config in config.providers.items()
        }
        # alias -> its tiers, lowest priority first; and the alias's own retries, if set
        self.aliases: dict[str, list[list[_AliasTarget]]] = {}
        self._alias_retries: dict[str, int | None] = {}
        for name, alias in config.models.items():
            tiers: dict[int, list[_AliasTarget]] = {}
            for target in alias.targets:
                tiers.setdefault(target.priority, []).append(
                    _AliasTarget(target.model, target.weight)
                )
            self.aliases[name] = [tiers[priority] for priority in sorted(tiers)]
            self._alias_retries[name] = alias.retries
        self.default_provider = config.server.default_provider
        # Names with a slash the default provider serves without its prefix: its listed ones.
        default = config.providers.get(self.default_provider or "")
        self._default_models = frozenset(default.models if default is not None else ())

    def plan(
        self, model: str, operation: Operation, fallbacks: Sequence[str] = ()
    ) -> list[Candidate]:
        """The candidates for `model`, then for each of `fallbacks`, in the order to try them.

        Raises BadRequest when a name is neither an alias nor a configured `provider/model`,
        or when no candidate serves `operation`.
        """
        named = [(model, "model"), *((fallback, "fallbacks") for fallback in fallbacks)]
        planned: list[Candidate] = []
        seen: set[str] = set()
        for name, param in named:
            _check_name(name, param)
            for candidate in self._candidates(name, param):
                if candidate.label not in seen:
                    seen.add(candidate.label)
                    planned.append(candidate)
        serving = [c for c in planned if supports(c.group.provider, operation)]
        if not serving:
            raise _unsupported(planned, operation)
        return serving

    def _candidates(self, name: str, param: str) -> list[Candidate]:
        tiers = self.aliases.get(name)
        if tiers is None:
            return [self._direct(name, param, None)]
        retries = self._alias_retries[name]
        return [
            self._direct(target.label, param, retries)
            for tier in tiers
            for target in weighted_order(tier, lambda target: target.weight)
        ]

    def _direct(self, label: str, param: str, retries: int | None) -> Candidate:
        name, sep, upstream_model = label.partition("/")
        group = self.groups.get(name)
        if group is None and self.default_provider is not None and label:
            if sep and label not in self._default_models:
                # `nope/x`: a mistyped provider, or a model of the default one? Never guessed.
                raise self._unknown_or_default(label, name, param)
            # A model named without a provider (or listed for the default one) goes there whole.
            name, upstream_model = self.default_provider, label
            label = f"{name}/{upstream_model}"
            group = self.groups[name]
        if group is None or not upstream_model:
            raise self._unknown(label, name, sep, upstream_model, param)
        return Candidate(
            label, group, upstream_model, group.retries if retries is None else retries
        )

    def _unknown(
        self, label: str, name: str, sep: str, upstream_model: str, param: str
    ) -> BadRequest:
        configured = ", ".join(sorted(self.groups)) or "none"
        aliases = ", ".join(sorted(self.aliases))
        if sep and not upstream_model:
            problem = f"Model {label!r} names provider {name!r} but no model after the slash."
        elif sep and name not in self.groups:
            problem = f"Unknown provider {name!r} in model {label!r}."
        else:
            problem = f"Model {label!r} names no provider and is no configured alias."
        example = next(iter(sorted(self.groups)), "openai")
        return BadRequest(
            f"{problem} Name the model as 'provider/model' (for example '{example}/<model>')"
            + (f" or as an alias ({aliases})" if aliases else "")
            + f"; configured providers: {configured}.",
            param=param,
            code="unknown_provider",
        )

    def _unknown_or_default(self, label: str, name: str, param: str) -> BadRequest:
        """`nope/x` with a default provider: both readings, and how to say each."""
        default = self.default_provider
        configured = ", ".join(sorted(self.groups))
        return BadRequest(
            f"Unknown provider {name!r} in model {label!r} (configured providers: "
            f"{configured}); or, if {label!r} is a model of the default provider {default!r}, "
            f"name it '{default}/{label}' (or list it in [providers.{default}] models).",
            param=param,
            code="unknown_provider",
        )


# No model name has them; in one, they would reach a response header (x-gateway-model), an
# upstream URL (Gemini's) or a log line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _check_name(name: str, param: str) -> None:
    found = _CONTROL.search(name)
    if found is not None:
        raise BadRequest(
            f"Model {name!r} contains the control character {found.group()!r}: a model name "
            "is printable text.",
            param=param,
            code="invalid_model",
        )


def _unsupported(planned: list[Candidate], operation: Operation) -> BadRequest:
    if len({c.group.name for c in planned}) == 1:
        group = planned[0].group
        supported = ", ".join(sorted(op.value for op in group.provider.operations))
        message = (
            f"Provider {group.name!r} does not support {operation.value} "
            f"(it supports: {supported})."
        )
    else:
        names = ", ".join(c.label for c in planned)
        message = f"None of {names} supports {operation.value}."
    return BadRequest(message, param="model", code="unsupported_operation")


def _group(
    name: str, provider_config: ProviderConfig, config: Config, http: Transport
) -> ProviderGroup:
    keepalive = provider_config.keepalive
    keys = getattr(provider_config, "keys", ())
    # One provider instance per key: a provider bakes its key into its request headers.
    variants = (
        [
            (msgspec.structs.replace(provider_config, api_key=key.value, keys=[]), key.weight)
            for key in keys
        ]
        if keys
        else [(provider_config, 1.0)]
    )
    targets = []
    for index, (variant, weight) in enumerate(variants):
        provider = build_provider(name, variant)
        targets.append(
            Target(
                provider=provider,
                # A provider that answers in-process (the mock) is its own transport.
                transport=provider.transport or http,
                timeout=client_timeout(provider_config.timeout),
                stream_timeout=client_timeout(provider_config.timeout, reads=False),
                timeout_seconds=provider_config.timeout,
                keepalive=config.server.keepalive if keepalive is None else keepalive,
                key_id=f"{name}#{index}",
                weight=weight,
            )
        )
    return ProviderGroup(name, tuple(targets), provider_config.retries, provider_config)


ROUTER = web.AppKey("router", Router)
