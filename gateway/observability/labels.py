"""Label values for the metrics, each from a bounded set.

Every distinct label value is a time series kept for the life of the process (and of the
Prometheus server's retention), so nothing a client can vary freely becomes one: the model
label takes configured names only, errors are named by status, never by message.
"""

from __future__ import annotations

import asyncio

from gateway.config import Config
from gateway.engine.events import RequestRecord

# A model name that is not kept as a label value (OpenTelemetry's word for an overflow).
OTHER = "_OTHER"
# Distinct `provider/model` names per process that are neither aliases nor listed in the
# config, kept as they are; past this many, new ones become OTHER.
MAX_FREE_MODELS = 200
MAX_MODEL_LENGTH = 128  # longer names are OTHER, and never remembered

# OpenTelemetry's well-known `gen_ai.operation.name` values where one applies (it then MUST
# be used); other operations keep the gateway's own name (`providers.base.Operation`).
_OPERATION_NAMES = {
    "chat.completions": "chat",
    "responses": "chat",
    "messages": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "generateContent": "generate_content",
}


def operation_name(operation: str) -> str:
    return _OPERATION_NAMES.get(operation, operation)


class ModelNames:
    """`gen_ai_request_model` as the client named it, bounded: configured aliases, the
    `provider/model` names the config lists, and up to MAX_FREE_MODELS more of a configured
    provider; anything else is OTHER (model names are user input)."""

    def __init__(self, config: Config, free: int = MAX_FREE_MODELS) -> None:
        self._known: set[str] = set(config.models)
        for alias in config.models.values():
            self._known.update(target.model for target in alias.targets)
        for name, provider in config.providers.items():
            self._known.update(f"{name}/{model}" for model in provider.models)
        self._providers = frozenset(config.providers)
        # A bare name (Claude Code's) goes to this provider: it is one of its models.
        self._default = config.server.default_provider
        self._free: set[str] = set()
        self._room = free

    def __call__(self, model: str) -> str:
        if model in self._known or model in self._free:
            return model
        provider, sep, rest = model.partition("/")
        if not sep and self._default:
            if f"{self._default}/{model}" in self._known:
                return model
            provider, sep, rest = self._default, "/", model
        if (
            sep
            and rest
            and provider in self._providers
            and len(model) <= MAX_MODEL_LENGTH
            and len(self._free) < self._room
        ):
            self._free.add(model)
            return model
        return OTHER


def error_type(record: RequestRecord) -> str:
    """How the request failed, from a bounded set: the status its error carried ("429",
    "502", ...), "cancelled" when the client went away first; "" when it succeeded."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():  # the client left: its handler is cancelled
        return "cancelled"
    if record.error is not None or record.status >= 400:
        return str(record.status)
    return ""
