"""The upstream HTTP clients: the lean one (`http1`), aiohttp's where it does not go, the one
`Transport` that picks between them, and the mapping of their failures to the gateway's
errors."""
