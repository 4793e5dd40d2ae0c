"""An evolved version's metadata names the token's evolution so far as an animated WebP (`animation_url`,
pinned with it), and `python -m metadata verify` checks its CID: real anvil, the tiny model, the local
IPFS store behind the real gateway."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from evolve.cycle import run_cycle
from evolve.journal import CycleStatus
from metadata.animation import FRAME_MS
from metadata.verify import GatewaySource, verify_token
from studio.services.publishing import ANIMATION_MAX_SIDE
from studio.services.tokens import timeline
from tests.fixtures.evolve import mint_living, weather_rules


@pytest.fixture
def studio(open_studio):
    """The studio the `gateway` fixture serves: one whose feeds may reach the weather API on 127.0.0.1."""
    return open_studio()


def animation_of(studio, metadata_cid: str) -> tuple[str, Image.Image]:
    metadata = json.loads(studio.store.cat(metadata_cid))
    uri = metadata["animation_url"]
    assert uri.startswith("ipfs://")
    cid = uri.removeprefix("ipfs://")
    return cid, Image.open(io.BytesIO(studio.store.cat(cid)))


def test_an_evolved_version_names_its_evolution_as_an_animated_webp_that_verifies(studio, gateway, weather_api) -> None:
    studio.settings.rules_dir.mkdir(parents=True, exist_ok=True)
    (studio.settings.rules_dir / "weather.toml").write_text(weather_rules(weather_api.url))
    [token_id] = mint_living(studio, 1)
    for value in (-5.0, 30.0):
        weather_api.value = value
        report = run_cycle(studio, "weather")
        assert report.status == CycleStatus.DONE, report.errors
        assert report.evolved == [token_id]

    mint, first, second = timeline(studio, token_id)
    assert "animation_url" not in json.loads(studio.store.cat(mint.metadata_cid))  # nothing to animate yet
    for view, frames in ((first, 2), (second, 3)):
        _, animation = animation_of(studio, view.metadata_cid)
        assert animation.format == "WEBP"
        assert animation.is_animated
        assert animation.n_frames == frames  # one frame per version so far, each shown as long
        for index in range(frames):
            animation.seek(index)
            animation.load()  # the frame's duration is read with its pixels
            assert animation.info["duration"] == FRAME_MS
        assert max(animation.size) <= ANIMATION_MAX_SIDE
        animation.seek(animation.n_frames - 1)
        last = animation.convert("RGB")
        shown = Image.open(io.BytesIO(studio.store.cat(view.image_cid))).convert("RGB").resize(last.size)
        # The last frame is this version's image (lossy: close, not equal), above the version strip.
        above = (0, 0, last.width, last.height - 4)
        pixels, expected = last.crop(above).tobytes(), shown.crop(above).tobytes()
        assert sum(abs(a - b) for a, b in zip(pixels, expected, strict=True)) / len(pixels) < 12

    source = GatewaySource(gateway.url, timeout_s=10)
    try:
        verified = verify_token(studio.chain.rpc_url, studio.chain.contract_address, token_id, source)
        assert verified.ok, verified.to_text()
        # A gateway that gives other bytes for the animation is caught, by its CID.
        animation_cid, _ = animation_of(studio, second.metadata_cid)
        gateway.replaced[animation_cid] = studio.store.cat(mint.image_cid)
        tampered = verify_token(studio.chain.rpc_url, studio.chain.contract_address, token_id, source)
    finally:
        source.close()
    assert not tampered.ok
    assert {f.code for f in tampered.versions[2].failures} == {"animation.cid_mismatch"}
