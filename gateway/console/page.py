"""GET /console and its assets: one static page, its script, its style sheet and its icon,
read from the package once at start and served from memory. No build step, nothing from
another origin.

The page holds no data and needs no key: it asks for the admin key, keeps it in the tab's
session storage, and sends it in a header to the JSON routes. Its Content-Security-Policy
allows scripts, styles and connections to this origin only, no inline script or style, no
plugin, no frame around it: a value the page shows (model names are the clients' words) can
never run as code, and it writes every value as text besides (never as HTML).
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Handler

PAGE = "/console"
ASSETS = {  # path -> (file in static/, its Content-Type)
    "/console/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console/console.css": ("console.css", "text/css; charset=utf-8"),
    "/console/icon.svg": ("icon.svg", "image/svg+xml"),
}
PATHS = frozenset({PAGE, *ASSETS})

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated: a new gateway's page is seen at once
}


def _read(name: str) -> bytes:
    return resources.files("gateway.console").joinpath("static", name).read_bytes()


def add_routes(app: web.Application) -> None:
    files = {PAGE: (_read("index.html"), "text/html; charset=utf-8")}
    files.update((path, (_read(name), kind)) for path, (name, kind) in ASSETS.items())
    for path, (body, kind) in files.items():
        app.router.add_get(path, _static(body, kind))


def _static(body: bytes, content_type: str) -> Handler:
    headers = {**HEADERS, "Content-Type": content_type}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    return serve
