"""`python -m metadata verify`: check a living token's whole life from the chain and IPFS alone.

Nothing here reads the studio's database or trusts the studio: the token's history is its list of
`MetadataSet` events read through any JSON-RPC endpoint, and every document and image comes from an
IPFS gateway and is checked against its CID before use. What is checked, per version:

- the history: versions 0..n in event order with no gap, `metadataVersion` = n and `tokenURI` = the
  last version's metadata (`ipfs://<cid>`, or for a token of a drop never evolved its folder's file
  `ipfs://<folder>/<tokenId>.json`, resolved over blocks checked against their CIDs);
- the metadata: its CID recomputed from the fetched bytes, the token metadata schema, its
  `provenance.version` equal to the on-chain version and `provenance.previous` equal to the previous
  version's metadata CID;
- the image, the feed snapshot and the `animation_url` (when there is one): fetched and their CIDs
  recomputed;
- the image's Content Credentials: intact, signed under the trust anchor (the CA certificate the
  collection metadata names in `content_credentials.trust_anchor`, or `--trust-anchor`), chained to the
  previous version's manifest as its `parentOf` ingredient, and saying in our assertion what the
  metadata says (generation record, version, previous, feed snapshot, chain id, contract, token id).

Everything fetched is hostile: sizes are capped before reading, JSON is depth-checked
(metadata.jsonsafe), every HTTP request has a timeout and the number of versions read is bounded.

The report (`TokenReport.to_json()`, `--json`) is stable: `REPORT_SCHEMA` names its version, and each
failure is a `{"code", "message"}` pair whose codes are listed in `FAILURE_CODES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from cryptography import x509

from metadata.cid import parse_cid, raw_cid_from_digest
from metadata.credentials import MAX_PEM_BYTES, CredentialsVerdict, read_credentials
from metadata.errors import BoundedJSONError, ContentError, InvalidCIDError, VerificationError
from metadata.ipfs_reader import (
    MAX_REDIRECTS,
    ContentCache,
    ContentMismatchError,
    IpfsReader,
    SharedContent,
    split_ipfs_uri,
)
from metadata.jsonsafe import load_json_bounded
from metadata.token import MAX_METADATA_BYTES, load_schema

if TYPE_CHECKING:
    from web3.types import FilterParams

REPORT_SCHEMA = "living-nft-verify/1"
MAX_METADATA_DEPTH = 32
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
MAX_ANIMATION_BYTES = 50 * 1024 * 1024
MAX_VERSIONS = 10_000

# Every failure code the report may hold, and what it means.
FAILURE_CODES: dict[str, str] = {
    "history.empty": "the contract has no MetadataSet event for the token",
    "history.gap": "the events' versions are not 0, 1, 2, ... in order (a version is missing or repeated)",
    "history.too_long": f"more than {MAX_VERSIONS} versions: not all were checked",
    "history.current_version": "metadataVersion() is not the last event's version",
    "history.token_uri": "tokenURI() does not point at the last version's metadata",
    "token_uri.unavailable": "tokenURI() names a file in a folder that could not be read from the gateway",
    "token_uri.cid_mismatch": "the gateway's blocks of tokenURI()'s folder do not hash to their CIDs",
    "metadata.unavailable": "the metadata could not be fetched from the gateway",
    "metadata.cid_mismatch": "the gateway's bytes do not hash to the metadata CID on chain",
    "metadata.invalid": "the metadata is not JSON within bounds, or not valid token metadata",
    "provenance.version": "provenance.version differs from the version on chain",
    "provenance.previous": "provenance.previous is not the previous version's metadata CID",
    "image.unavailable": "the image could not be fetched",
    "image.cid_mismatch": "the gateway's bytes do not hash to the image CID",
    "feed_snapshot.unavailable": "the feed snapshot named in the provenance could not be fetched",
    "feed_snapshot.cid_mismatch": "the gateway's bytes do not hash to the feed snapshot CID",
    "animation.unavailable": "the animation named by animation_url could not be fetched",
    "animation.cid_mismatch": "the gateway's bytes do not hash to the animation_url CID",
    "credentials.missing": "the image carries no Content Credentials",
    "credentials.invalid": "the image's Content Credentials are broken (the image or manifest was altered)",
    "credentials.untrusted": "the Content Credentials are intact but not signed under the trust anchor",
    "credentials.parent": "the manifest's parentOf ingredient is not the previous version's manifest",
    "credentials.provenance": "the signed assertion says something else than the metadata or the chain",
    "trust_anchor.unavailable": "no trust anchor: the collection metadata names none, or it cannot be read",
}


@dataclass(frozen=True)
class Failure:
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class FetchFailed(ContentError):
    """Content a source could not give intact; `kind` is "unavailable" or "cid_mismatch"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Replay(Protocol):
    """A replay's outcome (metadata.replay.ReplayReport) as the report holds it."""

    @property
    def ok(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...


class ContentSource(Protocol):
    """Where IPFS content comes from: `cat` returns bytes that hash to `cid` or raises FetchFailed."""

    def cat(self, cid: str, *, max_bytes: int) -> bytes: ...

    def resolve(self, cid: str, path: str) -> str:
        """The CID of the content at `cid/path`, walked over verified blocks."""
        ...


class ReaderSource:
    """An IpfsReader as the verifier's ContentSource: the reader fetches (size cap, deadline, redirect cap,
    CID check) and its errors become FetchFailed with the kind the report's failure codes name. The
    gallery reads its Content Credentials badges through one over its own reader."""

    def __init__(self, reader: IpfsReader) -> None:
        self.reader = reader

    def cat(self, cid: str, *, max_bytes: int) -> bytes:
        try:
            return self.reader.cat(cid, max_bytes=max_bytes)
        except ContentMismatchError as exc:
            raise FetchFailed("cid_mismatch", str(exc)) from None
        except ContentError as exc:
            raise FetchFailed("unavailable", str(exc)) from None

    def resolve(self, cid: str, path: str) -> str:
        try:
            return self.reader.resolve(cid, path)
        except ContentMismatchError as exc:
            raise FetchFailed("cid_mismatch", str(exc)) from None
        except ContentError as exc:
            raise FetchFailed("unavailable", str(exc)) from None


class GatewaySource(ReaderSource):
    """IPFS content over HTTP from a path gateway alone (`<gateway>/ipfs/<cid>`, no local store), as
    `python -m metadata verify` reads it: one connection pool for the whole check (`close()` ends it),
    `timeout_s` per socket wait and `deadline_s` per read, so a gateway trickling a byte per timeout_s
    cannot hold the check for ever. Nothing is cached: each read checks what the gateway gives now."""

    def __init__(
        self, gateway: str, *, timeout_s: float = 30.0, connect_timeout_s: float = 10.0, deadline_s: float = 300.0
    ) -> None:
        self.gateway = gateway.rstrip("/").removesuffix("/ipfs")
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        )
        super().__init__(
            IpfsReader(
                None,
                self.gateway,
                connect_timeout_s=connect_timeout_s,
                read_timeout_s=timeout_s,
                deadline_s=deadline_s,
                max_bytes=MAX_IMAGE_BYTES,
                shared=SharedContent(cache=ContentCache(max_bytes=0)),
                client=self._client,
                gateway_setting="--gateway",
            )
        )

    def close(self) -> None:
        self._client.close()


