"""The Evolve tab: edit and validate a collection's feeds and rules, see the schedule (next run, last
cycle, gas spent), run a cycle now, and preview a dry run side by side with the current images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from evolve.cycle import CycleReport, run_cycle
from evolve.journal import CycleStatus
from evolve.progress import CycleProgress, CycleStage
from evolve.status import collection_status
from studio.services.cycles import CycleChange, cycle_changes, feed_values
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.rules_files import RulesSummary, list_rules, read_rules, save_rules, validate_rules_text
from studio.services.studio import Studio
from studio.ui.collection import image_file
from studio.ui.common import api_endpoint, code, error_box, esc, run_streaming, shows_errors

STARTER_RULES = """\
# A collection that follows the time of day. See README (Evolution) for every feed and condition.
[schedule]
every = "6h"

[evolution]
prompt = "{prompt}, {light}"
strength = 0.35

[feeds.clock]
type = "clock"
timezone = "UTC"

[traits.light]
input = "clock.part_of_day"
[[traits.light.cases]]
equals = "night"
fragment = "under a starry night sky"
[[traits.light.cases]]
equals = "morning"
fragment = "in soft morning light"
[[traits.light.cases]]
equals = "afternoon"
fragment = "in warm afternoon light"
[[traits.light.cases]]
fragment = "at golden-hour dusk"
"""


@dataclass
class EvolveTab:
    collection: gr.Dropdown
    editor: gr.Code
    schedule: gr.HTML
    refresh_schedule: Any


def summary_html(summary: RulesSummary, *, saved: bool) -> str:
    feeds = ", ".join(f"{esc(name)} ({esc(kind)})" for name, kind in summary.feeds.items())
    verb = "Saved" if saved else "Valid"
    return (
        f"<p><span class='badge good'>{verb}</span> <b>{esc(summary.name)}</b>: {esc(summary.schedule)} · "
        f"feeds {feeds} · traits {esc(', '.join(summary.traits))} · strength {summary.strength:g}</p>"
    )


def schedule_html(studio: Studio) -> str:
    entries = collection_status(studio)
    if not entries:
        return "<p class='muted'>No collection yet: write a rules file above and save it.</p>"
    rows = []
    for entry in entries:
        last = entry.get("last_cycle") or {}
        last_text = (
            f"#{last['id']} {esc(last['status'])} at {esc(last.get('finished_at') or last.get('started_at'))}: "
            f"{last.get('evolved', 0)} evolved, {last.get('unchanged', 0)} unchanged"
            + (f"<br><span class='badge bad'>{esc(last['error'])}</span>" if last.get("error") else "")
            if last
            else "<span class='muted'>never</span>"
        )
        rules_state = entry.get("rules", "")
        rules_badge = (
            f"<span class='badge good'>{esc(entry.get('schedule', 'ok'))}</span>"
            if rules_state == "ok"
            else f"<span class='badge bad'>{esc(rules_state)}</span>"
        )
        pending = ", ".join(f"#{k} {esc(v)}" for k, v in (entry.get("tokens_pending") or {}).items()) or "—"
        rows.append(
            f"<tr data-collection='{esc(entry['collection'])}'>"
            f"<td><b>{esc(entry['collection'])}</b><br>{rules_badge}</td>"
            f"<td>{esc(entry.get('next_run'))}</td><td>{last_text}</td><td>{entry.get('living_tokens', 0)}</td>"
            f"<td>{int(entry.get('gas_spent_total') or 0):,}</td><td>{pending}</td></tr>"
        )
    # Fixed column shares and wrapping anywhere: a long name or date never pushes the last columns out
    # of the half-width column the table sits in (it did at 1400 px).
    widths = "".join(f"<col style='width:{share}%'>" for share in (21, 21, 21, 11, 13, 13))
    head = (
        "<tr><th>Collection</th><th>Next run</th><th>Last cycle</th><th title='living tokens'>Living</th>"
        "<th>Gas spent</th><th>Waiting</th></tr>"
    )
    return f'<table class="timeline fit" id="schedule-table"><colgroup>{widths}</colgroup>{head}{"".join(rows)}</table>'


def changes_html(changes: list[CycleChange]) -> str:
    """Per token: what it became and why (traits and the final prompt); images are in the gallery beside."""
    if not changes:
        return ""
    rows = []
    for change in changes:
        verb = "became" if change.applied else "would become"
        traits = " · ".join(f"{esc(k)}: <b>{esc(v)}</b>" for k, v in change.traits.items()) or "—"
        rows.append(
            f"<tr data-token='{change.token_id}'><td><b>#{change.token_id}</b> {esc(change.name)}<br>"
            f"<span class='muted'>{verb} v{change.version}</span></td><td>{traits}<br>"
            f"<span class='muted'>prompt:</span> {esc(change.prompt or '—')}</td></tr>"
        )
    head = "<tr><th>Token</th><th>Traits and final prompt</th></tr>"
    return f"<table class='timeline' id='cycle-changes'>{head}{''.join(rows)}</table>"


def progress_html(steps: dict[CycleStage, CycleProgress], *, finished: bool = False) -> str:
    """The cycle's steps so far, one line per step (its latest word: "Generating 2/5: token #7..."),
    the current one with a spinner, the ones behind it ticked."""
    if not steps:
        return ""
    shown = list(steps.values())
    items = []
    for index, event in enumerate(shown):
        current = index == len(shown) - 1 and not finished
        mark = "<span class='spinner'></span>" if current else "✔"
        bar = (
            f" <progress value='{event.done}' max='{event.total}'></progress>"
            if event.stage == CycleStage.GENERATING and event.total
            else ""
        )
        items.append(
            f"<li data-stage='{esc(event.stage)}'><span class='state'>{mark}</span> {esc(event.text)}{bar}</li>"
        )
    return f"<div class='studio-status'><ul class='step-list' id='cycle-steps'>{''.join(items)}</ul></div>"


def report_html(
    report: CycleReport, feeds: dict[str, str] | None = None, changes: list[CycleChange] | None = None
) -> str:
    kind = "Dry run" if report.dry_run else f"Cycle #{report.cycle_id}"
    badge = "good" if report.status == CycleStatus.DONE else "bad"
    rows = [
        ("Status", f"<span class='badge {badge}'>{esc(report.status)}</span>"),
        ("Feeds", "<br>".join(f"{esc(k)}: <b>{esc(v)}</b>" for k, v in (feeds or report.feeds).items()) or "—"),
        ("Snapshot", code(report.snapshot_cid)),
        ("Tokens considered", esc(report.tokens_considered)),
        ("Evolved", ", ".join(f"#{t}" for t in report.evolved) or "—"),
        ("Would change", ", ".join(f"#{c['token_id']}" for c in report.would_change) or "—"),
        ("Unchanged", esc(report.unchanged)),
        ("Waiting", "<br>".join(f"#{k}: {esc(v)}" for k, v in {**report.waiting, **report.pending}.items()) or "—"),
        ("Gas used", f"{report.gas_used:,}"),
        ("Transactions", "<br>".join(code(tx) for tx in report.transactions) or "—"),
        ("Errors", "<br>".join(esc(e) for e in report.errors) or "—"),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return (
        f"<h4>{esc(kind)} of {esc(report.collection)}</h4><table class='kv' id='cycle-report'>{body}</table>"
        + changes_html(changes or [])
    )


def build(studio: Studio) -> EvolveTab:
    with gr.Row(equal_height=False):
        with gr.Column(scale=6):
            with gr.Row():
                collection = gr.Dropdown(
                    [],
                    label="Collection (rules file)",
                    allow_custom_value=True,
                    info="Pick one, or type a new name",
                    elem_id="evolve-collection",
                    scale=4,
                )
                load = gr.Button("Open", scale=1, min_width=90)
            editor = gr.Code(label="Rules (TOML)", language=None, lines=24, interactive=True, elem_id="rules-editor")
            with gr.Row():
                validate = gr.Button("Validate", elem_id="rules-validate")
                save = gr.Button("Save", variant="primary", elem_id="rules-save")
            message = gr.HTML(elem_id="rules-message")
        with gr.Column(scale=6):
            gr.Markdown("#### Schedule")
            schedule = gr.HTML(elem_id="schedule")
            refresh = gr.Button("↻ Refresh schedule", size="sm")
            with gr.Row():
                dry = gr.Button("Preview a dry run", elem_id="dry-run")
                run = gr.Button("Run a cycle now", variant="primary", elem_id="run-cycle")
            steps = gr.HTML(elem_id="cycle-progress")
            cycle_error = error_box("cycle-error")
            report = gr.HTML(elem_id="cycle-report-box")
            preview = gr.Gallery(
                label="Before → after (a dry run shows its preview)",
                columns=2,
                height=360,
                object_fit="contain",
                elem_id="dry-preview",
            )

    def _collection(name: str | None) -> str:
        if not (name or "").strip():
            raise InvalidInputError("Choose a collection or type a new name (e.g. 'weather').")
        return str(name).strip()

    def on_open(name):
        name = _collection(name)
        try:
            return read_rules(studio, name), f"<p class='muted'>Editing {esc(name)}.toml</p>"
        except NotFoundError:
            return STARTER_RULES, f"<p class='muted'>New collection {esc(name)}: edit the example, then save.</p>"

    def on_validate(name, text):
        return summary_html(validate_rules_text(studio, _collection(name), text or ""), saved=False)

    def on_save(name, text):
        summary = save_rules(studio, _collection(name), text or "")
        names = list_rules(studio)
        return summary_html(summary, saved=True), gr.Dropdown(choices=names, value=summary.name), schedule_html(studio)

    def on_schedule():
        return schedule_html(studio)

    def _shown(result: CycleReport) -> tuple[str, list[tuple[str, str]]]:
        """The report with feed values and changes in words, and the before → after images (a real
        cycle's replace a stale dry run's preview)."""
        changes = cycle_changes(studio, evolved=result.evolved, would_change=result.would_change)
        feeds = feed_values(studio, result.snapshot_cid, result.feeds)
        pairs: list[tuple[str, str]] = []
        for change in changes:
            pairs.append((image_file(studio, change.before_image_cid), f"#{change.token_id} before"))
            if change.after_image_cid:
                label = "after" if change.applied else "preview (not sent)"
                pairs.append(
                    (image_file(studio, change.after_image_cid), f"#{change.token_id} v{change.version} {label}")
                )
        return report_html(result, feeds, changes), pairs

    def on_run(name):
        result = run_cycle(studio, _collection(name))
        shown, pairs = _shown(result)
        return shown, schedule_html(studio), pairs

    def on_dry(name):
        return _shown(run_cycle(studio, _collection(name), dry_run=True))

    def _live(collection_name: str, *, dry_run: bool):
        """Yield the step list as the cycle moves (its callback feeds run_streaming's queue), then the
        finished list and the cycle's result."""
        seen: dict[CycleStage, CycleProgress] = {}

        def work(report):
            def on_step(event: CycleProgress) -> None:
                report("cycle", {"event": event})

            return run_cycle(studio, collection_name, dry_run=dry_run, on_step=on_step)

        try:
            for kind, payload in run_streaming(work):
                if kind == "step":
                    event = payload[1]["event"]
                    seen[event.stage] = event
                    yield "steps", progress_html(seen)
                else:
                    yield "done", (progress_html(seen, finished=True), payload)
        except Exception:
            yield "steps", progress_html(seen, finished=True)
            raise

    # The old report and preview go as a new cycle starts (a bad name is refused before).
    def on_run_page(name):
        collection_name = _collection(name)
        yield "", gr.skip(), [], "<div class='studio-status'><span class='spinner'></span> Starting the cycle…</div>"
        for kind, payload in _live(collection_name, dry_run=False):
            if kind == "steps":
                yield gr.skip(), gr.skip(), gr.skip(), payload
            else:
                shown, pairs = _shown(payload[1])
                yield shown, schedule_html(studio), pairs, payload[0]

    def on_dry_page(name):
        collection_name = _collection(name)
        yield "", [], "<div class='studio-status'><span class='spinner'></span> Starting the dry run…</div>"
        for kind, payload in _live(collection_name, dry_run=True):
            if kind == "steps":
                yield gr.skip(), gr.skip(), payload
            else:
                shown, pairs = _shown(payload[1])
                yield shown, pairs, payload[0]

    # Rules errors (file, line, field) stay under the editor, in place of "edit the example, then save".
    # Open, Validate and Save write the same message: one at a time, in the order they were asked
    # (an Open still running from the name's typing used to finish after a quick Save and replace
    # its "Saved").
    for trigger in (load.click, collection.input):
        trigger(
            shows_errors(message, [editor, message])(on_open),
            [collection],
            [editor, message],
            api_visibility="private",
            concurrency_id="rules_file",
            concurrency_limit=1,
        )
    api_endpoint(on_open, [collection], [editor, message], "open_rules")
    validate.click(
        shows_errors(message, [message])(on_validate),
        [collection, editor],
        [message],
        api_visibility="private",
        concurrency_id="rules_file",
        concurrency_limit=1,
    )
    api_endpoint(on_validate, [collection, editor], [message], "validate_rules")
    save_outputs = [message, collection, schedule]
    save.click(
        shows_errors(message, save_outputs)(on_save),
        [collection, editor],
        save_outputs,
        api_visibility="private",
        concurrency_id="rules_file",
        concurrency_limit=1,
    )
    api_endpoint(on_save, [collection, editor], save_outputs, "save_rules")
    refresh.click(
        shows_errors(cycle_error, [schedule])(on_schedule), None, [schedule, cycle_error], api_visibility="private"
    )
    api_endpoint(on_schedule, [], [schedule], "schedule")
    # The page's events stream the cycle's steps into the step list under the buttons.
    run.click(
        shows_errors(cycle_error, [report, schedule, preview, steps])(on_run_page),
        [collection],
        [report, schedule, preview, steps, cycle_error],
        api_visibility="private",
        show_progress="hidden",
        concurrency_id="evolve",
        concurrency_limit=1,
    )
    api_endpoint(lambda name: on_run(name)[:2], [collection], [report, schedule], "run_cycle", concurrency_id="evolve")
    dry.click(
        shows_errors(cycle_error, [report, preview, steps])(on_dry_page),
        [collection],
        [report, preview, steps, cycle_error],
        api_visibility="private",
        show_progress="hidden",
        concurrency_id="evolve",
    )
    api_endpoint(on_dry, [collection], [report, preview], "dry_run", concurrency_id="evolve")
    return EvolveTab(collection=collection, editor=editor, schedule=schedule, refresh_schedule=on_schedule)
