"""The LivingNFT chain client: deploy, mint, evolve (single and batched), freeze, roles; the reads and
the history come from `LivingNFTReader` (contracts/reader.py), which it extends with a signer.

Metadata is addressed by its CIDv1 string (`bafkrei...`); the client converts it to the 32-byte digest
the contract stores and back. Every write goes through a `Signer` (fees under the cap, gas buffer,
receipts with a timeout, decoded reverts) and returns only once the transaction is mined (and, on the
embedded chain, persisted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_typing import ChecksumAddress
from web3.logs import DISCARD

from contracts.artifacts import ContractArtifact, load_artifact
from contracts.batching import PartialBatchError, fit_front, send_in_parts
from contracts.cid import folder_cid_digest, raw_cid_digest, raw_cid_from_digest
from contracts.errors import ChainError
from contracts.reader import LivingNFTReader, LivingNFTRevertDecoder, role_id
from contracts.signer import Signer, TxResult, rpc_call, to_address


@dataclass(frozen=True)
class MintResult:
    """A mined mint: the new token's id and the transaction."""

    token_id: int
    tx_hash: str
    block_number: int
    gas_used: int


@dataclass(frozen=True)
class MintBatchResult:
    """One mined mintBatch (or mintDrop) transaction: the new token ids, in the order of their metadata CIDs;
    for mintDrop also the folder CID (bafybei...) the tokens read their metadata from until they evolve."""

    token_ids: list[int]
    metadata_cids: list[str]
    tx_hash: str
    block_number: int
    gas_used: int
    folder_cid: str | None = None


ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# One token of a batch evolve: (token id, new metadata CID, the token's current version as the caller knows it).
EvolveItem = tuple[int, str, int]

# Any non-zero folder digest: a drop's gas does not depend on its folder digest's value.
_PLACEHOLDER_FOLDER_DIGEST = b"\x01" * 32


