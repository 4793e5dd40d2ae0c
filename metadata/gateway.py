"""The `/ipfs/` path gateway over the local store, as marketplaces and browsers expect one to behave.

`create_gateway(store)` returns a FastAPI sub-app; the studio mounts it at `/ipfs` (routes inside are
`/{cid}` and `/{cid}/{path}`), and `create_standalone_app(store)` mounts it the same way for
`python -m metadata gateway`. Behaviour:

- content is immutable: `ETag: "<cid>"` (`"<cid>/<path>"` for a path inside a directory),
  `Cache-Control: public, max-age=29030400, immutable`, `If-None-Match` answers 304;
- `Content-Type` from the file name, else sniffed from the first bytes; `nosniff` always. Only the
  media types in `SAFE_INLINE` (images, JSON, plain text, audio, video, glTF) are served as they are.
  Anything else could run as a document with the studio's origin (HTML, SVG, XHTML, XML with an XSL
  stylesheet, PDF, unknown types), so it gets `Content-Security-Policy: sandbox` (an opaque origin: no
  access to the studio's cookies or API), and all of it but HTML and SVG, which a token's animation may
  need to render, is sent as a download (`Content-Disposition: attachment`);
- a directory answers its `index.html`, else an HTML listing; a directory URL without a trailing
  slash is redirected so relative links work;
- single byte ranges (206, 416 when unsatisfiable), HEAD;
- the trustless gateway's raw blocks: `?format=raw` or `Accept: application/vnd.ipld.raw` answers the
  block that `<cid>/<path>` names, as it is stored, so a reader that trusts no gateway can check each
  block against its CID and walk a folder itself (metadata.ipfs_reader does);
- an unknown CID is a 404 at once (only the local disk is consulted, never the network); a malformed
  CID is a 400; a path that tries to climb out (`..`, `%2e%2e`, `%2f`, backslashes, double encoding)
  is a 400 before anything is looked up;
- a corrupted block is a 502 naming the block: the damaged bytes are never sent. Responses up to
  16 MiB are read and verified whole before the status line; larger ones are verified block by block
  while streaming, and a damaged block there ends the connection early (the client sees a short body,
  never wrong bytes).
"""

from __future__ import annotations

import html
import mimetypes
import re
from collections.abc import Iterator
from itertools import chain
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse

from metadata.cid import cid_from_bytes, parse_cid
from metadata.errors import BlockNotFoundError, ContentPathError, CorruptBlockError, InvalidCIDError
from metadata.store import ContentReader, DirectoryEntry, LocalStore

RAW_BLOCK_TYPE = "application/vnd.ipld.raw"
IMMUTABLE_CACHE = "public, max-age=29030400, immutable"
VERIFY_WHOLE_BYTES = 16 * 1024 * 1024

_EXTRA_TYPES = {
    ".json": "application/json",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".avif": "image/avif",
    ".md": "text/markdown",
}
# Media types a browser shows without running anything (with nosniff, the declared type is final).
SAFE_INLINE = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "application/json",
        "text/plain",
        "text/markdown",
        "video/mp4",
        "video/webm",
        "audio/mpeg",
        "audio/mp4",
        "audio/ogg",
        "audio/wav",
        "audio/webm",
        "audio/flac",
        "model/gltf-binary",
        "model/gltf+json",
    }
)
# Active documents a token's animation_url may need rendered inline: they run only inside the sandbox.
SANDBOXED_INLINE = frozenset({"text/html", "image/svg+xml"})
SANDBOX_POLICY = "sandbox allow-scripts allow-popups"
# Raw-path fragments that mean someone is trying to climb out of the CID or smuggle a separator.
_FORBIDDEN_RAW = ("%2e", "%2f", "%5c", "%25", "%00", "\\")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _type_from_name(name: str) -> str | None:
    lowered = name.lower()
    for ext, kind in _EXTRA_TYPES.items():
        if lowered.endswith(ext):
            return kind
    guessed, _encoding = mimetypes.guess_type(lowered, strict=False)
    return guessed


