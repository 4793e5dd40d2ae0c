"""Binding beyond localhost needs a login; the gallery and /ipfs stay public. The gallery reads any
contract on any network (given its RPC URL) as a marketplace would: chain, then IPFS via a gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from pydantic import SecretStr

from tests.fixtures.http import serve_asgi

REPO_ROOT = Path(__file__).resolve().parents[2]
RPC_KEY = "SECRET-API-KEY-0123456789"


def test_app_refuses_to_listen_beyond_localhost_without_login(tmp_path) -> None:
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path / "data"),
        "STUDIO_APP__HOST": "192.0.2.10",
        "STUDIO_CHAIN__LOCAL_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "app.py")], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "STUDIO_APP__AUTH_USERNAME" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "chain" / "state.json").exists()  # refused before the chain started


def test_login_protects_the_studio_but_not_the_gallery(app_settings, tmp_path) -> None:
    from studio.services.studio import Studio
    from studio.ui.server import UnsafeBindingError, check_binding, create_app

    with pytest.raises(UnsafeBindingError):
        check_binding(
            app_settings.model_copy(update={"app": app_settings.app.model_copy(update={"host": "192.0.2.10"})})
        )
    app = app_settings.app.model_copy(
        update={"host": "192.0.2.10", "auth_username": "artist", "auth_password": SecretStr("s3cret-pass")}
    )
    studio = Studio.open(app_settings.model_copy(update={"app": app}))
    studio.start_chain()
    served = serve_asgi(create_app(studio))
    port = served.port  # served on 127.0.0.1 in the test
    url = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(f"{url}/config", timeout=30).status_code == 401
        assert httpx.get(f"{url}/gallery", timeout=30).status_code == 200
        cid = studio.store.add_bytes(b"public content")
        assert httpx.get(f"{url}/ipfs/{cid}", timeout=30).content == b"public content"
        with pytest.raises(Exception, match=r"(?i)login|auth|401|credentials"):
            Client(url + "/", verbose=False, auth=("artist", "wrong"))
        client = Client(url + "/", verbose=False, auth=("artist", "s3cret-pass"), download_files=str(tmp_path / "d"))
        assert isinstance(client.predict(api_name="/random_seed"), int | float)
        overview = client.predict(api_name="/overview")
        assert "s3cret-pass" not in overview
        assert studio.settings.chain.private_key.get_secret_value() not in overview
        assert "set" in overview
    finally:
        served.stop()
        studio.close()


def test_gallery_reads_a_contract_on_another_network_through_a_gateway(
    app_settings, living_nft, local_store, gateway_server, funded_account, tmp_path
) -> None:
    """A contract the studio never deployed, content only on a remote gateway (not in the studio's store)."""
    from metadata.token import canonical_json
    from studio.services.studio import Studio
    from studio.ui.server import create_app

    image_cid = local_store.add_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    versions = []
    for name in ["Dawn", "<script>alert(1)</script> Dusk"]:
        metadata = {"name": name, "description": "far away", "image": f"ipfs://{image_cid}", "attributes": []}
        versions.append(local_store.add_bytes(canonical_json(metadata)))
    minted = living_nft.mint(funded_account.address, versions[0])
    living_nft.evolve(minted.token_id, versions[1], 0)

    def pin_folder(first_token_id: int, cids: list[str]) -> str:  # the other studio's drop folder
        site = tmp_path / f"drop-{first_token_id}"
        site.mkdir()
        for offset, cid in enumerate(cids):
            (site / f"{first_token_id + offset}.json").write_bytes(local_store.cat(cid))
        return local_store.add_directory(site)

    (drop,) = living_nft.mint_drop(funded_account.address, [versions[0]], pin_folder=pin_folder)
    (drop_token,) = drop.token_ids

    gateway_base = gateway_server.url.removesuffix("/ipfs")
    app = app_settings.app.model_copy(
        update={
            "gallery_rpc_url": living_nft.w3.provider.endpoint_uri,
            "gallery_contract_address": living_nft.address,
        }
    )
    ipfs = app_settings.ipfs.model_copy(update={"public_gateway": gateway_base})
    studio = Studio.open(app_settings.model_copy(update={"app": app, "ipfs": ipfs}))
    studio.start_chain()
    served = serve_asgi(create_app(studio))
    port = served.port
    try:
        assert not studio.store.has(versions[0])
        page = httpx.get(f"http://127.0.0.1:{port}/gallery/{minted.token_id}", timeout=60)
        assert page.status_code == 200
        assert "Dusk" in page.text
        assert "History · 2 versions" in page.text
        assert "<script>alert(1)</script>" not in page.text  # metadata is escaped
        assert "&lt;script&gt;" in page.text
        assert f"{gateway_base}/ipfs/{image_cid}" in page.text  # the image loads from the gateway
        # A drop's token reads <id>.json in its folder: walked over the gateway's verified blocks, and the
        # metadata shown under its own CID, the one its history names.
        dropped = httpx.get(f"http://127.0.0.1:{port}/gallery/{drop_token}", timeout=60)
        assert dropped.status_code == 200
        assert "Dawn" in dropped.text
        assert f"ipfs://{drop.folder_cid}/{drop_token}.json" in dropped.text
        assert f">{versions[0]}</a>" in dropped.text
        index = httpx.get(f"http://127.0.0.1:{port}/gallery", timeout=60)
        assert f'data-token="{minted.token_id}"' in index.text
        missing = httpx.get(f"http://127.0.0.1:{port}/gallery/999", timeout=60)
        assert missing.status_code == 404
        assert "does not exist" in missing.text
    finally:
        served.stop()
        studio.close()


def test_a_dns_rebinding_host_is_refused(app_settings, tmp_path) -> None:
    """A page on evil.example whose name was re-pointed at 127.0.0.1 must not reach the studio's API."""
    from studio.services.studio import Studio
    from studio.ui.server import create_app

    app = app_settings.app.model_copy(update={"allowed_hosts": ["studio.example"]})
    studio = Studio.open(app_settings.model_copy(update={"app": app}))
    studio.start_chain()
    served = serve_asgi(create_app(studio))
    port = served.port
    url = f"http://127.0.0.1:{port}"
    try:
        cid = studio.store.add_bytes(b"public content")
        for path in ("/", "/config", "/gradio_api/info", "/gallery", f"/ipfs/{cid}"):
            refused = httpx.get(url + path, headers={"Host": f"evil.example:{port}"}, timeout=30)
            assert refused.status_code == 400, (path, refused.status_code)
            assert "STUDIO_APP__ALLOWED_HOSTS" in refused.text
            assert "evil.example" in refused.text
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "studio.example"):
            assert httpx.get(url + "/gallery", headers={"Host": host}, timeout=30).status_code == 200, host
        assert httpx.get(url + "/config", headers={"Host": f"localhost:{port}"}, timeout=30).status_code == 200
    finally:
        served.stop()
        studio.close()


def test_the_public_gallery_never_shows_the_rpc_key(app_settings) -> None:
    from studio.services.studio import Studio
    from studio.ui.server import create_app

    app = app_settings.app.model_copy(
        update={
            "gallery_rpc_url": f"http://127.0.0.1:9/v2/{RPC_KEY}",
            "gallery_contract_address": "0x000000000000000000000000000000000000dEaD",
        }
    )
    studio = Studio.open(app_settings.model_copy(update={"app": app}))
    studio.start_chain()
    served = serve_asgi(create_app(studio))
    port = served.port
    try:
        for path in ("/gallery", "/gallery/1"):
            page = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=60)
            assert page.status_code in (502, 503)
            assert "127.0.0.1" in page.text  # which node failed is still said
            assert RPC_KEY not in page.text
    finally:
        served.stop()
        studio.close()
