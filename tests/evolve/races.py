"""Two processes starting a cycle of one collection at the same moment, played by two threads with
their own engines (own connections, as two processes have) on one database.

Each engine holds its INSERT of the new cycle until both threads have looked for a running cycle
and found none: the interleaving that a slow disk, a held SQLite write lock or a busy PostgreSQL
server produces by chance, made certain. (A SQLAlchemy event on the test's own engines: the studio's
code runs unchanged.)
"""

from __future__ import annotations

import threading

from sqlalchemy import event

from evolve.errors import CycleBusy
from evolve.journal import Journal
from studio.db import Database, create_db_engine


def begin_two_cycles_at_once(url: str, collection: str = "weather") -> list[object]:
    """Start a cycle of `collection` from two engines at once; returns each one's outcome (the
    (cycle id, taken over) pair or the exception)."""
    both_checked = threading.Barrier(2, timeout=20)
    databases = [Database(create_db_engine(url)) for _ in range(2)]
    for database in databases:

        @event.listens_for(database.engine, "before_cursor_execute")
        def _hold_insert(_conn, _cursor, statement, _params, _context, _many) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO EVOLVE_CYCLES"):
                both_checked.wait()

    outcomes: list[object] = [None, None]

    def begin(index: int) -> None:
        try:
            outcomes[index] = Journal(databases[index], collection).begin_cycle(dry_run=False)
        except (CycleBusy, threading.BrokenBarrierError) as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=begin, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for database in databases:
        database.dispose()
    return outcomes


def assert_one_started_one_busy(outcomes: list[object]) -> None:
    started = [o for o in outcomes if isinstance(o, tuple)]
    busy = [o for o in outcomes if isinstance(o, CycleBusy)]
    assert len(started) == 1, outcomes
    assert len(busy) == 1, outcomes
    assert "another process started a cycle" in str(busy[0])
