"""The scheduler inside a process (as the web app runs it): persistent jobs with the agreed options,
schedule changes picked up, a new collection's first cycle at once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from evolve.journal import CycleStatus
from evolve.scheduler import JOB_PREFIX, build_scheduler, start_background, sync_jobs
from studio.records import EvolveCycle, EvolveSchedulerJob
from tests.fixtures.evolve import mint_living, weather_rules


def write(studio, text: str, name: str = "weather") -> None:
    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / f"{name}.toml").write_text(text)


def test_jobs_persist_with_coalesce_single_instance_and_grace(open_studio, weather_api) -> None:
    studio = open_studio()
    studio.settings.evolve.misfire_grace_s = 900
    write(studio, weather_rules(weather_api.url, every="15m"))
    write(studio, weather_rules(weather_api.url).replace('every = "1h"', 'cron = "0 6 * * *"'), "dawn")
    write(studio, "[schedule]\nevery = 'often'\n", "broken")

    scheduler = build_scheduler(studio)
    scheduler.start(paused=True)
    try:
        outcome = sync_jobs(scheduler, studio)
        assert outcome["weather"] == "added"
        assert outcome["dawn"] == "added"
        assert outcome["broken"].startswith("invalid: ")
        assert "broken.toml:1: schedule:" in outcome["broken"]
        job = scheduler.get_job(JOB_PREFIX + "weather")
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == 900
        # When the jobs fire: every 15 minutes, and daily at 06:00 in the studio's time zone.
        now = datetime.now(UTC)
        first = job.trigger.get_next_fire_time(None, now)
        assert job.trigger.get_next_fire_time(first, first) - first == timedelta(minutes=15)
        dawn = scheduler.get_job(JOB_PREFIX + "dawn").trigger
        zone = ZoneInfo(studio.settings.evolve.timezone)
        fires = [dawn.get_next_fire_time(None, now)]
        fires.append(dawn.get_next_fire_time(fires[0], fires[0] + timedelta(seconds=1)))
        assert [(t.astimezone(zone).hour, t.astimezone(zone).minute) for t in fires] == [(6, 0), (6, 0)]
        assert fires[1].astimezone(zone).date() - fires[0].astimezone(zone).date() == timedelta(days=1)
        assert sync_jobs(scheduler, studio)["weather"] == "kept"  # unchanged: keeps its stored next run
        write(studio, weather_rules(weather_api.url, every="2h"))
        assert sync_jobs(scheduler, studio)["weather"] == "replaced"
        (studio.settings.rules_dir / "dawn.toml").unlink()
        assert sync_jobs(scheduler, studio)["dawn"] == "removed (no rules file)"
    finally:
        scheduler.shutdown(wait=False)
    with studio.db.session() as session:  # in the studio database, for the next start and for status
        assert session.scalars(select(EvolveSchedulerJob.id)).all() == [JOB_PREFIX + "weather"]


def test_background_service_runs_a_new_collection_at_once_and_stops_cleanly(open_studio, weather_api) -> None:
    studio = open_studio()
    write(studio, weather_rules(weather_api.url))
    tokens = mint_living(studio, 2)
    weather_api.value = 30.0
    service = start_background(studio)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with studio.db.session() as session:
                cycle = session.scalar(select(EvolveCycle).where(EvolveCycle.status != CycleStatus.RUNNING))
            if cycle is not None:
                break
            time.sleep(0.2)
        assert cycle is not None, "no cycle ran"
        assert cycle.status == CycleStatus.DONE
        assert sorted(cycle.report["evolved"]) == tokens
    finally:
        service.stop()
    assert not service.scheduler.running
