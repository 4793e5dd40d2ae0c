"""Living NFT Studio entry point (`make run`).

Until the web app lands, this starts the embedded services: the chain (the local anvil with the
LivingNFT contract deployed, or the configured RPC network), prints where they listen, and waits until
Ctrl-C (or SIGTERM), then stops cleanly, persisting the local chain's state.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from contracts.errors import ChainError
from studio.config import load_settings
from studio.db import open_database
from studio.services.chain import open_chain


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.ensure_dirs()
    db = open_database(settings)
    try:
        session = open_chain(settings, db)
    except ChainError as exc:
        db.dispose()
        raise SystemExit(f"error: {exc}") from None

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        where = "embedded anvil" if session.local_chain is not None else "RPC network"
        print(f"Chain ({where}): {session.rpc_url}  chain id {session.chain_id}", flush=True)
        print(f"LivingNFT contract: {session.contract_address}", flush=True)
        print(f"Signer: {session.address}", flush=True)
        print(f"Data directory: {settings.data_dir.resolve()}", flush=True)
        print("Running; press Ctrl-C to stop.", flush=True)
        stop.wait()
    finally:
        session.close()
        db.dispose()
        print("Stopped.", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
