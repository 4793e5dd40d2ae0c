"""The composition root: one `Studio` holds everything a request needs.

The web app and the evolution daemon each open one Studio and pass it to the service functions. The
chain and the generation engine are opened on first use: the studio starts (and shows its gallery)
even when no model is available offline, and the chain is started only when something needs it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from metadata.pinning import Pinner, create_pinner
from metadata.store import LocalStore
from studio.config import Settings, load_settings
from studio.db import Database, open_database

if TYPE_CHECKING:
    from studio.generation import Engine
    from studio.generation.pool import GenerationPool
    from studio.services.chain import ChainSession


log = logging.getLogger(__name__)


class Studio:
    """Settings, database, IPFS store and pinner; the chain and the engine on first use."""

    def __init__(self, settings: Settings, db: Database, store: LocalStore, pinner: Pinner) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.pinner = pinner
        self._chain: ChainSession | None = None
        self._chain_lock = threading.RLock()
        self._generator: GenerationPool | None = None
        self._generator_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings | None = None) -> Studio:
        settings = settings or load_settings()
        settings.ensure_dirs()
        db = open_database(settings)
        store = LocalStore(settings.ipfs_dir, max_file_bytes=int(settings.ipfs.max_file_mb * 1024 * 1024))
        pinner = create_pinner(settings.ipfs, store)
        return cls(settings, db, store, pinner)

    @property
    def chain(self) -> ChainSession:
        """The chain session: starts the local chain and deploys the contract on first use, then
        records any mint the studio stopped before recording (see minting.reconcile_mints)."""
        with self._chain_lock:
            if self._chain is None:
                from studio.services.chain import open_chain
                from studio.services.minting import reconcile_mints

                self._chain = open_chain(self.settings, self.db)
                recorded = reconcile_mints(self)  # re-enters this property: the lock is reentrant
                if recorded:
                    log.warning("recorded tokens minted before the last stop: %s", recorded)
            return self._chain

    @property
    def chain_opened(self) -> bool:
        return self._chain is not None

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
