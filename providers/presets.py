"""OpenAI-compatible hosts known by name: `[providers.groq]` with nothing else works.

Each preset gives a table of type "openai" named after it its host's base URL, its key variable
and how the host serves /v1/responses (its public docs, 2026): "native" has a Responses API of
its own; "bridge" has none (the gateway answers through its chat API); "auto" may or may not (a
local server's version decides): tried natively, and on a 404/405 answered through chat, which
is then remembered. Together's and Perplexity's Responses APIs serve only some of their models
(Perplexity's is its Agent API), so chat is the safe way there.
"""

from __future__ import annotations

from providers.declaration import Preset

PRESETS = (
    Preset("openai", "https://api.openai.com/v1", "env.OPENAI_API_KEY", "native"),
    Preset("groq", "https://api.groq.com/openai/v1", "env.GROQ_API_KEY", "native"),
    Preset("mistral", "https://api.mistral.ai/v1", "env.MISTRAL_API_KEY", "bridge"),
    Preset("deepseek", "https://api.deepseek.com/v1", "env.DEEPSEEK_API_KEY", "bridge"),
    Preset("openrouter", "https://openrouter.ai/api/v1", "env.OPENROUTER_API_KEY", "native"),
    Preset("together", "https://api.together.xyz/v1", "env.TOGETHER_API_KEY", "bridge"),
    Preset("fireworks", "https://api.fireworks.ai/inference/v1", "env.FIREWORKS_API_KEY", "native"),
    Preset("xai", "https://api.x.ai/v1", "env.XAI_API_KEY", "native"),
    Preset("perplexity", "https://api.perplexity.ai", "env.PERPLEXITY_API_KEY", "bridge"),
    Preset("cerebras", "https://api.cerebras.ai/v1", "env.CEREBRAS_API_KEY", "bridge"),
    # Hugging Face's router to its inference providers; HF_TOKEN is the name its docs use.
    Preset("huggingface", "https://router.huggingface.co/v1", "env.HF_TOKEN"),
    # Local servers: no key unless one is configured.
    Preset("vllm", "http://127.0.0.1:8000/v1", None),
    Preset("lmstudio", "http://127.0.0.1:1234/v1", None),
    # llama-server's own default port is 8080, the gateway's too: run it with --port 8081.
    Preset("llamacpp", "http://127.0.0.1:8081/v1", None),
)
