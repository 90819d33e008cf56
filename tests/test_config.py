"""gateway.toml parsing: defaults, env.NAME resolution, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load, parse, warn_missing_keys
from providers.mock import MockProviderConfig
from providers.openai import OpenAIProviderConfig
from wire.config_values import ConfigError, resolve_key


def test_defaults_and_type_from_the_table_name() -> None:
    config = parse('[providers.openai]\napi_key = "env.X"\n[providers.mock]\n', "g.toml")
    assert config.server.host == "127.0.0.1" and config.server.port == 8080
    assert config.server.keepalive == 15
    openai = config.providers["openai"]
    assert isinstance(openai, OpenAIProviderConfig)
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.timeout == 30
    assert isinstance(config.providers["mock"], MockProviderConfig)


def test_built_in_default_is_the_mock_provider() -> None:
    config = load(None)
    assert list(config.providers) == ["mock"]


def test_repository_gateway_toml_is_valid() -> None:
    config = load(Path(__file__).parent.parent / "gateway.toml")
    assert "mock" in config.providers


def test_env_key_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_KEY", "sk-1")
    monkeypatch.delenv("GW_ABSENT", raising=False)
    assert resolve_key("env.GW_KEY").value == "sk-1"
    assert resolve_key("env.GW_ABSENT").missing_env == "GW_ABSENT"
    assert resolve_key("literal-key").value == "literal-key"
    assert resolve_key(None).value is None


def test_missing_env_key_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_ABSENT", raising=False)
    config = parse('[providers.openai]\napi_key = "env.GW_ABSENT"\n', "g.toml")
    (warning,) = warn_missing_keys(config)
    assert "openai" in warning and "GW_ABSENT" in warning


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            "[providers.a]\ntype = 'openai'\nbase_url = 'http://x'\ntimeout = 0",
            "providers.a.timeout",
        ),
        ("[providers.a]\ntype = 'martian'", "providers.a.type: unknown provider type 'martian'"),
        ("[providers.a]\ntype = 'openai'\nbase_url = 'ftp://x'", "providers.a.base_url"),
        ("[providers.'a/b']\ntype = 'mock'", "no '/'"),
        ("[server]\nport = 70000", "server.port"),
        ("[server]\nkeepalive = -1", "server.keepalive"),
        ("[providers.openai]\nmodels = [1]", "providers.openai.models[0]"),
        ("providers = 3", "providers"),
        ("[state]\nin_flight_lease = 0.5", "state.in_flight_lease"),
    ],
)
def test_errors_name_file_and_key(toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(toml, "g.toml")
    message = str(caught.value)
    assert message.startswith("g.toml: ")
    assert expected in message
    assert "\n" not in message
