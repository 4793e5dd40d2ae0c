"""Sending transactions from one local key: nonces, EIP-1559 fees under a cap, gas, receipts, reverts.

Why this exists rather than `contract.functions.f().transact()`: the studio signs locally (eth-account; the
node never holds the key), must never pay above the operator's fee cap (checked before anything is sent),
must survive "nonce too low" after another tool used the same account, and must turn reverts into Python
exceptions that name the contract's custom error and its arguments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import requests
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ABIError, ChecksumAddress, HexStr
from eth_utils.abi import function_abi_to_4byte_selector
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError
from web3.types import RPCEndpoint, TxParams, TxReceipt

from contracts.errors import (
    ChainError,
    ContractRevertError,
    FeeCapExceededError,
    InsufficientFundsError,
    InvalidAddressError,
    MissingRoleError,
    RPCUnavailableError,
    TokenFrozenError,
    TransactionFailedError,
    TransactionTimeoutError,
    UnexpectedFirstTokenIdError,
    UnknownTokenError,
    WrongChainIdError,
)
from contracts.provider import BoundedHTTPProvider
from contracts.urls import redact_url, redact_urls

# How nodes answer a transaction they already hold (geth, anvil/reth, erigon, nethermind).
ALREADY_KNOWN = ("already known", "already imported", "known transaction", "alreadyknown")
# EIP-7825 (Osaka) caps one transaction at 2**24 gas; staying under it everywhere keeps batches portable.
TX_GAS_CAP = 16_777_216
GWEI = 10**9

ROLE_NAMES = {
    "DEFAULT_ADMIN_ROLE": b"\x00" * 32,
    "MINTER_ROLE": keccak(text="MINTER_ROLE"),
    "EVOLVER_ROLE": keccak(text="EVOLVER_ROLE"),
}


@dataclass(frozen=True)
class TxPolicy:
    """The signer's options: how transactions are priced and awaited (the studio builds them from its
    ChainSettings: studio.services.options.tx_policy; contracts/ does not read settings)."""

    max_fee_gwei: float = 200.0
    priority_fee_gwei: float = 1.0
    gas_buffer: float = 1.25
    receipt_timeout_s: float = 120.0


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction (and, on the local chain, persisted)."""

    tx_hash: str
    block_number: int
    gas_used: int
    effective_gas_price: int


def to_address(value: object) -> ChecksumAddress:
    """The checksummed form of an address, or InvalidAddressError."""
    if isinstance(value, bytes) and len(value) == 20:
        return Web3.to_checksum_address(value)
    if not isinstance(value, str) or not Web3.is_address(value):
        raise InvalidAddressError(value)
    digits = value[2:] if value.startswith(("0x", "0X")) else value
    mixed_case = digits != digits.lower() and digits != digits.upper()
    if mixed_case and not Web3.is_checksum_address(value):  # web3 accepts a wrong EIP-55 checksum: we do not
        raise InvalidAddressError(value)
    return Web3.to_checksum_address(value)


def make_web3(rpc_url: str, timeout_s: float = 15.0) -> Web3:
    """A Web3 on an HTTP JSON-RPC endpoint with a request timeout (never an unbounded wait)."""
    # Answers are size- and depth-checked before parsing (contracts.provider).
    return Web3(BoundedHTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))


T = TypeVar("T")


def rpc_call(w3: Web3, what: Callable[[], T]) -> T:
    """Run one read against the node, turning connection failures into RPCUnavailableError."""
    try:
        return what()
    except requests.exceptions.RequestException as exc:
        reason = redact_urls(type(exc).__name__ + ": " + _short(exc))
        raise RPCUnavailableError(_endpoint(w3), reason) from None


