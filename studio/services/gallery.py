"""Reading tokens exactly as a marketplace does: from the chain and IPFS alone, never the studio database.

The collector gallery (`/gallery`) uses this so what it shows is what any marketplace would show: the
token's `tokenURI` read from the contract through a read-only client (an RPC URL and an address, no
signer, so it works for any deployment on any network), then the metadata JSON and its image from
IPFS. Content comes from the studio's local store when it holds the CID, else over HTTP from the
public gateway (`settings.ipfs.public_gateway`) with timeouts and a size cap, and is checked against
its CID before it is used. A token's history is its list of `MetadataSet` events, each version's
metadata fetched the same way.

The gallery is public, so one request must not cost the studio (or the gateway and RPC node it uses)
an unbounded amount of work: content from the gateway is verified and then kept in a `ContentCache` by
CID (content addressed, so it never goes stale; bounded by bytes, least recently used first out);
at most `GalleryShared.max_concurrent_fetches` gateway fetches run at once across all requests; a
token's history is read one page at a time; and every reader has a budget of RPC calls per request.
Metadata from outside is size- and depth-checked before it is parsed (metadata.jsonsafe).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import httpx
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError

from contracts.artifacts import load_artifact
from contracts.errors import ChainError
from contracts.signer import make_web3, rpc_call, to_address
from contracts.urls import redact_url
from metadata.cid import cid_for_bytes, parse_cid, raw_cid_from_digest
from metadata.errors import BoundedJSONError, ContentError
from metadata.jsonsafe import load_json_bounded
from metadata.store import LocalStore
from studio.services.errors import NotFoundError, StudioError
from studio.services.studio import Studio

MAX_METADATA_BYTES = 262_144
# Token metadata (provenance with feed values included) nests well under this.
MAX_METADATA_DEPTH = 32
CODEC_RAW = 0x55
CACHE_BYTES = 64 * 1024 * 1024
MAX_CONCURRENT_FETCHES = 4
# Reads of the chain one gallery request may make: a page of 24 cards takes 2 + 24 x 4.
MAX_RPC_CALLS_PER_REQUEST = 120
HISTORY_PAGE_SIZE = 10


class GalleryError(StudioError):
    """A token that cannot be read as a marketplace would read it (chain or IPFS)."""


class ContentUnavailableError(GalleryError):
    """IPFS content that neither the local store nor the public gateway could give (intact)."""


@dataclass(frozen=True)
class GalleryVersion:
    """One entry of a token's history, from a MetadataSet event and that version's metadata."""

    version: int
    metadata_cid: str
    block_number: int
    tx_hash: str
    timestamp: int
    metadata: dict[str, Any] | None
    image_url: str | None
    error: str | None = None

    @property
    def feed_snapshot(self) -> str | None:
        provenance = (self.metadata or {}).get("provenance") or {}
        return provenance.get("feed_snapshot")


@dataclass(frozen=True)
class GalleryToken:
    """A token as its metadata describes it, with where its image can be loaded from."""

    token_id: int
    token_uri: str
    metadata_cid: str
    version: int
    owner: str
    frozen: bool
    metadata: dict[str, Any]
    image_url: str | None
    attributes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or f"Token #{self.token_id}")

    @property
    def description(self) -> str:
        return str(self.metadata.get("description") or "")


@dataclass(frozen=True)
class GalleryCard:
    """A token in the collection grid; `error` says why it could not be read (the rest still shows)."""

    token_id: int
    token: GalleryToken | None
    error: str | None = None


class ContentCache:
    """Verified IPFS content by CID, bounded by total bytes, least recently used evicted first. Safe across
    threads. An entry larger than an eighth of the budget is not kept (one file must not flush the rest)."""

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
        if len(data) > self.max_bytes // 8:
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
class GalleryShared:
    """What all gallery requests of one process share: the content cache and the bound on concurrent
    gateway fetches (a semaphore; a request that cannot get a turn in time fails that one token)."""

    cache: ContentCache = field(default_factory=ContentCache)
    max_concurrent_fetches: int = MAX_CONCURRENT_FETCHES
    fetch_slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.fetch_slots = threading.BoundedSemaphore(self.max_concurrent_fetches)


def split_ipfs_uri(uri: str) -> tuple[str, str]:
    """`ipfs://CID/path` (or `/ipfs/CID/path`) -> (CID, path). Other schemes are refused with a reason."""
    text = (uri or "").strip()
    for prefix in ("ipfs://ipfs/", "ipfs://", "/ipfs/"):
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            cid, _, path = rest.partition("/")
            parse_cid(cid)  # raises InvalidCIDError with a reason
            return cid, path
    raise GalleryError(f"{text!r} is not an ipfs:// URI: this gallery reads only content-addressed tokens.")


class IpfsReader:
    """IPFS content by CID: the local store first, else the public gateway over HTTP, verified."""

    def __init__(
        self,
        store: LocalStore | None,
        public_gateway: str,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        max_bytes: int = 50 * 1024 * 1024,
        shared: GalleryShared | None = None,
    ) -> None:
        self.store = store
        self.public_gateway = public_gateway.rstrip("/")
        self.max_bytes = max_bytes
        self.timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self.read_timeout_s = read_timeout_s
        self.shared = shared or GalleryShared()

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
        if not path:
            cached = self.shared.cache.get(cid)
            if cached is not None:
                if len(cached) > limit:
                    raise ContentUnavailableError(f"{cid} is larger than {limit} bytes: refused.")
                return cached
        # One turn among all gallery requests: a public page must not open unbounded outside connections.
        if not self.shared.fetch_slots.acquire(timeout=self.read_timeout_s):
            raise ContentUnavailableError(
                f"The IPFS gateway {self.public_gateway} is busy with other gallery requests: try again shortly."
            )
        try:
            data = self._fetch(cid, path, limit)
        finally:
            self.shared.fetch_slots.release()
        if not path:
            self._verify(cid, data)
            self.shared.cache.put(cid, data)  # verified against its CID: it can never change
        return data

    def _fetch(self, cid: str, path: str, limit: int) -> bytes:
        url = f"{self.public_gateway}/ipfs/{cid}" + (f"/{path}" if path else "")
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=True) as client,
                client.stream("GET", url, headers={"Accept": "*/*"}) as response,
            ):
                if response.status_code != 200:
                    raise ContentUnavailableError(
                        f"The IPFS gateway {self.public_gateway} answered {response.status_code} for {cid}: the "
                        "content may not be pinned anywhere reachable; pin it, or set STUDIO_IPFS__PUBLIC_GATEWAY "
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
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise ContentUnavailableError(
                f"Cannot fetch {cid} from the IPFS gateway {self.public_gateway} ({type(exc).__name__}: {exc}): "
                "check the network, or set STUDIO_IPFS__PUBLIC_GATEWAY to a reachable gateway."
            ) from None

    @staticmethod
    def _verify(cid: str, data: bytes) -> None:
        """A gateway is not trusted: the bytes must hash to the CID asked for."""
        parsed = parse_cid(cid)
        if parsed.codec == CODEC_RAW:
            ok = hashlib.sha256(data).digest() == parsed.digest
        else:
            ok = cid_for_bytes(data, version=parsed.version) == str(parsed)
        if not ok:
            raise ContentUnavailableError(
                f"The gateway's bytes for {cid} do not match that CID: the gateway is faulty or hostile; "
                "use another STUDIO_IPFS__PUBLIC_GATEWAY."
            )

    def json(self, uri: str) -> dict[str, Any]:
        cid, path = split_ipfs_uri(uri)
        data = self.cat(cid, path, max_bytes=MAX_METADATA_BYTES)
        try:
            value = load_json_bounded(data, max_bytes=MAX_METADATA_BYTES, max_depth=MAX_METADATA_DEPTH, what=uri)
        except BoundedJSONError as exc:  # too large, nested too deep, or not JSON: this token only
            raise GalleryError(f"The metadata is refused: {exc}.") from None
        if not isinstance(value, dict):
            raise GalleryError(f"The metadata {uri} is not a JSON object.")
        return value


class GalleryReader:
    """A read-only view of one LivingNFT contract (or any ERC-721 with MetadataSet events) on any network."""

    def __init__(
        self,
        rpc_url: str,
        contract_address: str,
        ipfs: IpfsReader,
        *,
        rpc_timeout_s: float = 15.0,
        from_block: int = 0,
        max_rpc_calls: int = MAX_RPC_CALLS_PER_REQUEST,
    ) -> None:
        self.rpc_url = rpc_url
        self.rpc_calls = 0
        self.max_rpc_calls = max_rpc_calls
        self.w3: Web3 = make_web3(rpc_url, rpc_timeout_s)
        self.address = to_address(contract_address)
        self.ipfs = ipfs
        self.from_block = from_block
        self.contract = self.w3.eth.contract(address=self.address, abi=load_artifact("LivingNFT").abi)
        self._timestamps: dict[int, int] = {}

    def _spend_rpc_call(self) -> None:
        """One read of the chain from this reader's budget: one public request reads a bounded amount."""
        if self.rpc_calls >= self.max_rpc_calls:
            raise GalleryError(
                f"This page needs more than {self.max_rpc_calls} reads of the chain: refused, so one request "
                "cannot load the RPC endpoint without bound."
            )
        self.rpc_calls += 1

    def _call(self, function: str, *args: Any) -> Any:
        fn = getattr(self.contract.functions, function)(*args)
        self._spend_rpc_call()
        try:
            return rpc_call(self.w3, lambda: fn.call())
        except ContractLogicError:
            if args:
                raise NotFoundError(
                    f"Token {args[0]} does not exist on contract {self.address}: check the token id."
                ) from None
            raise GalleryError(f"The contract {self.address} refused {function}(): is it a LivingNFT?") from None
        except ChainError as exc:
            raise GalleryError(f"Cannot read the chain at {self._endpoint()}: {exc}") from None

    def _endpoint(self) -> str:
        return redact_url(self.rpc_url)  # never the API key in the URL's path or query: this page is public

    def collection_name(self) -> str:
        return str(self._call("name"))

    def total_supply(self) -> int:
        return int(self._call("totalSupply"))

    def token(self, token_id: int) -> GalleryToken:
        """tokenURI from the chain, then the metadata it points at and the image that metadata names."""
        token_id = int(token_id)
        if token_id < 1:
            raise NotFoundError(f"Token {token_id} does not exist: token ids start at 1.")
        token_uri = str(self._call("tokenURI", token_id))
        owner = str(self._call("ownerOf", token_id))
        frozen = bool(self._call("isFrozen", token_id))
        version = int(self._call("metadataVersion", token_id))
        metadata_cid, _ = split_ipfs_uri(token_uri)
        metadata = self.ipfs.json(token_uri)
        return GalleryToken(
            token_id=token_id,
            token_uri=token_uri,
            metadata_cid=metadata_cid,
            version=version,
            owner=owner,
            frozen=frozen,
            metadata=metadata,
            image_url=self._image_url(metadata),
            attributes=[a for a in metadata.get("attributes") or [] if isinstance(a, dict)],
        )

    def _image_url(self, metadata: dict[str, Any]) -> str | None:
        image = metadata.get("image")
        if not isinstance(image, str):
            return None
        try:
            return self.ipfs.url(image)
        except (GalleryError, ContentError):
            return None

    def cards(self, *, limit: int = 24, offset: int = 0) -> tuple[int, list[GalleryCard]]:
        """(total supply, one card per token), newest first; a token that cannot be read keeps its place."""
        total = self.total_supply()
        ids = list(range(total - offset, max(total - offset - limit, 0), -1))
        cards = []
        for token_id in ids:
            try:
                cards.append(GalleryCard(token_id, self.token(token_id)))
            except (StudioError, ContentError) as exc:
                cards.append(GalleryCard(token_id, None, str(exc)))
        return total, cards

    def history(
        self, token_id: int, *, limit: int = HISTORY_PAGE_SIZE, offset: int = 0
    ) -> tuple[int, list[GalleryVersion]]:
        """(number of versions, one page of them, newest first) from the token's MetadataSet events; only
        the page's versions have their metadata and block time read."""
        event = self.contract.events.MetadataSet()
        topic0 = HexBytes(Web3.keccak(text=event.abi_element_identifier)).to_0x_hex()
        token_topic = "0x" + int(token_id).to_bytes(32, "big").hex()
        self._spend_rpc_call()
        try:
            raw = rpc_call(
                self.w3,
                lambda: self.w3.eth.get_logs(
                    {
                        "address": self.address,
                        "fromBlock": self.from_block,
                        "toBlock": "latest",
                        "topics": [topic0, token_topic],
                    }
                ),
            )
        except ChainError as exc:
            raise GalleryError(f"Cannot read the token's history at {self._endpoint()}: {exc}") from None
        newest_first = sorted(raw, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])), reverse=True)
        versions = []
        for log in (event.process_log(entry) for entry in newest_first[offset : offset + max(limit, 0)]):
            cid = raw_cid_from_digest(bytes(log["args"]["metadataDigest"]))
            metadata: dict[str, Any] | None = None
            error = None
            try:
                metadata = self.ipfs.json(f"ipfs://{cid}")
            except (StudioError, ContentError) as exc:
                error = str(exc)
            versions.append(
                GalleryVersion(
                    version=int(log["args"]["version"]),
                    metadata_cid=cid,
                    block_number=int(log["blockNumber"]),
                    tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
                    timestamp=self._timestamp(int(log["blockNumber"])),
                    metadata=metadata,
                    image_url=self._image_url(metadata) if metadata else None,
                    error=error,
                )
            )
        return len(newest_first), versions

    def _timestamp(self, block_number: int) -> int:
        if block_number not in self._timestamps:
            self._spend_rpc_call()
            block = rpc_call(self.w3, lambda: self.w3.eth.get_block(block_number))
            self._timestamps[block_number] = int(block["timestamp"])
        return self._timestamps[block_number]


