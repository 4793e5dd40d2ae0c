"""The public gallery cannot be used to amplify load: content is cached by CID, a token's history is paged,
gateway fetches are bounded across requests, chain reads per request are bounded, and hostile metadata
fails one token. The gateway here is a real HTTP server on 127.0.0.1 that counts what it is asked."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from tests.fixtures.http import serve_asgi, start_http_server, stop_http_server


class CountingGateway:
    """`/ipfs/<cid>` from a LocalStore, counting requests per CID and the most served at once."""

    def __init__(self, store, *, delay_s: float = 0.0) -> None:
        self.store = store
        self.delay_s = delay_s
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                cid = self.path.removeprefix("/ipfs/").split("/")[0]
                with outer._lock:
                    outer.counts[cid] += 1
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if outer.delay_s:
                        time.sleep(outer.delay_s)  # a slow gateway: requests overlap
                    if not outer.store.has(cid):
                        self.send_error(404)
                        return
                    body = outer.store.cat(cid)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.server, self.url = start_http_server(Handler)

    def close(self) -> None:
        stop_http_server(self.server)


@pytest.fixture
def counting_gateway(local_store) -> Iterator[CountingGateway]:
    gateway = CountingGateway(local_store)
    yield gateway
    gateway.close()


@pytest.fixture
def gallery_for(app_settings):
    """`gallery_for(living_nft, gateway)` -> base URL of the app whose gallery reads that contract."""
    from studio.services.studio import Studio
    from studio.ui.server import create_app

    running = []

    def start(living_nft, gateway) -> str:
        app = app_settings.app.model_copy(
            update={
                "gallery_rpc_url": living_nft.w3.provider.endpoint_uri,
                "gallery_contract_address": living_nft.address,
            }
        )
        ipfs = app_settings.ipfs.model_copy(update={"public_gateway": gateway.url})
        studio = Studio.open(app_settings.model_copy(update={"app": app, "ipfs": ipfs}))
        studio.start_chain()
        served = serve_asgi(create_app(studio))
        running.append((studio, served))
        return served.url

    yield start
    for studio, served in running:
        served.stop()
        studio.close()


def _mint_with_versions(living_nft, store, owner: str, versions: int) -> tuple[int, list[str]]:
    from metadata.token import canonical_json

    image = store.add_bytes(b"\x89PNG\r\n\x1a\n an image")
    cids = [
        store.add_bytes(canonical_json({"name": f"Tide {n}", "image": f"ipfs://{image}", "attributes": []}))
        for n in range(versions)
    ]
    token_id = living_nft.mint(owner, cids[0]).token_id
    for version, cid in enumerate(cids[1:]):
        living_nft.evolve(token_id, cid, version)
    return token_id, cids


def test_content_is_cached_by_cid_and_history_is_paged(
    living_nft, local_store, counting_gateway, gallery_for, funded_account
) -> None:
    token_id, cids = _mint_with_versions(living_nft, local_store, funded_account.address, 12)
    base = gallery_for(living_nft, counting_gateway)

    first = httpx.get(f"{base}/gallery/{token_id}", timeout=60)
    assert first.status_code == 200
    assert "History · 12 versions" in first.text
    shown = [v for v in range(12) if f'id="version-{v}"' in first.text]
    assert shown == list(range(2, 12))  # the newest ten
    assert f"/gallery/{token_id}?page=2" in first.text
    assert all(counting_gateway.counts[cid] == 1 for cid in cids[2:])
    assert counting_gateway.counts[cids[0]] == counting_gateway.counts[cids[1]] == 0  # not on this page

    fetched = sum(counting_gateway.counts.values())
    again = httpx.get(f"{base}/gallery/{token_id}", timeout=60)
    assert again.status_code == 200
    assert sum(counting_gateway.counts.values()) == fetched  # every CID came from the cache
    assert httpx.get(f"{base}/gallery", timeout=60).status_code == 200
    assert sum(counting_gateway.counts.values()) == fetched  # the index's current metadata too

    older = httpx.get(f"{base}/gallery/{token_id}?page=2", timeout=60)
    assert [v for v in range(12) if f'id="version-{v}"' in older.text] == [0, 1]
    assert counting_gateway.counts[cids[0]] == counting_gateway.counts[cids[1]] == 1
    assert max(counting_gateway.counts.values()) == 1  # nothing was ever fetched twice


def test_gateway_fetches_are_bounded_across_requests(living_nft, local_store, gallery_for, funded_account) -> None:
    _mint_with_versions(living_nft, local_store, funded_account.address, 1)
    gateway = CountingGateway(local_store, delay_s=0.5)
    try:
        base = gallery_for(living_nft, gateway)
        with ThreadPoolExecutor(max_workers=12) as pool:
            pages = list(pool.map(lambda _: httpx.get(f"{base}/gallery", timeout=120), range(12)))
        assert [p.status_code for p in pages] == [200] * 12
        assert all("Tide 0" in p.text for p in pages)
        assert 1 <= gateway.max_in_flight <= 4  # studio.services.gallery.MAX_CONCURRENT_FETCHES
    finally:
        gateway.close()


def test_chain_reads_per_request_are_bounded(living_nft, local_store, counting_gateway, funded_account) -> None:
    from metadata.ipfs_reader import IpfsReader
    from studio.services.gallery import GalleryReader

    for _ in range(3):
        _mint_with_versions(living_nft, local_store, funded_account.address, 1)
    ipfs = IpfsReader(None, counting_gateway.url)
    reader = GalleryReader(living_nft.w3.provider.endpoint_uri, living_nft.address, ipfs, max_rpc_calls=6)
    total, cards = reader.cards(limit=24)
    assert total == 3
    assert cards[0].token is not None  # totalSupply + 4 reads for the newest token: within the budget
    assert [c.token for c in cards[1:]] == [None, None]
    assert all("reads of the chain" in c.error for c in cards[1:])
    assert reader.rpc_calls == 6


def test_hostile_metadata_fails_its_token_not_the_process(
    living_nft, local_store, counting_gateway, gallery_for, funded_account
) -> None:
    """256 KiB of `[`: json.loads would overflow the C stack under web3's recursion limit (a segfault)."""
    token_id, _ = _mint_with_versions(living_nft, local_store, funded_account.address, 1)
    hostile = local_store.add_bytes(b"[" * 131_072 + b"]" * 131_072)
    bad_id = living_nft.mint(funded_account.address, hostile).token_id
    base = gallery_for(living_nft, counting_gateway)
    index = httpx.get(f"{base}/gallery", timeout=60)
    assert index.status_code == 200
    assert "Tide 0" in index.text  # the good token still shows
    assert "131,072 levels deep" in index.text
    page = httpx.get(f"{base}/gallery/{bad_id}", timeout=60)
    assert page.status_code == 502
    assert "levels deep" in page.text
    assert httpx.get(f"{base}/gallery/{token_id}", timeout=60).status_code == 200
