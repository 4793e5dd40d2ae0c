"""The Generative tab: paste or edit a collection spec, generate its editions with a progress bar and
ETA (Stop keeps what was made; Generate again resumes), review them (regenerate one with a new seed,
exclude one), see the rarity table, and mint the drop. Every button calls studio/services/collections.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr

from studio.services import collections
from studio.services.errors import InvalidInputError
from studio.services.rules_files import list_rules
from studio.services.studio import Studio
from studio.ui.collection import image_file
from studio.ui.common import code, esc, readable_errors, run_streaming

STARTER_SPEC = """\
# A generative collection. See README (Collections) for every field.
name = "harbours"
title = "Harbours"
description = "Harbours at dusk, one of a kind each"
editions = 12
base_seed = 1234                 # edition n's seed is base_seed + n - 1
prompt = "a {boat} in a harbour, {weather}, oil painting"
negative_prompt = "blurry, text"
width = 512
height = 512

[traits.boat]
trait_type = "Boat"
[traits.boat.values]             # value = weight: the rarer, the smaller
sailboat = 60
trawler = 30
"golden galleon" = 10

[traits.weather]
trait_type = "Weather"
[traits.weather.values]
"in thick fog" = 1
"under a clear sky" = 2
"in a storm" = 1
"""

# Stop buttons reach the run they stop through these events (one per collection name).
_STOPS: dict[str, threading.Event] = {}


def progress_html(done: int, total: int, eta_s: float | None, note: str = "") -> str:
    eta = "—" if eta_s is None else (f"{eta_s:,.0f} s" if eta_s < 120 else f"{eta_s / 60:,.1f} min")
    return (
        f"<div id='collection-progress' data-done='{done}' data-total='{total}'>"
        f"<progress max='{max(total, 1)}' value='{done}' style='width:100%'></progress>"
        f"<div><b>{done}/{total}</b> editions · ETA {esc(eta)} {esc(note)}</div></div>"
    )


def rarity_html(rows: list[collections.RarityRow]) -> str:
    if not rows:
        return "<p class='muted'>No traits.</p>"
    body = "".join(
        f"<tr data-trait='{esc(r.trait)}' data-value='{esc(r.value)}'><td>{esc(r.trait_type)}</td><td>{esc(r.value)}"
        f"</td><td>{r.count}</td><td>{r.share:.1%}</td><td class='muted'>{r.expected_share:.1%}</td></tr>"
        for r in rows
    )
    head = "<tr><th>Trait</th><th>Value</th><th>Count</th><th>Share</th><th>Weight</th></tr>"
    return f"<table class='timeline' id='rarity-table'>{head}{body}</table>"


def edition_label(edition: collections.EditionView) -> str:
    traits = ", ".join(edition.traits.values())
    state = " · EXCLUDED" if edition.excluded else (f" · token {edition.token_id}" if edition.token_id else "")
    return f"#{edition.number} · {traits}{state}"


def build(studio: Studio) -> tuple[gr.Dropdown, Any]:
    """The tab's widgets; returns the collection picker and a function filling it (run on page load)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            editor = gr.Code(
                value=STARTER_SPEC, label="Collection spec (TOML)", language=None, lines=22, elem_id="spec-editor"
            )
            with gr.Row():
                generate = gr.Button("Generate / resume", variant="primary", elem_id="collection-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="collection-stop")
            progress = gr.HTML(progress_html(0, 0, None), elem_id="collection-progress-box")
        with gr.Column(scale=7):
            with gr.Row():
                chosen = gr.Dropdown(
                    [], label="Collection", allow_custom_value=True, elem_id="collection-name", scale=4
                )
                refresh = gr.Button("↻ Refresh", scale=1, min_width=90, elem_id="collection-refresh-grid")
            grid = gr.Gallery(
                label="Editions (click one to pick it)",
                columns=6,
                height=340,
                allow_preview=False,
                object_fit="cover",
                elem_id="editions-grid",
                elem_classes=["thumbs"],
            )
            shown = gr.State([])
            with gr.Row():
                number = gr.Number(label="Edition", precision=0, elem_id="edition-number", scale=2)
                regenerate = gr.Button("Regenerate (new seed)", elem_id="edition-regenerate", scale=2)
                exclude = gr.Button("Exclude / include", elem_id="edition-exclude", scale=2)
            edition_info = gr.HTML(elem_id="edition-info")
            rarity = gr.HTML(elem_id="rarity-box")
            with gr.Row():
                recipient = gr.Textbox(label="Mint to", placeholder="0x… (empty: the studio's wallet)", scale=4)
                living = gr.Checkbox(label="Living tokens", scale=1, elem_id="collection-living")
                rules = gr.Dropdown([], label="Rules file", allow_custom_value=True, scale=2)
            mint = gr.Button("Mint the collection", variant="primary", elem_id="collection-mint")
            mint_result = gr.HTML(elem_id="collection-mint-result")

    def _name(value: Any) -> str:
        text = str(value or "").strip()
        if not text:
            raise InvalidInputError("Choose a collection, or generate one from a spec first.")
        return text

    def _review(name: str) -> tuple[Any, list[int], str, str]:
        view = collections.get_collection(studio, name)
        items = [(image_file(studio, e.image_cid), edition_label(e)) for e in view.editions if e.image_cid]
        ids = [e.number for e in view.editions if e.image_cid]
        done = view.generated
        bar = progress_html(done, len(view.editions), None if done < len(view.editions) else 0.0)
        return gr.Gallery(value=items), ids, rarity_html(collections.rarity(studio, name)), bar

    def _names(value: str | None) -> Any:
        names = collections.list_collections(studio)
        return gr.Dropdown(choices=names, value=value if value else (names[0] if names else None))

    @readable_errors
    def on_generate(text: str) -> Iterator[tuple[Any, ...]]:
        view = collections.open_collection(studio, text or "", source="spec")
        name = view.name
        event = _STOPS.setdefault(name, threading.Event())
        event.clear()
        grid_value, ids, table, _bar = _review(name)
        yield progress_html(view.generated, len(view.editions), None, "starting"), _names(name), grid_value, ids, table

        def work(report: Any) -> collections.RunResult:
            return collections.resume_collection(
                studio, name, on_progress=lambda p: report("progress", {"p": p}), cancel=event
            )

        for kind, value in run_streaming(work):
            if kind == "step":
                p = value[1]["p"]
                bar = progress_html(p.done, p.total, p.eta_s, p.message)
                if p.edition is None:
                    yield bar, gr.skip(), gr.skip(), gr.skip(), gr.skip()
                else:
                    grid_value, ids, table, _bar = _review(name)
                    yield bar, gr.skip(), grid_value, ids, table
            else:
                result: collections.RunResult = value
                note = "stopped: Generate again resumes" if result.stopped else "done"
                grid_value, ids, table, _bar = _review(name)
                yield progress_html(result.generated, result.total, 0.0, note), gr.skip(), grid_value, ids, table

    @readable_errors
    def on_stop(name: str | None) -> None:
        event = _STOPS.get(_name(name))
        if event is None:
            gr.Info("Nothing is running for this collection.")
            return
        event.set()
        gr.Info("Stopping after the current edition; what was made is kept.")

    @readable_errors
    def on_refresh(name: str | None) -> tuple[Any, ...]:
        grid_value, ids, table, bar = _review(_name(name))
        return grid_value, ids, table, bar

    def _edition_html(edition: collections.EditionView) -> str:
        traits = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in edition.traits.items())
        state = "excluded" if edition.excluded else ("minted" if edition.token_id else "kept")
        return (
            f"<p id='edition-{edition.number}' data-excluded='{str(edition.excluded).lower()}'><b>#{edition.number}</b>"
            f" · {state} · seed {edition.seed} · {traits} · image {code(edition.image_cid)}</p>"
        )

    @readable_errors
    def on_select(name: Any, ids: list[int], evt: gr.SelectData) -> tuple[Any, Any]:
        if evt.index is None or evt.index >= len(ids):
            return gr.skip(), gr.skip()
        picked = ids[evt.index]
        edition = next(e for e in collections.get_collection(studio, _name(name)).editions if e.number == picked)
        return picked, _edition_html(edition)

    def _edition(name: Any, value: Any) -> tuple[str, int]:
        if value is None:
            raise InvalidInputError("Pick an edition: click it in the grid or type its number.")
        return _name(name), int(value)

    @readable_errors
    def on_regenerate(name: Any, value: Any) -> tuple[Any, ...]:
        name, edition_number = _edition(name, value)
        edition = collections.regenerate_edition(studio, name, edition_number)
        grid_value, ids, table, _bar = _review(name)
        return _edition_html(edition), grid_value, ids, table

    @readable_errors
    def on_exclude(name: Any, value: Any) -> tuple[Any, ...]:
        name, edition_number = _edition(name, value)
        current = next(e for e in collections.get_collection(studio, name).editions if e.number == edition_number)
        edition = collections.set_excluded(studio, name, edition_number, not current.excluded)
        grid_value, ids, table, _bar = _review(name)
        return _edition_html(edition), grid_value, ids, table

    @readable_errors
    def on_mint(name: Any, to: str, is_living: bool, rules_name: str | None) -> Iterator[str]:
        name = _name(name)

        def work(report: Any) -> collections.MintResult:
            return collections.mint_collection(
                studio,
                name,
                recipient=(to or "").strip() or None,
                living=bool(is_living),
                rules_name=rules_name if is_living else None,
                on_progress=lambda p: report("progress", {"p": p}),
            )

        for kind, value in run_streaming(work):
            if kind == "step":
                p = value[1]["p"]
                yield progress_html(p.done, p.total, p.eta_s, f"minting {p.message}")
            else:
                result: collections.MintResult = value
                tokens = ", ".join(f"#{n} → token {t}" for n, t in sorted(result.minted.items())) or "none new"
                yield (
                    f"<p><span class='badge good'>Minted</span> {esc(name)}: {esc(tokens)} · gas {result.gas_used:,}"
                    f" · collection metadata {code(result.metadata_cid)}</p>"
                )

    @readable_errors
    def on_rules() -> Any:
        return gr.Dropdown(choices=list_rules(studio))

    review_outputs = [grid, shown, rarity]
    generate.click(
        on_generate,
        [editor],
        [progress, chosen, *review_outputs],
        api_name="generate_collection",
        concurrency_id="generation",
    )
    stop.click(on_stop, [chosen], None, api_name="stop_collection", queue=False)
    refresh.click(on_refresh, [chosen], [*review_outputs, progress], api_name="collection_review")
    chosen.input(on_refresh, [chosen], [*review_outputs, progress], api_visibility="private")
    grid.select(on_select, [chosen, shown], [number, edition_info], api_visibility="private")
    regenerate.click(
        on_regenerate,
        [chosen, number],
        [edition_info, *review_outputs],
        api_name="regenerate_edition",
        concurrency_id="generation",
    )
    exclude.click(on_exclude, [chosen, number], [edition_info, *review_outputs], api_name="exclude_edition")
    mint.click(on_mint, [chosen, recipient, living, rules], [mint_result], api_name="mint_collection")
    living.change(on_rules, None, [rules], api_visibility="private")
    return chosen, lambda: _names(None)
