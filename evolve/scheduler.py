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
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from evolve.cycle import run_cycle
from evolve.errors import CycleBusy, EvolveError, RulesError
from evolve.journal import OPEN_STEPS
from evolve.rules import Rules, load_rules
from studio.records import EvolveCycle, EvolveStep
from studio.services.studio import Studio

log = logging.getLogger("evolve.scheduler")

JOBS_TABLE = "evolve_scheduler_jobs"
JOB_PREFIX = "evolve:"

# The scheduled job is stored by reference ("evolve.scheduler:scheduled_cycle"), so it reaches the
# daemon's Studio through these module globals, set by run_daemon().
_STUDIO: Studio | None = None
_STOP = threading.Event()


def rules_files(rules_dir: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(rules_dir.glob("*.toml"))} if rules_dir.is_dir() else {}


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
    files = rules_files(settings.rules_dir)
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
    except EvolveError as exc:
        log.error(str(exc), extra={"event": "cycle_refused", "collection": collection})
    except Exception:
        log.exception("cycle crashed", extra={"event": "cycle_crashed", "collection": collection})


def collections_to_roll_forward(studio: Studio) -> list[str]:
    """Collections whose last cycle did not finish or whose journal has unfinished rows."""
    with studio.db.session() as session:
        running = session.scalars(
            select(EvolveCycle.collection).where(EvolveCycle.status == "running", EvolveCycle.dry_run.is_(False))
        ).all()
        open_rows = session.scalars(
            select(EvolveCycle.collection)
            .join(EvolveStep, EvolveStep.cycle_id == EvolveCycle.id)
            .where(EvolveStep.step.in_(OPEN_STEPS))
        ).all()
    return sorted(set(running) | set(open_rows))


class EvolutionService:
    """The scheduler running in the background of a process that owns `studio` (the daemon, or the
    web app when settings.evolve.enabled). `start()` returns at once; `stop()` lets the running cycle
    stop at its next token boundary and waits for it."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.scheduler = build_scheduler(studio)
        self.scheduler.add_jobstore("memory", alias="local")

    def start(self) -> dict[str, str]:
        """Schedule every rules file, roll interrupted cycles forward first, then run on schedule."""
        global _STUDIO
        _STUDIO = self.studio
        _STOP.clear()
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
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
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
