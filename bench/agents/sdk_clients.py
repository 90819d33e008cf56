"""Python SDKs' own tool loops through the gateway's Gemini route, as a harness row each.

`python -m bench.agents.sdk_clients genai|litellm BASE_URL PROMPT` prints the final answer.
The tool is a real shell (`run_shell_command(command)`, Gemini CLI's name for it), so "42" in
the answer means the call came back through the gateway, ran, and its output went back up.

- genai: google-genai's automatic function calling (a Python function as the tool: the SDK
  declares it from its signature, calls it, and sends the functionResponse itself);
- litellm: `litellm.completion(model="gemini/...")` with `api_base` at the gateway and an
  OpenAI-style function tool; the loop (call, run, answer) is the caller's, as with litellm.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson

MODEL = "gemini-2.5-flash"  # a bare name: the gateway's default_provider places it
SHELL_TOOL = {
    "type": "function",
    "function": {
        "name": "run_shell_command",
        "description": "Runs a shell command and returns what it printed.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command."}},
            "required": ["command"],
        },
    },
}


def run_shell_command(command: str) -> str:
    """Runs a shell command and returns what it printed.

    Args:
        command: The command.
    """
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=10)
    return done.stdout + done.stderr


def genai_answer(base_url: str, prompt: str) -> str:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="anything", http_options=types.HttpOptions(base_url=base_url))
    config = types.GenerateContentConfig(tools=[run_shell_command])
    answer = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    return answer.text or ""


def litellm_answer(base_url: str, prompt: str) -> str:
    import litellm

    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    options = {
        "model": f"gemini/{MODEL}",
        "api_base": f"{base_url}/v1beta",
        "api_key": "anything",
        "tools": [SHELL_TOOL],
        "num_retries": 0,
    }
    for _ in range(4):  # a few turns at most
        message = litellm.completion(messages=messages, **options).choices[0].message
        calls = message.tool_calls or []
        if not calls:
            return str(message.content or "")
        messages.append(message.model_dump(exclude_none=True))
        for call in calls:
            arguments = orjson.loads(call.function.arguments or "{}")
            output = run_shell_command(**arguments)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
    return "the model kept calling tools"


def main() -> None:
    kind, base_url, prompt = sys.argv[1:4]
    answer = {"genai": genai_answer, "litellm": litellm_answer}[kind](base_url, prompt)
    print(answer)


if __name__ == "__main__":
    main()
