"""The one web process: FastAPI with the collector gallery at /gallery, the local IPFS store's gateway
at /ipfs and the Gradio studio at /, all on settings.app.host:settings.app.port.

Binding beyond localhost needs a login (settings.app.auth_username and auth_password): the studio
spends the wallet's funds, so it is never left open on a network. The gallery and /ipfs stay public
and read-only.
"""

from __future__ import annotations

import os

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


def create_app(studio: Studio) -> FastAPI:
    """The FastAPI app serving the gallery, the gateway and the Gradio studio for `studio`."""
    settings = studio.settings
    check_binding(settings)
    app = FastAPI(title="Living NFT Studio", docs_url=None, redoc_url=None, openapi_url=None)
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
