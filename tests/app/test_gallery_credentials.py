"""The gallery's "Content Credentials" badge per version, computed with the verifier's own checks."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from studio.services.gallery import credentials_badges, gallery_reader
from studio.services.studio import Studio
from studio.ui.gallery_pages import create_gallery_router
from tests.fixtures.credentials import evolve, evolve_with_image, mint, next_png
from tests.fixtures.http import serve_asgi


def test_each_version_shows_its_credentials(studio: Studio) -> None:
    token = mint(studio)
    evolve(studio, token)
    png, record = next_png(studio, studio.store.cat(token.versions[-1].image_cid), "unsigned")
    evolve_with_image(studio, token, png, record)  # version 2 has no Content Credentials
    evolve(studio, token)

    reader = gallery_reader(studio)
    _count, history = reader.history(token.token_id)
    badges = credentials_badges(reader, token.token_id, history)
    assert [badges[v].state for v in range(4)] == ["trusted", "trusted", "missing", "trusted"]
    assert [badges[v].ok for v in range(4)] == [True, True, False, False]
    assert badges[0].signer == "Living NFT Studio signer"
    assert any("parentOf" in problem for problem in badges[3].problems)  # its parent carries no manifest

    app = FastAPI()
    app.include_router(create_gallery_router(studio))
    served = serve_asgi(app)
    try:
        page = httpx.get(f"{served.url}/gallery/{token.token_id}", timeout=60)
    finally:
        served.stop()
    assert page.status_code == 200
    assert page.text.count("data-credentials='trusted'") == 3
    assert "data-credentials='missing'" in page.text
    assert "signed by Living NFT Studio signer" in page.text
