"""The configured secrets, handed to `wire.redact` so that no error message shows them."""

from __future__ import annotations

import re

from gateway.config import Config
from wire.config_values import resolve_key
from wire.redact import add_secrets

# Configured headers whose values are credentials (e.g. a gateway's own Authorization).
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|signature|session", re.IGNORECASE)


def add_config_secrets(config: Config) -> None:
    """Every credential `config` resolves to: api keys, bedrock's keys, credential headers."""
    values: list[str | None] = []
    for provider in config.providers.values():
        for field in ("api_key", "access_key_id", "secret_access_key", "session_token"):
            values.append(resolve_key(getattr(provider, field, None)).value)
        headers: dict[str, str] = getattr(provider, "headers", {})
        values.extend(value for name, value in headers.items() if _SECRET_HEADER.search(name))
    add_secrets(values)
