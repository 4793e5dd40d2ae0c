"""The studio through its Gradio API (gradio_client), as a script or another program would drive it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import Client
from PIL import Image
from pydantic import SecretStr


@pytest.fixture
def client(app_server, tmp_path) -> Client:
    return Client(app_server.url + "/", verbose=False, download_files=str(tmp_path / "downloads"))


def test_generate_returns_png_with_parameters_and_keeps_a_draft(client, app_server) -> None:
    result = client.predict("a red lighthouse", "", 7, 0, 64, 64, "fast", api_name="/generate")
    image_path = Path(result[0])
    with Image.open(image_path) as image:
        assert image.size == (64, 64)
        assert "a red lighthouse" in image.text["parameters"]
    assert "Seed" in result[2]
    assert ">7<" in result[2]
    from studio.services.drafts import list_drafts

    drafts = list_drafts(app_server.studio)
    assert [d.prompt for d in drafts] == ["a red lighthouse"]
    assert image_path.read_bytes() == app_server.studio.store.cat(drafts[0].image_cid)


def test_bad_input_is_a_readable_error(client) -> None:
    with pytest.raises(Exception, match="Type a prompt first"):
        client.predict("   ", "", -1, 0, 64, 64, "fast", api_name="/generate")
    with pytest.raises(Exception, match="Choose a draft to mint"):
        client.predict(None, "x", "", "", 5, "", False, None, api_name="/mint")


def test_mint_reports_each_step_and_a_bad_recipient_keeps_the_draft(client, app_server) -> None:
    client.predict("a green field", "", 3, 0, 64, 64, "fast", api_name="/generate")
    from studio.services.drafts import list_drafts
    from studio.services.tokens import list_tokens

    draft_id = list_drafts(app_server.studio)[0].id
    with pytest.raises(Exception, match="is not an Ethereum address"):
        client.predict(draft_id, "Field", "", "", 5, "0xnope", False, None, api_name="/mint")
    assert list_tokens(app_server.studio) == []

    with pytest.raises(Exception, match="needs a royalty receiver"):
        client.predict(draft_id, "Field", "", "", 7.5, "", False, None, "", api_name="/mint")
    artist = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    steps, result, token_id = client.predict(
        draft_id,
        "Field",
        "A field & a sky",
        "Palette: green\nEdition: 1",
        7.5,
        "",
        False,
        None,
        artist,
        api_name="/mint",
    )
    for step in ("pin image", "pin metadata", "CID check", "transaction", "confirmation", "royalty"):
        assert f'data-step="{step}"' in steps
    assert "Minted" in result
    assert "gas used" in steps
    tokens = list_tokens(app_server.studio)
    assert [t.token_id for t in tokens] == [int(token_id)]
    chain = app_server.studio.chain.client
    assert chain.owner_of(int(token_id)) == app_server.studio.chain.address
    assert chain.royalty_info(int(token_id), 10_000) == (artist, 750)
    metadata = json.loads(app_server.studio.store.cat(chain.metadata_cid(int(token_id))))
    assert metadata["name"] == "Field"
    assert {"trait_type": "Edition", "value": 1} in metadata["attributes"]


def test_pinning_outage_keeps_the_draft_and_mints_nothing(tmp_path, app_settings, pinata_standin) -> None:
    from studio.services.studio import Studio
    from studio.services.tokens import list_tokens
    from studio.ui.server import create_app
    from tests.fixtures.http import serve_asgi

    ipfs = app_settings.ipfs.model_copy(
        update={
            "backends": ["local", "pinata"],
            "pinata_jwt": SecretStr(pinata_standin.jwt),
            "pinata_api_url": pinata_standin.url,
            "pinata_files_api_url": pinata_standin.url,
            "retries": 0,
            "read_timeout_s": 5,
        }
    )
    studio = Studio.open(app_settings.model_copy(update={"ipfs": ipfs}))
    studio.start_chain()
    served = serve_asgi(create_app(studio))
    port = served.port
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "dl"))
        client.predict("a stormy sea", "", 11, 0, 64, 64, "fast", api_name="/generate")
        from studio.services.drafts import list_drafts

        draft_id = list_drafts(studio)[0].id
        pinata_standin.fail_next(503, times=10)
        with pytest.raises(Exception, match=r"(?i)pinata|503|unavailable"):
            client.predict(draft_id, "Storm", "", "", 5, "", False, None, api_name="/mint")
        assert list_tokens(studio) == []
        assert [d.id for d in list_drafts(studio)] == [draft_id]  # the draft survived the outage
        png = client.predict(draft_id, api_name="/draft_png")
        assert Path(png).read_bytes() == studio.store.cat(list_drafts(studio)[0].image_cid)
    finally:
        served.stop()
        studio.close()


def test_rules_are_validated_before_saving_and_a_dry_run_sends_nothing(
    client, app_server, weather_api, weather_rules_text
) -> None:
    studio = app_server.studio
    broken = weather_rules_text.replace("strength = 0.5", "strength = 3")
    with pytest.raises(Exception, match=r"weather\.toml:\d+: evolution\.strength"):
        client.predict("weather", broken, api_name="/save_rules")
    assert not (studio.settings.rules_dir / "weather.toml").exists()  # nothing written

    message, _, _ = client.predict("weather", weather_rules_text, api_name="/save_rules")
    assert "Saved" in message
    assert (studio.settings.rules_dir / "weather.toml").read_text() == weather_rules_text

    client.predict("a quiet harbour", "", 5, 0, 64, 64, "fast", api_name="/generate")
    from studio.services.drafts import list_drafts

    draft_id = list_drafts(studio)[0].id
    _, _, token_id = client.predict(draft_id, "Harbour", "", "", 5, "", True, "weather", api_name="/mint")
    weather_api.value = 30.0
    report, preview = client.predict("weather", api_name="/dry_run")
    assert "Dry run" in report
    assert len(preview) == 2  # current image and its preview, side by side
    assert studio.chain.client.metadata_version(int(token_id)) == 0  # nothing sent

    report, schedule = client.predict("weather", api_name="/run_cycle")
    assert studio.chain.client.metadata_version(int(token_id)) == 1
    assert "done" in report
    assert 'data-collection="weather"' in schedule or "data-collection='weather'" in schedule
