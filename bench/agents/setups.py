"""The provider setups a client is run through: the gateway in front of each kind of upstream,
and `direct` (no gateway: the client talks to the fake in its own format), which shows that the
harness and the fake work, so that a failure elsewhere is the gateway's.

Each setup's gateway has one provider and `[server] default_provider` naming it, so that the
bare model names the clients send with their default settings (`claude-opus-4-8`, Codex's
own default, a Gemini model in the URL) reach it, as a user would configure it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setup:
    name: str
    provider_type: str | None  # None: no gateway
    chat_only: bool = False  # the fake answers 404 to /responses (a chat-only server)
    clients: tuple[str, ...] = ()  # only these clients (by format); empty: every client
    settings: str = ""  # extra lines for the provider's table

    def gateway_toml(self, fake_url: str) -> str:
        assert self.provider_type is not None
        lines = [
            "[server]",
            f'default_provider = "{self.name}"',
            "",
            f"[providers.{self.name}]",
            f'type = "{self.provider_type}"',
        ]
        if self.provider_type == "mock":
            lines.append("delay = 0")
        else:
            path = "/v1beta" if self.provider_type == "gemini" else "/v1"
            lines += [
                f'base_url = "{fake_url}{path}"',
                'api_key = "fake-upstream-key"',
                "timeout = 60",
            ]
        return "\n".join([*lines, self.settings]).strip() + "\n"

    def serves(self, client_format: str) -> bool:
        return not self.clients or client_format in self.clients


SETUPS = [
    Setup("direct", None),
    Setup("mock", "mock"),
    # An OpenAI-compatible server with chat only (vLLM, llama.cpp, ...): `responses = "auto"`,
    # the default for a table named after no preset, finds its 404 and takes the Responses
    # bridge, so Codex's requests are translated.
    Setup("openai-compat", "openai", chat_only=True),
    # OpenAI itself (the preset's `responses = "native"`): Codex's requests pass through.
    Setup("openai", "openai", clients=("responses",)),
    Setup("anthropic", "anthropic"),
    Setup("gemini", "gemini"),
]
