"""Provider adapters, keyed by the `type` a `[providers.NAME]` table names.

Each adapter is a class `(name, config) -> Provider` in its own module, imported only when a
configured provider uses it (so an optional dependency, e.g. botocore for bedrock, is needed
only by those who use that provider).
"""

from __future__ import annotations

import importlib

from gateway.config import ProviderConfig
from providers.base import Provider

ADAPTERS: dict[str, str] = {
    "openai": "providers.openai:OpenAIProvider",
    "anthropic": "providers.anthropic:AnthropicProvider",
    "gemini": "providers.gemini:GeminiProvider",
    "ollama": "providers.ollama:OllamaProvider",
    "azure": "providers.azure:AzureProvider",
    "cohere": "providers.cohere:CohereProvider",
    "bedrock": "providers.bedrock:BedrockProvider",
    "mock": "providers.mock:MockProvider",
}


def build_provider(name: str, config: ProviderConfig) -> Provider:
    kind = type(config).__struct_config__.tag
    module_name, _, class_name = ADAPTERS[str(kind)].partition(":")
    adapter = getattr(importlib.import_module(module_name), class_name)
    return adapter(name, config)