def ipfs_reader(studio: Studio, shared: GalleryShared | None = None) -> IpfsReader:
    ipfs = studio.settings.ipfs
    return IpfsReader(
        studio.store,
        ipfs.public_gateway,
        connect_timeout_s=ipfs.connect_timeout_s,
        read_timeout_s=min(ipfs.read_timeout_s, 30.0),
        max_bytes=int(ipfs.max_file_mb * 1024 * 1024),
        shared=shared,
    )


def gallery_reader(studio: Studio, shared: GalleryShared | None = None) -> GalleryReader:
    """The gallery's reader: the contract in settings.app.gallery_rpc_url/gallery_contract_address when
    set (a collection on another network), else the studio's own chain and contract. Make one reader per
    request (its RPC budget is per request) over one `shared` per process (cache and fetch bound)."""
    app = studio.settings.app
    if app.gallery_rpc_url and app.gallery_contract_address:
        return GalleryReader(
            app.gallery_rpc_url,
            app.gallery_contract_address,
            ipfs_reader(studio, shared),
            rpc_timeout_s=studio.settings.chain.rpc_timeout_s,
            from_block=app.gallery_from_block,
        )
    chain = studio.chain
    return GalleryReader(
        chain.rpc_url,
        chain.contract_address,
        ipfs_reader(studio, shared),
        rpc_timeout_s=studio.settings.chain.rpc_timeout_s,
        from_block=chain.client.from_block,
    )


