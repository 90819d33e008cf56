"""The API formats the gateway speaks, sans-IO (no server, no sockets, no asyncio).

One package per format: `chat` (OpenAI chat and text completions, the format every translation
passes through), `responses` (OpenAI's Responses API), `anthropic` (Messages), `gemini`
(generateContent). Each names its parts the same way: `request.py` (the client's request, and
as chat), `from_chat.py` (chat deltas and answers in this format), `to_chat.py` (this format's
answers as chat deltas), `error_shape.py` (its error body and event), `probe.py` (its first
content, and what may go before it). Beside them, what they share: `translator.py` (the stream
translator contracts and base) and `first_content.py` (the probes' type, and the shared ones).
"""