def ipfs_cid(uri: object) -> str | None:
    """The CID of a bare `ipfs://CID` URI, None for anything else."""
    if not isinstance(uri, str) or not uri.startswith("ipfs://"):
        return None
    cid = uri.removeprefix("ipfs://")
    try:
        parse_cid(cid)
    except InvalidCIDError:
        return None
    return cid


# --- trust anchor ------------------------------------------------------------------------------------


def parse_trust_anchor(pem: bytes, what: str) -> bytes:
    """`pem` when it holds at least one X.509 certificate; VerificationError naming `what` otherwise."""
    if len(pem) > MAX_PEM_BYTES:
        raise VerificationError(f"{what} is {len(pem):,} bytes: not a PEM certificate")
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise VerificationError(f"{what} holds no PEM certificate") from None
    return pem


def collection_trust_anchor(contract_uri: str, source: ContentSource) -> tuple[bytes, str]:
    """(CA certificate PEM, its CID) from the collection metadata `contractURI()` points at."""
    collection_cid = ipfs_cid(contract_uri)
    if collection_cid is None:
        raise VerificationError(f"contractURI() is {contract_uri!r}, not an ipfs:// URI: give --trust-anchor")
    try:
        document = load_json_bounded(
            source.cat(collection_cid, max_bytes=MAX_METADATA_BYTES),
            max_bytes=MAX_METADATA_BYTES,
            max_depth=MAX_METADATA_DEPTH,
            what="the collection metadata",
        )
    except (FetchFailed, BoundedJSONError) as exc:
        raise VerificationError(f"cannot read the collection metadata {contract_uri}: {exc}") from None
    credentials = document.get("content_credentials") if isinstance(document, dict) else None
    ca_cid = ipfs_cid(credentials.get("trust_anchor")) if isinstance(credentials, dict) else None
    if ca_cid is None:
        raise VerificationError(f"the collection metadata {contract_uri} names no content_credentials.trust_anchor")
    try:
        pem = source.cat(ca_cid, max_bytes=MAX_PEM_BYTES)
    except FetchFailed as exc:
        raise VerificationError(f"cannot fetch the collection's trust anchor ipfs://{ca_cid}: {exc}") from None
    return parse_trust_anchor(pem, f"the trust anchor ipfs://{ca_cid}"), ca_cid


