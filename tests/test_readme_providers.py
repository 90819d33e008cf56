"""README.md's provider and preset tables are the declarations', word for word.

On a mismatch the assertion shows the table to paste: `python -m tests.test_readme_providers`
prints both.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from providers import known_presets, provider_types
from providers.declaration import HttpProviderConfig, ProviderType
from wire.operations import Operation

README = Path(__file__).parent.parent / "README.md"
_SHARED = {field.name for field in msgspec.structs.fields(HttpProviderConfig)} | {"type"}


def _tick(served: bool, mark: str = "✓") -> str:
    return mark if served else ""


def _defaults(declared: ProviderType) -> str:
    parts = []
    if declared.base_url is not None:
        parts.append(f"`{declared.base_url}`")
    elif declared.base_url_required:
        parts.append(f"`base_url` required (`{declared.base_url_example}`)")
    if declared.api_key is not None:
        parts.append(f"`{declared.api_key}`")
    for field in msgspec.structs.fields(declared.config):
        if field.name not in _SHARED and field.default not in (None, msgspec.NODEFAULT):
            parts.append(f"`{field.name} = {msgspec.json.encode(field.default).decode()}`")
    if declared.notes:
        parts.append(declared.notes)
    return ", ".join(parts)


def provider_table() -> str:
    lines = [
        "| `type` | upstream API | chat | completions | responses | embeddings | speech "
        "| transcriptions, translations | defaults |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for declared in provider_types().values():
        served = declared.operations
        chat = Operation.CHAT in served
        responses = "✓ (native)" if Operation.RESPONSES in served else _tick(chat)
        cells = [
            f"`{declared.name}`",
            declared.upstream,
            _tick(chat),
            _tick(Operation.COMPLETIONS in served),
            responses,
            _tick(Operation.EMBEDDINGS in served),
            _tick(Operation.SPEECH in served),
            _tick(Operation.TRANSCRIPTION in served),
            _defaults(declared),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def preset_table() -> str:
    lines = ["| table | base URL | key | `/v1/responses` |", "| --- | --- | --- | --- |"]
    for preset in known_presets().values():
        key = f"`{preset.api_key}`" if preset.api_key else "none"
        lines.append(f"| `{preset.name}` | `{preset.base_url}` | {key} | {preset.responses} |")
    return "\n".join(lines) + "\n"


def test_the_readme_lists_every_provider_type_as_declared() -> None:
    assert provider_table() in README.read_text(encoding="utf-8"), provider_table()


def test_the_readme_lists_every_preset_as_declared() -> None:
    assert preset_table() in README.read_text(encoding="utf-8"), preset_table()


if __name__ == "__main__":
    print(provider_table())
    print(preset_table())
