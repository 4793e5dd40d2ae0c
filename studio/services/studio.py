"""The composition root: one `Studio` holds everything a request needs.

The web app and the CLIs each open one Studio and pass it to the service functions. Start-up is
explicit and in two steps, so that reading an attribute never starts anything:

    studio = Studio.open(settings)   # settings, database, IPFS store, pinner: no chain I/O
    start_studio(studio)             # (studio.services.startup) start the chain, deploy if needed,
                                     # record mints an earlier stop left open, publish the signing CA

`python -m evolve status` and the gallery of another network need only the first step. The generation
engine is still loaded on first use (its weights are read on its first generation), so the studio
starts, and shows its gallery, even when no model is available offline.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from metadata.pinning import Pinner, create_pinner
from metadata.store import LocalStore
from studio.config import Settings, load_settings
from studio.db import Database, open_database
from studio.services.chain import ChainSession, CollectionIdentity, open_chain
from studio.services.errors import StudioError
from studio.services.options import pinner_options, store_options

if TYPE_CHECKING:
    from studio.generation import Engine
    from studio.generation.pool import GenerationPool


class ChainNotStartedError(StudioError):
    """The chain was used before the studio's start-up step started it."""

    def __init__(self) -> None:
        super().__init__(
            "the studio's chain is not started: call studio.start_chain() after Studio.open() (app.py and the "
            "evolve CLI do this at start-up), then reconcile_mints(studio)."
        )


class Studio:
    """Settings, database, IPFS store and pinner; the chain session once `start_chain()` ran."""

    def __init__(self, settings: Settings, db: Database, store: LocalStore, pinner: Pinner) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.pinner = pinner
        self._chain: ChainSession | None = None
        self._chain_lock = threading.Lock()
        self._generator: GenerationPool | None = None
        self._generator_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings | None = None) -> Studio:
        """Settings, the migrated database, the IPFS store and the pinner. Touches no chain."""
        settings = settings or load_settings()
        settings.ensure_dirs()
        db = open_database(settings)
        store = LocalStore.from_options(store_options(settings))
        pinner = create_pinner(pinner_options(settings.ipfs), store)
        return cls(settings, db, store, pinner)

    def start_chain(self) -> ChainSession:
        """Start the embedded chain (or connect to the RPC network), check its chain id, and deploy or
        find the studio's contract. Idempotent: a started chain is returned as it is. Mints an earlier
        stop left unrecorded are recorded by the next start-up step, minting.reconcile_mints."""
        with self._chain_lock:
            if self._chain is None:
                self._chain = open_chain(self.settings, self.db)
            return self._chain

    @property
    def chain(self) -> ChainSession:
        """The started chain session; raises ChainNotStartedError before `start_chain()`."""
        chain = self._chain
        if chain is None:
            raise ChainNotStartedError()
        return chain

    @property
    def chain_started(self) -> bool:
        return self._chain is not None

    @property
    def identity(self) -> CollectionIdentity:
        """The collection's chain id and contract address, as resolved when the chain started."""
        return self.chain.identity

    @property
    def engine(self) -> Engine:
        """The process's one generation engine (weights are loaded on its first generation)."""
        from studio.generation import get_engine

        return get_engine(self.settings.model)

    @property
    def generator(self) -> GenerationPool:
        """Where images are made: the engine above, or engines on a Ray cluster (settings.scale)."""
        with self._generator_lock:
            if self._generator is None:
                from studio.generation.pool import open_pool

                self._generator = open_pool(self.settings.model, self.settings.scale)
            return self._generator

    def close(self) -> None:
        with self._generator_lock:
            if self._generator is not None:
                self._generator.close()
                self._generator = None
        with self._chain_lock:
            if self._chain is not None:
                self._chain.close()
                self._chain = None
        self.db.dispose()

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
