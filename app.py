"""Living NFT Studio entry point (`make run`).

One process serves, on settings.app.host:settings.app.port (default http://127.0.0.1:7860): the Gradio
studio at /, the collector gallery at /gallery and the local IPFS store's gateway at /ipfs. The chain
(the embedded anvil with the LivingNFT contract, or the configured RPC network) is started first and
the evolution scheduler beside the web server unless STUDIO_EVOLVE__ENABLED=false. Ctrl-C (or
SIGTERM) stops everything cleanly, persisting the local chain's state.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import uvicorn
from pydantic import ValidationError

from contracts.errors import ChainError
from contracts.urls import redact_url
from studio.config import check_content_reachable, load_settings
from studio.services.errors import StudioError
from studio.services.startup import start_studio
from studio.services.studio import Studio
from studio.ui.server import check_binding, create_app

STARTUP_TIMEOUT_S = 120.0


def _start_scheduler(studio: Studio, stop: threading.Event) -> threading.Thread:
    from evolve.scheduler import run_daemon

    thread = threading.Thread(target=run_daemon, args=(studio,), kwargs={"stop": stop}, name="evolve-scheduler")
    thread.start()
    return thread


def main() -> None:
    try:
        settings = load_settings()
    except ValidationError as exc:  # each message names the setting and the fix
        raise SystemExit(f"error: settings refused: {exc}") from None
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_binding(settings)  # before anything starts
        check_content_reachable(settings)
    except StudioError as exc:
        raise SystemExit(f"error: {exc}") from None
    studio = Studio.open(settings)  # database, IPFS store, pinner
    try:
        # The chain (embedded anvil or the RPC network, deployed on first start), the mints an earlier
        # stop left unrecorded, the Content Credentials CA in the collection metadata.
        chain = start_studio(studio).chain
    except ChainError as exc:
        studio.close()
        raise SystemExit(f"error: {exc}") from None

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    scheduler_stop = threading.Event()
    scheduler: threading.Thread | None = None
    server: uvicorn.Server | None = None
    server_thread: threading.Thread | None = None
    try:
        where = "embedded anvil" if chain.local_chain is not None else "RPC network"
        print(f"Chain ({where}): {redact_url(chain.rpc_url)}  chain id {chain.chain_id}", flush=True)
        print(f"LivingNFT contract: {chain.contract_address}", flush=True)
        print(f"Signer: {chain.address}", flush=True)
        print(f"Data directory: {settings.data_dir.resolve()}", flush=True)

        app = create_app(studio)
        config = uvicorn.Config(
            app, host=settings.app.host, port=settings.app.port, log_level="warning", timeout_graceful_shutdown=10
        )
        server = uvicorn.Server(config)
        server_thread = threading.Thread(target=server.run, name="web", daemon=True)
        server_thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not server_thread.is_alive() or time.monotonic() > deadline or stop.is_set():
                raise SystemExit(
                    f"error: the web server could not listen on {settings.app.host}:{settings.app.port} "
                    "(port in use? set STUDIO_APP__PORT)"
                )
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        host = settings.app.host if ":" not in settings.app.host else f"[{settings.app.host}]"
        print(f"Studio: http://{host}:{port}/", flush=True)
        print(f"Collector gallery: http://{host}:{port}/gallery", flush=True)
        if settings.evolve.enabled:
            scheduler = _start_scheduler(studio, scheduler_stop)
            print(f"Evolution scheduler: rules in {settings.rules_dir.resolve()}", flush=True)
        else:
            print("Evolution scheduler: off (STUDIO_EVOLVE__ENABLED=false)", flush=True)
        print("Running; press Ctrl-C to stop.", flush=True)
        stop.wait()
    finally:
        if server is not None:
            server.should_exit = True
        if server_thread is not None:
            server_thread.join(timeout=30)
        scheduler_stop.set()
        if scheduler is not None:
            scheduler.join(timeout=120)
        studio.close()
        print("Stopped.", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
