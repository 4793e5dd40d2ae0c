"""The Generative tab end to end in headless Chromium: paste a spec, generate with the progress bar,
review (exclude one, regenerate one), read the rarity table, mint. No request leaves 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from metadata.ipfs_reader import split_ipfs_uri
from studio.services import collections

SPEC = """\
name = "kites"
title = "Kites"
description = "Kites over the dunes"
editions = 4
base_seed = 21
prompt = "a {colour} kite over dunes"
width = 64
height = 64

[traits.colour]
trait_type = "Colour"
[traits.colour.values]
red = 2
blue = 1
"""


def set_spec(page, text: str) -> None:
    editor = page.locator("#spec-editor .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    editor.fill(text)


@pytest.mark.browser
def test_generate_review_and_mint_a_collection(browser_page, app_server, output_dir) -> None:
    page = browser_page
    studio = app_server.studio
    page.goto(app_server.url + "/")
    page.get_by_role("tab", name="Generative").click()

    set_spec(page, SPEC.replace("editions = 4", "editions = 0"))
    page.locator("#collection-generate").click()
    page.get_by_text("editions: Input should be greater than or equal to 1").first.wait_for()
    assert collections.list_collections(studio) == []

    set_spec(page, SPEC)
    page.locator("#collection-generate").click()
    page.locator("#collection-progress[data-done='4'][data-total='4']").wait_for()
    page.locator("#editions-grid img").nth(3).wait_for()
    assert page.locator("#editions-grid img").count() == 4
    assert page.locator("#rarity-table tr[data-trait='colour']").count() == 2
    page.screenshot(path=str(output_dir / "1-generated.png"), full_page=True)

    view = collections.get_collection(studio, "kites")
    assert view.generated == 4
    # Pick edition 2 in the grid and exclude it; the rarity table counts the three kept.
    page.locator("#editions-grid img").nth(1).click()
    page.locator("#edition-exclude").click()
    page.locator("#edition-2[data-excluded='true']").wait_for()
    kept = sum(
        int(page.locator(f"#rarity-table tr[data-value='{value}'] td").nth(2).inner_text()) for value in ("red", "blue")
    )
    assert kept == 3
    old_image = view.editions[0].image_cid
    page.locator("#edition-number input").fill("1")
    page.locator("#edition-regenerate").click()
    page.locator("#edition-1").wait_for()
    assert collections.get_collection(studio, "kites").editions[0].image_cid != old_image
    page.screenshot(path=str(output_dir / "2-review.png"), full_page=True)

    page.locator("#collection-mint").click()
    page.locator("#collection-mint-result").get_by_text("Minted").wait_for()
    page.screenshot(path=str(output_dir / "3-minted.png"), full_page=True)
    view = collections.get_collection(studio, "kites")
    assert [e.token_id is not None for e in view.editions] == [True, False, True, True]
    client = studio.chain.client
    token_id = view.editions[0].token_id
    folder, path = split_ipfs_uri(client.token_uri(token_id))  # minted without rules: a drop
    metadata = json.loads(studio.store.cat(folder, path))
    assert metadata["attributes"] == [{"trait_type": "Colour", "value": view.editions[0].traits["colour"]}]
    assert client.contract_uri() == f"ipfs://{view.metadata_cid}"
    assert page.outside_requests == []  # type: ignore[attr-defined]
