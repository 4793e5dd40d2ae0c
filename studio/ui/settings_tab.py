"""The Settings tab: network, contract, pinning backends and their health, wallet and balance, model and
device. Read-only; secrets are shown as set or not set, never their values."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from studio.services.overview import StudioOverview, studio_overview
from studio.services.studio import Studio
from studio.ui.common import esc, readable_errors


def overview_html(view: StudioOverview) -> str:
    def badge(ok: bool, yes: str, no: str) -> str:
        return f"<span class='badge {'good' if ok else 'bad'}'>{esc(yes if ok else no)}</span>"

    chain_rows = [
        ("Network", f"{esc(view.network)} · {esc(view.rpc_host)}"),
        ("Chain id", esc(view.chain_id)),
        ("Contract", f"<code>{esc(view.contract_address or '—')}</code>"),
        ("Wallet", f"<code>{esc(view.wallet_address or '—')}</code>"),
        ("Balance", f"{esc(view.balance_eth)} ETH" if view.balance_eth is not None else "—"),
    ]
    if view.chain_error:
        chain_rows.append(("Chain", f"<span class='badge bad'>{esc(view.chain_error)}</span>"))
    pin_rows = [(esc(p.backend), f"{badge(p.ok, 'healthy', 'unavailable')} {esc(p.detail)}") for p in view.pinning]
    pin_rows.append(("Public gateway", esc(view.public_gateway)))
    model = view.model
    model_rows = [
        ("Model", f"<code>{esc(model.get('model_id'))}</code>"),
        ("Loaded", loaded_text(view)),
        ("Device", f"{esc(model.get('device'))} ({esc(model.get('dtype'))})"),
        ("Preset", esc(model.get("preset"))),
        ("Tiny decoder", esc(model.get("tiny_autoencoder") or "—")),
    ]
    secret_rows = [(esc(name), secret_state(name, is_set, view)) for name, is_set in view.secrets.items()]
    other_rows = [
        ("Data directory", f"<code>{esc(view.data_dir)}</code>"),
        ("Evolution scheduler", "runs beside the studio" if view.evolve_enabled else "off (STUDIO_EVOLVE__ENABLED)"),
    ]

    def table(title: str, rows: list[tuple[str, str]]) -> str:
        body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
        return f"<h4>{title}</h4><table class='kv'>{body}</table>"

    return (
        "<div id='settings-overview'>"
        + table("Chain", chain_rows)
        + table("IPFS pinning", pin_rows)
        + table("Generation", model_rows)
        + table("Secrets", secret_rows)
        + table("Studio", other_rows)
        + "<p class='muted'>Change settings with STUDIO_* environment variables, .env or studio.toml "
        "(see README, Configuration), then restart the studio.</p></div>"
    )


def loaded_text(view: StudioOverview) -> str:
    status = view.model_status
    if status is None or status.state == "loaded":
        return "yes" if view.model.get("loaded") else "on first generation"
    if status.state == "missing":
        return f"<span class='badge bad'>not available</span> {esc(status.message)}"
    if status.state == "download":
        return f"on first generation, after a download · {esc(status.message)}"
    return "on first generation (the model is on this machine)"


def secret_state(name: str, is_set: bool, view: StudioOverview) -> str:
    """Set (green); needed here and missing (red, with why); optional (grey, with when it is used)."""
    needed, why = view.secret_needs.get(name, (False, ""))
    if is_set:
        return f"<span class='badge good' data-secret='set'>set</span> <span class='muted'>{esc(why)}</span>"
    if needed:
        return f"<span class='badge bad' data-secret='missing'>not set: needed</span> {esc(why)}"
    return f"<span class='badge' data-secret='optional'>optional</span> <span class='muted'>not set · {esc(why)}</span>"


def build(studio: Studio) -> tuple[gr.HTML, Callable[[], str]]:
    view = gr.HTML(elem_id="settings-view")
    check = gr.Button("↻ Check again", size="sm")

    @readable_errors
    def on_check():
        return overview_html(studio_overview(studio))

    check.click(on_check, None, [view], api_name="overview")
    return view, on_check
