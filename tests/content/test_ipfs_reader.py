"""metadata.ipfs_reader.IpfsReader, the one gateway reader (the gallery's, and the verifier's through
metadata.verify.GatewaySource), against a hostile gateway: a real HTTP server on 127.0.0.1 that drips
its answer a byte at a time, redirects for ever, or lies about a CID."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from contracts.cid import raw_cid_of
from metadata.gateway import create_standalone_app
from metadata.ipfs_reader import MAX_REDIRECTS, ContentMismatchError, ContentUnavailableError, IpfsReader
from metadata.store import LocalStore
from metadata.verify import FetchFailed, GatewaySource
from tests.fixtures.http import serve_asgi, start_http_server, stop_http_server

BODY = bytes(range(200))  # 200 bytes at one per DRIP_S: ten seconds a read, without a deadline
DRIP_S = 0.05


class HostileGateway:
    """`/ipfs/<cid>`: BODY, one byte per DRIP_S, each well within any socket timeout (`sent` counts the
    bytes that left). `/loop/ipfs/<cid>`: a redirect to itself (`redirects` counts them). `/liar/ipfs/<cid>`:
    other bytes than the CID's, at once."""

    def __init__(self) -> None:
        self.sent = 0
        self.redirects = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/loop/"):
                    with outer.lock:
                        outer.redirects += 1
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = BODY[::-1] if self.path.startswith("/liar/") else BODY
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path.startswith("/liar/"):
                    self.wfile.write(body)
                    return
                for byte in body:
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the reader hung up: what the deadline is for
                        return
                    with outer.lock:
                        outer.sent += 1
                    time.sleep(DRIP_S)

        self.httpd, self.url = start_http_server(Handler)

    def close(self) -> None:
        stop_http_server(self.httpd)


@pytest.fixture
def hostile() -> Iterator[HostileGateway]:
    gateway = HostileGateway()
    yield gateway
    gateway.close()


def test_a_dripping_gateway_is_cut_off_at_the_reads_deadline(hostile: HostileGateway) -> None:
    """Each byte comes well within the socket timeout, so only the per-read deadline can end the read."""
    reader = IpfsReader(None, hostile.url, read_timeout_s=5, deadline_s=1)
    with pytest.raises(ContentUnavailableError, match="took over 1 s"):
        reader.cat(raw_cid_of(BODY))
    assert 0 < hostile.sent < len(BODY)  # stopped mid-answer, not at its end
    assert reader.shared.cache.size == 0
    assert reader.shared.fetch_slots.acquire(blocking=False)  # the fetch slot was given back


def test_the_verifier_reads_through_the_same_reader(hostile: HostileGateway) -> None:
    """GatewaySource is an IpfsReader: the deadline, the redirect cap and the CID check are its, and its
    errors carry the verifier's failure kinds (unavailable, cid_mismatch)."""
    cid = raw_cid_of(BODY)
    source = GatewaySource(hostile.url, timeout_s=5, deadline_s=1)
    try:
        with pytest.raises(FetchFailed, match="took over 1 s") as dripped:
            source.cat(cid, max_bytes=1000)
        assert dripped.value.kind == "unavailable"
        assert "--gateway" in str(dripped.value)  # the fix named as the command line spells it
        assert isinstance(source.reader, IpfsReader)
    finally:
        source.close()
    liar = GatewaySource(f"{hostile.url}/liar", timeout_s=5)
    try:
        with pytest.raises(FetchFailed, match="do not match") as lied:
            liar.cat(cid, max_bytes=1000)
        assert lied.value.kind == "cid_mismatch"
    finally:
        liar.close()


def test_a_redirect_loop_ends_after_a_few_hops(hostile: HostileGateway) -> None:
    reader = IpfsReader(None, f"{hostile.url}/loop", read_timeout_s=5)
    with pytest.raises(ContentUnavailableError, match="TooManyRedirects"):
        reader.cat(raw_cid_of(BODY))
    assert hostile.redirects == MAX_REDIRECTS + 1


def test_bytes_that_do_not_hash_to_the_cid_are_a_mismatch_and_not_cached(hostile: HostileGateway) -> None:
    reader = IpfsReader(None, f"{hostile.url}/liar", read_timeout_s=5)
    with pytest.raises(ContentMismatchError, match="do not match that CID"):
        reader.cat(raw_cid_of(BODY))
    assert reader.shared.cache.size == 0


def _folder(store_root: Path) -> tuple[LocalStore, str, dict[str, bytes]]:
    """A drop's metadata folder (one JSON per token id) in a studio's store on another machine."""
    files = {f"{token_id}.json": json.dumps({"name": f"Living #{token_id}"}).encode() for token_id in (7, 8, 9)}
    site = store_root / "drop"
    site.mkdir(parents=True)
    for name, data in files.items():
        (site / name).write_bytes(data)
    store = LocalStore(store_root / "store")
    return store, store.add_directory(site), files


def test_a_folder_uri_is_read_through_verified_blocks(tmp_path: Path) -> None:
    """ipfs://<folder>/8.json from a gateway: the reader fetches the folder's block and the file's block
    (?format=raw), checks each against its CID, and finds the entry itself."""
    store, folder, files = _folder(tmp_path)
    served = serve_asgi(create_standalone_app(store), lifespan="off")
    try:
        reader = IpfsReader(None, served.url, read_timeout_s=5)
        assert reader.cat(folder, "8.json") == files["8.json"]
        assert reader.json(f"ipfs://{folder}/9.json") == {"name": "Living #9"}
        assert reader.resolve(folder, "7.json") == raw_cid_of(files["7.json"])
        with pytest.raises(ContentUnavailableError, match=r"10\.json does not exist"):
            reader.cat(folder, "10.json")
    finally:
        served.stop()


def test_a_gateway_cannot_answer_a_folder_path_with_other_bytes(hostile: HostileGateway, tmp_path: Path) -> None:
    """A path answer is not checkable against the folder's CID, so the reader never asks for one: the
    liar's bytes for the folder's block do not hash to the folder's CID and are refused."""
    _store, folder, _files = _folder(tmp_path)
    reader = IpfsReader(None, f"{hostile.url}/liar", read_timeout_s=5)
    with pytest.raises(ContentMismatchError, match=r"block for .* does not match"):
        reader.cat(folder, "8.json")
    assert reader.shared.cache.size == 0
