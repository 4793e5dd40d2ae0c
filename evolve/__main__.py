"""`python -m evolve run|once|dry-run|status`: the operator's commands.

    run       the daemon: scheduled cycles for every rules file in the rules folder; SIGTERM stops it cleanly
    once      one cycle of every collection (or --collection NAME) now
    dry-run   the same without transactions: pins only to the local store, prints what would change and the gas
    status    per collection: rules file, next run, last cycle and its outcome, gas spent, tokens pending

Exit codes: 0 done (a partial cycle, e.g. gas budget reached, is still 0), 1 a cycle failed, 2 bad
configuration (rules file, settings).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from evolve.cycle import CycleReport, run_cycle
from evolve.errors import CycleBusy, EvolveError
from evolve.journal import CycleStatus
from evolve.logs import configure_logging
from evolve.progress import CycleProgress, CycleStage
from studio.rules import RulesError, list_rules

if TYPE_CHECKING:
    from studio.services.studio import Studio

log = logging.getLogger("evolve")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evolve", description="Evolve living tokens from data feeds.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the scheduler daemon until SIGTERM")
    for name, text in (("once", "run one cycle now"), ("dry-run", "run one cycle without transactions")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--collection", help="only this collection (rules file name without .toml)")
        command.add_argument("--json", action="store_true", help="print the full report as JSON")
    status = commands.add_parser("status", help="show the state of every collection")
    status.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _summary(report: CycleReport) -> str:
    lines = [
        f"{report.collection}: cycle {report.cycle_id} {report.status}"
        + (" (dry run: nothing sent)" if report.dry_run else ""),
        "  feeds: " + ", ".join(f"{k}={'ok' if v == 'ok' else 'ERROR'}" for k, v in sorted(report.feeds.items())),
        f"  snapshot: ipfs://{report.snapshot_cid}" if report.snapshot_cid else "  snapshot: none",
        f"  tokens: {report.tokens_considered} living, {len(report.changed)} changed, {report.unchanged} unchanged, "
        f"{len(report.waiting)} waiting on feeds",
    ]
    if report.dry_run:
        lines.append(f"  would evolve: {[c['token_id'] for c in report.would_change]}")
        lines.append(f"  estimated gas: {report.estimated_gas}")
    else:
        lines.append(f"  evolved: {report.evolved}  gas used: {report.gas_used}")
    for token_id, reason in sorted(report.pending.items(), key=lambda kv: int(kv[0])):
        lines.append(f"  pending token {token_id}: {reason}")
    for name, problem in sorted(report.feeds.items()):
        if problem != "ok":
            lines.append(f"  feed {name}: {problem}")
    lines.extend(f"  error: {error}" for error in report.errors)
    return "\n".join(lines)


class _StepPrinter:
    """Prints a cycle's steps to stderr as they happen (stdout keeps the summary or the JSON): one line
    per step, one per token generated (not one per denoising step)."""

    def __init__(self) -> None:
        self.last: tuple[CycleStage, int | None] | None = None

    def __call__(self, event: CycleProgress) -> None:
        key = (event.stage, event.token_id)
        if event.stage == CycleStage.GENERATING and key == self.last:
            return
        self.last = key
        print(f"  ... {event.text}", file=sys.stderr, flush=True)


def _start(studio: Studio) -> str | None:
    """The studio's start-up for commands that send (studio.services.startup). Returns why it failed
    (the command then exits 1), or None."""
    from contracts.errors import ChainError
    from studio.services.startup import start_studio

    try:
        start_studio(studio)
    except ChainError as exc:
        return str(exc)
    return None


def _cycles(args: argparse.Namespace, *, dry_run: bool) -> int:
    from studio.services.studio import Studio

    with Studio.open() as studio:
        names = [args.collection] if args.collection else list(list_rules(studio.settings.rules_dir))
        if not names:
            print(f"no rules files in {studio.settings.rules_dir}: write <collection>.toml there (README: Evolution)")
            return 2
        problem = _start(studio)
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        code = 0
        for name in names:
            try:
                report = run_cycle(studio, name, dry_run=dry_run, on_step=_StepPrinter())
            except RulesError as exc:
                print(f"{name}: rules file refused: {exc}", file=sys.stderr)
                code = max(code, 2)
                continue
            except CycleBusy as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                code = max(code, 1)
                continue
            print(json.dumps(report.to_json(), indent=2) if args.json else _summary(report))
            if report.status == CycleStatus.FAILED:
                code = max(code, 1)
        return code


def _status(args: argparse.Namespace) -> int:
    from evolve.scheduler import lease_status
    from evolve.status import collection_status
    from studio.services.studio import Studio

    with Studio.open() as studio:
        entries = collection_status(studio)
        scheduler = lease_status(studio.db)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    print(_scheduler_text(scheduler))
    if not entries:
        print("no collections: write a rules file in the rules folder (README: Evolution)")
    for entry in entries:
        print(_status_text(entry))
    return 0


def _scheduler_text(scheduler: dict[str, Any] | None) -> str:
    if scheduler is not None and scheduler["alive"]:
        return f"scheduler: running in process {scheduler['holder']} (lease until {scheduler['expires_at']})"
    if scheduler is not None:
        return f"scheduler: none running (the last one, process {scheduler['holder']}, stopped without a word)"
    return "scheduler: none running (python -m evolve run, or the app, runs one)"


def _status_text(entry: dict[str, Any]) -> str:
    lines = [
        f"{entry['collection']}: rules {entry['rules']}" + (f", {entry['schedule']}" if "schedule" in entry else "")
    ]
    lines.append(f"  next run: {entry['next_run']}")
    last = entry["last_cycle"]
    if last is None:
        lines.append("  last cycle: none yet")
    else:
        lines.append(
            f"  last cycle: #{last['id']} {last['status']} at {last['finished_at'] or last['started_at']}: "
            f"{last['evolved']} evolved, {last['unchanged']} unchanged, {last['waiting']} waiting, "
            f"gas {last['gas_used']}"
        )
        if last.get("blocked"):
            lines.append(f"  BLOCKED: {last['blocked']}")
        elif last["error"]:
            lines.append(f"  last error: {last['error']}")
    lines.append(f"  living tokens: {entry['living_tokens']}, gas spent in all: {entry['gas_spent_total']}")
    pending = entry["tokens_pending"]
    lines.append("  tokens pending: " + (", ".join(f"{t} ({s})" for t, s in pending.items()) if pending else "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pydantic import ValidationError

    from studio.config import check_content_reachable, load_settings
    from studio.errors import StudioError

    try:
        settings = load_settings()
        if args.command != "status":  # status only reads the database: it must work to diagnose this
            check_content_reachable(settings)
    except (ValidationError, StudioError) as exc:
        print(f"settings refused: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        if args.command == "run":
            from evolve.scheduler import run_daemon
            from studio.services.studio import Studio

            with Studio.open(settings) as studio:
                problem = _start(studio)
                if problem is not None:
                    print(f"error: {problem}", file=sys.stderr)
                    return 1
                return run_daemon(studio)
        if args.command == "status":
            return _status(args)
        return _cycles(args, dry_run=args.command == "dry-run")
    except (EvolveError, RulesError) as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
