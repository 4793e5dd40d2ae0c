"""Two processes, one collection: the database lets one cycle run per collection and one scheduler
run per database; `status` says which process owns what and whether it still lives."""

from __future__ import annotations

from sqlalchemy import select

from studio.records import EvolveCycle
from tests.evolve.races import assert_one_started_one_busy, begin_two_cycles_at_once


def test_two_processes_starting_a_cycle_at_once_get_one_cycle(settings, db) -> None:
    outcomes = begin_two_cycles_at_once(settings.resolved_database_url)
    assert_one_started_one_busy(outcomes)
    with db.session() as session:
        running = session.scalars(select(EvolveCycle).where(EvolveCycle.status == "running")).all()
        assert len(running) == 1
