"""Provider adapters, keyed by the `type` a `[providers.NAME]` table names."""

from __future__ import annotations

from gateway.config import MockProviderConfig, OpenAIProviderConfig, ProviderConfig
from providers.base import Provider
from providers.mock import MockProvider
from providers.openai import OpenAIProvider


def build_provider(name: str, config: ProviderConfig) -> Provider:
    match config:
        case OpenAIProviderConfig():
            return OpenAIProvider(name, config)
        case MockProviderConfig():
            return MockProvider(name, config)
    raise TypeError(f"no adapter for {type(config).__name__}")
