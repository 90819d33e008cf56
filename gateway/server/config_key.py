"""The application's config, as the aiohttp app key every layer above the server reads it by.

(Each other object the app holds has its key beside its type: the dispatcher's in
`gateway.engine.dispatcher`, the router's in `gateway.policy.routing`, and so on.)"""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config

CONFIG = web.AppKey("config", Config)
