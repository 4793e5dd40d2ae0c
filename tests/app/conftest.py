"""Fixtures of the app tests: the real web app (FastAPI + Gradio + gallery + /ipfs) served by uvicorn
on 127.0.0.1, over the `studio` fixture (session anvil as an RPC network, tiny model, local IPFS).

- `app_studio`: a Studio whose public gateway is a closed local port, so nothing can leave 127.0.0.1.
- `app_server`: that studio's app on a free port; `.url` ends without a slash.
- `weather_api`: a JSON temperature API on 127.0.0.1 the test sets (`weather_api.value = -5`).
- `write_rules(name, text)`: a rules file in the studio's rules folder.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.evolve.conftest import ValueServer, weather_rules

CLOSED_GATEWAY = "http://127.0.0.1:9"


@dataclass
class RunningApp:
    url: str
    studio: object
    server: object


def serve(app: object, *, host: str = "127.0.0.1") -> tuple[object, threading.Thread, int]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the app's server thread died while starting"
        assert time.monotonic() < deadline, "the app did not start within 60 s"
        time.sleep(0.05)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


@pytest.fixture
def app_settings(studio_settings):
    ipfs = studio_settings.ipfs.model_copy(update={"public_gateway": CLOSED_GATEWAY})
    # Feeds may reach the test weather API on 127.0.0.1.
    evolve = studio_settings.evolve.model_copy(update={"enabled": False, "allow_private_feeds": True})
    return studio_settings.model_copy(update={"ipfs": ipfs, "evolve": evolve})


@pytest.fixture
def app_studio(app_settings) -> Iterator:
    from studio.services.studio import Studio

    instance = Studio.open(app_settings)
    instance.start_chain()
    yield instance
    instance.close()


@pytest.fixture
def app_server(app_studio) -> Iterator[RunningApp]:
    from studio.ui.server import create_app

    server, thread, port = serve(create_app(app_studio))
    yield RunningApp(url=f"http://127.0.0.1:{port}", studio=app_studio, server=server)
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def weather_api() -> Iterator[ValueServer]:
    server = ValueServer()
    yield server
    server.close()


@pytest.fixture
def write_rules(app_studio) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        folder = app_studio.settings.rules_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def weather_rules_text(weather_api) -> str:
    return weather_rules(weather_api.url)


def chromium_path() -> str:
    """Debian's chromium (or STUDIO_CHROMIUM); the browser tests fail, not skip, without it."""
    import os

    found = os.environ.get("STUDIO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "Chromium is needed for the browser tests and was not found: run `make browser` (installs Debian's "
            "chromium with apt-get) or set STUDIO_CHROMIUM=/path/to/chromium."
        )
    return found