class RevertDecoder:
    """Decodes revert data (custom errors, Error(string), Panic(uint256)) against an ABI."""

    def __init__(self, abi: Iterable[dict[str, Any]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {
            keccak(text="Error(string)")[:4]: ("Error", ["reason"], ["string"]),
            keccak(text="Panic(uint256)")[:4]: ("Panic", ["code"], ["uint256"]),
        }
        for entry in abi:
            if entry.get("type") == "error":
                selector = function_abi_to_4byte_selector(cast(ABIError, entry))
                names = [i["name"] for i in entry["inputs"]]
                types = [_abi_type(i) for i in entry["inputs"]]
                self._errors[selector] = (entry["name"], names, types)

    def decode(self, data: bytes | str | None) -> ContractRevertError | None:
        """The exception for `data`, or None when it is empty or unknown."""
        raw = _revert_bytes(data)
        if raw is None or len(raw) < 4:
            return None
        known = self._errors.get(raw[:4])
        if known is None:
            return ContractRevertError(
                "unknown", {"data": raw}, f"the contract reverted with unknown data 0x{raw.hex()}"
            )
        name, names, types = known
        try:
            values = abi_decode(types, raw[4:])
        except Exception:  # malformed data from a node: report it rather than crash
            return ContractRevertError(name, {"data": raw})
        args = dict(zip(names, values, strict=True))
        return specific_revert(name, args)


def specific_revert(name: str, args: dict[str, Any]) -> ContractRevertError:
    """The most specific exception class for a decoded revert."""
    if name == "ERC721NonexistentToken":
        return UnknownTokenError(int(args["tokenId"]))
    if name == "TokenFrozen":
        return TokenFrozenError(int(args["tokenId"]))
    if name == "UnexpectedFirstTokenId" and {"nextTokenId", "firstTokenId"} <= set(args):
        return UnexpectedFirstTokenIdError(int(args["nextTokenId"]), int(args["firstTokenId"]))
    if name == "AccessControlUnauthorizedAccount":
        role = bytes(args["neededRole"])
        role_name = next((k for k, v in ROLE_NAMES.items() if v == role), "0x" + role.hex())
        return MissingRoleError(to_address(args["account"]), "0x" + role.hex(), role_name)
    if name == "Error":
        return ContractRevertError("Error", args, f"the contract reverted: {args['reason']}")
    return ContractRevertError(name, args)


class _NonceSequence:
    """The next nonce of one sender. Shared by every Signer of that sender in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next: int | None = None


_SEQUENCES: dict[tuple[str, int, str], _NonceSequence] = {}
_SEQUENCES_LOCK = threading.Lock()


class Signer:
    """Signs and sends transactions from one local account on one chain.

    `on_confirmed` (e.g. LocalChain.checkpoint) runs after a transaction is mined and before `send`
    returns, so a caller that sees a result can rely on it having been persisted.
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        chain_id: int,
        policy: TxPolicy | None = None,
        on_confirmed: Callable[[], None] | None = None,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.chain_id = chain_id
        self.policy = policy or TxPolicy()
        self.on_confirmed = on_confirmed
        self._chain_checked = False
        with _SEQUENCES_LOCK:
            # Per node as well: two chains with the same id (say two local anvils) have separate nonces.
            key = (_endpoint(w3), chain_id, account.address)
            self._nonces = _SEQUENCES.setdefault(key, _NonceSequence())

    @classmethod
    def from_private_key(cls, w3: Web3, private_key: str, **kwargs: Any) -> Signer:
        """A signer for a hex private key (never logged: errors name only the problem)."""
        try:
            account = Account.from_key(private_key)
        except Exception:
            raise ChainError(
                "the configured private key is not a valid 32-byte hex key: check STUDIO_CHAIN__PRIVATE_KEY."
            ) from None
        return cls(w3, account, **kwargs)

    @property
    def address(self) -> ChecksumAddress:
        return self.account.address

    # ----------------------------------------------------------------- checks

    def check_chain_id(self) -> None:
        """Refuse to work with a node that serves another chain than configured."""
        actual = rpc_call(self.w3, lambda: self.w3.eth.chain_id)
        if actual != self.chain_id:
            raise WrongChainIdError(self.chain_id, actual, _endpoint(self.w3))
        self._chain_checked = True

    def fees(self) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) in wei, or FeeCapExceededError when the cap cannot pay
        the current base fee plus tip. The max fee is 2 x base fee + tip, lowered to the cap when that
        still covers base fee + tip."""
        cap = int(self.policy.max_fee_gwei * GWEI)
        tip = int(self.policy.priority_fee_gwei * GWEI)
        block = rpc_call(self.w3, lambda: self.w3.eth.get_block("latest"))
        base = int(block.get("baseFeePerGas") or 0)
        if base + tip > cap:
            raise FeeCapExceededError(base + tip, cap)
        return min(2 * base + tip, cap), tip

    # ----------------------------------------------------------------- sending

    def send(
        self,
        tx: dict[str, Any],
        decoder: RevertDecoder | None = None,
        *,
        gas: int | None = None,
        before_broadcast: Callable[[str, int], None] | None = None,
    ) -> TxResult:
        """Estimate, price, sign, send and await `tx` (`to`, `data`, optional `value`).

        `before_broadcast(tx_hash, nonce)` runs once the transaction is signed and before it leaves, so a
        caller can record them first (again with the new ones if a nonce clash makes it re-sign).
        Raises a ContractRevertError subclass when the call would revert (nothing is sent), the fee and
        funds errors before sending, TransactionTimeoutError when no receipt arrives in time.
        """
        if not self._chain_checked:
            self.check_chain_id()
        fields: dict[str, Any] = {"from": self.address, "chainId": self.chain_id, "value": 0, **tx}
        if gas is None:
            estimate = self.estimate_gas(fields, decoder)
            gas = min(int(estimate * self.policy.gas_buffer), TX_GAS_CAP)
        max_fee, tip = self.fees()
        fields.update(gas=gas, maxFeePerGas=max_fee, maxPriorityFeePerGas=tip, type=2)
        balance = rpc_call(self.w3, lambda: self.w3.eth.get_balance(self.address))
        needed = gas * max_fee + int(fields["value"])
        if balance < needed:
            raise InsufficientFundsError(self.address, needed, balance)
        tx_hash = self._sign_and_send(fields, before_broadcast)
        receipt = self._await_receipt(tx_hash)
        if receipt["status"] != 1:
            raise self._failure(fields, receipt, decoder)
        if self.on_confirmed is not None:
            self.on_confirmed()
        return TxResult(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            effective_gas_price=int(receipt.get("effectiveGasPrice") or 0),
        )

    def estimate_gas(self, fields: dict[str, Any], decoder: RevertDecoder | None = None) -> int:
        """The node's raw gas estimate (no buffer); a revert becomes the decoded exception."""
        call = {k: v for k, v in fields.items() if k in ("from", "to", "data", "value")}
        try:
            return int(rpc_call(self.w3, lambda: self.w3.eth.estimate_gas(cast(TxParams, call))))
        except ContractLogicError as exc:
            raise self._decoded(exc.data, decoder, str(exc)) from None
        except Web3RPCError as exc:
            raise self._rpc_error(exc, decoder) from None

    def receipt(self, tx_hash: str) -> TxReceipt:
        return rpc_call(self.w3, lambda: self.w3.eth.get_transaction_receipt(HexStr(tx_hash)))

    def receipt_or_none(self, tx_hash: str) -> TxReceipt | None:
        """The receipt of `tx_hash`, or None while it is not mined (pending, dropped or unknown)."""
        try:
            return self.receipt(tx_hash)
        except TransactionNotFound:
            return None

    def pooled_transactions(self) -> dict[int, dict[str, Any]]:
        """This sender's transactions waiting in the node's pool, by nonce (`txpool_content`); empty
        where the node does not list its pool (many hosted endpoints do not)."""
        try:
            reply = rpc_call(self.w3, lambda: self.w3.provider.make_request(RPCEndpoint("txpool_content"), []))
        except ChainError:
            return {}
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, dict):
            return {}
        found: dict[int, dict[str, Any]] = {}
        for section in ("pending", "queued"):
            by_sender = result.get(section) or {}
            mine: dict[str, Any] = next((v for k, v in by_sender.items() if str(k).lower() == self.address.lower()), {})
            for nonce, tx in (mine or {}).items():
                if isinstance(tx, dict) and str(nonce).isdigit():
                    found.setdefault(int(nonce), tx)
        return found

    def mined_nonce(self, address: str | None = None) -> int:
        """How many transactions of `address` (default: this signer's) are mined: every nonce below
        it is taken for good."""
        who = Web3.to_checksum_address(address or self.address)
        return int(rpc_call(self.w3, lambda: self.w3.eth.get_transaction_count(who, "latest")))

    def _sign_and_send(self, fields: dict[str, Any], before_broadcast: Callable[[str, int], None] | None = None) -> str:
        seq = self._nonces
        with seq.lock:
            for attempt in range(3):
                if seq.next is None:
                    seq.next = rpc_call(self.w3, lambda: self.w3.eth.get_transaction_count(self.address, "pending"))
                fields["nonce"] = seq.next
                signed = self.account.sign_transaction(fields)
                if before_broadcast is not None:
                    before_broadcast(HexBytes(signed.hash).to_0x_hex(), int(fields["nonce"]))
                try:
                    tx_hash = self._broadcast(signed.raw_transaction)
                except Web3RPCError as exc:
                    message = _rpc_message(exc).lower()
                    if any(marker in message for marker in ALREADY_KNOWN):
                        # The node has these very bytes (an earlier send whose answer was lost): it is
                        # sent. Signing again at a new nonce would send the same transaction twice.
                        seq.next = int(fields["nonce"]) + 1
                        return HexBytes(signed.hash).to_0x_hex()
                    if "nonce too low" in message and attempt < 2:
                        seq.next = None  # another tool used this account: resync from the node and retry
                        continue
                    if "nonce too low" in message or "nonce too high" in message:
                        seq.next = None
                    if "insufficient funds" in message:
                        raise InsufficientFundsError(self.address, None, None) from None
                    raise ChainError(f"the node refused the transaction: {_rpc_message(exc)}") from None
                seq.next += 1
                return HexBytes(tx_hash).to_0x_hex()
        raise ChainError("could not find a free nonce after resyncing twice; is another process sending?")

    def _broadcast(self, raw_transaction: bytes) -> HexBytes:
        return rpc_call(self.w3, lambda: self.w3.eth.send_raw_transaction(raw_transaction))

    def _await_receipt(self, tx_hash: str) -> TxReceipt:
        timeout = self.policy.receipt_timeout_s
        try:
            return self.w3.eth.wait_for_transaction_receipt(HexStr(tx_hash), timeout=timeout, poll_latency=0.1)
        except TimeExhausted:
            self._nonces.next = None  # the node may have dropped it: take the next nonce from the node again
            raise TransactionTimeoutError(tx_hash, timeout) from None
        except requests.exceptions.RequestException as exc:
            reason = redact_urls(f"lost while awaiting {tx_hash}: {_short(exc)}")
            raise RPCUnavailableError(_endpoint(self.w3), reason) from None

    def _failure(self, fields: dict[str, Any], receipt: TxReceipt, decoder: RevertDecoder | None) -> ChainError:
        tx_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
        call = {k: v for k, v in fields.items() if k in ("from", "to", "data", "value")}
        try:
            self.w3.eth.call(cast(TxParams, call), block_identifier=receipt["blockNumber"] - 1)
        except ContractLogicError as exc:
            return self._decoded(exc.data, decoder, str(exc))
        except (Web3RPCError, requests.exceptions.RequestException, TransactionNotFound):
            pass
        if receipt["gasUsed"] >= fields["gas"]:
            return TransactionFailedError(tx_hash, f"out of gas (limit {fields['gas']})")
        return TransactionFailedError(tx_hash)

    def _decoded(self, data: Any, decoder: RevertDecoder | None, fallback: str) -> ChainError:
        if decoder is not None:
            decoded = decoder.decode(data)
            if decoded is not None:
                return decoded
        return ContractRevertError("unknown", {}, f"the contract reverted: {fallback}")

    def _rpc_error(self, exc: Web3RPCError, decoder: RevertDecoder | None) -> ChainError:
        message = _rpc_message(exc)
        if "insufficient funds" in message.lower():
            return InsufficientFundsError(self.address, None, None)
        data = exc.rpc_response.get("error", {}).get("data") if isinstance(exc.rpc_response, dict) else None
        if data and decoder is not None:
            decoded = decoder.decode(data)
            if decoded is not None:
                return decoded
        return ChainError(f"the node refused the call: {message}")


def _abi_type(entry: dict[str, Any]) -> str:
    if entry["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in entry["components"])
        return f"({inner}){entry['type'][5:]}"
    return str(entry["type"])


def _revert_bytes(data: Any) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        text = data.removeprefix("0x")
        try:
            return bytes.fromhex(text)
        except ValueError:
            return None
    return None


def _rpc_message(exc: Web3RPCError) -> str:
    response = exc.rpc_response if isinstance(getattr(exc, "rpc_response", None), dict) else {}
    error = response.get("error") if response else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(exc)


def _endpoint_uri(w3: Web3) -> str:
    return str(getattr(w3.provider, "endpoint_uri", ""))


def _endpoint(w3: Web3) -> str:
    """The node as it may be shown: scheme and host, never the API key in its path or query."""
    uri = _endpoint_uri(w3)
    return redact_url(uri) if uri else "the configured RPC endpoint"


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."


def wait_for_rpc(w3: Web3, timeout_s: float) -> None:
    """Wait until the node answers (a freshly started local chain), or RPCUnavailableError."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            rpc_call(w3, lambda: w3.eth.chain_id)
            return
        except RPCUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
