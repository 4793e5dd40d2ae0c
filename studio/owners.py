"""Which process owns a database row (a running cycle, a mint in flight, the scheduler's lease), and
whether that process still lives.

An owner is written as `host:pid:start`, `start` being the process's start time in clock ticks since
boot (/proc/<pid>/stat, field 22). A pid alone is not enough: once a process is gone the kernel hands
its pid to the next process, and a recycled pid would keep a dead owner "alive" for ever. Where /proc
is missing (not Linux) the start is left out and the pid alone answers. On another host only the
row's heartbeat can answer: older than `stale_after`, the owner is taken for dead.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of process `pid`, or None when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after its end.
    fields = text[text.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot), or None when unknown or gone."""
    stat = _stat(pid)
    return stat[1] if stat else None


def process_owner() -> str:
    """This process as an owner: `host:pid:start` (`host:pid` where /proc is missing)."""
    pid = os.getpid()
    start = process_start(pid)
    return f"{socket.gethostname()}:{pid}" + (f":{start}" if start else "")


def split_owner(owner: str) -> tuple[str, int | None, str | None]:
    """(host, pid, start) of an owner string; pid None when it has none (an unknown format)."""
    parts = owner.split(":")
    if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
        return ":".join(parts[:-2]), int(parts[-2]), parts[-1]
    if len(parts) >= 2 and parts[-1].isdigit():
        return ":".join(parts[:-1]), int(parts[-1]), None
    return owner, None, None


def owner_alive(owner: str, heartbeat_at: datetime | None, stale_after: timedelta) -> bool:
    """Whether the process that wrote `owner` still lives. On this host its pid and start time answer
    at once; elsewhere, a heartbeat older than `stale_after` means dead."""
    host, pid, start = split_owner(owner)
    if host == socket.gethostname() and pid is not None:
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, but another user's: its start time still tells a recycled pid
        stat = _stat(pid)
        if stat is None:
            return True  # no /proc here: the pid answered
        state, now_start = stat
        # A zombie (killed, not yet reaped by its parent) runs nothing any more.
        return state != "Z" and (start is None or now_start == start)
    if heartbeat_at is None:
        return False
    beat = heartbeat_at if heartbeat_at.tzinfo else heartbeat_at.replace(tzinfo=UTC)
    return datetime.now(UTC) - beat < stale_after
