"""The clients the harness runs, each with its default settings, offline, with a fake key.

A client is run as a subprocess in a throwaway HOME (CODEX_HOME) and working directory, with
an environment holding only what it needs, so that nothing of the user's own setup (keys,
settings, sessions) leaks in or out. README "Coding agents" says how each one is pointed at
the gateway; the permission prompts are bypassed as each CLI allows (Claude Code refuses
`--dangerously-skip-permissions` as root, so `--allowedTools=Bash`; Codex
`--dangerously-bypass-approvals-and-sandbox`; Gemini CLI `--yolo`).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import orjson

# The model Codex is given when it runs with "a model it has no metadata for" (any name a
# custom provider serves): it then sends plain function tools, a namespace and web_search.
CODEX_UNKNOWN_MODEL = "gpt-5-codex"


@dataclass
class Invocation:
    argv: list[str]
    env: dict[str, str]
    answer_file: Path | None = None  # where the client writes its final answer, if not stdout


@dataclass
class Client:
    name: str
    program: str  # the executable (or python module) the client runs as
    formats: str  # the wire format it speaks: messages, responses or gemini
    version_argv: list[str] = field(default_factory=list)
    package: str = ""  # a Python package whose version is the client's

    def installed(self) -> bool:
        if self.package:
            return package_version(self.package) is not None
        return shutil.which(self.program) is not None

    def invocation(self, base_url: str, home: Path, work: Path, prompt: str) -> Invocation:
        raise NotImplementedError

    def label(self, version: str) -> str:
        return f"{self.name} {version}".strip()


def base_env(home: Path) -> dict[str, str]:
    """PATH and a throwaway HOME; nothing else of the caller's environment (its keys)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
    }


class ClaudeCode(Client):
    def invocation(self, base_url: str, home: Path, work: Path, prompt: str) -> Invocation:
        env = base_env(home) | {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "sk-ant-anything",
        }
        return Invocation([self.program, "-p", prompt, "--allowedTools=Bash"], env)


class Codex(Client):
    def __init__(self, name: str, model: str | None) -> None:
        super().__init__(name, "codex", "responses", ["codex", "--version"])
        self.model = model  # None: Codex's own default model (no `model` in config.toml)

    def invocation(self, base_url: str, home: Path, work: Path, prompt: str) -> Invocation:
        model = f'model = "{self.model}"\n' if self.model else ""
        (home / "config.toml").write_text(
            f'{model}model_provider = "gw"\n'
            "[model_providers.gw]\n"
            'name = "gateway"\n'
            f'base_url = "{base_url}/v1"\n'
            'env_key = "GW_KEY"\n'
            'wire_api = "responses"\n'
        )
        env = base_env(home) | {"CODEX_HOME": str(home), "GW_KEY": "anything"}
        answer = home / "answer.txt"
        argv = [
            self.program,
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "--output-last-message",
            str(answer),
            prompt,
        ]
        return Invocation(argv, env, answer)


class GeminiCli(Client):
    def invocation(self, base_url: str, home: Path, work: Path, prompt: str) -> Invocation:
        settings = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
        (home / ".gemini").mkdir()
        (home / ".gemini" / "settings.json").write_bytes(orjson.dumps(settings))
        env = base_env(home) | {
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            "GOOGLE_GEMINI_BASE_URL": base_url,
            "GEMINI_API_KEY": "anything",
        }
        return Invocation([self.program, "--yolo", "-p", prompt], env)


class PythonClient(Client):
    """A Python SDK's own tool loop, run by bench/agents/sdk_clients.py in a subprocess."""

    def invocation(self, base_url: str, home: Path, work: Path, prompt: str) -> Invocation:
        argv = [sys.executable, "-m", "bench.agents.sdk_clients", self.program, base_url, prompt]
        env = base_env(home) | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        return Invocation(argv, env)


CLIENTS = [
    ClaudeCode("claude-code", "claude", "messages", ["claude", "--version"]),
    Codex("codex", CODEX_UNKNOWN_MODEL),
    Codex("codex-default-model", None),
    GeminiCli("gemini-cli", "gemini", "gemini", ["gemini", "--version"]),
    PythonClient("google-genai-afc", "genai", "gemini", package="google-genai"),
    PythonClient("litellm-gemini", "litellm", "gemini", package="litellm"),
]


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
