"""What the gateway and the providers both speak, below both of them.

`gateway/` (the server: routes, routing, dispatch, relay, the upstream client) and `providers/`
(the translations) import from here; nothing here imports either. The layers:

    gateway  ->  providers  ->  wire

- `operations`: the operations a request asks for, and a request body decoded one level deep;
- `errors`: every client-visible error (`GatewayError` and its kinds), with status and JSON;
- `sse`: the sans-IO Server-Sent Events codec;
- `upstream`: an upstream request, its answer (`Upstream`), what sends it (`Transport`), and a
  multipart upload being streamed (`Upload`);
- `config`: `env.NAME` secrets and the configuration error;
- `jsondepth`, `redact`: JSON nesting bounds, secrets kept out of messages;
- `tokens`: token counts estimated offline, where no provider counted them.
"""
