"""The LivingNFT chain client: deploy, mint, evolve (single and batched), freeze, reads, history, roles.

Metadata is addressed by its CIDv1 string (`bafkrei...`); the client converts it to the 32-byte digest
the contract stores and back. Every write goes through a `Signer` (fees under the cap, gas buffer,
receipts with a timeout, decoded reverts) and returns only once the transaction is mined (and, on the
embedded chain, persisted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak
from hexbytes import HexBytes
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from contracts.artifacts import ContractArtifact, load_artifact
from contracts.cid import raw_cid_digest, raw_cid_from_digest
from contracts.errors import ChainError, ContractRevertError, RPCUnavailableError, VersionMismatchError
from contracts.signer import ROLE_NAMES, TX_GAS_CAP, RevertDecoder, Signer, TxResult, rpc_call, to_address


@dataclass(frozen=True)
class MintResult:
    """A mined mint: the new token's id and the transaction."""

    token_id: int
    tx_hash: str
    block_number: int
    gas_used: int


@dataclass(frozen=True)
class MetadataChange:
    """One entry of a token's metadata history, read from a MetadataSet event (version 0 = the mint)."""

    version: int
    metadata_cid: str
    block_number: int
    tx_hash: str
    log_index: int
    timestamp: int


@dataclass(frozen=True)
class TransferRecord:
    """One ERC-721 Transfer of a token (the mint has from_address = 0x0)."""

    from_address: str
    to_address: str
    block_number: int
    tx_hash: str
    log_index: int
    timestamp: int


@dataclass(frozen=True)
class FreezeRecord:
    """A token's freeze, read from its PermanentURI event: its metadata URI for ever after."""

    uri: str
    block_number: int
    tx_hash: str
    log_index: int
    timestamp: int


ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# One token of a batch evolve: (token id, new metadata CID, the token's current version as the caller knows it).
EvolveItem = tuple[int, str, int]


