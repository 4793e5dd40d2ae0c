"""What `python -m evolve status` shows, read from the studio database alone (it starts no chain
and loads no model): per collection, its rules file, next run, last cycle and its outcome, gas spent
and the tokens waiting. Living tokens are counted with the query the cycle uses, for the configured
deployment only (its chain id and contract, as recorded in the database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from evolve.journal import OPEN_STEPS, CycleStatus, owner_alive
from evolve.scheduler import JOB_PREFIX, lease_status
from studio.records import EvolveCycle, EvolveSchedulerJob, EvolveStep, Token
from studio.rules import RulesError, list_rules, load_rules, rules_path
from studio.services.chain import recorded_identity
from studio.services.studio import Studio
from studio.services.tokens import collection_query, living_tokens_query

NO_SCHEDULER_FIX = (
    "the studio app runs one unless STUDIO_EVOLVE__ENABLED=false; without the app, start python -m evolve run"
)


def collection_status(studio: Studio) -> list[dict[str, Any]]:
    settings = studio.settings
    files = list_rules(settings.rules_dir)
    scheduler = lease_status(studio.db)
    scheduling = scheduler is not None and scheduler["alive"]
    identity = recorded_identity(settings, studio.db)  # None: nothing deployed here yet, so no tokens
    with studio.db.session() as session:
        names = set(files) | set(session.scalars(select(EvolveCycle.collection).distinct()))
        if identity is not None:
            living = collection_query(identity, Token.rules_name).where(Token.living.is_(True))
            names |= {n for n in session.scalars(living) if n}
        jobs = {row.id: row.next_run_time for row in session.scalars(select(EvolveSchedulerJob))}
        result = []
        for name in sorted(names):
            entry: dict[str, Any] = {"collection": name}
            path = files.get(name)
            if path is None:
                try:
                    entry["rules"] = f"missing: write {rules_path(settings.rules_dir, name)}"
                except RulesError as exc:
                    entry["rules"] = f"invalid: {exc}"
            else:
                try:
                    rules = load_rules(path, default_timezone=settings.evolve.timezone)
                    entry["rules"] = "ok"
                    entry["schedule"] = (
                        f"every {rules.schedule.every}" if rules.schedule.every else f"cron {rules.schedule.cron}"
                    )
                except RulesError as exc:
                    entry["rules"] = f"invalid: {exc}"
            next_run = jobs.get(JOB_PREFIX + name)
            if not next_run and scheduling:
                # A scheduler runs (inside the studio app or as `python -m evolve run`): it rereads the
                # rules folder every 30 s, so a file just saved is simply not picked up yet.
                entry["next_run"] = "being scheduled: the running scheduler picks up new rules within 30 s"
            elif not next_run:
                entry["next_run"] = f"not scheduled: no scheduler is running ({NO_SCHEDULER_FIX})"
            else:
                entry["next_run"] = datetime.fromtimestamp(next_run, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if not scheduling:
                    entry["next_run"] += f" (but no scheduler is running: {NO_SCHEDULER_FIX})"
            entry["scheduler"] = scheduler
            entry["living_tokens"] = (
                session.scalar(living_tokens_query(identity, name, func.count())) if identity is not None else 0
            )
            last = session.scalars(
                select(EvolveCycle)
                .where(EvolveCycle.collection == name, EvolveCycle.dry_run.is_(False))
                .order_by(EvolveCycle.id.desc())
                .limit(1)
            ).first()
            if last is None:
                entry["last_cycle"] = None
            else:
                report = last.report or {}
                status, error = last.status, last.error
                if status == CycleStatus.RUNNING and not owner_alive(last.owner, last.heartbeat_at):
                    # Its process died mid-cycle: nothing runs it. The next run rolls it forward.
                    status = CycleStatus.INTERRUPTED
                    error = (
                        f"process {last.owner} stopped during the cycle (last heartbeat "
                        f"{_iso(last.heartbeat_at)}); the next run rolls it forward"
                    )
                entry["last_cycle"] = {
                    "id": last.id,
                    "status": status,
                    "owner": last.owner,
                    "started_at": _iso(last.started_at),
                    "finished_at": _iso(last.finished_at),
                    "evolved": len(report.get("evolved", [])),
                    "unchanged": report.get("unchanged", 0),
                    "waiting": len(report.get("waiting", {})),
                    "gas_used": last.gas_used,
                    "snapshot_cid": last.snapshot_cid,
                    "error": error,
                    "blocked": report.get("blocked"),
                }
            open_steps = session.execute(
                select(EvolveStep.token_id, EvolveStep.step)
                .join(EvolveCycle, EvolveCycle.id == EvolveStep.cycle_id)
                .where(EvolveCycle.collection == name, EvolveStep.step.in_(OPEN_STEPS))
                .order_by(EvolveStep.token_id)
            ).all()
            entry["tokens_pending"] = {str(token_id): step for token_id, step in open_steps}
            entry["gas_spent_total"] = session.scalar(
                select(func.coalesce(func.sum(EvolveCycle.gas_used), 0)).where(
                    EvolveCycle.collection == name, EvolveCycle.dry_run.is_(False)
                )
            )
            result.append(entry)
    return result


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
