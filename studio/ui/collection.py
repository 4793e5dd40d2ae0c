"""The Collection tab: the collection's tokens; a token's timeline of versions with the feed values
that caused each change, its evolution as an animated GIF, its on-chain history and a freeze action."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gradio as gr

from studio.records import Token
from studio.services.errors import InvalidInputError
from studio.services.living import change_reasons, evolution_webp
from studio.services.studio import Studio
from studio.services.tokens import (
    VersionView,
    chain_history,
    evolution_animation,
    freeze_token,
    get_token,
    list_tokens,
    timeline,
)
from studio.ui.common import api_endpoint, code, error_box, esc, link, readable_errors, shows_errors
from studio.ui.create import exports_dir


@dataclass
class CollectionTab:
    token: gr.Dropdown
    grid: gr.Gallery
    shown_ids: gr.State
    refresh: Any


def image_file(studio: Studio, cid: str) -> str:
    path = exports_dir(studio) / f"{cid}.png"
    if not path.exists():
        temp = path.with_suffix(".tmp")
        temp.write_bytes(studio.store.cat(cid))
        temp.replace(path)
    return str(path)


def token_label(token: Token) -> str:
    living = "living" if token.living and not token.frozen else ("frozen" if token.frozen else "static")
    return f"#{token.token_id} · {token.name} · v{token.current_version} · {living}"


def feed_values_html(view: VersionView, token_id: int, reasons: list[str] | None = None) -> str:
    if reasons:  # in words: "weather: frozen, because temperature = -5.0"
        words = "<br>".join(f"<span class='why'>{esc(line)}</span>" for line in reasons)
        snapshot = (
            f"<br><span class='muted'>snapshot {code(view.feed_snapshot_cid)} "
            f"{link('/ipfs/' + view.feed_snapshot_cid, 'json')}</span>"
            if view.feed_snapshot_cid
            else ""
        )
        return words + snapshot
    parts = []
    traits = ((view.state or {}).get("traits") or {}) if view.state else {}
    for trait, fragment in sorted(traits.items()):
        parts.append(f"<span class='badge'>{esc(trait)}: {esc(fragment)}</span>")
    feeds = (view.feed_values or {}).get("feeds") or {}
    for feed, reading in sorted(feeds.items()):
        if not isinstance(reading, dict):
            continue
        if reading.get("ok"):
            value = reading.get("value")
            per_token = (reading.get("per_token") or {}).get(str(token_id))
            shown = per_token if per_token is not None else value
            text = json.dumps(shown, ensure_ascii=False) if isinstance(shown, dict) else str(shown)
            parts.append(f"{esc(feed)} = <b>{esc(text)}</b>")
        else:
            parts.append(f"{esc(feed)}: <span class='badge bad'>{esc(reading.get('error') or 'unavailable')}</span>")
    if view.feed_snapshot_cid:
        parts.append(f"snapshot {code(view.feed_snapshot_cid)} {link('/ipfs/' + view.feed_snapshot_cid, 'json')}")
    return "<br>".join(parts) if parts else "<span class='muted'>the mint</span>"


def timeline_html(views: list[VersionView], token_id: int, reasons: dict[int, list[str]] | None = None) -> str:
    rows = []
    for view in reversed(views):
        rows.append(
            f"<tr data-version='{view.version}'><td><b>v{view.version}</b><br>"
            f"<span class='muted'>{esc(view.created_at)}</span></td>"
            f"<td>{feed_values_html(view, token_id, (reasons or {}).get(view.version))}</td>"
            f"<td>{code(view.metadata_cid)} {link('/ipfs/' + view.metadata_cid, 'metadata')}</td>"
            f"<td>{code(view.tx_hash)}<br><span class='muted'>gas {view.gas_used or 0:,}</span></td></tr>"
        )
    head = "<tr><th>Version</th><th>Why it changed</th><th>Metadata</th><th>Transaction</th></tr>"
    return f'<table class="timeline" id="token-timeline">{head}{"".join(rows)}</table>'


def header_html(token: Token) -> str:
    state = (
        "<span class='badge bad'>frozen</span>"
        if token.frozen
        else (
            f"<span class='badge good'>living · rules {esc(token.rules_name)}</span>"
            if token.living
            else "<span class='badge'>static</span>"
        )
    )
    return (
        f"<h3 style='margin:0'>#{token.token_id} · {esc(token.name)} {state}</h3>"
        f"<p class='muted'>{esc(token.description)}</p>"
        f"<p>Version <b>{token.current_version}</b> · {link(f'/gallery/{token.token_id}', 'collector page')}</p>"
    )


def chain_history_html(studio: Studio, token_id: int) -> str:
    history = chain_history(studio, int(token_id))
    rows = []
    for event in history.events:
        when = datetime.fromtimestamp(event.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if event.kind == "MetadataSet":
            detail = f"v{event.version} → {code(event.metadata_cid)}"
        elif event.kind == "PermanentURI":
            detail = f"frozen for good at {code(event.uri, keep=14)}"
        else:
            sender = event.from_address or ""
            what = "mint to" if int(sender, 16) == 0 else f"{code(sender)} →"
            detail = f"{what} {code(event.to_address)}"
        rows.append(
            f"<tr><td>{event.block_number}</td><td>{esc(event.kind)}</td><td>{detail}</td>"
            f"<td>{code(event.tx_hash)}</td><td>{esc(when)}</td></tr>"
        )
    head = "<tr><th>Block</th><th>Event</th><th>Detail</th><th>Transaction</th><th>Time</th></tr>"
    note = "<p><span class='badge bad'>frozen on chain</span></p>" if history.frozen else ""
    return f'{note}<table class="timeline" id="chain-history">{head}{"".join(rows)}</table>'


def build(studio: Studio) -> CollectionTab:
    with gr.Row():
        token = gr.Dropdown([], label="Token", allow_custom_value=True, scale=5, elem_id="collection-token")
        refresh = gr.Button("↻ Refresh", scale=1, min_width=110, elem_id="collection-refresh")
    collection_error = error_box("collection-error")
    grid = gr.Gallery(
        label="Collection",
        columns=6,
        height=260,
        allow_preview=False,
        object_fit="cover",
        elem_classes=["thumbs"],
        elem_id="collection-grid",
    )
    shown_ids = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            header = gr.HTML(elem_id="token-header")
            animation = gr.Image(label="Evolution", type="filepath", interactive=False, height=300)
            with gr.Group():
                confirm = gr.Checkbox(
                    label="I understand freezing is permanent: the artwork never changes again",
                    elem_id="freeze-confirm",
                )
                freeze = gr.Button("Freeze token", variant="stop", elem_id="freeze")
            freeze_error = error_box("freeze-error")
        with gr.Column(scale=7):
            versions = gr.Gallery(
                label="Versions", columns=5, height=200, allow_preview=True, object_fit="cover", elem_classes=["thumbs"]
            )
            gr.Markdown("#### Timeline")
            timeline_view = gr.HTML(elem_id="token-timeline-box")
            with gr.Accordion("On-chain history", open=False):
                history = gr.HTML()

    def _refresh(selected: int | None = None):
        tokens = list_tokens(studio)
        choices = [(token_label(t), t.token_id) for t in tokens]
        items = [(image_file(studio, t.current_image_cid), token_label(t)) for t in tokens]
        value = selected if selected is not None else (choices[0][1] if choices else None)
        return gr.Dropdown(choices=choices, value=value), gr.Gallery(value=items), [t.token_id for t in tokens]

    @readable_errors
    def on_refresh(selected):
        return _refresh(int(selected) if selected is not None else None)

    def on_open(token_id):
        if token_id is None:
            return "<p class='muted'>No token yet: mint one in the Mint tab.</p>", None, [], "", ""
        token_id = int(token_id)
        record = get_token(studio, token_id)
        views = timeline(studio, token_id)
        gif = (
            exports_dir(studio)
            / f"evolution-{record.chain_id}-{record.contract_address}-{token_id}-v{record.current_version}.gif"
        )
        if not gif.exists():
            gif.write_bytes(evolution_animation(studio, token_id))
        webp = gif.with_suffix(".webp")  # full size, 1.2 s a frame, once the token has changed
        if not webp.exists() and (animation := evolution_webp(studio, token_id)) is not None:
            webp.write_bytes(animation)
        if webp.exists():
            gif = webp
        images = [(image_file(studio, v.image_cid), f"v{v.version}") for v in views]
        return (
            header_html(record),
            str(gif),
            images,
            timeline_html(views, token_id, change_reasons(studio, token_id)),
            chain_history_html(studio, token_id),
        )

    def on_freeze(token_id, confirmed):
        if token_id is None:
            raise InvalidInputError("Choose a token to freeze.")
        if not confirmed:
            raise InvalidInputError("Tick the box to confirm: freezing is permanent.")
        tx_hash = freeze_token(studio, int(token_id))
        return False, (
            f"<div class='studio-status' id='freeze-done'>Token #{int(token_id)} is frozen for good "
            f"(transaction {code(tx_hash)}).</div>"
        )

    @readable_errors
    def freeze_controls(token_id):
        """A frozen token offers no freeze: the box and button are shown disabled, saying why."""
        frozen = token_id is not None and get_token(studio, int(token_id)).frozen
        return (
            gr.Checkbox(value=False, interactive=not frozen),
            gr.Button(value="Frozen for good" if frozen else "Freeze token", interactive=not frozen),
        )

    def on_select(ids, evt: gr.SelectData):
        return ids[evt.index] if evt.index is not None and evt.index < len(ids) else gr.skip()

    open_outputs = [header, animation, versions, timeline_view, history]
    show_token = shows_errors(collection_error, open_outputs)(on_open)
    refresh.click(on_refresh, [token], [token, grid, shown_ids], api_name="tokens").then(
        show_token, [token], [*open_outputs, collection_error], api_visibility="private"
    ).then(freeze_controls, [token], [confirm, freeze], api_visibility="private")
    token.change(show_token, [token], [*open_outputs, collection_error], api_visibility="private").then(
        freeze_controls, [token], [confirm, freeze], api_visibility="private"
    )
    api_endpoint(on_open, [token], open_outputs, "token_detail")
    grid.select(on_select, [shown_ids], [token], api_visibility="private")
    # After a freeze, everything that shows the token says so: the dropdown, the thumbnails, the
    # header and history (its PermanentURI row), and the freeze controls themselves.
    freeze.click(
        shows_errors(freeze_error, [confirm, freeze_error])(on_freeze),
        [token, confirm],
        [confirm, freeze_error],
        api_visibility="private",
    ).then(on_refresh, [token], [token, grid, shown_ids], api_visibility="private").then(
        show_token, [token], [*open_outputs, collection_error], api_visibility="private"
    ).then(freeze_controls, [token], [confirm, freeze], api_visibility="private")
    api_endpoint(on_freeze, [token, confirm], [confirm, freeze_error], "freeze")
    return CollectionTab(token=token, grid=grid, shown_ids=shown_ids, refresh=_refresh)