# --- Content Credentials badges (the verifier's own checks, metadata.verify) ------------------------------


@dataclass(frozen=True)
class CredentialsBadge:
    """A version's Content Credentials as the gallery shows them: the reader's state (trusted, valid,
    invalid, missing, or unavailable when the image could not be read), the signer, and what the
    verifier's checks found wrong."""

    state: str
    signer: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.state == "trusted" and not self.problems


class _ReaderSource:
    """The gallery's IPFS reader (local store, else the gateway, CID-checked) as the verifier's source."""

    def __init__(self, ipfs: IpfsReader) -> None:
        self.ipfs = ipfs

    def cat(self, cid: str, *, max_bytes: int) -> bytes:
        from metadata.verify import FetchFailed

        try:
            return self.ipfs.cat(cid, max_bytes=max_bytes)
        except (StudioError, ContentError) as exc:
            raise FetchFailed("unavailable", str(exc)) from None


def collection_trust_anchor_pem(reader: GalleryReader) -> bytes | None:
    """The CA certificate the collection metadata (`contractURI`) names, None when it names none."""
    from metadata.verify import collection_trust_anchor

    try:
        pem, _cid = collection_trust_anchor(str(reader._call("contractURI")), _ReaderSource(reader.ipfs))
    except (StudioError, ContentError):
        return None
    return pem


