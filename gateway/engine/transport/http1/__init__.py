"""The lean upstream client: HTTP/1.1 over an asyncio protocol and httptools (llhttp).

The hot path's own client, as the design allows ("hand-write the relay hot path"): a
keep-alive pool per upstream origin, TLS through the loop, chunked and Content-Length bodies,
gzip and deflate answers, streamed uploads, flow control both ways.
`gateway.engine.transport.upstream_client.UpstreamClient` is the `Transport` the gateway
installs: it sends through this client, or through aiohttp's
(`gateway.engine.transport.aiohttp_client`) where this one does not go (a proxy from the
environment, a URL with credentials, a scheme other than http and https, HEAD).
"""
