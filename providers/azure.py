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

from providers.declaration import HttpProviderConfig, ProviderType
from providers.openai import OpenAIProvider
from wire.errors import BadRequest
from wire.operations import Operation

_PATHS = {Operation.CHAT: "/chat/completions", Operation.COMPLETIONS: "/completions"}


class AzureProviderConfig(HttpProviderConfig, frozen=True, tag="azure"):
    """Azure OpenAI: base_url is https://<resource>.openai.azure.com; model is the deployment."""

    api_version: str = "2024-10-21"


class AzureProvider(OpenAIProvider):
    """`OpenAIProvider` with Azure's deployment URLs and `api-key` header."""

    operations = frozenset({Operation.CHAT, Operation.COMPLETIONS})
    key_header = "api-key"
    key_prefix = ""

    def __init__(self, name: str, config: AzureProviderConfig) -> None:
        super().__init__(name, config)
        base = self.base_url
        # base_url is the resource endpoint; tolerate one that already ends in /openai.
        self._deployments = (base if base.endswith("/openai") else base + "/openai") + (
            "/deployments/"
        )
        self._query = "?" + urlencode({"api-version": config.api_version})

    def url(self, operation: Operation, model: str) -> str:
        if model in (".", ".."):  # a URL would normalise them into another path on the host
            raise BadRequest(
                f"Deployment name {model!r} is not valid for provider {self.name!r}.",
                param="model",
                code="invalid_value",
            )
        return self._deployments + quote(model, safe="") + _PATHS[operation] + self._query


PROVIDER = ProviderType(
    "azure",
    AzureProviderConfig,
    AzureProvider,
    upstream="Azure OpenAI (`/openai/deployments/{model}/...?api-version=`, `api-key` header)",
    base_url_required=True,
    base_url_example="https://<resource>.openai.azure.com",
    api_key="env.AZURE_OPENAI_API_KEY",
)
