"""Configuration values both sides read: `env.NAME` secrets, and the error a bad one is."""

from __future__ import annotations

import os

import msgspec

ENV_PREFIX = "env."


class ConfigError(Exception):
    """A bad configuration: the message is one line naming file, key and problem."""


class ResolvedKey(msgspec.Struct, frozen=True):
    """An api_key after `env.NAME` resolution: the value, or the variable that is missing."""

    value: str | None
    missing_env: str | None = None


def resolve_key(raw: str | None) -> ResolvedKey:
    if raw is None:
        return ResolvedKey(None)
    if raw.startswith(ENV_PREFIX):
        name = raw[len(ENV_PREFIX) :]
        value = os.environ.get(name)
        return ResolvedKey(value) if value else ResolvedKey(None, missing_env=name)
    return ResolvedKey(raw)
