"""IPFS content by CID as a marketplace reads it: the studio's local store when it holds the CID, else
the public gateway over HTTP, with timeouts, a deadline per read, a size cap and at most five redirects,
and checked against its CID before use. The one gateway reader of the house: the gallery reads through
it, and `python -m metadata verify` too (metadata.verify.GatewaySource, gateway only).

A gateway is not trusted: bytes that do not hash to the CID asked for are refused
(`ContentMismatchError`), an answer larger than the cap is refused before it is all read, and a gateway
that drips its answer slowly cannot hold a read past `deadline_s` (the socket timeouts alone bound
only each wait for a byte). Verified content
is kept in a `ContentCache` by CID (content addressed, so it never goes stale; bounded by bytes, least
recently used first out), and at most `SharedContent.max_concurrent_fetches` gateway fetches run at
once across all readers of a process (the public gallery must not open unbounded outside
connections). Metadata is size- and depth-checked before it is parsed (metadata.jsonsafe).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import httpx

from metadata.cid import cid_for_bytes, cid_from_bytes, parse_cid
from metadata.errors import BoundedJSONError, ContentError, ContentPathError, CorruptBlockError
from metadata.ipfs_path import resolve_path
from metadata.jsonsafe import load_json_bounded
from metadata.store import LocalStore
from metadata.unixfs import CODEC_RAW

MAX_METADATA_BYTES = 262_144
# kubo makes blocks of at most 1 MiB (256 KiB chunks by default); a directory block is far smaller.
MAX_BLOCK_BYTES = 2 * 1024 * 1024
# Token metadata (provenance with feed values included) nests well under this.
MAX_METADATA_DEPTH = 32
CACHE_BYTES = 64 * 1024 * 1024
MAX_CONCURRENT_FETCHES = 4
# One gateway read's whole time, however the gateway spaces its bytes: a public page must not hang on it.
READ_DEADLINE_S = 60.0
# A path gateway may redirect (to a subdomain gateway, say); a longer chain is a loop or a hostile one.
MAX_REDIRECTS = 5


class ContentUnavailableError(ContentError):
    """IPFS content that neither the local store nor the public gateway could give (intact)."""


class ContentMismatchError(ContentUnavailableError):
    """Bytes a gateway gave for a CID that do not hash to that CID: a faulty or hostile gateway."""


class NotIpfsUriError(ContentError, ValueError):
    """A token URI or image that is not content addressed (not ipfs://CID/...)."""


class MetadataRefusedError(ContentError):
    """Metadata that is too large, nested too deeply, not JSON, or not a JSON object."""


class ContentCache:
    """Verified IPFS content by CID, bounded by total bytes, least recently used evicted first. Safe across
    threads. An entry larger than an eighth of the budget is not kept (one file must not flush the rest);
    `max_bytes=0` keeps nothing."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, cid: str) -> bytes | None:
        with self._lock:
            data = self._entries.get(cid)
            if data is not None:
                self._entries.move_to_end(cid)
            return data

    def put(self, cid: str, data: bytes) -> None:
        if not self.max_bytes or len(data) > self.max_bytes // 8:
            return
        with self._lock:
            if cid in self._entries:
                self._entries.move_to_end(cid)
                return
            self._entries[cid] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _old, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)

    @property
    def size(self) -> int:
        return self._size


@dataclass
class SharedContent:
    """What all readers of one process share: the content cache and the bound on concurrent gateway
    fetches (a semaphore; a reader that cannot get a turn in time fails that one document)."""

    cache: ContentCache = field(default_factory=ContentCache)
    max_concurrent_fetches: int = MAX_CONCURRENT_FETCHES
    fetch_slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.fetch_slots = threading.BoundedSemaphore(self.max_concurrent_fetches)


def bytes_match_cid(cid: str, data: bytes) -> bool:
    """Whether `data` is what `cid` names: its sha-256 for a raw CID, else the CID recomputed (UnixFS)."""
    parsed = parse_cid(cid)
    if parsed.codec == CODEC_RAW:
        return hashlib.sha256(data).digest() == parsed.digest
    return cid_for_bytes(data, version=parsed.version) == str(parsed)


def split_ipfs_uri(uri: str) -> tuple[str, str]:
    """`ipfs://CID/path` (or `/ipfs/CID/path`) -> (CID, path). Other schemes are refused with a reason."""
    text = (uri or "").strip()
    for prefix in ("ipfs://ipfs/", "ipfs://", "/ipfs/"):
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            cid, _, path = rest.partition("/")
            parse_cid(cid)  # raises InvalidCIDError with a reason
            return cid, path
    raise NotIpfsUriError(f"{text!r} is not an ipfs:// URI: this gallery reads only content-addressed tokens.")


class IpfsReader:
    """IPFS content by CID: the local store first, else the public gateway over HTTP, verified.

    `deadline_s` bounds one gateway read from its start (the wait for a fetch slot included) to its last
    byte: a gateway answering a byte at a time, each within `read_timeout_s`, is cut off at the first
    byte after the deadline; one that stalls is cut off by the socket timeout, which is never longer than
    the deadline. `client` is an open httpx.Client to reuse connections across reads (its owner closes
    it; it should cap redirects at MAX_REDIRECTS); without one each read opens its own. `gateway_setting`
    names where the user chooses the gateway, for the error messages."""

    def __init__(
        self,
        store: LocalStore | None,
        public_gateway: str,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        deadline_s: float = READ_DEADLINE_S,
        max_bytes: int = 50 * 1024 * 1024,
        shared: SharedContent | None = None,
        client: httpx.Client | None = None,
        gateway_setting: str = "STUDIO_IPFS__PUBLIC_GATEWAY",
    ) -> None:
        self.store = store
        self.public_gateway = public_gateway.rstrip("/")
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s
        self.timeout = httpx.Timeout(min(read_timeout_s, deadline_s), connect=min(connect_timeout_s, deadline_s))
        self.read_timeout_s = read_timeout_s
        self.shared = shared or SharedContent()
        self.client = client
        self.gateway_setting = gateway_setting

    def is_local(self, cid: str) -> bool:
        return self.store is not None and self.store.has(cid)

    def url(self, uri: str) -> str:
        """Where a browser loads `ipfs://CID/path`: the studio's own /ipfs/ when the store has it."""
        cid, path = split_ipfs_uri(uri)
        suffix = f"/{path}" if path else ""
        if self.is_local(cid):
            return f"/ipfs/{cid}{suffix}"
        return f"{self.public_gateway}/ipfs/{cid}{suffix}"

    def cat(self, cid: str, path: str = "", *, max_bytes: int | None = None) -> bytes:
        limit = max_bytes or self.max_bytes
        if self.is_local(cid):
            try:
                assert self.store is not None
                return self.store.cat(cid, path)
            except ContentError as exc:
                raise ContentUnavailableError(f"The local IPFS store cannot give {cid}/{path}: {exc}") from None
        deadline = time.monotonic() + self.deadline_s
        cid = self._resolve(cid, path, deadline)
        cached = self.shared.cache.get(cid)
        if cached is not None:
            if len(cached) > limit:
                raise ContentUnavailableError(f"{cid} is larger than {limit} bytes: refused.")
            return cached
        data = self._fetch(cid, limit, deadline)
        self._verify(cid, data)
        self.shared.cache.put(cid, data)  # verified against its CID: it can never change
        return data

    def resolve(self, cid: str, path: str = "") -> str:
        """The CID of the content at `cid/path` (`cid` itself for no path): what a folder URI such as
        `ipfs://<folder>/12.json` really points at."""
        if self.is_local(cid):
            assert self.store is not None
            try:
                return cid_from_bytes(self.store.resolve(cid, path))
            except ContentError as exc:
                raise ContentUnavailableError(f"The local IPFS store cannot resolve {cid}/{path}: {exc}") from None
        return self._resolve(cid, path, time.monotonic() + self.deadline_s)

    def _resolve(self, cid: str, path: str, deadline: float) -> str:
        if not path.strip("/"):
            return cid
        # A path is walked here, one verified directory block at a time, never by the gateway: a
        # gateway's answer for CID/path could be any bytes, a block can only be the one its CID names.
        try:
            return cid_from_bytes(resolve_path(lambda block_cid: self._block(block_cid, deadline), cid, path))
        except (ContentPathError, CorruptBlockError) as exc:
            raise ContentUnavailableError(f"Cannot read {cid}/{path} from {self.public_gateway}: {exc}") from None

    def _block(self, cid: bytes, deadline: float) -> bytes:
        """One block from the gateway's trustless interface (`?format=raw`), checked against its digest."""
        parsed = parse_cid(cid_from_bytes(cid))
        key = f"{parsed}?format=raw"  # a dag-pb block is not its file's bytes: cached apart
        cached = self.shared.cache.get(key)
        if cached is not None:
            return cached
        block = self._fetch(str(parsed), MAX_BLOCK_BYTES, deadline, raw_block=True)
        if hashlib.sha256(block).digest() != parsed.digest:
            raise ContentMismatchError(
                f"The gateway's block for {parsed} does not match that CID: the gateway is faulty or hostile; "
                f"use another {self.gateway_setting}."
            )
        self.shared.cache.put(key, block)
        return block

    def _fetch(self, cid: str, limit: int, deadline: float, *, raw_block: bool = False) -> bytes:
        # One turn among all readers: a public page must not open unbounded outside connections.
        wait = min(self.read_timeout_s, max(deadline - time.monotonic(), 0.0))
        if not self.shared.fetch_slots.acquire(timeout=wait):
            raise ContentUnavailableError(
                f"The IPFS gateway {self.public_gateway} is busy with other readers: try again shortly."
            )
        url = f"{self.public_gateway}/ipfs/{cid}" + ("?format=raw" if raw_block else "")
        accept = "application/vnd.ipld.raw" if raw_block else "*/*"
        try:
            if self.client is not None:
                return self._read(self.client, url, accept, cid, limit, deadline)
            with httpx.Client(timeout=self.timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS) as client:
                return self._read(client, url, accept, cid, limit, deadline)
        except httpx.HTTPError as exc:
            raise ContentUnavailableError(
                f"Cannot fetch {cid} from the IPFS gateway {self.public_gateway} ({type(exc).__name__}: {exc}): "
                f"check the network, or set {self.gateway_setting} to a reachable gateway."
            ) from None
        finally:
            self.shared.fetch_slots.release()

    def _read(self, client: httpx.Client, url: str, accept: str, cid: str, limit: int, deadline: float) -> bytes:
        headers = {"Accept": accept}
        with client.stream("GET", url, headers=headers, timeout=self.timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise ContentUnavailableError(
                    f"The IPFS gateway {self.public_gateway} answered {response.status_code} for {cid}: the "
                    f"content may not be pinned anywhere reachable; pin it, or set {self.gateway_setting} "
                    "to a gateway that has it."
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ContentUnavailableError(
                        f"{cid} from {self.public_gateway} is larger than {limit} bytes: refused."
                    )
                if time.monotonic() > deadline:
                    raise ContentUnavailableError(
                        f"{cid} from {self.public_gateway} took over {self.deadline_s:g} s: refused (the gateway "
                        f"sends too slowly); try again later, or set {self.gateway_setting} to a faster gateway."
                    )
                chunks.append(chunk)
            return b"".join(chunks)

    def _verify(self, cid: str, data: bytes) -> None:
        """A gateway is not trusted: the bytes must hash to the CID asked for."""
        if not bytes_match_cid(cid, data):
            raise ContentMismatchError(
                f"The gateway's bytes for {cid} do not match that CID: the gateway is faulty or hostile; "
                f"use another {self.gateway_setting}."
            )

    def json(self, uri: str) -> dict[str, Any]:
        cid, path = split_ipfs_uri(uri)
        data = self.cat(cid, path, max_bytes=MAX_METADATA_BYTES)
        try:
            value = load_json_bounded(data, max_bytes=MAX_METADATA_BYTES, max_depth=MAX_METADATA_DEPTH, what=uri)
        except BoundedJSONError as exc:  # too large, nested too deep, or not JSON: this token only
            raise MetadataRefusedError(f"The metadata is refused: {exc}.") from None
        if not isinstance(value, dict):
            raise MetadataRefusedError(f"The metadata {uri} is not a JSON object.")
        return value