# --- one version's image -------------------------------------------------------------------------------


def _parent_failures(verdict: CredentialsVerdict, version: int, previous_manifest: str | None) -> list[Failure]:
    if version == 0:
        if verdict.parent_manifest is None:
            return []
        return [Failure("credentials.parent", "the mint's manifest names a parent")]
    if verdict.parent_manifest is None:
        return [Failure("credentials.parent", "no parentOf ingredient with Content Credentials: the chain breaks here")]
    if verdict.parent_manifest != previous_manifest:
        return [
            Failure(
                "credentials.parent",
                f"its parentOf ingredient is manifest {verdict.parent_manifest}, the previous version's is "
                f"{previous_manifest}",
            )
        ]
    return []


def credentials_failures(
    verdict: CredentialsVerdict,
    *,
    trust_anchor: bool,
    previous_manifest: str | None,
    provenance: Mapping[str, Any] | None,
    chain_id: int | None,
    contract: str | None,
    token_id: int,
    check_parent: bool = True,
) -> list[Failure]:
    """What is wrong with a version's Content Credentials: state, chain to the previous version's manifest
    (`previous_manifest`, None for the mint; `check_parent` False when the caller did not read the previous
    version), and our assertion against the metadata's provenance. Used by the verifier and the gallery."""
    if verdict.state == "missing":
        return [Failure("credentials.missing", "the image carries no Content Credentials")]
    if verdict.state == "invalid":
        return [Failure("credentials.invalid", "; ".join(verdict.problems) or "the manifest does not validate")]
    failures = []
    if verdict.state != "trusted":
        why = "no trust anchor to check it against" if not trust_anchor else "its signer does not chain to the anchor"
        failures.append(
            Failure("credentials.untrusted", f"signed by {verdict.signer} (issuer {verdict.issuer}): {why}")
        )
    version = provenance.get("version") if provenance else None
    if isinstance(version, int) and check_parent:
        failures += _parent_failures(verdict, version, previous_manifest)
    signed = verdict.provenance
    if signed is None:
        failures.append(Failure("credentials.provenance", "the manifest has no studio.livingnft.provenance assertion"))
        return failures
    if provenance is not None:
        for key in ("version", "previous", "generation", "feed_snapshot"):
            if signed.get(key) != provenance.get(key):
                failures.append(Failure("credentials.provenance", f"the signed {key} differs from the metadata's"))
    if chain_id is not None and signed.get("chain_id") != chain_id:
        failures.append(Failure("credentials.provenance", f"signed for chain {signed.get('chain_id')}, not {chain_id}"))
    if contract is not None and str(signed.get("contract") or "").lower() != contract.lower():
        failures.append(Failure("credentials.provenance", f"signed for contract {signed.get('contract')}"))
    if signed.get("token_id") is not None and signed.get("token_id") != token_id:
        failures.append(Failure("credentials.provenance", f"signed for token {signed.get('token_id')}"))
    return failures


# --- the report ------------------------------------------------------------------------------------------


