"""The evolution daemon: APScheduler with its jobs in the studio database, one job per collection.

- A collection seen for the first time runs at once, then on its schedule.
- Jobs persist in `evolve_scheduler_jobs` (SQLAlchemyJobStore), so a restart keeps each collection's
  next run; a job is replaced only when its rules file's schedule changed.
- coalesce=True (runs missed while the daemon was down collapse into one), max_instances=1 (a
  collection never runs twice at once) and an explicit misfire_grace_time (settings.evolve.misfire_grace_s;
  APScheduler's default of 1 s would silently skip every run that was due during a pause).
- One worker thread: cycles share the generation engine and one nonce sequence, so they run in turn.
- On start, every collection with an interrupted cycle or unfinished journal rows runs at once (the
  cycle rolls the journal forward first). SIGTERM/SIGINT: the running cycle stops at the next token
  boundary with its journal consistent, then the daemon exits 0.
- One scheduler per database: APScheduler 3 does not share a job store between processes (two would
  fire the same job together), so the scheduler runs only in the process holding the database lease
  "scheduler" (SchedulerLease). Another daemon, or the web app beside a daemon, waits, says so in its
  log (`scheduler_waiting`) and in `evolve status`, and takes over when the lease expires (at once
  when its holder is a dead process on this host).
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from evolve.cycle import run_cycle
from evolve.errors import CycleBusy, EvolveError
from evolve.journal import OPEN_STEPS, CycleStatus
from studio.db import Database
from studio.owners import owner_alive, process_owner
from studio.records import EvolveCycle, EvolveLease, EvolveStep
from studio.rules import Rules, RulesError, list_rules, load_rules
from studio.services.studio import Studio

log = logging.getLogger("evolve.scheduler")

JOBS_TABLE = "evolve_scheduler_jobs"
JOB_PREFIX = "evolve:"
LEASE_NAME = "scheduler"

# The scheduled job is stored by reference ("evolve.scheduler:scheduled_cycle"), so it reaches the
# daemon's Studio through these module globals, set by run_daemon().
_STUDIO: Studio | None = None
_STOP = threading.Event()


def trigger_for(rules: Rules, default_timezone: str) -> IntervalTrigger | CronTrigger:
    timezone = rules.schedule.timezone or default_timezone
    if rules.schedule.interval is not None:
        return IntervalTrigger(seconds=int(rules.schedule.interval.total_seconds()), timezone=timezone)
    assert rules.schedule.cron is not None
    return CronTrigger.from_crontab(rules.schedule.cron, timezone=timezone)


def build_scheduler(studio: Studio) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=studio.db.engine, tablename=JOBS_TABLE)},
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": studio.settings.evolve.misfire_grace_s,
        },
        timezone=studio.settings.evolve.timezone,
    )


def sync_jobs(scheduler: BackgroundScheduler, studio: Studio) -> dict[str, str]:
    """Make the jobs match the rules files: add new collections, replace changed schedules (an
    unchanged one keeps its stored next run), remove collections whose file is gone. A rules file
    with a mistake is reported and its collection left as it was."""
    outcome: dict[str, str] = {}
    settings = studio.settings
    files = list_rules(settings.rules_dir)
    for name, path in files.items():
        try:
            rules = load_rules(path, default_timezone=settings.evolve.timezone)
        except RulesError as exc:
            outcome[name] = f"invalid: {exc}"
            log.error(str(exc), extra={"event": "rules_invalid", "collection": name})
            continue
        trigger = trigger_for(rules, settings.evolve.timezone)
        job_id = JOB_PREFIX + name
        existing = scheduler.get_job(job_id)
        if (
            existing is not None
            and str(existing.trigger) == str(trigger)
            and existing.misfire_grace_time == settings.evolve.misfire_grace_s
        ):
            outcome[name] = "kept"
            continue
        # A collection seen for the first time runs at once, then on its schedule.
        first_run = {"next_run_time": datetime.now(UTC)} if existing is None else {}
        scheduler.add_job(
            "evolve.scheduler:scheduled_cycle",
            trigger=trigger,
            args=[name],
            id=job_id,
            name=f"evolution cycle of {name}",
            replace_existing=True,
            misfire_grace_time=settings.evolve.misfire_grace_s,
            **first_run,
        )
        outcome[name] = "replaced" if existing is not None else "added"
        log.info("job scheduled", extra={"event": "job", "collection": name, "trigger": str(trigger)})
    for job in scheduler.get_jobs():
        if job.id.startswith(JOB_PREFIX) and job.id[len(JOB_PREFIX) :] not in files:
            scheduler.remove_job(job.id)
            outcome[job.id[len(JOB_PREFIX) :]] = "removed (no rules file)"
    return outcome


def scheduled_cycle(collection: str) -> None:
    """The job: one cycle, never raising (APScheduler would only log a bare traceback)."""
    studio = _STUDIO
    if studio is None or _STOP.is_set():
        return
    try:
        run_cycle(studio, collection, stop=_STOP)
    except CycleBusy as exc:
        log.warning(str(exc), extra={"event": "cycle_skipped", "collection": collection})
    except (EvolveError, RulesError) as exc:
        log.error(str(exc), extra={"event": "cycle_refused", "collection": collection})
    except Exception:
        log.exception("cycle crashed", extra={"event": "cycle_crashed", "collection": collection})


def collections_to_roll_forward(studio: Studio) -> list[str]:
    """Collections whose last cycle did not finish or whose journal has unfinished rows."""
    with studio.db.session() as session:
        running = session.scalars(
            select(EvolveCycle.collection).where(
                EvolveCycle.status == CycleStatus.RUNNING, EvolveCycle.dry_run.is_(False)
            )
        ).all()
        open_rows = session.scalars(
            select(EvolveCycle.collection)
            .join(EvolveStep, EvolveStep.cycle_id == EvolveCycle.id)
            .where(EvolveStep.step.in_(OPEN_STEPS))
        ).all()
    return sorted(set(running) | set(open_rows))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SchedulerLease:
    """The database lease that makes one process the scheduler of a database.

    Taking it is a compare-and-set on the lease row (an UPDATE that names the holder and expiry it
    read, or the INSERT of the first row), so of two processes trying at once exactly one wins, on
    SQLite and PostgreSQL alike. The holder renews it every third of `ttl`.
    """

    def __init__(self, db: Database, ttl: timedelta, name: str = LEASE_NAME) -> None:
        self.db = db
        self.ttl = ttl
        self.name = name
        self.holder = process_owner()

    def try_acquire(self) -> str | None:
        """Take (or renew) the lease: None when this process holds it now, else who holds it."""
        now = _utcnow()
        try:
            with self.db.session() as session:
                row = session.get(EvolveLease, self.name)
                if row is None:
                    session.add(
                        EvolveLease(name=self.name, holder=self.holder, acquired_at=now, expires_at=now + self.ttl)
                    )
                    session.flush()
                    return None
                expired = _aware(row.expires_at) <= now
                # A holder on this host whose process is gone is dead now; elsewhere only expiry tells.
                dead = not owner_alive(row.holder, now, self.ttl)
                if row.holder != self.holder and not expired and not dead:
                    return row.holder
                taken = session.execute(
                    update(EvolveLease)
                    .where(
                        EvolveLease.name == self.name,
                        EvolveLease.holder == row.holder,
                        EvolveLease.expires_at == row.expires_at,
                    )
                    .values(
                        holder=self.holder,
                        expires_at=now + self.ttl,
                        acquired_at=row.acquired_at if row.holder == self.holder else now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
                    return None
        except IntegrityError:
            pass  # another process inserted the first row at the same moment
        with self.db.session() as session:
            row = session.get(EvolveLease, self.name)
            return row.holder if row is not None else "another process"

    def release(self) -> None:
        with self.db.session() as session:
            row = session.get(EvolveLease, self.name)
            if row is not None and row.holder == self.holder:
                session.delete(row)


def lease_status(db: Database, name: str = LEASE_NAME) -> dict[str, Any] | None:
    """Who holds the scheduler lease and whether it is still good (for `evolve status`)."""
    with db.session() as session:
        row = session.get(EvolveLease, name)
        if row is None:
            return None
        now = _utcnow()
        expires = _aware(row.expires_at)
        alive = expires > now and owner_alive(row.holder, now, expires - now)
        return {"holder": row.holder, "expires_at": _iso(expires), "alive": alive}


class EvolutionService:
    """The scheduler running in the background of a process that owns `studio` (the daemon, or the
    web app when settings.evolve.enabled). `start()` returns at once; `stop()` lets the running cycle
    stop at its next token boundary and waits for it."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.scheduler = build_scheduler(studio)
        self.scheduler.add_jobstore("memory", alias="local")
        self.lease = SchedulerLease(studio.db, timedelta(seconds=studio.settings.evolve.scheduler_lease_s))
        self.leading = False
        self.waiting_for: str | None = None
        self._lease_stop = threading.Event()
        self._lease_thread: threading.Thread | None = None

    def start(self) -> dict[str, str]:
        """Take the scheduler lease and schedule (see `_lead`), or, while another process holds it,
        wait for it in the background and return {} at once."""
        global _STUDIO
        _STUDIO = self.studio
        _STOP.clear()
        self._lease_stop.clear()
        holder = self.lease.try_acquire()
        outcome = self._lead() if holder is None else {}
        if holder is not None:
            self._waiting(holder)
        self._lease_thread = threading.Thread(target=self._keep_lease, name="evolve-lease", daemon=True)
        self._lease_thread.start()
        return outcome

    def _waiting(self, holder: str) -> None:
        if self.waiting_for != holder:
            log.warning(
                f"another scheduler runs on this database (process {holder}): this one waits and takes over "
                "when that one stops or its lease expires",
                extra={"event": "scheduler_waiting", "holder": holder},
            )
        self.waiting_for = holder

    def _keep_lease(self) -> None:
        """Renew the lease while leading; while waiting, try to take it. Every third of its length."""
        every = max(1.0, self.lease.ttl.total_seconds() / 3)
        while not self._lease_stop.wait(every):
            try:
                holder = self.lease.try_acquire()
            except Exception:  # a database hiccup: try again next round, the lease has slack for it
                log.exception("cannot reach the database to renew the scheduler lease", extra={"event": "lease_error"})
                continue
            if holder is None and not self.leading:
                log.info("took over the scheduler lease", extra={"event": "scheduler_leader"})
                self.waiting_for = None
                self._lead()
            elif holder is not None:
                if self.leading:
                    # Another process took it (this one stalled past its lease): stop firing jobs at once.
                    log.error("lost the scheduler lease", extra={"event": "scheduler_lost", "holder": holder})
                    self.scheduler.pause()
                    self.leading = False
                self._waiting(holder)

    def _lead(self) -> dict[str, str]:
        """Schedule every rules file, roll interrupted cycles forward first, then run on schedule."""
        self.leading = True
        if self.scheduler.running:  # lost the lease once and took it back
            self.scheduler.resume()
            return sync_jobs(self.scheduler, self.studio)
        self.scheduler.start(paused=True)
        outcome = sync_jobs(self.scheduler, self.studio)
        log.info(
            "daemon started",
            extra={"event": "daemon_start", "rules_dir": str(self.studio.settings.rules_dir), "collections": outcome},
        )
        now = datetime.now(UTC)
        for collection in collections_to_roll_forward(self.studio):
            if collection in outcome and not outcome[collection].startswith("invalid"):
                log.info(
                    "rolling forward an interrupted cycle", extra={"event": "roll_forward", "collection": collection}
                )
                self.scheduler.add_job(
                    scheduled_cycle,
                    args=[collection],
                    id=f"rollforward:{collection}",
                    jobstore="local",
                    next_run_time=now,
                )
        # The rules folder is reread every 30 s: edited or new rules files are picked up.
        self.scheduler.add_job(
            sync_jobs, "interval", seconds=30, args=[self.scheduler, self.studio], id="sync", jobstore="local"
        )
        self.scheduler.resume()
        for job in self.scheduler.get_jobs(jobstore="default"):
            log.info("next run", extra={"event": "next_run", "job": job.id, "next_run_time": _iso(job.next_run_time)})
        return outcome

    def stop(self) -> None:
        global _STUDIO
        _STOP.set()
        self._lease_stop.set()
        if self._lease_thread is not None:
            self._lease_thread.join(timeout=30)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.leading:
            self.lease.release()  # the next scheduler need not wait for the lease to expire
            self.leading = False
        _STUDIO = None
        log.info("daemon stopped", extra={"event": "daemon_stop"})


def start_background(studio: Studio) -> EvolutionService:
    """Start the evolution scheduler inside this process (for the web app); call `.stop()` on exit."""
    service = EvolutionService(studio)
    service.start()
    return service


def run_daemon(studio: Studio, *, stop: threading.Event | None = None) -> int:
    """`python -m evolve run`: the scheduler until SIGTERM/SIGINT (or `stop` is set). Returns the exit code."""
    stopped = stop or threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("stop requested", extra={"event": "stopping", "signal": signal.Signals(signum).name})
        _STOP.set()
        stopped.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    service = EvolutionService(studio)
    try:
        service.start()
        stopped.wait()
    finally:
        service.stop()
    return 0


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None
