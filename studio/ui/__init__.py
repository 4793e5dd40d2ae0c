"""The studio's web UI: Gradio Blocks (one module per tab) and the collector gallery pages.

The UI holds no business logic: every button calls a function in studio/services/ (or evolve/ for the
Evolve tab's schedule and cycles) and shows its result; errors arrive as gr.Error with the service's
own message.
"""

from __future__ import annotations

import gradio as gr

from studio.services.drafts import list_drafts
from studio.services.rules_files import list_rules, read_rules
from studio.services.studio import Studio
from studio.ui import collection, collections_tab, create, evolve_tab, mint, settings_tab
from studio.ui.common import readable_errors

HEADER = """
<div id="studio-header">
  <h1>Living NFT Studio</h1>
  <span class="tagline">Generate · pin to IPFS · mint tokens that evolve with the world</span>
  <span style="margin-left:auto"><a href="/gallery" target="_blank">Collector gallery ↗</a></span>
</div>
"""


def build_ui(studio: Studio) -> gr.Blocks:
    """The Blocks of the studio (theme and CSS are given when it is mounted, see studio.ui.server)."""
    with gr.Blocks(title="Living NFT Studio", analytics_enabled=False) as blocks:
        gr.HTML(HEADER)
        with gr.Tabs():
            with gr.Tab("Create", id="create"):
                create_tab = create.build(studio)
            with gr.Tab("Mint", id="mint"):
                mint_tab = mint.build(studio)
            with gr.Tab("Collection", id="collection"):
                collection_tab = collection.build(studio)
            with gr.Tab("Evolve", id="evolve"):
                evolve_view = evolve_tab.build(studio)
            with gr.Tab("Generative", id="collections"):
                collections_picker, collections_names = collections_tab.build(studio)
            with gr.Tab("Settings", id="settings"):
                settings_view, check_settings = settings_tab.build(studio)

        def mint_drafts(selected):
            choices = create.draft_choices(studio)
            value = selected if selected is not None else (choices[0][1] if choices else None)
            return gr.Dropdown(choices=choices, value=value)

        # A new draft (or a draft picked in Create) is the one the Mint tab offers.
        create_tab.draft.change(mint_drafts, [create_tab.draft], [mint_tab.draft], api_visibility="private")

        @readable_errors
        def after_mint(token_id):
            if token_id is None:
                return gr.skip(), gr.skip(), gr.skip()
            return collection_tab.refresh(int(token_id))

        mint_tab.token_id.change(
            after_mint,
            [mint_tab.token_id],
            [collection_tab.token, collection_tab.grid, collection_tab.shown_ids],
            api_visibility="private",
        )

        def rules_update(selected):
            names = list_rules(studio)
            value = selected if selected in names else (names[0] if names else None)
            return gr.Dropdown(choices=names, value=value)

        evolve_view.collection.change(
            rules_update, [evolve_view.collection], [mint_tab.rules], api_visibility="private"
        )

        @readable_errors
        def on_load():
            drafts = list_drafts(studio, limit=1)
            gallery_value, create_draft, shown = create_tab.refresh(drafts[0].id if drafts else None)
            token_value, grid_value, token_ids = collection_tab.refresh()
            names = list_rules(studio)
            first = names[0] if names else None
            return (
                create_tab.banner_html(),
                gallery_value,
                create_draft,
                shown,
                mint_drafts(drafts[0].id if drafts else None),
                gr.Dropdown(choices=names, value=first),
                gr.Textbox(placeholder=f"0x… (empty: the studio's wallet {studio.chain.address})"),
                token_value,
                grid_value,
                token_ids,
                gr.Dropdown(choices=names, value=first),
                read_rules(studio, first) if first else evolve_tab.STARTER_RULES,
                evolve_view.refresh_schedule(),
                check_settings(),
            )

        blocks.load(
            on_load,
            None,
            [
                create_tab.banner,
                create_tab.gallery,
                create_tab.draft,
                create_tab.shown_ids,
                mint_tab.draft,
                mint_tab.rules,
                mint_tab.recipient,
                collection_tab.token,
                collection_tab.grid,
                collection_tab.shown_ids,
                evolve_view.collection,
                evolve_view.editor,
                evolve_view.schedule,
                settings_view,
            ],
            api_visibility="private",
        )
        blocks.load(readable_errors(collections_names), None, [collections_picker], api_visibility="private")
    blocks.queue(default_concurrency_limit=4)
    return blocks
