"""The evolution journal: cycles and per-token steps in the studio database.

Every step is committed BEFORE the side effect it announces (pinning, sending a transaction), so
after a crash the journal says the furthest thing that may have happened to each token:

    planned    the next state is decided; nothing outside the database has happened
    pinned     image and metadata are pinned (CIDs recorded); nothing sent
    sending    a transaction carrying this version may have been sent: reconcile with the chain
    recorded   the chain confirmed it and the token's new version is recorded (final)
    superseded the feeds moved on before this version was sent; it was never on chain (final)

A row is "open" until it is recorded or superseded; a token has at most one open row. A cycle is
`running` until it ends `done`, `partial` (something waits for the next cycle, and says why) or
`failed`, or until another process takes it over from a dead owner (`interrupted`).

Both are stored as their text (the values below): the database and the JSON reports hold those strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evolve.errors import CycleBusy
from studio import owners
from studio.db import Database
from studio.owners import process_owner
from studio.records import EvolveCycle, EvolveStep


class StepStatus(StrEnum):
    """Where a journal row stands (see the module's docstring)."""

    PLANNED = "planned"
    PINNED = "pinned"
    SENDING = "sending"
    RECORDED = "recorded"
    SUPERSEDED = "superseded"


class CycleStatus(StrEnum):
    """How a cycle stands or ended. `running` is also named by the partial unique index over
    evolve_cycles (studio/records.py and its migration): one running cycle per collection."""

    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


OPEN_STEPS = (StepStatus.PLANNED, StepStatus.PINNED, StepStatus.SENDING)
STALE_HEARTBEAT = timedelta(minutes=10)


def utcnow() -> datetime:
    return datetime.now(UTC)


def owner_alive(owner: str, heartbeat_at: datetime | None) -> bool:
    """Whether the process that owns a running cycle still lives (studio/owners.py: on this host its
    pid and start time answer; elsewhere a heartbeat older than 10 minutes means dead)."""
    return owners.owner_alive(owner, heartbeat_at, STALE_HEARTBEAT)


@dataclass(frozen=True)
class OpenStep:
    """A detached copy of an open journal row (sessions end; the cycle keeps working with these)."""

    id: int
    cycle_id: int
    token_pk: int
    token_id: int
    version: int
    step: StepStatus
    state: dict[str, Any]
    previous_metadata_cid: str
    image_cid: str | None
    metadata_cid: str | None
    feed_snapshot_cid: str | None
    tx_hash: str | None


def _detach(row: EvolveStep) -> OpenStep:
    return OpenStep(
        id=row.id,
        cycle_id=row.cycle_id,
        token_pk=row.token_pk,
        token_id=row.token_id,
        version=row.version,
        step=StepStatus(row.step),
        state=dict(row.state),
        previous_metadata_cid=row.previous_metadata_cid,
        image_cid=row.image_cid,
        metadata_cid=row.metadata_cid,
        feed_snapshot_cid=row.feed_snapshot_cid,
        tx_hash=row.tx_hash,
    )


class Journal:
    """Reads and writes the journal of one collection."""

    def __init__(self, db: Database, collection: str) -> None:
        self.db = db
        self.collection = collection

    # --- cycles -------------------------------------------------------------------------------

    def begin_cycle(self, *, dry_run: bool) -> tuple[int, list[int]]:
        """Start a cycle; returns (cycle id, ids of interrupted cycles taken over). A cycle of the
        same collection still running in a live process makes this raise CycleBusy.

        The check below reads before it writes, so two processes can both find no running cycle; the
        database then refuses the second insert (the unique index over running cycles) and that
        process gets CycleBusy too."""
        try:
            return self._begin_cycle(dry_run=dry_run)
        except IntegrityError:
            raise CycleBusy(
                f"collection '{self.collection}': another process started a cycle at the same moment; this run "
                "was skipped (it finishes or is taken over when that process dies)"
            ) from None

    def _begin_cycle(self, *, dry_run: bool) -> tuple[int, list[int]]:
        owner = process_owner()
        taken_over: list[int] = []
        with self.db.session() as session:
            if not dry_run:
                running = session.scalars(
                    select(EvolveCycle).where(
                        EvolveCycle.collection == self.collection,
                        EvolveCycle.status == CycleStatus.RUNNING,
                        EvolveCycle.dry_run.is_(False),
                    )
                ).all()
                for cycle in running:
                    if owner_alive(cycle.owner, cycle.heartbeat_at):
                        raise CycleBusy(
                            f"collection '{self.collection}': cycle {cycle.id} is running in process {cycle.owner}; "
                            "this run was skipped (it finishes or is taken over when that process dies)"
                        )
                    cycle.status = CycleStatus.INTERRUPTED
                    cycle.finished_at = utcnow()
                    cycle.error = f"process {cycle.owner} stopped during the cycle; rolled forward by {owner}"
                    taken_over.append(cycle.id)
            cycle = EvolveCycle(collection=self.collection, dry_run=dry_run, status=CycleStatus.RUNNING, owner=owner)
            session.add(cycle)
            session.flush()
            return cycle.id, taken_over

    def heartbeat(self, cycle_id: int) -> None:
        with self.db.session() as session:
            session.execute(update(EvolveCycle).where(EvolveCycle.id == cycle_id).values(heartbeat_at=utcnow()))

    def set_snapshot(self, cycle_id: int, cid: str, snapshot: dict[str, Any]) -> None:
        with self.db.session() as session:
            cycle = session.get(EvolveCycle, cycle_id)
            assert cycle is not None
            cycle.snapshot_cid = cid
            cycle.snapshot = snapshot
            cycle.heartbeat_at = utcnow()

    def add_gas(self, cycle_id: int, gas: int, *, session: Session) -> None:
        """Count a recorded transaction's gas in its cycle as soon as it is recorded (with the record)."""
        session.execute(
            update(EvolveCycle).where(EvolveCycle.id == cycle_id).values(gas_used=EvolveCycle.gas_used + gas)
        )

    def tx_recorded(self, tx_hash: str, *, session: Session) -> bool:
        """Whether a journal row carried by `tx_hash` is recorded already (its gas is counted)."""
        row = session.scalar(
            select(EvolveStep.id).where(EvolveStep.tx_hash == tx_hash, EvolveStep.step == StepStatus.RECORDED).limit(1)
        )
        return row is not None

    def finish_cycle(
        self, cycle_id: int, *, status: CycleStatus, report: dict[str, Any], gas_used: int, error: str | None = None
    ) -> None:
        with self.db.session() as session:
            cycle = session.get(EvolveCycle, cycle_id)
            assert cycle is not None
            cycle.status = status
            cycle.report = report
            cycle.gas_used = gas_used
            cycle.error = error
            cycle.finished_at = utcnow()

    # --- steps --------------------------------------------------------------------------------

    def open_steps(self, token_pks: list[int] | None = None) -> dict[int, OpenStep]:
        """Open rows by token pk (of this collection's cycles)."""
        with self.db.session() as session:
            query = (
                select(EvolveStep)
                .join(EvolveCycle, EvolveCycle.id == EvolveStep.cycle_id)
                .where(EvolveCycle.collection == self.collection, EvolveStep.step.in_(OPEN_STEPS))
                .order_by(EvolveStep.id)
            )
            if token_pks is not None:
                query = query.where(EvolveStep.token_pk.in_(token_pks))
            return {row.token_pk: _detach(row) for row in session.scalars(query)}

    def plan(
        self,
        cycle_id: int,
        *,
        token_pk: int,
        token_id: int,
        version: int,
        state: dict[str, Any],
        previous_metadata_cid: str,
        feed_snapshot_cid: str | None,
    ) -> OpenStep:
        with self.db.session() as session:
            row = EvolveStep(
                cycle_id=cycle_id,
                token_pk=token_pk,
                token_id=token_id,
                version=version,
                step=StepStatus.PLANNED,
                state=state,
                previous_metadata_cid=previous_metadata_cid,
                feed_snapshot_cid=feed_snapshot_cid,
            )
            session.add(row)
            session.flush()
            return _detach(row)

    def advance(self, step_id: int, step: StepStatus, session: Session | None = None, **values: Any) -> OpenStep:
        """Move a row to `step`, setting `values` (CIDs, tx hash...), in its own transaction unless
        a session is given (then it commits with the caller's other writes, atomically)."""

        def _advance(s: Session) -> OpenStep:
            row = s.get(EvolveStep, step_id)
            assert row is not None
            row.step = step
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            s.flush()
            return _detach(row)

        if session is not None:
            return _advance(session)
        with self.db.session() as own:
            return _advance(own)

    def advance_many(self, step_ids: list[int], step: StepStatus, **values: Any) -> None:
        """One transaction for a whole batch: a batch is journaled as sending all at once or not at all."""
        if not step_ids:
            return
        with self.db.session() as session:
            session.execute(
                update(EvolveStep).where(EvolveStep.id.in_(step_ids)).values(step=step, updated_at=utcnow(), **values)
            )
