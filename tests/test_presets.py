"""OpenAI-compatible presets: `[providers.groq]` with nothing else is a working provider."""

from __future__ import annotations

import openai
import pytest

from gateway.config import parse, warn_missing_keys
from providers import known_presets
from providers.openai import OpenAIProviderConfig
from tests.conftest import FakeUpstream, GatewayFactory
from tests.streams import answering, chat_completion

LOCAL = ("vllm", "lmstudio", "llamacpp")
MESSAGES = [{"role": "user", "content": "Hi"}]


def _provider(toml: str, name: str) -> OpenAIProviderConfig:
    config = parse(toml, "test.toml").providers[name]
    assert isinstance(config, OpenAIProviderConfig)
    return config


PRESETS = known_presets()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_bare_preset_table_gets_its_url_key_and_responses_mode(name: str) -> None:
    config = _provider(f"[providers.{name}]\n", name)
    preset = PRESETS[name]
    assert (config.base_url, config.api_key) == (preset.base_url, preset.api_key)
    assert config.responses == preset.responses


def test_groq_preset_values() -> None:
    config = _provider("[providers.groq]\n", "groq")
    assert config.base_url == "https://api.groq.com/openai/v1"
    assert config.api_key == "env.GROQ_API_KEY"


def test_explicit_settings_override_the_preset() -> None:
    toml = '[providers.groq]\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "env.MY_GROQ"\n'
    config = _provider(toml, "groq")
    assert config.base_url == "http://127.0.0.1:9/v1"
    assert config.api_key == "env.MY_GROQ"


def test_preset_applies_to_the_openai_type_only() -> None:
    config = parse('[providers.groq]\ntype = "anthropic"\n', "test.toml").providers["groq"]
    assert getattr(config, "base_url", None) == "https://api.anthropic.com/v1"


@pytest.mark.parametrize("name", LOCAL)
def test_local_presets_need_no_key(name: str) -> None:
    config = parse(f"[providers.{name}]\n", "test.toml")
    assert _provider(f"[providers.{name}]\n", name).api_key is None
    assert warn_missing_keys(config) == []


@pytest.mark.parametrize("name", sorted(set(PRESETS) - set(LOCAL)))
def test_hosted_presets_warn_when_their_key_is_unset(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = str(PRESETS[name].api_key).removeprefix("env.")
    monkeypatch.delenv(variable, raising=False)
    [warning] = warn_missing_keys(parse(f"[providers.{name}]\n", "test.toml"))
    assert variable in warning


async def test_groq_preset_end_to_end_sends_the_env_key(
    upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    url = await start_gateway(f'[providers.groq]\nbase_url = "{upstream.url}"\n')
    upstream.handler = answering(chat_completion("Hello from Groq"))
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        completion = await client.chat.completions.create(
            model="groq/llama-3.3-70b-versatile", messages=MESSAGES
        )
    assert completion.choices[0].message.content == "Hello from Groq"
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer gsk-test"
    assert sent["body"]["model"] == "llama-3.3-70b-versatile"


async def test_groq_preset_without_its_env_key_is_a_502(
    upstream: FakeUpstream, start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    url = await start_gateway(f'[providers.groq]\nbase_url = "{upstream.url}"\n')
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="groq/m", messages=MESSAGES)
    assert "GROQ_API_KEY" in caught.value.message
    assert upstream.requests == []


async def test_local_preset_end_to_end_sends_no_authorization(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(f'[providers.vllm]\nbase_url = "{upstream.url}"\n')
    upstream.handler = answering(chat_completion("local"))
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        completion = await client.chat.completions.create(model="vllm/qwen", messages=MESSAGES)
    assert completion.choices[0].message.content == "local"
    assert "Authorization" not in upstream.requests[-1]["headers"]