@dataclass
class VersionReport:
    version: int
    metadata_cid: str
    block_number: int
    tx_hash: str
    image_cid: str | None = None
    feed_snapshot: str | None = None
    credentials: CredentialsVerdict | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "ok": self.ok,
            "metadata_cid": self.metadata_cid,
            "block_number": self.block_number,
            "tx_hash": self.tx_hash,
            "image_cid": self.image_cid,
            "feed_snapshot": self.feed_snapshot,
            "credentials": self.credentials.to_json() if self.credentials else None,
            "failures": [f.to_json() for f in self.failures],
        }


@dataclass
class TokenReport:
    chain_id: int | None
    contract: str
    token_id: int
    token_uri: str | None = None
    trust_anchor_source: str | None = None  # "argument" | "collection" | None
    trust_anchor_cid: str | None = None
    failures: list[Failure] = field(default_factory=list)
    versions: list[VersionReport] = field(default_factory=list)
    replay: Replay | None = None

    @property
    def ok(self) -> bool:
        replayed = self.replay is None or self.replay.ok
        return not self.failures and all(v.ok for v in self.versions) and replayed

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "ok": self.ok,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "token_id": self.token_id,
            "token_uri": self.token_uri,
            "trust_anchor": {"source": self.trust_anchor_source, "cid": self.trust_anchor_cid},
            "failures": [f.to_json() for f in self.failures],
            "versions": [v.to_json() for v in self.versions],
            "replay": self.replay.to_json() if self.replay is not None else None,
        }

    def to_text(self) -> str:
        lines = [
            f"token {self.token_id} on {self.contract} (chain {self.chain_id}): "
            f"{len(self.versions)} version(s), {'OK' if self.ok else 'FAILED'}",
            f"trust anchor: {self.trust_anchor_source or 'none'}"
            + (f" ipfs://{self.trust_anchor_cid}" if self.trust_anchor_cid else ""),
        ]
        lines += [f"  token: {f.code}: {f.message}" for f in self.failures]
        for v in self.versions:
            badge = v.credentials.state if v.credentials else "-"
            lines.append(f"  version {v.version}: {'ok' if v.ok else 'FAILED'} (credentials {badge}) {v.metadata_cid}")
            lines += [f"    {f.code}: {f.message}" for f in v.failures]
        if self.replay is not None:
            replay = self.replay.to_json()
            outcome = "identical" if replay["identical"] else f"max pixel difference {replay['pixel_max_diff']}"
            lines.append(f"  replay of version {replay['version']}: {'ok' if self.replay.ok else 'FAILED'} ({outcome})")
            lines += [f"    cannot be exact: {reason}" for reason in replay["reasons"]]
            lines += [f"    replay: {failure}" for failure in replay["failures"]]
        return "\n".join(lines)


# --- the checks --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainEvent:
    """One MetadataSet event as read from the chain."""

    version: int
    metadata_cid: str
    block_number: int
    tx_hash: str


def history_failures(events: Sequence[ChainEvent]) -> list[Failure]:
    """The events, in chain order, must be versions 0, 1, 2, ... with none missing or repeated."""
    if not events:
        return [Failure("history.empty", "no MetadataSet event for this token: is it minted on this contract?")]
    failures = []
    for expected, event in enumerate(events):
        if event.version != expected:
            failures.append(
                Failure("history.gap", f"event {expected} in chain order is version {event.version}, not {expected}")
            )
            break
    return failures


def _fetch(source: ContentSource, cid: str, max_bytes: int, prefix: str, failures: list[Failure]) -> bytes | None:
    try:
        return source.cat(cid, max_bytes=max_bytes)
    except FetchFailed as exc:
        failures.append(Failure(f"{prefix}.{exc.kind}", str(exc)))
        return None


