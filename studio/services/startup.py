"""The studio's start-up, after `Studio.open`: the steps the web app and every command that sends run,
in this order, each visible in the log.

    studio = Studio.open(settings)
    report = start_studio(studio)

1. `studio.start_chain()`: start or attach the chain; deploy the contract on the first start.
2. `reconcile_mints(studio)`: record the mints an earlier stop confirmed but did not record (and drop
   the intents that certainly minted nothing).
3. `ensure_trust_anchor(studio)`: the collection metadata names the CA that signs its images' Content
   Credentials (a failure is logged and retried at the next start, never a reason not to start).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from studio.services.chain import ChainSession
from studio.services.minting import reconcile_mints
from studio.services.studio import Studio
from studio.services.trust_anchor import ensure_trust_anchor

log = logging.getLogger("studio")


@dataclass(frozen=True)
class StartupReport:
    """What start-up did: the chain session, and the token ids of mints it recorded."""

    chain: ChainSession
    recorded_mints: list[int]


def start_studio(studio: Studio) -> StartupReport:
    """Run the start-up steps above. Raises ChainError when the chain cannot start (the caller exits)."""
    chain = studio.start_chain()
    recorded = reconcile_mints(studio)
    if recorded:
        log.warning("recorded tokens minted before the last stop: %s", recorded)
    ensure_trust_anchor(studio)
    return StartupReport(chain=chain, recorded_mints=list(recorded))
