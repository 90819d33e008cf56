"""Gateway keys: who is calling, and which models they may name.

With no `[keys.*]` table the gateway asks for no key. With one, every route but the open
ones (`/`, health, readiness, metrics) wants a gateway key, sent the way the client's SDK sends
its provider key: `Authorization: Bearer ...` (OpenAI), `x-api-key` (Anthropic),
`x-goog-api-key` (Gemini), or `x-gateway-key` when the standard header carries the client's
own provider key (a provider with `forward_client_key`).

A presented key is found by its SHA-256 digest (a dict lookup whose timing says nothing
useful about the stored keys), then compared in constant time. No key is ever logged.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections.abc import Callable

import msgspec
from aiohttp import web

from gateway.config import Config, GatewayKeyConfig
from gateway.server.credentials import (
    InvalidApiKey,
    presented_keys,
)
from wire.config_values import resolve_key
from wire.errors import GatewayError

# Routes anyone may call: probes and scrapes must work without a key.
OPEN_PATHS = frozenset({"/", "/health", "/ready", "/metrics"})


class ModelNotAllowed(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class GatewayKey(msgspec.Struct, frozen=True, gc=False):
    """One configured gateway key, resolved."""

    name: str
    value: str
    config: GatewayKeyConfig
    patterns: re.Pattern[str]  # the `models` globs, as one regex

    def allows(self, model: str) -> bool:
        return self.patterns.fullmatch(model) is not None

    def check_models(self, names: list[str], param: str = "model") -> None:
        """Raise 403 naming the first model (or fallback) this key may not use."""
        for name in names:
            if not self.allows(name):
                raise ModelNotAllowed(
                    f"The key {self.name!r} may not use model {name!r}"
                    + (f" (named in `{param}`)." if param != "model" else "."),
                    param=param,
                )


class KeyRing:
    """Every gateway key, found by the digest of what a client presents."""

    def __init__(self, config: Config) -> None:
        self.required = bool(config.keys)
        self.keys: dict[str, GatewayKey] = {}
        self._by_digest: dict[bytes, GatewayKey] = {}
        self._known: dict[str, GatewayKey] = {}
        for name, key_config in config.keys.items():
            value = resolve_key(key_config.value).value
            patterns = re.compile("|".join(fnmatch.translate(p) for p in key_config.models))
            key = GatewayKey(name, value or "", key_config, patterns)
            self.keys[name] = key
            if value:  # an unset variable: nobody can present this key (warned at start)
                self._by_digest[_digest(value)] = key
        self.admin = resolve_key(config.admin.key).value

    def find(self, presented: str) -> GatewayKey | None:
        # A key found once is found again by its value: a str dict lookup compares contents
        # only on a matching (randomised, 64-bit) hash, so it tells an attacker nothing a
        # digest would not, and it skips the SHA-256 on every request (2 % of the CPU).
        key = self._known.get(presented)
        if key is not None:
            return key
        key = self._by_digest.get(_digest(presented))
        if key is None or not hmac.compare_digest(_bytes(key.value), _bytes(presented)):
            return None
        self._known[presented] = key  # bounded: only the configured keys' own values
        return key

    def is_admin(self, presented: str | None) -> bool:
        return bool(
            self.admin and presented and hmac.compare_digest(_bytes(self.admin), _bytes(presented))
        )


def _bytes(value: str) -> bytes:
    # aiohttp hands header bytes that are not UTF-8 over as surrogates: they are a wrong key
    # like any other, never an encoding error (and compare_digest takes only ASCII str).
    return value.encode("utf-8", "surrogateescape")


def _digest(value: str) -> bytes:
    return hashlib.sha256(_bytes(value)).digest()


GATEWAY_KEY = web.RequestKey("gateway_key", GatewayKey)
CLIENT_KEY = web.RequestKey("client_key", str)  # a provider key the client sent (BYOK)


def auth_check(
    ring: KeyRing, forwards_client_keys: bool, admin_paths: frozenset[str] | None = None
) -> Callable[[web.Request], None] | None:
    """The check, before the handler, that finds the gateway key (401 without one, when keys
    are configured) and any provider key the client sent besides it; None when there are no
    keys and no provider takes the client's own key. `admin_paths` (default ADMIN_PATHS)
    check the admin key themselves."""
    admin_paths = ADMIN_PATHS if admin_paths is None else admin_paths
    if not ring.required and not forwards_client_keys:
        return None
    required = ring.required

    def authenticate(request: web.Request) -> None:
        if request.path in OPEN_PATHS or request.method == "OPTIONS":
            return
        presented = presented_keys(request)
        gateway_key = None
        for value in presented if required else ():
            gateway_key = ring.find(value)
            if gateway_key is not None:
                request[GATEWAY_KEY] = gateway_key
                break
        for value in presented:
            if gateway_key is None or value != gateway_key.value:
                request[CLIENT_KEY] = value
                break
        if required and gateway_key is None and request.path not in admin_paths:
            raise InvalidApiKey(
                "Incorrect API key provided."
                if presented
                else "You didn't provide an API key. Send your gateway key as "
                "'Authorization: Bearer KEY' (or x-api-key, x-goog-api-key)."
            )

    return authenticate


# Admin routes check the [admin] key themselves (each by its exact path: no other path under
# theirs escapes the gateway key).
ADMIN_PATHS = frozenset({"/v1/keys/usage"})


KEYS = web.AppKey("keys", KeyRing)