def check_version(
    event: ChainEvent,
    source: ContentSource,
    *,
    previous: VersionReport | None,
    trust_anchor_pem: bytes | None,
    chain_id: int | None,
    contract: str | None,
    token_id: int,
) -> VersionReport:
    report = VersionReport(event.version, event.metadata_cid, event.block_number, event.tx_hash)
    raw = _fetch(source, event.metadata_cid, MAX_METADATA_BYTES, "metadata", report.failures)
    if raw is None:
        return report
    try:
        metadata = load_json_bounded(
            raw, max_bytes=MAX_METADATA_BYTES, max_depth=MAX_METADATA_DEPTH, what=f"metadata {event.metadata_cid}"
        )
    except BoundedJSONError as exc:
        report.failures.append(Failure("metadata.invalid", str(exc)))
        return report
    errors = sorted(load_schema("token-metadata").iter_errors(metadata), key=lambda e: list(map(str, e.path)))
    if errors:
        where = "/".join(map(str, errors[0].path)) or "(document)"
        report.failures.append(Failure("metadata.invalid", f"field {where}: {errors[0].message}"))
        return report
    provenance = metadata["provenance"]
    if provenance.get("version") != event.version:
        report.failures.append(
            Failure(
                "provenance.version",
                f"the metadata says version {provenance.get('version')}, the chain says {event.version}",
            )
        )
    expected_previous = f"ipfs://{previous.metadata_cid}" if previous is not None else None
    if provenance.get("previous") != expected_previous:
        report.failures.append(
            Failure(
                "provenance.previous",
                f"provenance.previous is {provenance.get('previous')}, the previous version is {expected_previous}",
            )
        )
    snapshot = provenance.get("feed_snapshot")
    if snapshot is not None:
        report.feed_snapshot = snapshot
        snapshot_cid = ipfs_cid(snapshot)
        if snapshot_cid is None:
            report.failures.append(Failure("feed_snapshot.unavailable", f"{snapshot!r} is not an ipfs:// CID"))
        else:
            _fetch(source, snapshot_cid, MAX_SNAPSHOT_BYTES, "feed_snapshot", report.failures)
    animation = metadata.get("animation_url")
    if animation is not None:
        animation_cid = ipfs_cid(animation)
        if animation_cid is None:
            report.failures.append(Failure("animation.unavailable", f"{animation!r} is not an ipfs:// CID"))
        else:
            _fetch(source, animation_cid, MAX_ANIMATION_BYTES, "animation", report.failures)
    image_cid = ipfs_cid(metadata["image"])
    if image_cid is None:
        report.failures.append(Failure("image.unavailable", f"the image {metadata['image']!r} is not an ipfs:// CID"))
        return report
    report.image_cid = image_cid
    png = _fetch(source, image_cid, MAX_IMAGE_BYTES, "image", report.failures)
    if png is None:
        return report
    report.credentials = read_credentials(png, trust_anchor_pem)
    report.failures += credentials_failures(
        report.credentials,
        trust_anchor=trust_anchor_pem is not None,
        previous_manifest=previous.credentials.manifest if previous and previous.credentials else None,
        provenance=provenance,
        chain_id=chain_id,
        contract=contract,
        token_id=token_id,
    )
    return report


class ChainHistory:
    """The token's on-chain facts through a read-only web3 contract (no signer, any network)."""

    def __init__(self, rpc_url: str, contract: str, *, timeout_s: float = 15.0, from_block: int = 0) -> None:
        # Imported here: the content layer needs the chain only for this command.

        from contracts.artifacts import load_artifact
        from contracts.errors import ChainError
        from contracts.signer import make_web3, to_address

        try:
            self.address = to_address(contract)
        except ChainError as exc:
            raise VerificationError(f"--contract: {exc}") from None
        self.w3 = make_web3(rpc_url, timeout_s)
        self.contract = self.w3.eth.contract(address=self.address, abi=load_artifact("LivingNFT").abi)
        self.from_block = from_block

    def _call(self, function: str, *args: Any) -> Any:
        from web3.exceptions import ContractLogicError

        from contracts.errors import ChainError
        from contracts.signer import rpc_call

        fn = getattr(self.contract.functions, function)(*args)
        try:
            return rpc_call(self.w3, lambda: fn.call())
        except ChainError as exc:
            raise VerificationError(f"cannot read {function}() from {self.address}: {exc}") from None
        except ContractLogicError:  # no such token, or not a LivingNFT
            raise VerificationError(
                f"{self.address} refused {function}{tuple(args)}: check the token id and that it is a LivingNFT"
            ) from None

    def chain_id(self) -> int:
        from contracts.signer import rpc_call

        return int(rpc_call(self.w3, lambda: self.w3.eth.chain_id))

    def events(self, token_id: int) -> list[ChainEvent]:
        from hexbytes import HexBytes
        from web3 import Web3

        from contracts.errors import ChainError
        from contracts.signer import rpc_call

        event = self.contract.events.MetadataSet()
        topic0 = HexBytes(Web3.keccak(text=event.abi_element_identifier)).to_0x_hex()
        token_topic = "0x" + int(token_id).to_bytes(32, "big").hex()
        query: FilterParams = {
            "address": self.address,
            "fromBlock": self.from_block,
            "toBlock": "latest",
            "topics": [topic0, token_topic],
        }
        try:
            raw = rpc_call(self.w3, lambda: self.w3.eth.get_logs(query))
        except ChainError as exc:
            raise VerificationError(f"cannot read the token's MetadataSet events: {exc}") from None
        ordered = sorted(raw, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])))
        events = []
        for entry in ordered:
            log = event.process_log(entry)
            events.append(
                ChainEvent(
                    version=int(log["args"]["version"]),
                    metadata_cid=raw_cid_from_digest(bytes(log["args"]["metadataDigest"])),
                    block_number=int(entry["blockNumber"]),
                    tx_hash=HexBytes(entry["transactionHash"]).to_0x_hex(),
                )
            )
        return events

    def token_uri(self, token_id: int) -> str:
        return str(self._call("tokenURI", int(token_id)))

    def metadata_version(self, token_id: int) -> int:
        return int(self._call("metadataVersion", int(token_id)))

    def contract_uri(self) -> str:
        return str(self._call("contractURI"))