def sniff_content_type(head: bytes) -> str:
    """A content type from a file's first bytes, for content added without a name."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if head.startswith(b"glTF"):
        return "model/gltf-binary"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The head may end inside a multi-byte character; retry without the last few bytes.
        try:
            text = head[:-3].decode("utf-8") if len(head) > 3 else ""
        except UnicodeDecodeError:
            return "application/octet-stream"
    stripped = text.lstrip().lower()
    if stripped.startswith(("{", "[")):
        return "application/json"
    if stripped.startswith("<svg") or (stripped.startswith("<?xml") and "<svg" in stripped):
        return "image/svg+xml"
    if stripped.startswith(("<!doctype html", "<html")):
        return "text/html"
    if stripped.startswith("<?xml"):
        return "application/xml"  # may name an XSL stylesheet that renders it as a scripted document
    if "\x00" in text:
        return "application/octet-stream"
    return "text/plain"


def _with_charset(kind: str) -> str:
    if kind.startswith("text/") or kind in ("application/json", "image/svg+xml"):
        return f"{kind}; charset=utf-8"
    return kind


def _containment_headers(kind: str, name: str) -> dict[str, str]:
    """Sandbox (and download) headers for a type outside SAFE_INLINE; none for a safe type."""
    if kind in SAFE_INLINE:
        return {}
    headers = {"Content-Security-Policy": SANDBOX_POLICY}
    if kind not in SANDBOXED_INLINE:
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}" if name else "attachment"
    return headers


def _bad_path(raw_path: str, path: str) -> str | None:
    lowered = raw_path.lower()
    for fragment in _FORBIDDEN_RAW:
        if fragment in lowered:
            return f"the path contains {fragment!r}, which could escape the CID; use plain names"
    for part in path.split("/"):
        if part in (".", ".."):
            return f"the path contains {part!r} segments; IPFS paths only go down"
        if "\x00" in part:
            return "the path contains a NUL byte"
    return None


def _wants_raw_block(request: Request) -> bool:
    if request.query_params.get("format") == "raw":
        return True
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip() == RAW_BLOCK_TYPE for part in accept.split(","))


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate in ("*", etag, f"W/{etag}"):
            return True
    return False


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end exclusive), "unsatisfiable", or None to serve the whole file (absent/ignored)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # multiple or malformed ranges: RFC 9110 lets us answer with the whole content
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(size - suffix, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


def _listing(cid: str, path: str, entries: list[DirectoryEntry]) -> str:
    title = html.escape(f"/ipfs/{cid}/{path}".rstrip("/"))
    rows = []
    if path.strip("/"):
        rows.append('<tr><td><a href="../">..</a></td><td></td><td></td></tr>')
    for entry in entries:
        href = quote(entry.name) + ("/" if entry.kind == "directory" else "")
        rows.append(
            f'<tr><td><a href="{html.escape(href)}">{html.escape(entry.name)}</a></td>'
            f"<td>{entry.size:,}</td><td><code>{html.escape(entry.cid)}</code></td></tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + title
        + "</title></head><body><h1>"
        + title
        + "</h1><table><tr><th>name</th><th>size</th><th>cid</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def create_gateway(store: LocalStore) -> FastAPI:
    """The `/ipfs` sub-app serving `store`; see the module docstring for its behaviour."""
    app = FastAPI(title="Living NFT Studio IPFS gateway", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> Response:
        return PlainTextResponse(message + "\n", status_code=status, headers={"Cache-Control": "no-store"})

    def serve(request: Request, cid: str, path: str, slash: bool) -> Response:
        raw_path = request.scope.get("raw_path", b"").decode("latin-1")
        problem = _bad_path(raw_path, path)
        if problem:
            return error(400, f"Bad path: {problem}.")
        if not store.has(cid):
            try:
                parse_cid(cid)
            except InvalidCIDError as exc:
                return error(400, f"Invalid CID: {exc}")
            return error(404, f"{cid} is not in this studio's IPFS store. Pin it here first, or use a public gateway.")
        try:
            if _wants_raw_block(request):
                return _serve_block(cid, path.strip("/"))
            return _serve_existing(request, cid, path.strip("/"), slash)
        except ContentPathError as exc:
            return error(404, str(exc))
        except (CorruptBlockError, BlockNotFoundError) as exc:
            return error(502, f"Cannot serve {cid}/{path}: {exc}")

    def _serve_block(cid: str, path: str) -> Response:
        target = cid_from_bytes(store.resolve(cid, path))
        headers = {
            "ETag": f'"{target}.raw"',
            "Cache-Control": IMMUTABLE_CACHE,
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'attachment; filename="{target}.bin"',
            "X-Ipfs-Roots": target,
        }
        return Response(store.get_block(target), media_type=RAW_BLOCK_TYPE, headers=headers)

    def _serve_existing(request: Request, cid: str, path: str, slash: bool) -> Response:
        etag = f'"{cid}/{path}"' if path else f'"{cid}"'
        base = {"ETag": etag, "Cache-Control": IMMUTABLE_CACHE, "X-Content-Type-Options": "nosniff"}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=base)
        stat = store.stat(cid, path)
        if stat.kind == "directory":
            if not slash:
                return RedirectResponse(request.url.path + "/", status_code=301)
            try:
                reader = store.open(cid, f"{path}/index.html" if path else "index.html")
            except ContentPathError:
                entries = store.ls(cid, path)
                if request.method == "HEAD":
                    return Response(headers={**base, "Content-Type": "text/html; charset=utf-8"})
                return HTMLResponse(_listing(cid, path, entries), headers=base)
            return _serve_file(request, reader, base, "index.html")
        return _serve_file(request, store.open(cid, path), base, path.rsplit("/", 1)[-1])

    def _serve_file(request: Request, reader: ContentReader, base: dict[str, str], name: str) -> Response:
        size = reader.size
        kind = _type_from_name(name) if name else None
        if kind is None and "." in name.lstrip("."):
            kind = "application/octet-stream"  # an extension nobody knows: never guess it into something active
        if kind is None:  # no name, or one without an extension (a collection's `1`, `2`, ...): sniffed
            kind = sniff_content_type(reader.read(0, 512))
        headers = {**base, "Content-Type": _with_charset(kind), "Accept-Ranges": "bytes"}
        headers.update(_containment_headers(kind, name))
        wanted = _parse_range(request.headers.get("range"), size)
        if wanted == "unsatisfiable":
            return Response(
                status_code=416,
                headers={**headers, "Content-Range": f"bytes */{size}", "Cache-Control": "no-store"},
            )
        status = 200
        start, end = 0, size
        if isinstance(wanted, tuple):
            start, end = wanted
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        if end - start <= VERIFY_WHOLE_BYTES:
            return Response(reader.read(start, end), status_code=status, headers=headers)
        pieces: Iterator[bytes] = reader.iter_bytes(start, end)
        first = next(pieces, b"")  # verified before the status line goes out
        return StreamingResponse(chain([first], pieces), status_code=status, headers=headers)

    @app.api_route("/{cid}", methods=["GET", "HEAD"])
    def root(request: Request, cid: str) -> Response:
        return serve(request, cid, "", slash=False)

    @app.api_route("/{cid}/{path:path}", methods=["GET", "HEAD"])
    def sub_path(request: Request, cid: str, path: str) -> Response:
        return serve(request, cid, path, slash=path == "" or path.endswith("/"))

    return app


def create_standalone_app(store: LocalStore) -> FastAPI:
    """The gateway on its own, at the same `/ipfs/...` URLs as inside the studio."""
    app = FastAPI(title="Living NFT Studio IPFS gateway", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/ipfs", create_gateway(store))
    return app
