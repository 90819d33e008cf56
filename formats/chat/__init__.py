"""OpenAI's chat (and text completions) format: the one every translation passes through."""
