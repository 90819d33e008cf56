"""Azure OpenAI (`type = "azure"`): OpenAI's API behind a deployment URL and an `api-key`.

The model part of `azure/<name>` is the deployment name. Requests go to
`{base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`
(learn.microsoft.com/azure/ai-services/openai/reference, "Chat completions") with the
`api-key` header instead of `Authorization`. Bodies and streams are OpenAI's, so everything
else is `OpenAIProvider`'s: the pass-through body, `ChunkNormaliser` and the error mapping.

Azure adds content-filter annotations that pass through untouched: a first chunk with
`"choices": []` and `prompt_filter_results`, and `content_filter_results` inside choices.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import msgspec

from gateway.config import AzureProviderConfig, OpenAIProviderConfig
from providers.base import ApiKey, Operation, RawBody, UpstreamRequest
from providers.openai import OpenAIProvider

_PATHS = {Operation.CHAT: "/chat/completions", Operation.COMPLETIONS: "/completions"}


class AzureProvider(OpenAIProvider):
    """`OpenAIProvider` with Azure's deployment URLs and `api-key` header."""

    operations = frozenset({Operation.CHAT, Operation.COMPLETIONS})

    def __init__(self, name: str, config: AzureProviderConfig) -> None:
        # The OpenAI half gets no key, so it sets no `Authorization`; Azure's goes in `api-key`.
        super().__init__(
            name,
            OpenAIProviderConfig(
                base_url=config.base_url, headers=config.headers, timeout=config.timeout
            ),
        )
        self.azure_config = config
        self._key = ApiKey(config.api_key)  # OpenAIProvider.build_request answers 401 for it
        if self._key.value:
            self._headers["api-key"] = self._key.value
        base = self._base_url
        # base_url is the resource endpoint; tolerate one that already ends in /openai.
        self._deployments = (base if base.endswith("/openai") else base + "/openai") + (
            "/deployments/"
        )
        self._query = "?" + urlencode({"api-version": config.api_version})

    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        request = super().build_request(operation, model, body, stream)
        url = self._deployments + quote(model, safe="") + _PATHS[operation] + self._query
        return msgspec.structs.replace(request, url=url)
