"""Typed keys for what the application holds (aiohttp's AppKey)."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config
from gateway.engine.dispatcher import Dispatcher
from gateway.engine.transport.upstream_client import UpstreamClient
from gateway.policy.keys import KeyRing
from gateway.policy.routing import Router
from gateway.policy.shared_state import SharedState

CONFIG = web.AppKey("config", Config)
ROUTER = web.AppKey("router", Router)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
HTTP = web.AppKey("http", UpstreamClient)
KEYS = web.AppKey("keys", KeyRing)
STATE = web.AppKey("state", SharedState)
