"""The Mint tab: a draft becomes a token; each step (pin image, pin metadata, CID check, transaction,
confirmation) shows as it happens, with CIDs, gateway links, the transaction hash, token id and gas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio.services.drafts import get_draft
from studio.services.errors import InvalidInputError
from studio.services.minting import MintOutcome, mint_draft, tokens_from_draft
from studio.services.rules_files import list_rules
from studio.services.studio import Studio
from studio.ui.common import api_endpoint, code, error_box, esc, link, readable_errors, run_streaming, shows_errors
from studio.ui.create import draft_file

STEP_TITLES = {
    "pin image": "Pin the image",
    "pin metadata": "Pin the metadata",
    "metadata folder": "Pin the drop's metadata folder",
    "CID check": "Check the CIDs",
    "transaction": "Send the transaction",
    "confirmation": "Confirmed on chain",
    "royalty": "Set the token's royalty",
}


@dataclass
class MintTab:
    draft: gr.Dropdown
    rules: gr.Dropdown
    preview: gr.Image
    token_id: gr.Number
    recipient: gr.Textbox


def parse_attributes(text: str) -> list[dict[str, Any]]:
    """'trait: value' per line; numbers become numbers (marketplaces show them as stats)."""
    attributes = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        trait, sep, value = line.partition(":")
        if not sep or not trait.strip() or not value.strip():
            raise InvalidInputError(f"Attributes line {number} ({line!r}) needs 'trait: value', e.g. 'Palette: amber'.")
        attributes.append({"trait_type": trait.strip(), "value": _number_or_text(value.strip())})
    return attributes


def _number_or_text(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def gateway_links(studio: Studio, cid: str) -> str:
    public = studio.settings.ipfs.public_gateway.rstrip("/")
    return f"{link(f'/ipfs/{cid}', 'studio gateway')} · {link(f'{public}/ipfs/{cid}', 'public gateway')}"


def _detail(studio: Studio, step: str, details: dict[str, Any]) -> str:
    if step in ("pin image", "pin metadata"):
        return f"{code(details.get('cid'), keep=14)} · {details.get('size', 0):,} bytes"
    if step == "CID check":
        return (
            f"image {code(details.get('image_cid'), keep=12)} ({gateway_links(studio, details['image_cid'])}) · "
            f"metadata {code(details.get('metadata_cid'), keep=12)} ({gateway_links(studio, details['metadata_cid'])})"
        )
    if step == "transaction":
        return f"mint to {code(details.get('to'))}"
    if step == "confirmation":
        return (
            f"token <b>#{esc(details.get('token_id'))}</b> · tx {code(details.get('tx_hash'))} · "
            f"block {esc(details.get('block_number'))} · gas used {details.get('gas_used', 0):,}"
        )
    if step == "royalty":
        return f"{int(details.get('royalty_bps', 0)) / 100:g} % to {code(details.get('receiver'))}"
    return esc(details)


def steps_html(studio: Studio, steps: list[tuple[str, dict[str, Any]]], *, state: str, error: str = "") -> str:
    items = []
    for index, (step, details) in enumerate(steps):
        last = index == len(steps) - 1
        mark = "⏳" if last and state == "running" else ("✖" if last and state == "failed" else "✔")
        items.append(
            f'<li data-step="{esc(step)}"><span class="state">{mark}</span><b>{esc(STEP_TITLES.get(step, step))}</b>'
            f"<br><span class='muted'>{_detail(studio, step, details)}</span></li>"
        )
    if state == "failed":
        items.append(
            f'<li><span class="state">✖</span><b>Stopped</b><br><span class="badge bad">{esc(error)}</span></li>'
        )
    return f'<ul class="step-list" id="mint-steps-list">{"".join(items)}</ul>'


def result_html(
    studio: Studio,
    outcome: MintOutcome,
    living: bool,
    rules_name: str | None,
    draft_id: int | None = None,
    another_edition: bool = False,
) -> str:
    edition = " (another edition of it)" if another_edition else ""
    rows = [
        ("Token", f"<b>#{outcome.token_id}</b>"),
        ("From draft", f"#{draft_id} became token #{outcome.token_id}{edition}" if draft_id is not None else "—"),
        ("Living", f"yes, rules <code>{esc(rules_name)}</code>" if living else "no (its artwork stays as minted)"),
        ("Transaction", code(outcome.tx_hash, keep=14)),
        ("Block", esc(outcome.block_number)),
        ("Gas used", f"{outcome.gas_used:,}"),
        (
            "Metadata",
            f"{code(outcome.published.metadata_cid, keep=14)} · "
            f"{gateway_links(studio, outcome.published.metadata_cid)}",
        ),
        (
            "Image",
            f"{code(outcome.published.image_cid, keep=14)} · {gateway_links(studio, outcome.published.image_cid)}",
        ),
        ("Collector page", link(f"/gallery/{outcome.token_id}", f"/gallery/{outcome.token_id}")),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<p><span class="badge good">Minted</span></p><table class="kv" id="mint-result-table">{body}</table>'


def build(studio: Studio) -> MintTab:
    default_royalty = studio.settings.chain.royalty_bps / 100
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            draft = gr.Dropdown(
                [], label="Draft", allow_custom_value=True, info="Generate one in Create first", elem_id="mint-draft"
            )
            preview = gr.Image(label="Artwork", type="filepath", interactive=False, height=300)
            draft_notice = gr.HTML("", elem_id="mint-draft-notice", padding=False)
            name = gr.Textbox(label="Name", placeholder="Lighthouse at Dusk", elem_id="mint-name")
            description = gr.Textbox(label="Description", lines=3)
            attributes = gr.Textbox(
                label="Attributes",
                lines=3,
                placeholder="Palette: amber\nEdition: 1",
                info="one 'trait: value' per line",
            )
            with gr.Row():
                royalty = gr.Number(label="Royalty (%)", value=default_royalty, minimum=0, maximum=100, step=0.5)
                recipient = gr.Textbox(label="Recipient address", placeholder="0x…", elem_id="mint-recipient")
            royalty_receiver = gr.Textbox(
                label="Royalty receiver",
                placeholder="0x…",
                info=f"Who is paid this token's royalty; required when the royalty is not {default_royalty:g} %",
                elem_id="mint-royalty-receiver",
            )
            with gr.Row():
                living = gr.Checkbox(label="Living token (evolves with data)", value=False, elem_id="mint-living")
                rules = gr.Dropdown(
                    [],
                    label="Rules file",
                    allow_custom_value=True,
                    info="Edit rules in the Evolve tab",
                    elem_id="mint-rules",
                )
            another = gr.Checkbox(
                label="Mint another edition (this draft is already a token)",
                value=False,
                visible=False,
                elem_id="mint-another",
            )
            mint = gr.Button("Mint", variant="primary", elem_id="mint-button")
            mint_error = error_box("mint-error")
        with gr.Column(scale=6):
            gr.Markdown("### Progress")
            steps = gr.HTML("<p class='muted'>Each step shows here as it happens.</p>", elem_id="mint-steps")
            result = gr.HTML(elem_id="mint-result")
            token_id = gr.Number(visible=False, precision=0)

    def minted_notice(draft_id: int | None) -> tuple[str, Any]:
        """What the draft already became, and the 'another edition' box only when it did."""
        earlier = tokens_from_draft(studio, int(draft_id)) if draft_id is not None else []
        if not earlier:
            return "", gr.Checkbox(value=False, visible=False)
        which = ", ".join(f"{link(f'/gallery/{t.token_id}', f'token #{t.token_id}')} ({esc(t.name)})" for t in earlier)
        notice = (
            f"<div class='studio-notice'>Draft #{draft_id} is already minted: it became {which}. "
            "Minting it again makes another edition of the same artwork; tick the box below if that "
            "is what you want.</div>"
        )
        return notice, gr.Checkbox(value=False, visible=True)

    @readable_errors
    def on_draft(draft_id):
        if draft_id is None:
            return None, "", gr.Checkbox(value=False, visible=False)
        return draft_file(studio, get_draft(studio, int(draft_id))), *minted_notice(int(draft_id))

    def on_mint(
        draft_id,
        name_text,
        description_text,
        attributes_text,
        royalty_pct,
        recipient_text,
        is_living,
        rules_name,
        royalty_receiver_text=None,
        another_edition=False,
    ):
        if draft_id is None:
            raise InvalidInputError("Choose a draft to mint: generate one in the Create tab, then pick it here.")
        checked_attributes = parse_attributes(attributes_text)
        royalty_bps = None if royalty_pct is None else round(float(royalty_pct) * 100)
        recipient_value = (recipient_text or "").strip() or studio.chain.address
        seen: list[tuple[str, dict[str, Any]]] = []

        def work(report):
            return mint_draft(
                studio,
                int(draft_id),
                name=name_text or "",
                description=description_text or "",
                attributes=checked_attributes,
                recipient=recipient_value,
                royalty_bps=royalty_bps,
                royalty_receiver=royalty_receiver_text,
                living=bool(is_living),
                rules_name=rules_name if is_living else None,
                on_step=report,
                another_edition=bool(another_edition),
            )

        outcome: MintOutcome | None = None
        try:
            for kind, payload in run_streaming(work):
                if kind == "step":
                    seen.append(payload)
                    yield steps_html(studio, seen, state="running"), "", gr.skip()
                else:
                    outcome = payload
        except Exception as exc:
            yield steps_html(studio, seen, state="failed", error=str(exc)), "", gr.skip()
            raise
        assert outcome is not None
        yield (
            steps_html(studio, seen, state="done"),
            result_html(studio, outcome, bool(is_living), rules_name, int(draft_id), bool(another_edition)),
            outcome.token_id,
        )

    def on_mint_page(*args):
        """The page's mint: as the API's, then the form is emptied (a second click cannot repeat the
        mint by accident) and the draft says which token it became."""
        for steps_value, result_value, token_value in on_mint(*args):
            if isinstance(token_value, int):
                notice, another_update = minted_notice(args[0])
                yield (steps_value, result_value, token_value, "", "", "", False, another_update, notice)
            else:
                yield (steps_value, result_value, token_value, *[gr.skip()] * 6)

    draft.change(on_draft, [draft], [preview, draft_notice, another], api_visibility="private")
    mint_inputs = [draft, name, description, attributes, royalty, recipient, living, rules, royalty_receiver, another]
    mint_outputs = [steps, result, token_id]
    page_outputs = [*mint_outputs, name, description, attributes, living, another, draft_notice]
    mint.click(
        shows_errors(mint_error, page_outputs)(on_mint_page),
        mint_inputs,
        [*page_outputs, mint_error],
        api_visibility="private",
        concurrency_limit=2,
        concurrency_id="mint",
    )
    api_endpoint(on_mint, mint_inputs, mint_outputs, "mint", concurrency_id="mint")
    return MintTab(draft=draft, rules=rules, preview=preview, token_id=token_id, recipient=recipient)


def rules_choices(studio: Studio) -> Any:
    names = list_rules(studio)
    return gr.Dropdown(choices=names, value=names[0] if names else None)