class LivingNFTClient(LivingNFTReader):
    """Talks to one deployed LivingNFT contract through one Signer: the reader's reads, and the writes."""

    def __init__(
        self,
        signer: Signer,
        address: str,
        *,
        from_block: int = 0,
        artifact: ContractArtifact | None = None,
    ) -> None:
        super().__init__(signer.w3, address, from_block=from_block, artifact=artifact)
        self.signer = signer

    # ----------------------------------------------------------------- deployment

    @classmethod
    def deploy(
        cls,
        signer: Signer,
        *,
        name: str,
        symbol: str,
        royalty_receiver: str,
        royalty_bps: int,
        contract_uri: str = "",
        admin: str | None = None,
        before_broadcast: Callable[[str, int], None] | None = None,
    ) -> tuple[LivingNFTClient, TxResult]:
        """Deploy a new LivingNFT; `admin` (default: the signer) gets DEFAULT_ADMIN_ROLE.
        `before_broadcast(tx_hash, nonce)` runs before the signed deployment leaves (see Signer.send)."""
        if not 0 <= royalty_bps <= 10_000:
            raise ChainError(f"royalty_bps must be between 0 and 10000 (basis points), got {royalty_bps}")
        artifact = load_artifact("LivingNFT")
        args = (
            name,
            symbol,
            to_address(admin or signer.address),
            to_address(royalty_receiver),
            royalty_bps,
            contract_uri,
        )
        constructor = next(entry for entry in artifact.abi if entry["type"] == "constructor")
        types = [entry["type"] for entry in constructor["inputs"]]
        data = artifact.bytecode + abi_encode(types, args).hex()
        result = signer.send({"data": data}, LivingNFTRevertDecoder(artifact.abi), before_broadcast=before_broadcast)
        receipt = signer.receipt(result.tx_hash)
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploy transaction {result.tx_hash} created no contract: check the node")
        return cls(signer, address, from_block=result.block_number, artifact=artifact), result

    @classmethod
    def at(cls, signer: Signer, address: str, *, from_block: int = 0) -> LivingNFTClient:
        """A client for an existing deployment, after checking that code exists at `address`."""
        checked = to_address(address)
        code = rpc_call(signer.w3, lambda: signer.w3.eth.get_code(checked))
        if not code:
            raise ChainError(
                f"no contract at {checked} on chain {signer.chain_id}: check STUDIO_CHAIN__CONTRACT_ADDRESS "
                "(or, on the local chain, that its state folder was not replaced)."
            )
        return cls(signer, checked, from_block=from_block)

    # ----------------------------------------------------------------- writes

    def mint(
        self, to: str, metadata_cid: str, *, before_broadcast: Callable[[str, int], None] | None = None
    ) -> MintResult:
        """Mint the next token to `to` with metadata `metadata_cid` (bafkrei...); returns its id.
        `before_broadcast(tx_hash, nonce)` runs before the signed transaction leaves (see Signer.send)."""
        digest = raw_cid_digest(metadata_cid)
        result = self._send("mint", to_address(to), digest, before_broadcast=before_broadcast)
        receipt = self.signer.receipt(result.tx_hash)
        events = self.contract.events.MetadataSet().process_receipt(receipt, errors=DISCARD)
        if not events:
            raise ChainError(f"mint transaction {result.tx_hash} emitted no MetadataSet event")
        token_id = int(events[0]["args"]["tokenId"])
        return MintResult(token_id, result.tx_hash, result.block_number, result.gas_used)

    def evolve(self, token_id: int, metadata_cid: str, expected_version: int) -> TxResult:
        """Set a token's new metadata if its on-chain version is still `expected_version` (it becomes
        `expected_version + 1`); otherwise nothing changes and VersionMismatchError says what is there."""
        return self._send("evolve", int(token_id), raw_cid_digest(metadata_cid), _version(expected_version))

    def estimate_evolve_batch(self, items: Sequence[EvolveItem]) -> int:
        """The node's gas estimate (no buffer) for evolving `items` in one transaction."""
        data = self.contract.encode_abi("evolveBatch", args=list(_batch_args(items)))
        return self.signer.estimate_gas({"from": self.signer.address, "to": self.address, "data": data}, self.decoder)

    def fit_evolve_batch(
        self, items: Sequence[EvolveItem], *, gas_budget: int | None = None, gas_left: int | None = None
    ) -> tuple[int, int]:
        """How many of `items`, from the front, one evolveBatch transaction can carry, and the node's
        estimate for them: `contracts.batching.fit_front` (see there) with this client's gas buffer. The
        evolution cycle sizes its journal batches with it (one batch, one transaction), and
        `evolve_batch` sizes each transaction with the same function.
        """
        return fit_front(
            items,
            estimate=self.estimate_evolve_batch,
            gas_buffer=self.signer.policy.gas_buffer,
            gas_budget=gas_budget,
            gas_left=gas_left,
        )

    def evolve_batch(self, items: Sequence[EvolveItem], *, gas_budget: int | None = None) -> list[TxResult]:
        """Evolve many tokens, in as few transactions as fit under `gas_budget` (default: the per-transaction
        cap of 16,777,216) including the gas buffer. Returns one TxResult per transaction sent, in order.

        Each item is (token id, new metadata CID, the token's current version as the caller knows it):
        the contract compare-and-sets every token, and one stale version reverts its whole transaction
        with VersionMismatchError (naming the token) and changes nothing in it.

        Each part is sized (`contracts.batching.fit_front`) right before it is sent (the chain's state
        changes between parts). If a part fails, the parts before it stay done: the error is then a
        BatchEvolveError holding them in `done` (and the cause in `cause`); when nothing was sent, the
        cause itself is raised.
        """
        if not items:
            return []
        _batch_args(items)  # bad input is refused before any part is sent

        def send(part: Sequence[EvolveItem], gas: int) -> TxResult:
            return self._send("evolveBatch", *_batch_args(part), gas=gas)

        return send_in_parts(
            items,
            estimate=self.estimate_evolve_batch,
            send=send,
            gas_buffer=self.signer.policy.gas_buffer,
            gas_budget=gas_budget,
            describe=lambda item: f"evolving token {item[0]}",
            partial=BatchEvolveError,
        )

    def estimate_mint_batch(self, to: str, metadata_cids: Sequence[str]) -> int:
        """The node's gas estimate (no buffer) for minting `metadata_cids` to `to` in one transaction."""
        data = self.contract.encode_abi("mintBatch", args=[to_address(to), _mint_digests(metadata_cids)])
        return self.signer.estimate_gas({"from": self.signer.address, "to": self.address, "data": data}, self.decoder)

    def mint_batch(
        self,
        to: str,
        metadata_cids: Sequence[str],
        *,
        gas_budget: int | None = None,
        before_broadcast: Callable[[Sequence[str], str, int], None] | None = None,
        on_mined: Callable[[MintBatchResult], None] | None = None,
    ) -> list[MintBatchResult]:
        """Mint one token per metadata CID to `to` (consecutive ids, in order), in as few transactions as
        fit under `gas_budget` (default: the per-transaction cap) and the latest block's gas limit,
        including the gas buffer; sized like `evolve_batch`. Returns one MintBatchResult per transaction.

        `before_broadcast(cids, tx_hash, nonce)` runs before each part's signed transaction leaves, with
        the CIDs that part mints (see Signer.send), so a caller can journal them first; `on_mined(result)`
        runs once each part is mined, before the next is sized, so a caller can record it. If a part
        fails, the parts before it stay minted: the error is then a BatchMintError holding them in `done`.
        """
        if not metadata_cids:
            return []
        recipient = to_address(to)
        _mint_digests(metadata_cids)  # bad input is refused before any part is sent

        def estimate(part: Sequence[str]) -> int:
            return self.estimate_mint_batch(recipient, part)

        def send(part: Sequence[str], gas: int) -> MintBatchResult:
            hook = _part_hook(before_broadcast, part)
            result = self._send("mintBatch", recipient, _mint_digests(part), gas=gas, before_broadcast=hook)
            receipt = self.signer.receipt(result.tx_hash)
            events = self.contract.events.MetadataSet().process_receipt(receipt, errors=DISCARD)
            token_ids = [int(event["args"]["tokenId"]) for event in events]
            cids = [raw_cid_from_digest(bytes(event["args"]["metadataDigest"])) for event in events]
            if cids != list(part):
                raise ChainError(
                    f"mintBatch transaction {result.tx_hash} emitted {len(cids)} MetadataSet events that do not "
                    f"match its {len(part)} metadata CIDs: read the transaction on chain before minting again"
                )
            minted = MintBatchResult(
                token_ids=token_ids,
                metadata_cids=list(part),
                tx_hash=result.tx_hash,
                block_number=result.block_number,
                gas_used=result.gas_used,
            )
            if on_mined is not None:
                on_mined(minted)
            return minted

        return self._mint_in_parts(metadata_cids, estimate=estimate, send=send, gas_budget=gas_budget)

    def estimate_mint_drop(self, to: str, first_token_id: int, folder_cid: str, metadata_cids: Sequence[str]) -> int:
        """The node's gas estimate (no buffer) for minting `metadata_cids` to `to` as one drop whose ids start
        at `first_token_id` (which must be the next id) and whose folder is `folder_cid` (bafybei...)."""
        digest = folder_cid_digest(folder_cid)
        return self._estimate_mint_drop(to_address(to), int(first_token_id), digest, metadata_cids)

    def mint_drop(
        self,
        to: str,
        metadata_cids: Sequence[str],
        *,
        pin_folder: Callable[[int, Sequence[str]], str],
        gas_budget: int | None = None,
        before_broadcast: Callable[[Sequence[str], str, int], None] | None = None,
        on_mined: Callable[[MintBatchResult], None] | None = None,
    ) -> list[MintBatchResult]:
        """Mint one token per metadata CID to `to` (consecutive ids, in order) with mintDrop: no digest is
        stored, each token reads `<tokenId>.json` in its part's folder until its first evolution. Sent in as
        few transactions as fit under `gas_budget` (default: the per-transaction cap) and the latest block's
        gas limit, including the gas buffer, sized like `mint_batch`. Returns one MintBatchResult per part.

        For each part: the next token id is read, the part is sized (`contracts.batching.fit_front`, estimated
        with the part's real ids), then `pin_folder(first_token_id, part_cids)` must build and pin the folder
        holding `<first_token_id + i>.json` = the file whose raw CID is `part_cids[i]`, and return the
        folder's CIDv1 (dag-pb, sha2-256: bafybei...); anything else is refused (UnstorableCIDError) before
        the part is sent. If another mint takes those ids in between, the contract refuses the part with
        UnexpectedFirstTokenIdError and mints nothing of it.

        `before_broadcast(cids, tx_hash, nonce)` runs before each part's signed transaction leaves (see
        Signer.send), `on_mined(result)` once each part is mined, before the next is sized. If a part fails,
        the parts before it stay minted: the error is then a BatchMintError holding them in `done`.
        """
        if not metadata_cids:
            return []
        recipient = to_address(to)
        _mint_digests(metadata_cids)  # bad input is refused before any part is pinned or sent

        def estimate(part: Sequence[str]) -> int:
            first = self.total_supply() + 1
            return self._estimate_mint_drop(recipient, first, _PLACEHOLDER_FOLDER_DIGEST, part)

        def send(part: Sequence[str], gas: int) -> MintBatchResult:
            first = self.total_supply() + 1
            folder_cid = pin_folder(first, list(part))
            folder_digest = folder_cid_digest(folder_cid)
            hook = _part_hook(before_broadcast, part)
            result = self._send(
                "mintDrop", recipient, first, folder_digest, _mint_digests(part), gas=gas, before_broadcast=hook
            )
            receipt = self.signer.receipt(result.tx_hash)
            events = self.contract.events.MetadataSet().process_receipt(receipt, errors=DISCARD)
            token_ids = [int(event["args"]["tokenId"]) for event in events]
            cids = [raw_cid_from_digest(bytes(event["args"]["metadataDigest"])) for event in events]
            drops = self.contract.events.DropMinted().process_receipt(receipt, errors=DISCARD)
            expected_ids = list(range(first, first + len(part)))
            if (
                cids != list(part)
                or token_ids != expected_ids
                or len(drops) != 1
                or bytes(drops[0]["args"]["folderDigest"]) != folder_digest
            ):
                raise ChainError(
                    f"mintDrop transaction {result.tx_hash} emitted events that do not match its {len(part)} "
                    f"metadata CIDs, ids {first}..{first + len(part) - 1} and folder {folder_cid}: read the "
                    "transaction on chain before minting again"
                )
            minted = MintBatchResult(
                token_ids=token_ids,
                metadata_cids=list(part),
                tx_hash=result.tx_hash,
                block_number=result.block_number,
                gas_used=result.gas_used,
                folder_cid=folder_cid,
            )
            if on_mined is not None:
                on_mined(minted)
            return minted

        return self._mint_in_parts(metadata_cids, estimate=estimate, send=send, gas_budget=gas_budget)

    def _mint_in_parts(
        self,
        metadata_cids: Sequence[str],
        *,
        estimate: Callable[[Sequence[str]], int],
        send: Callable[[Sequence[str], int], MintBatchResult],
        gas_budget: int | None,
    ) -> list[MintBatchResult]:
        """Both batch mints' parts: as few as fit under `gas_budget` and the latest block's gas limit."""
        block_limit = int(rpc_call(self.w3, lambda: self.w3.eth.get_block("latest"))["gasLimit"])
        return send_in_parts(
            metadata_cids,
            estimate=estimate,
            send=send,
            gas_buffer=self.signer.policy.gas_buffer,
            gas_budget=min(gas_budget or block_limit, block_limit),
            describe=lambda cid: f"minting {cid}",
            partial=BatchMintError,
        )

    def _estimate_mint_drop(
        self, to: ChecksumAddress, first_token_id: int, folder_digest: bytes, metadata_cids: Sequence[str]
    ) -> int:
        args = [to, first_token_id, folder_digest, _mint_digests(metadata_cids)]
        data = self.contract.encode_abi("mintDrop", args=args)
        return self.signer.estimate_gas({"from": self.signer.address, "to": self.address, "data": data}, self.decoder)

    def freeze(self, token_id: int) -> TxResult:
        """Freeze a token's metadata for ever (owner or admin); emits PermanentURI."""
        return self._send("freeze", int(token_id))

    def refresh_all(self) -> TxResult:
        """Ask marketplaces to refresh every token (BatchMetadataUpdate(0, max))."""
        return self._send("refreshAll")

    def set_contract_uri(self, uri: str) -> TxResult:
        """Set the ERC-7572 collection metadata URI."""
        return self._send("setContractURI", uri)

    def set_default_royalty(self, receiver: str, bps: int) -> TxResult:
        """Set the default ERC-2981 royalty (basis points)."""
        return self._send("setDefaultRoyalty", to_address(receiver), int(bps))

    def set_token_royalty(self, token_id: int, receiver: str, bps: int) -> TxResult:
        """Set one token's ERC-2981 royalty (basis points)."""
        return self._send("setTokenRoyalty", int(token_id), to_address(receiver), int(bps))

    def grant_role(self, role: str | bytes, account: str) -> TxResult:
        """Grant MINTER_ROLE, EVOLVER_ROLE or DEFAULT_ADMIN_ROLE (by name or 32-byte id)."""
        return self._send("grantRole", role_id(role), to_address(account))

    def revoke_role(self, role: str | bytes, account: str) -> TxResult:
        """Revoke a role (by name or 32-byte id)."""
        return self._send("revokeRole", role_id(role), to_address(account))

    def transfer(self, to: str, token_id: int) -> TxResult:
        """Transfer a token the signer owns (or may move) to `to`."""
        return self._send("transferFrom", self.signer.address, to_address(to), int(token_id))

    # ----------------------------------------------------------------- internals

    def _send(
        self,
        function: str,
        *args: Any,
        gas: int | None = None,
        before_broadcast: Callable[[str, int], None] | None = None,
    ) -> TxResult:
        data = self.contract.encode_abi(function, args=list(args))
        return self.signer.send(
            {"to": self.address, "data": data}, self.decoder, gas=gas, before_broadcast=before_broadcast
        )


