"""OpenAI's Responses API: passed through to an upstream that has it, and for any other
translated to chat and back (its tools too)."""
