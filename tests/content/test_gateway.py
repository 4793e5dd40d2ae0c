"""The /ipfs/ gateway, through a real uvicorn server and plain HTTP clients."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import httpx
import pytest

from metadata.gateway import IMMUTABLE_CACHE


def raw_get(base_url: str, raw_path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """Send the request target exactly as written (httpx would normalise `..` away)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest("GET", parts.path + raw_path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def client():
    with httpx.Client(timeout=10, follow_redirects=False) as http_client:
        yield http_client


def test_files_are_served_with_type_etag_and_immutable_cache(gateway_server, client, vector_data, vectors):
    store = gateway_server.store
    png = store.add_file(vector_data / "dir3" / "cover.png")  # raw bytes, not a real PNG: sniffed by magic below
    image = store.add_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    metadata = store.add_bytes(json.dumps({"name": "Living #1"}).encode())
    response = client.get(f"{gateway_server.url}/{image}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["etag"] == f'"{image}"'
    assert response.headers["cache-control"] == IMMUTABLE_CACHE
    assert response.headers["x-content-type-options"] == "nosniff"
    json_response = client.get(f"{gateway_server.url}/{metadata}")
    assert json_response.headers["content-type"].startswith("application/json")
    assert json_response.json() == {"name": "Living #1"}
    assert client.get(f"{gateway_server.url}/{png}").content == (vector_data / "dir3" / "cover.png").read_bytes()
    big = store.add_file(vector_data / "c_5MiB.bin")
    assert client.get(f"{gateway_server.url}/{big}").content == (vector_data / "c_5MiB.bin").read_bytes()


def test_if_none_match_gives_304(gateway_server, client):
    cid = gateway_server.store.add_bytes(b"immutable")
    response = client.get(f"{gateway_server.url}/{cid}", headers={"If-None-Match": f'"{cid}"'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{cid}"'


def test_ranges_and_head(gateway_server, client, vector_data):
    data = (vector_data / "b_1MiB.bin").read_bytes()
    cid = gateway_server.store.add_file(vector_data / "b_1MiB.bin")
    url = f"{gateway_server.url}/{cid}"
    part = client.get(url, headers={"Range": "bytes=262140-262200"})
    assert part.status_code == 206
    assert part.content == data[262140:262201]
    assert part.headers["content-range"] == f"bytes 262140-262200/{len(data)}"
    suffix = client.get(url, headers={"Range": "bytes=-10"})
    assert (suffix.status_code, suffix.content) == (206, data[-10:])
    open_ended = client.get(url, headers={"Range": "bytes=1048570-"})
    assert (open_ended.status_code, open_ended.content) == (206, data[1048570:])
    beyond = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"
    head = client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["accept-ranges"] == "bytes"
    assert head.content == b""


def test_directories_list_serve_index_and_sub_paths(gateway_server, client, tmp_path):
    site = tmp_path / "collection"
    (site / "images").mkdir(parents=True)
    (site / "1.json").write_text('{"name":"Living #1"}')
    (site / "images" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nimage")
    (site / "<script>.txt").write_text("name that needs escaping")
    cid = gateway_server.store.add_directory(site)
    redirect = client.get(f"{gateway_server.url}/{cid}")
    assert redirect.status_code == 301
    assert redirect.headers["location"].endswith(f"/ipfs/{cid}/")
    listing = client.get(f"{gateway_server.url}/{cid}/")
    assert listing.status_code == 200
    assert listing.headers["content-type"].startswith("text/html")
    assert 'href="1.json"' in listing.text
    assert 'href="images/"' in listing.text
    assert "<script>" not in listing.text
    assert "&lt;script&gt;.txt" in listing.text
    sub = client.get(f"{gateway_server.url}/{cid}/images/1.png")
    assert sub.headers["content-type"] == "image/png"
    assert sub.headers["etag"] == f'"{cid}/images/1.png"'
    assert client.get(f"{gateway_server.url}/{cid}/1.json").json() == {"name": "Living #1"}
    assert client.get(f"{gateway_server.url}/{cid}/missing.json").status_code == 404

    (site / "index.html").write_text("<!doctype html><title>gallery</title>")
    with_index = gateway_server.store.add_directory(site)
    page = client.get(f"{gateway_server.url}/{with_index}/")
    assert page.text == "<!doctype html><title>gallery</title>"
    assert page.headers["content-security-policy"].startswith("sandbox")


def test_unknown_and_malformed_cids(gateway_server, client, vectors):
    unknown = client.get(f"{gateway_server.url}/{vectors['files']['c_5MiB.bin']['v1']}", timeout=5)
    assert unknown.status_code == 404
    assert "not in this studio's IPFS store" in unknown.text
    malformed = client.get(f"{gateway_server.url}/not-a-cid")
    assert malformed.status_code == 400
    assert "Invalid CID" in malformed.text


@pytest.mark.parametrize(
    "attack",
    [
        "/../../etc/passwd",
        "/a/../../b",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2Fetc",
        "/..%2fetc",
        "/..%5c..%5cetc",
        "/..\\..\\etc",
        "/%252e%252e/etc",
        "/./1.json",
    ],
)
def test_path_traversal_attempts_are_refused(gateway_server, tmp_path, attack):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "1.json").write_text("{}")
    cid = gateway_server.store.add_directory(tmp_path / "site")
    status, body = raw_get(gateway_server.url, f"/{cid}{attack}")
    assert status == 400, body
    assert b"Bad path" in body


def test_corrupted_block_is_a_502_and_never_served(gateway_server, client):
    store = gateway_server.store
    cid = store.add_bytes(b"original artwork bytes")
    block = next(p for p in (store.root / "blocks").rglob("*") if p.is_file() and not p.name.startswith("."))
    block.write_bytes(b"tampered artwork bytes")
    response = client.get(f"{gateway_server.url}/{cid}")
    assert response.status_code == 502
    assert "corrupted" in response.text
    assert b"tampered" not in response.content


SAFE_INLINE = {
    "a.png": "image/png",
    "a.jpg": "image/jpeg",
    "a.gif": "image/gif",
    "a.webp": "image/webp",
    "a.avif": "image/avif",
    "a.json": "application/json",
    "a.txt": "text/plain",
    "a.mp4": "video/mp4",
    "a.webm": "video/webm",
    "a.mp3": "audio/mpeg",
}
# Types a browser would run as a document with the studio's origin: sandboxed, and downloaded unless they
# are the HTML and SVG a token's animation may need to render.
SANDBOXED_INLINE = {"page.html": "text/html", "pic.svg": "image/svg+xml"}
DOWNLOADED = {
    "page.xhtml": "application/xhtml+xml",
    "data.xml": "xml",
    "style.xsl": "xsl",
    "code.js": "javascript",
    "doc.pdf": "application/pdf",
    "blob.weird-ext": "application/octet-stream",
}
ACTIVE = b'<html xmlns="http://www.w3.org/1999/xhtml"><script>fetch("/config")</script></html>'


def test_only_safe_media_types_are_served_inline(gateway_server, client, tmp_path):
    site = tmp_path / "types"
    site.mkdir()
    for name in [*SAFE_INLINE, *SANDBOXED_INLINE, *DOWNLOADED]:
        (site / name).write_bytes(ACTIVE)
    cid = gateway_server.store.add_directory(site)
    for name, kind in {**SAFE_INLINE, **SANDBOXED_INLINE, **DOWNLOADED}.items():
        for method in ("GET", "HEAD"):
            response = client.request(method, f"{gateway_server.url}/{cid}/{name}")
            assert response.status_code == 200, name
            assert kind in response.headers["content-type"], (name, response.headers["content-type"])
            assert response.headers["x-content-type-options"] == "nosniff"
            disposition = response.headers.get("content-disposition", "")
            policy = response.headers.get("content-security-policy", "")
            if name in SAFE_INLINE:
                assert not disposition.startswith("attachment"), name
            else:
                assert policy.startswith("sandbox"), (name, policy)
                assert "allow-same-origin" not in policy
                assert disposition.startswith("attachment") == (name in DOWNLOADED), (name, disposition)
    # Content added without a name is typed from its bytes: active types are still contained.
    sniffed = gateway_server.store.add_bytes(b"<?xml version='1.0'?><x:stylesheet xmlns:x='urn:x'/>")
    response = client.get(f"{gateway_server.url}/{sniffed}")
    assert response.headers["content-security-policy"].startswith("sandbox")


def test_raw_blocks_for_readers_that_trust_no_gateway(gateway_server, client, tmp_path):
    """?format=raw (or Accept: application/vnd.ipld.raw) answers the block a CID/path names, exactly the
    bytes that hash to its CID: a folder's dag-pb node, a file's raw leaf."""
    import hashlib

    from metadata.cid import parse_cid
    from metadata.unixfs import decode_dag_pb

    site = tmp_path / "drop"
    site.mkdir()
    (site / "1.json").write_text('{"name":"Living #1"}')
    (site / "2.json").write_text('{"name":"Living #2"}')
    folder = gateway_server.store.add_directory(site)

    block = client.get(f"{gateway_server.url}/{folder}?format=raw")
    assert block.status_code == 200
    assert block.headers["content-type"] == "application/vnd.ipld.raw"
    assert block.headers["x-content-type-options"] == "nosniff"
    assert hashlib.sha256(block.content).digest() == parse_cid(folder).digest
    assert [link.name for link in decode_dag_pb(block.content).links] == ["1.json", "2.json"]

    leaf = client.get(f"{gateway_server.url}/{folder}/2.json", headers={"Accept": "application/vnd.ipld.raw"})
    assert leaf.status_code == 200
    assert leaf.content == b'{"name":"Living #2"}'
    assert leaf.headers["etag"] == f'"{leaf.headers["x-ipfs-roots"]}.raw"'
    assert client.get(f"{gateway_server.url}/{folder}/3.json?format=raw").status_code == 404
