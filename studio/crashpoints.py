"""Crash points: `STUDIO_CRASH_AT=<name>` makes the process SIGKILL itself when it reaches the point of
that name, as a power cut would. The crash-safety tests use them to stop a real process between two
side effects; in normal runs the variable is unset and a crash point does nothing."""

from __future__ import annotations

import logging
import os
import signal

CRASH_ENV = "STUDIO_CRASH_AT"

log = logging.getLogger(__name__)


def crash_point(name: str) -> None:
    """Die here when the environment names this point (names are `<area>:<point>`, e.g.
    `mint:after_confirmation`, `evolve:after_pin`)."""
    if os.environ.get(CRASH_ENV) == name:
        log.warning("crash point reached: killing the process", extra={"event": "crash", "point": name})
        os.kill(os.getpid(), signal.SIGKILL)