class BatchEvolveError(PartialBatchError):
    """A batch evolve stopped part-way: `done` holds the transactions (TxResult) that did go through."""


class BatchMintError(PartialBatchError):
    """A batch mint stopped part-way: `done` holds the MintBatchResult of each part that was minted."""


def _version(value: int) -> int:
    version = int(value)
    if version < 0:
        raise ChainError(f"an expected version is 0 or more (0 = as minted), got {version}")
    return version


def _batch_args(items: Sequence[EvolveItem]) -> tuple[list[int], list[bytes], list[int]]:
    for item in items:
        if len(item) != 3:
            raise ChainError(
                f"a batch item is (token id, metadata CID, expected current version), got {item!r}: "
                "pass the version the token has now, as the studio recorded it"
            )
    return (
        [int(token_id) for token_id, _, _ in items],
        [raw_cid_digest(cid) for _, cid, _ in items],
        [_version(expected) for _, _, expected in items],
    )


def _part_hook(
    before_broadcast: Callable[[Sequence[str], str, int], None] | None, part: Sequence[str]
) -> Callable[[str, int], None] | None:
    """Signer.send's before_broadcast for one part of a batch mint: the caller's, told the part's CIDs."""
    if before_broadcast is None:
        return None
    return lambda tx_hash, nonce: before_broadcast(part, tx_hash, nonce)


def _mint_digests(metadata_cids: Sequence[str]) -> list[bytes]:
    if isinstance(metadata_cids, str):
        raise ChainError("a batch mint takes a list of metadata CIDs, got one string: wrap it in a list")
    return [raw_cid_digest(cid) for cid in metadata_cids]
