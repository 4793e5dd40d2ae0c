"""The one web process: FastAPI with the collector gallery at /gallery, the local IPFS store's gateway
at /ipfs and the Gradio studio at /, all on settings.app.host:settings.app.port.

Binding beyond localhost needs a login (settings.app.auth_username and auth_password): the studio
spends the wallet's funds, so it is never left open on a network. The gallery and /ipfs stay public
and read-only.

Every request's Host header must name the studio (127.0.0.1, localhost, ::1, settings.app.host or one of
settings.app.allowed_hosts), else 400: a web page whose own name was re-pointed at 127.0.0.1 (DNS
rebinding) would otherwise be same-origin with the studio and could drive its whole API.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from metadata.gateway import create_gateway
from studio.config import Settings
from studio.services.errors import StudioError
from studio.services.studio import Studio
from studio.ui import build_ui
from studio.ui.common import CSS, THEME
from studio.ui.create import exports_dir
from studio.ui.gallery_pages import create_gallery_router

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared with, never bound here

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class UnsafeBindingError(StudioError):
    """The studio was asked to listen beyond localhost without a login."""


def auth_pair(settings: Settings) -> tuple[str, str] | None:
    """The (username, password) Gradio asks for, or None when no login is configured."""
    app = settings.app
    password = app.auth_password.get_secret_value() if app.auth_password is not None else ""
    if app.auth_username and password:
        return app.auth_username, password
    return None


def check_binding(settings: Settings) -> None:
    """Refuse to listen beyond localhost without a login: anyone reaching the port could mint."""
    if settings.app.host.strip("[]") in LOCAL_HOSTS:
        return
    if auth_pair(settings) is None:
        raise UnsafeBindingError(
            f"Refusing to listen on {settings.app.host}: beyond localhost the studio needs a login. Set "
            "STUDIO_APP__AUTH_USERNAME and STUDIO_APP__AUTH_PASSWORD (the collector gallery and /ipfs stay "
            "public), or listen on 127.0.0.1 (STUDIO_APP__HOST)."
        )


def allowed_host_names(settings: Settings) -> frozenset[str]:
    """The names a request's Host header may carry (lower case, no port)."""
    names = set(LOCAL_HOSTS)
    host = settings.app.host.strip("[]").lower()
    if host not in WILDCARD_BINDS:
        names.add(host)
    names.update(name.strip().strip("[]").lower().rstrip(".") for name in settings.app.allowed_hosts if name.strip())
    return frozenset(names)


def host_name(header: str) -> str:
    """`example.org:7860`, `[::1]:7860`, `LOCALHOST.` -> the bare lower-case name (`example.org`, `::1`, ...)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class HostCheckMiddleware:
    """Answers 400 to any HTTP or websocket request whose Host is not one of the studio's names."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        if host_name(header) in self.allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        shown = header[:100].encode("ascii", "replace").decode("ascii") or "(none)"
        body = (
            f"Refused: the Host header {shown!r} is not a name of this studio (a DNS-rebinding page, or a name "
            "the operator has not allowed). To serve under another name, add it to STUDIO_APP__ALLOWED_HOSTS "
            "(a JSON list, e.g. '[\"studio.example.org\"]').\n"
        ).encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(studio: Studio) -> FastAPI:
    """The FastAPI app serving the gallery, the gateway and the Gradio studio for `studio`."""
    settings = studio.settings
    check_binding(settings)
    app = FastAPI(title="Living NFT Studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(HostCheckMiddleware, allowed=allowed_host_names(settings))
    app.include_router(create_gallery_router(studio))

    @app.get("/gallery/", include_in_schema=False)
    def gallery_slash() -> RedirectResponse:
        return RedirectResponse("/gallery", status_code=308)

    app.mount("/ipfs", create_gateway(studio.store))
    blocks = build_ui(studio)
    return gr.mount_gradio_app(
        app,
        blocks,
        path="",
        auth=auth_pair(settings),
        auth_message="Living NFT Studio: sign in with the studio's login (STUDIO_APP__AUTH_USERNAME).",
        allowed_paths=[str(exports_dir(studio).resolve())],
        show_error=False,
        ssr_mode=False,
        footer_links=["api"],
        theme=THEME,
        css=CSS,
        max_file_size="50mb",
    )