def _token_uri_target(token_uri: str, last: ChainEvent, source: ContentSource, failures: list[Failure]) -> str | None:
    """The metadata CID tokenURI() points at: `ipfs://<cid>`, or a file of a drop's folder
    (`ipfs://<folder>/<tokenId>.json`, a token never evolved since a mintDrop), which is resolved over
    verified blocks. None (and a failure) when it cannot be told."""
    if token_uri == f"ipfs://{last.metadata_cid}":
        return last.metadata_cid
    try:
        cid, path = split_ipfs_uri(token_uri)
    except ContentError:
        return ""  # not an ipfs:// URI: never the last version's
    if not path:
        return cid
    try:
        return source.resolve(cid, path)
    except FetchFailed as exc:
        failures.append(Failure(f"token_uri.{exc.kind}", f"tokenURI() {token_uri}: {exc}"))
        return None


def verify_token(
    rpc_url: str,
    contract: str,
    token_id: int,
    source: ContentSource,
    *,
    trust_anchor_pem: bytes | None = None,
    from_block: int = 0,
    rpc_timeout_s: float = 15.0,
) -> TokenReport:
    """Check token `token_id`'s whole life (see the module docstring). Raises VerificationError only when
    the chain cannot be read at all; everything wrong with the token itself is in the report."""
    chain = ChainHistory(rpc_url, contract, timeout_s=rpc_timeout_s, from_block=from_block)
    report = TokenReport(chain_id=chain.chain_id(), contract=chain.address, token_id=int(token_id))
    events = chain.events(token_id)
    report.failures += history_failures(events)
    if not events:
        return report
    if len(events) > MAX_VERSIONS:
        report.failures.append(Failure("history.too_long", f"{len(events)} versions; checked the first {MAX_VERSIONS}"))
        events = events[:MAX_VERSIONS]
    report.token_uri = chain.token_uri(token_id)
    pointed = _token_uri_target(report.token_uri, events[-1], source, report.failures)
    if pointed is not None and pointed != events[-1].metadata_cid:
        report.failures.append(
            Failure(
                "history.token_uri",
                f"tokenURI() is {report.token_uri}, the last version is {events[-1].metadata_cid}",
            )
        )
    current = chain.metadata_version(token_id)
    if current != events[-1].version:
        report.failures.append(
            Failure(
                "history.current_version",
                f"metadataVersion() is {current}, the last event's is {events[-1].version}",
            )
        )
    if trust_anchor_pem is not None:
        report.trust_anchor_source = "argument"
    else:
        try:
            trust_anchor_pem, report.trust_anchor_cid = collection_trust_anchor(chain.contract_uri(), source)
            report.trust_anchor_source = "collection"
        except VerificationError as exc:
            report.failures.append(Failure("trust_anchor.unavailable", f"{exc}; give one with --trust-anchor"))
    previous: VersionReport | None = None
    for event in events:
        version = check_version(
            event,
            source,
            previous=previous,
            trust_anchor_pem=trust_anchor_pem,
            chain_id=report.chain_id,
            contract=report.contract,
            token_id=report.token_id,
        )
        report.versions.append(version)
        previous = version
    return report
