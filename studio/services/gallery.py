"""Reading tokens exactly as a marketplace does: from the chain and IPFS alone, never the studio database.

The collector gallery (`/gallery`) uses this so what it shows is what any marketplace would show: the
token's `tokenURI` read from the contract through a read-only `LivingNFTReader` (an RPC URL and an
address, no signer, so it works for any deployment on any network), then the metadata JSON and its
image through an `IpfsReader` (metadata/ipfs_reader.py: the local store, else the public gateway,
verified against the CID). A token's history is its list of `MetadataSet` events, each version's
metadata fetched the same way.

The gallery is public, so one request must not cost the studio (or the gateway and RPC node it uses)
an unbounded amount of work: verified content is cached and gateway fetches are bounded across all
requests (`SharedContent`, one per process); a token's history is read one page at a time; and every
reader has a budget of RPC calls per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.errors import ChainError, ContractRevertError
from contracts.reader import LivingNFTReader, MetadataChange
from contracts.urls import redact_url
from metadata.errors import ContentError
from metadata.ipfs_reader import IpfsReader, SharedContent, split_ipfs_uri
from studio.services.errors import NotFoundError, StudioError
from studio.services.studio import Studio

# Reads of the chain one gallery request may make: a page of 24 cards takes 2 + 24 x 4.
MAX_RPC_CALLS_PER_REQUEST = 120
HISTORY_PAGE_SIZE = 10


class GalleryError(StudioError):
    """A token that cannot be read as a marketplace would read it (chain or IPFS)."""


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


class GalleryReader:
    """A read-only view of one LivingNFT contract (or any ERC-721 with MetadataSet events) on any network,
    with each token's metadata and images from IPFS."""

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
        self.chain = LivingNFTReader.connect(
            rpc_url,
            contract_address,
            rpc_timeout_s=rpc_timeout_s,
            from_block=from_block,
            on_rpc_call=self._spend_rpc_call,
        )
        self.address = self.chain.address
        self.ipfs = ipfs

    def _spend_rpc_call(self) -> None:
        """One read of the chain from this reader's budget: one public request reads a bounded amount."""
        if self.rpc_calls >= self.max_rpc_calls:
            raise GalleryError(
                f"This page needs more than {self.max_rpc_calls} reads of the chain: refused, so one request "
                "cannot load the RPC endpoint without bound."
            )
        self.rpc_calls += 1

    def _read(self, what: str, read: Any, *args: Any) -> Any:
        """`read(*args)` on the chain, its failures in the gallery's words (the endpoint redacted)."""
        try:
            return read(*args)
        except ContractRevertError:
            if args:
                raise NotFoundError(
                    f"Token {args[0]} does not exist on contract {self.address}: check the token id."
                ) from None
            raise GalleryError(f"The contract {self.address} refused {what}(): is it a LivingNFT?") from None
        except ChainError as exc:
            raise GalleryError(f"Cannot read the chain at {self._endpoint()}: {exc}") from None

    def _endpoint(self) -> str:
        return redact_url(self.rpc_url)  # never the API key in the URL's path or query: this page is public

    def collection_name(self) -> str:
        return str(self._read("name", self.chain.name))

    def total_supply(self) -> int:
        return int(self._read("totalSupply", self.chain.total_supply))

    def token(self, token_id: int) -> GalleryToken:
        """tokenURI from the chain, then the metadata it points at and the image that metadata names."""
        token_id = int(token_id)
        if token_id < 1:
            raise NotFoundError(f"Token {token_id} does not exist: token ids start at 1.")
        token_uri = str(self._read("tokenURI", self.chain.token_uri, token_id))
        owner = str(self._read("ownerOf", self.chain.owner_of, token_id))
        frozen = bool(self._read("isFrozen", self.chain.is_frozen, token_id))
        version = int(self._read("metadataVersion", self.chain.metadata_version, token_id))
        metadata = self.ipfs.json(token_uri)
        # A drop's token points into its folder (ipfs://<folder>/<id>.json) until its first evolution:
        # its metadata's own CID is the folder's entry, read from the blocks json() just fetched.
        folder_or_file, path = split_ipfs_uri(token_uri)
        metadata_cid = self.ipfs.resolve(folder_or_file, path)
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
        try:
            count, changes = self.chain.history_page(int(token_id), limit=limit, offset=offset)
        except ChainError as exc:
            raise GalleryError(f"Cannot read the token's history at {self._endpoint()}: {exc}") from None
        return count, [self._version(change) for change in changes]

    def _version(self, change: MetadataChange) -> GalleryVersion:
        metadata: dict[str, Any] | None = None
        error = None
        try:
            metadata = self.ipfs.json(f"ipfs://{change.metadata_cid}")
        except (StudioError, ContentError) as exc:
            error = str(exc)
        return GalleryVersion(
            version=change.version,
            metadata_cid=change.metadata_cid,
            block_number=change.block_number,
            tx_hash=change.tx_hash,
            timestamp=change.timestamp,
            metadata=metadata,
            image_url=self._image_url(metadata) if metadata else None,
            error=error,
        )


def ipfs_reader(studio: Studio, shared: SharedContent | None = None) -> IpfsReader:
    ipfs = studio.settings.ipfs
    return IpfsReader(
        studio.store,
        ipfs.public_gateway,
        connect_timeout_s=ipfs.connect_timeout_s,
        read_timeout_s=min(ipfs.read_timeout_s, 30.0),
        max_bytes=int(ipfs.max_file_mb * 1024 * 1024),
        shared=shared,
    )


def gallery_reader(studio: Studio, shared: SharedContent | None = None) -> GalleryReader:
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


def collection_trust_anchor_pem(reader: GalleryReader) -> bytes | None:
    """The CA certificate the collection metadata (`contractURI`) names, None when it names none."""
    from metadata.verify import ReaderSource, collection_trust_anchor

    try:
        pem, _cid = collection_trust_anchor(reader.chain.contract_uri(), ReaderSource(reader.ipfs))
    except (StudioError, ContentError):
        return None
    return pem


def credentials_badges(
    reader: GalleryReader, token_id: int, versions: list[GalleryVersion]
) -> dict[int, CredentialsBadge]:
    """One badge per version of a history page, checked as `python -m metadata verify` checks them. A
    version's link to its parent is checked when the previous version is on the same page."""
    from metadata.credentials import read_credentials
    from metadata.verify import ReaderSource, credentials_failures, ipfs_cid

    anchor = collection_trust_anchor_pem(reader)
    source = ReaderSource(reader.ipfs)
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
