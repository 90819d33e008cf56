"""Cloudflare Workers AI (`type = "cloudflare"`): OpenAI's API under an account's URL.

Workers AI serves OpenAI-compatible chat completions and embeddings at
`https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1` with a Bearer API token
(developers.cloudflare.com/workers-ai/configuration/open-ai-compatibility). The account id is
part of the URL, so it is a setting of its own; everything else is `OpenAIProvider`'s.
Models are named as Cloudflare names them: `cloudflare/@cf/meta/llama-3.1-8b-instruct`.
"""

from __future__ import annotations

from urllib.parse import quote

import msgspec

from providers.declaration import HttpProviderConfig, ProviderType
from providers.openai import OpenAIProvider
from wire.operations import Operation

_ACCOUNT_URL = "https://api.cloudflare.com/client/v4/accounts/{}/ai/v1"


class CloudflareProviderConfig(HttpProviderConfig, frozen=True, tag="cloudflare"):
    """Workers AI: `account_id` makes the base URL (a `base_url` set instead wins)."""

    account_id: str | None = None

    def problem(self) -> tuple[str, str] | None:
        if not self.account_id and not self.base_url:
            return "account_id", "is required (the Cloudflare account the models run in)"
        return super().problem()


class CloudflareProvider(OpenAIProvider):
    """`OpenAIProvider` at the account's Workers AI URL; no Responses API (bridged)."""

    operations = frozenset({Operation.CHAT, Operation.EMBEDDINGS})

    def __init__(self, name: str, config: CloudflareProviderConfig) -> None:
        if not config.base_url:
            account = quote(config.account_id or "", safe="")
            config = msgspec.structs.replace(config, base_url=_ACCOUNT_URL.format(account))
        super().__init__(name, config)


PROVIDER = ProviderType(
    "cloudflare",
    CloudflareProviderConfig,
    CloudflareProvider,
    upstream="Cloudflare Workers AI (OpenAI-compatible, under the account's URL)",
    api_key="env.CLOUDFLARE_API_TOKEN",
    notes="`account_id` required: the base URL is `" + _ACCOUNT_URL.format("{account_id}") + "`",
)
