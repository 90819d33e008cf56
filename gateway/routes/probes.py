"""GET /health (liveness) and GET /ready (readiness), for load balancers and Kubernetes; GET /.

/health says the process is alive and names it (its pid: which worker answered). /ready says
whether it takes requests: 503 before it serves and while it drains (see gateway.server.drain).
`/` (GET and HEAD) says what answers there, for a person or a client checking the base URL
(Claude Code sends `HEAD /` before its first request): a fixed text, nothing of the config.
"""

from __future__ import annotations

import os

import orjson
from aiohttp import web

from gateway.policy.keys import KEYS
from gateway.policy.shared_state import STATE
from gateway.server.config_key import CONFIG
from gateway.server.credentials import presented_keys
from gateway.server.drain import DRAIN

ROOT = orjson.dumps(
    {
        "service": "gateway",
        "about": "An OpenAI-compatible LLM gateway: /v1/chat/completions, /v1/responses, "
        "/v1/messages (Anthropic), /v1beta/models/{model}:generateContent (Gemini).",
        "health": "/health",
    }
)


async def root(request: web.Request) -> web.Response:
    return web.Response(body=ROOT, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    """Liveness: 200 to anyone. The detail (providers, gateway key names) only to the admin
    key: a prober needs none of it, and a stranger should learn none of it."""
    body: dict[str, object] = {"status": "ok", "pid": os.getpid()}
    ring = request.app[KEYS]
    if any(ring.is_admin(value) for value in presented_keys(request)):
        body["providers"] = sorted(request.app[CONFIG].providers)
        body["keys"] = sorted(ring.keys)
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    drain = request.app[DRAIN]
    serving = drain.ready and not drain.draining
    status = "ready" if serving else "draining" if drain.draining else "starting"
    body: dict[str, object] = {"status": status, "pid": os.getpid()}
    state = request.app[STATE]
    if serving and state.fails_closed:
        # Every request would be a 503 without Redis: a load balancer should look elsewhere.
        problem = await state.unreachable()
        if problem is not None:
            serving = False
            body = {"status": "redis_unavailable", "reason": problem, "pid": os.getpid()}
    return web.Response(
        body=orjson.dumps(body), status=200 if serving else 503, content_type="application/json"
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # and HEAD /, as aiohttp adds it
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
