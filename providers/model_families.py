"""What a model's name says about what it takes, for the translations that must choose.

Anthropic's and Bedrock's APIs differ by model in two places the gateway translates into:
structured outputs (`output_config.format`, Converse's `outputConfig.textFormat`: Claude 4.5
and later, and Bedrock's open-weight models) and thinking (`thinking.budget_tokens` before
Claude 4.6, adaptive thinking with an effort from 4.6 on, and each Bedrock family's own field).
The name is all the gateway knows of a model, so these read it: `claude-opus-4-5`,
`claude-sonnet-4-20250514`, `claude-3-7-sonnet-...`, Bedrock's `us.anthropic.claude-...-v1:0`
and `amazon.nova-2-lite-v1:0`.
"""

from __future__ import annotations

import re

# `claude-`, a family word or more (`opus-`), the major version, and a one-digit minor one
# (`-5`, `.1`) unless the digits after the major are a date (`-20250514`).
_CLAUDE_VERSION = re.compile(r"claude-(?:[a-z]+-)*?(\d+)(?:[-.](\d)(?!\d))?")


def is_claude(model: str) -> bool:
    return "claude" in model.lower()


def claude_version(model: str) -> tuple[int, int] | None:
    """(major, minor) of a Claude model's name; None for another model, or a Claude name
    without a version (taken as an old one by the callers)."""
    found = _CLAUDE_VERSION.search(model.lower())
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or 0)


def claude_at_least(model: str, version: tuple[int, int]) -> bool:
    found = claude_version(model)
    return found is not None and found >= version


# Claude's structured outputs (output_config.format): Claude Opus 4.5, Sonnet 4.5, Haiku 4.5
# and every later model (platform.claude.com/docs/en/build-with-claude/structured-outputs).
STRUCTURED_OUTPUTS = (4, 5)
# Adaptive thinking with output_config.effort: Claude Opus 4.6 and Sonnet 4.6 onwards; later
# models refuse `thinking.type: enabled` with a budget.
ADAPTIVE_THINKING = (4, 6)


def bedrock_family(model: str) -> str:
    """The family of a Bedrock model id (`us.anthropic.claude-...`, `amazon.nova-2-lite-v1:0`,
    `openai.gpt-oss-120b-1:0`): "claude", "nova-2", "nova", "gpt-oss", "openai", "moonshot",
    or "" for one the gateway maps nothing for."""
    name = model.lower()
    if is_claude(name):
        return "claude"
    if "nova-2" in name:
        return "nova-2"
    for family in ("nova", "gpt-oss", "moonshot", "kimi"):
        if family in name:
            return "moonshot" if family == "kimi" else family
    if "openai." in name or name.startswith("gpt-"):
        return "openai"
    return ""
