"""Cloudflare Workers AI: what is its own (the account's URL); the rest is the conformance
table's row and OpenAI's tests."""

from __future__ import annotations

import pytest

from gateway.config import parse
from providers import build_provider
from wire.config_values import ConfigError
from wire.operations import Operation


def test_the_account_id_makes_the_url() -> None:
    config = parse('[providers.cf]\ntype = "cloudflare"\naccount_id = "a1b2"\n', "t.toml")
    provider = build_provider("cf", config.providers["cf"])
    assert provider.url(Operation.CHAT, "@cf/meta/llama-3.1-8b-instruct") == (
        "https://api.cloudflare.com/client/v4/accounts/a1b2/ai/v1/chat/completions"
    )


def test_without_an_account_id_the_config_says_so() -> None:
    with pytest.raises(ConfigError, match="account_id: is required"):
        parse('[providers.cf]\ntype = "cloudflare"\n', "t.toml")