class LivingNFTClient:
    """Talks to one deployed LivingNFT contract through one Signer."""

    def __init__(
        self,
        signer: Signer,
        address: str,
        *,
        from_block: int = 0,
        artifact: ContractArtifact | None = None,
    ) -> None:
        self.signer = signer
        self.w3 = signer.w3
        self.artifact = artifact or load_artifact("LivingNFT")
        self.address = to_address(address)
        self.from_block = from_block
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        self.decoder = LivingNFTRevertDecoder(self.artifact.abi)
        self._timestamps: dict[int, int] = {}

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

    def evolve_batch(self, items: Sequence[EvolveItem], *, gas_budget: int | None = None) -> list[TxResult]:
        """Evolve many tokens, in as few transactions as fit under `gas_budget` (default: the per-transaction
        cap of 16,777,216) including the gas buffer. Returns one TxResult per transaction sent, in order.

        Each item is (token id, new metadata CID, the token's current version as the caller knows it):
        the contract compare-and-sets every token, and one stale version reverts its whole transaction
        with VersionMismatchError (naming the token) and changes nothing in it.

        Each part is estimated right before it is sent (the chain's state changes between parts). If a
        part fails, the parts before it stay done: the error is then a BatchEvolveError holding them in
        `done` (and the cause in `cause`); when nothing was sent, the cause itself is raised.
        """
        if not items:
            return []
        limit = min(gas_budget or TX_GAS_CAP, TX_GAS_CAP)
        buffer = self.signer.policy.gas_buffer
        pending = list(items)
        results: list[TxResult] = []
        size = len(pending)
        while pending:
            size = min(size, len(pending))
            part = pending[:size]
            try:
                estimate = self.estimate_evolve_batch(part)
            except ChainError as exc:
                # The node could not estimate so much: try less. Not on a revert (it reverts at any
                # size) nor when the node did not answer at all (a stall is no sign of size: splitting
                # would only multiply transactions once it answers again).
                if size > 1 and not isinstance(exc, ContractRevertError | RPCUnavailableError):
                    size = max(1, size // 2)
                    continue
                raise _partial(results, exc) from None
            gas = int(estimate * buffer)
            if gas > limit:
                if size == 1:
                    raise _partial(
                        results,
                        ChainError(
                            f"evolving token {part[0][0]} alone needs {gas} gas (with buffer), above the gas "
                            f"budget of {limit}: raise the budget."
                        ),
                    )
                # Scale down by the measured gas per token, keeping a margin for the fixed part.
                size = max(1, min(size - 1, int(size * limit / gas * 0.95)))
                continue
            ids, digests, expected = _batch_args(part)
            try:
                results.append(self._send("evolveBatch", ids, digests, expected, gas=gas))
            except ChainError as exc:
                raise _partial(results, exc) from None
            pending = pending[size:]
        return results

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

    # ----------------------------------------------------------------- reads

    def has_role(self, role: str | bytes, account: str) -> bool:
        return bool(self._call("hasRole", role_id(role), to_address(account)))

    def token_uri(self, token_id: int) -> str:
        return str(self._call("tokenURI", int(token_id)))

    def metadata_cid(self, token_id: int) -> str:
        return raw_cid_from_digest(bytes(self._call("metadataDigest", int(token_id))))

    def metadata_version(self, token_id: int) -> int:
        return int(self._call("metadataVersion", int(token_id)))

    def owner_of(self, token_id: int) -> str:
        return str(self._call("ownerOf", int(token_id)))

    def is_frozen(self, token_id: int) -> bool:
        return bool(self._call("isFrozen", int(token_id)))

    def total_supply(self) -> int:
        return int(self._call("totalSupply"))

    def contract_uri(self) -> str:
        return str(self._call("contractURI"))

    def royalty_info(self, token_id: int, sale_price: int) -> tuple[str, int]:
        receiver, amount = self._call("royaltyInfo", int(token_id), int(sale_price))
        return str(receiver), int(amount)

    def supports_interface(self, interface_id: bytes | str) -> bool:
        value = HexBytes(interface_id)
        return bool(self._call("supportsInterface", bytes(value)))

    def history(self, token_id: int) -> list[MetadataChange]:
        """Every metadata version of a token, oldest first, from the contract's MetadataSet events alone."""
        logs = self._logs("MetadataSet", token_id)
        return [
            MetadataChange(
                version=int(log["args"]["version"]),
                metadata_cid=raw_cid_from_digest(bytes(log["args"]["metadataDigest"])),
                block_number=int(log["blockNumber"]),
                tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
                log_index=int(log["logIndex"]),
                timestamp=self._timestamp(int(log["blockNumber"])),
            )
            for log in logs
        ]

    def transfers(self, token_id: int) -> list[TransferRecord]:
        """Every ERC-721 Transfer of a token, oldest first (the mint comes from the zero address)."""
        return [
            TransferRecord(
                from_address=str(log["args"]["from"]),
                to_address=str(log["args"]["to"]),
                block_number=int(log["blockNumber"]),
                tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
                log_index=int(log["logIndex"]),
                timestamp=self._timestamp(int(log["blockNumber"])),
            )
            for log in self._logs("Transfer", token_id)
        ]

    def freezes(self, token_id: int) -> list[FreezeRecord]:
        """The token's PermanentURI event (none, or one: freezing is for ever)."""
        return [
            FreezeRecord(
                uri=str(log["args"]["_value"]),
                block_number=int(log["blockNumber"]),
                tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
                log_index=int(log["logIndex"]),
                timestamp=self._timestamp(int(log["blockNumber"])),
            )
            for log in self._logs("PermanentURI", token_id)
        ]

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

    def _call(self, function: str, *args: Any) -> Any:
        fn = getattr(self.contract.functions, function)(*args)
        try:
            return rpc_call(self.w3, lambda: fn.call())
        except ContractLogicError as exc:
            decoded = self.decoder.decode(exc.data)
            raise (decoded or ContractRevertError("unknown", {}, str(exc))) from None

    def _logs(self, event: str, token_id: int) -> list[Any]:
        """Logs of `event` whose token id topic equals token_id, sorted by position in the chain."""
        event_obj = getattr(self.contract.events, event)()
        topic0 = HexBytes(keccak(text=event_obj.abi_element_identifier)).to_0x_hex()
        token_topic = "0x" + int(token_id).to_bytes(32, "big").hex()
        # MetadataSet and PermanentURI index the token id first; Transfer indexes it third.
        first = event in ("MetadataSet", "PermanentURI")
        topics: list[Any] = [topic0, token_topic] if first else [topic0, None, None, token_topic]
        raw = rpc_call(
            self.w3,
            lambda: self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": self.from_block, "toBlock": "latest", "topics": topics}
            ),
        )
        decoded = [event_obj.process_log(entry) for entry in raw]
        return sorted(decoded, key=lambda log: (log["blockNumber"], log["logIndex"]))

    def _timestamp(self, block_number: int) -> int:
        if block_number not in self._timestamps:
            block = rpc_call(self.w3, lambda: self.w3.eth.get_block(block_number))
            self._timestamps[block_number] = int(block["timestamp"])
        return self._timestamps[block_number]


class BatchEvolveError(ChainError):
    """A batch evolve stopped part-way: `done` holds the transactions that did go through."""

    def __init__(self, done: list[TxResult], cause: ChainError) -> None:
        self.done = list(done)
        self.cause = cause
        super().__init__(f"{cause} ({len(done)} earlier part(s) of the batch were already mined)")


def _partial(done: list[TxResult], cause: ChainError) -> ChainError:
    return BatchEvolveError(done, cause) if done else cause


def role_id(role: str | bytes) -> bytes:
    """The 32-byte AccessControl id of a role given by name (MINTER_ROLE...) or as 32 bytes / hex."""
    if isinstance(role, bytes):
        if len(role) != 32:
            raise ChainError(f"a role id has 32 bytes, got {len(role)}")
        return role
    if role in ROLE_NAMES:
        return ROLE_NAMES[role]
    value = HexBytes(role) if role.startswith("0x") else b""
    if len(value) == 32:
        return bytes(value)
    raise ChainError(f"unknown role {role!r}: use MINTER_ROLE, EVOLVER_ROLE or DEFAULT_ADMIN_ROLE")


class LivingNFTRevertDecoder(RevertDecoder):
    """RevertDecoder that also knows LivingNFT's own errors worth a class of their own."""

    def decode(self, data: bytes | str | None) -> ContractRevertError | None:
        decoded = super().decode(data)
        if (
            decoded is not None
            and decoded.error_name == "VersionMismatch"
            and {"tokenId", "expected", "actual"} <= set(decoded.error_args)
        ):
            args = decoded.error_args
            return VersionMismatchError(int(args["tokenId"]), int(args["expected"]), int(args["actual"]))
        return decoded


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
