"""`provider/model` -> the provider that serves it, with its transport and limits."""

from __future__ import annotations

import aiohttp
import msgspec

from gateway.config import Config
from gateway.errors import BadRequest
from gateway.upstream import HttpTransport, Transport, client_timeout
from providers import build_provider
from providers.base import Operation, Provider


class Target(msgspec.Struct, frozen=True, gc=False):
    """Everything one request needs to reach its upstream."""

    provider: Provider
    transport: Transport
    timeout: aiohttp.ClientTimeout  # non-streamed: aiohttp bounds connect and every read
    stream_timeout: aiohttp.ClientTimeout  # streamed: connect only; gateway.deadline the rest
    timeout_seconds: float
    keepalive: float  # 0: off


def supports(provider: Provider, operation: Operation) -> bool:
    """Served natively, or (Responses) through the provider's chat API."""
    operations = provider.operations
    return operation in operations or (
        operation is Operation.RESPONSES and Operation.CHAT in operations
    )


class Router:
    def __init__(self, config: Config, http: HttpTransport) -> None:
        self.targets: dict[str, Target] = {}
        for name, provider_config in config.providers.items():
            provider = build_provider(name, provider_config)
            keepalive = provider_config.keepalive
            self.targets[name] = Target(
                provider=provider,
                # A provider that answers in-process (the mock) is its own transport.
                transport=getattr(provider, "transport", http),
                timeout=client_timeout(provider_config.timeout),
                stream_timeout=client_timeout(provider_config.timeout, reads=False),
                timeout_seconds=provider_config.timeout,
                keepalive=config.server.keepalive if keepalive is None else keepalive,
            )

    def resolve(self, model: str, operation: Operation) -> tuple[Target, str]:
        """The target for `provider/model` and the model name to send upstream (after the
        first slash, unchanged: it may hold more slashes)."""
        name, sep, upstream_model = model.partition("/")
        target = self.targets.get(name) if sep and upstream_model else None
        if target is None:
            configured = ", ".join(sorted(self.targets)) or "none"
            problem = (
                f"Unknown provider {name!r} in model {model!r}."
                if sep and upstream_model
                else f"Model {model!r} names no provider."
            )
            raise BadRequest(
                f"{problem} Name the model as 'provider/model' (for example "
                f"'{next(iter(sorted(self.targets)), 'openai')}/<model>'); "
                f"configured providers: {configured}.",
                param="model",
                code="unknown_provider",
            )
        if not supports(target.provider, operation):
            supported = ", ".join(sorted(op.value for op in target.provider.operations))
            raise BadRequest(
                f"Provider {name!r} does not support {operation.value} (it supports: {supported}).",
                param="model",
                code="unsupported_operation",
            )
        return target, upstream_model