def credentials_badges(
    reader: GalleryReader, token_id: int, versions: list[GalleryVersion]
) -> dict[int, CredentialsBadge]:
    """One badge per version of a history page, checked as `python -m metadata verify` checks them. A
    version's link to its parent is checked when the previous version is on the same page."""
    from metadata.credentials import read_credentials
    from metadata.verify import credentials_failures, ipfs_cid

    anchor = collection_trust_anchor_pem(reader)
    source = _ReaderSource(reader.ipfs)
    manifests: dict[int, str | None] = {}
    badges: dict[int, CredentialsBadge] = {}
    for version in sorted(versions, key=lambda v: v.version):
        metadata = version.metadata or {}
        image_cid = ipfs_cid(metadata.get("image"))
        if image_cid is None:
            badges[version.version] = CredentialsBadge("unavailable", problems=("the metadata names no image",))
            continue
        try:
            png = source.cat(image_cid, max_bytes=reader.ipfs.max_bytes)
        except ContentError as exc:
            badges[version.version] = CredentialsBadge("unavailable", problems=(str(exc),))
            continue
        verdict = read_credentials(png, anchor)
        manifests[version.version] = verdict.manifest
        provenance = metadata.get("provenance")
        failures = credentials_failures(
            verdict,
            trust_anchor=anchor is not None,
            previous_manifest=manifests.get(version.version - 1),
            provenance=provenance if isinstance(provenance, dict) else None,
            chain_id=None,
            contract=reader.address,
            token_id=int(token_id),
            check_parent=version.version == 0 or (version.version - 1) in manifests,
        )
        badges[version.version] = CredentialsBadge(verdict.state, verdict.signer, tuple(f.message for f in failures))
    return badges
