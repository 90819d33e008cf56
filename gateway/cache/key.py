"""A request's cache key: a hash of the request, normalised, under a version prefix.

What makes two requests the same question: the route, the model as resolved (the candidate
that answers, `provider/model`), and every field of the body but those that change nothing of
the answer (`IGNORED`: `stream` and its options, `user`, `metadata`, ids and hints the client
sends for its own bookkeeping, the gateway's own `fallbacks`); each value normalised (parsed
and written again with sorted keys, so spacing and key order do not matter). The scope (a
gateway key's name, or the shared scope) is hashed in, so one key never reads another's
answers unless `[cache] shared` says so.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import orjson

# Bumped when what is hashed, or what an entry holds, changes: old entries are never read.
VERSION = "v1"
IGNORED = frozenset(
    {
        "model",  # the resolved model is hashed instead
        "stream",
        "stream_options",
        "user",
        "metadata",
        "safety_identifier",
        "prompt_cache_key",
        "store",
        "fallbacks",
        "request_id",
    }
)
SHARED_SCOPE = "*"  # `[cache] shared`: every key's; a key's own scope is its name


def body_digest(body: dict[str, msgspec.Raw]) -> bytes:
    """The normalised body's part of the key, once per request (for every candidate)."""
    fields = {
        name: msgspec.json.decode(value) for name, value in body.items() if name not in IGNORED
    }
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).digest()


def cache_key(scope: str, route: str, label: str, digest: bytes) -> str:
    """The key of the answer `label` gives to the request (`digest`) on `route`."""
    hashed = hashlib.sha256()
    for part in (scope, route, label):
        hashed.update(part.encode())
        hashed.update(b"\0")
    hashed.update(digest)
    return f"{VERSION}:{hashed.hexdigest()}"


def sampling_of(body: dict[str, msgspec.Raw]) -> tuple[Any, Any]:
    """The request's temperature (None when unset: the API's default, 1, applies) and how
    many answers it asks for (`n`; Gemini's `generationConfig.candidateCount`)."""
    if "generationConfig" in body:  # Gemini's, camel-cased by its route
        config = msgspec.json.decode(body["generationConfig"])
        if not isinstance(config, dict):
            return None, None
        return config.get("temperature"), config.get("candidateCount")
    temperature, n = body.get("temperature"), body.get("n")
    return (
        None if temperature is None else msgspec.json.decode(temperature),
        None if n is None else msgspec.json.decode(n),
    )
