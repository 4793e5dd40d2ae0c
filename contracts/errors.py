"""Exceptions of the chain layer. Each message names the problem and how to fix it; none contains a secret.

Catch `ChainError` for anything that went wrong talking to a chain; the subclasses say what.
"""

from __future__ import annotations

from typing import Any

from studio.errors import StudioError


class ChainError(StudioError):
    """Base of every chain-layer error."""


class ArtifactError(ChainError):
    """A compiled contract artifact is missing or unreadable."""


class InvalidAddressError(ChainError, ValueError):
    """A string is not a valid EVM address."""

    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(
            f"{value!r} is not a valid EVM address: give 0x followed by 40 hex digits "
            "(an EIP-55 mixed-case checksum must match when mixed case is used)."
        )


class UnstorableCIDError(ChainError, ValueError):
    """A metadata CID the contract cannot store (it stores CIDv1, raw codec, sha2-256 only)."""


class RPCUnavailableError(ChainError):
    """The JSON-RPC endpoint cannot be reached or does not answer."""

    def __init__(self, rpc_url: str, reason: str) -> None:
        self.rpc_url = rpc_url
        super().__init__(
            f"cannot reach the chain's JSON-RPC endpoint {rpc_url}: {reason}. "
            "Check STUDIO_CHAIN__RPC_URL and that the node is running and reachable."
        )


class WrongChainIdError(ChainError):
    """The node serves a different chain than the one configured."""

    def __init__(self, expected: int, actual: int, rpc_url: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the node at {rpc_url} serves chain id {actual}, but the studio is configured for chain id "
            f"{expected}: nothing was sent. Point STUDIO_CHAIN__RPC_URL at the right network or set "
            f"STUDIO_CHAIN__CHAIN_ID={actual} if that network is really the one you want."
        )


class DevKeyRefusedError(ChainError):
    """One of anvil's publicly known development keys was configured for a real network."""

    def __init__(self, address: str, chain_id: int) -> None:
        self.address = address
        self.chain_id = chain_id
        super().__init__(
            f"the configured signing key is one of anvil's public development keys (account {address}); "
            f"anyone can spend from it, so the studio refuses it on chain id {chain_id}. Set "
            "STUDIO_CHAIN__PRIVATE_KEY or STUDIO_CHAIN__KEYSTORE_PATH to your own account's key."
        )


class SignerConfigError(ChainError):
    """No usable signing key: missing, malformed, or a keystore that cannot be decrypted."""


class FeeCapExceededError(ChainError):
    """The network's current fees are above the configured cap: the transaction was not sent."""

    def __init__(self, max_fee_wei: int, cap_wei: int) -> None:
        self.max_fee_wei = max_fee_wei
        self.cap_wei = cap_wei
        super().__init__(
            f"the transaction would need a max fee of {max_fee_wei / 1e9:.3f} gwei per gas, above the "
            f"configured cap of {cap_wei / 1e9:.3f} gwei: nothing was sent. Wait for fees to fall or raise "
            "STUDIO_CHAIN__MAX_FEE_GWEI."
        )


class InsufficientFundsError(ChainError):
    """The sending account cannot pay for the transaction."""

    def __init__(self, address: str, needed_wei: int | None, balance_wei: int | None) -> None:
        self.address = address
        self.needed_wei = needed_wei
        self.balance_wei = balance_wei
        detail = ""
        if needed_wei is not None and balance_wei is not None:
            detail = f" (needs up to {needed_wei / 1e18:.6f} ETH, holds {balance_wei / 1e18:.6f} ETH)"
        super().__init__(
            f"account {address} has too little ETH to pay for the transaction{detail}: nothing was sent. "
            "Fund the account or lower the gas needed."
        )


class TransactionTimeoutError(ChainError):
    """A sent transaction was not mined within the receipt timeout. It may still be mined later."""

    def __init__(self, tx_hash: str, timeout_s: float) -> None:
        self.tx_hash = tx_hash
        super().__init__(
            f"transaction {tx_hash} was sent but not mined within {timeout_s:.0f} s; it may still be mined. "
            "Check it in a block explorer before retrying, or raise STUDIO_CHAIN__RECEIPT_TIMEOUT_S."
        )


class TransactionFailedError(ChainError):
    """A transaction was mined but reverted without a reason the ABI can decode."""

    def __init__(self, tx_hash: str, detail: str = "") -> None:
        self.tx_hash = tx_hash
        super().__init__(f"transaction {tx_hash} reverted{': ' + detail if detail else ''}.")


class ContractRevertError(ChainError):
    """The contract reverted with a custom error (or a reason string); `error_name` and `args` say which."""

    def __init__(self, error_name: str, args: dict[str, Any] | None = None, message: str | None = None) -> None:
        self.error_name = error_name
        self.error_args = dict(args or {})
        rendered = ", ".join(f"{k}={_render(v)}" for k, v in self.error_args.items())
        super().__init__(message or f"the contract reverted with {error_name}({rendered})")


class UnknownTokenError(ContractRevertError):
    """The token id was never minted on this contract."""

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id
        super().__init__(
            "ERC721NonexistentToken",
            {"tokenId": token_id},
            f"token {token_id} does not exist on this contract (ERC721NonexistentToken): check the token id "
            "and the contract address.",
        )


class TokenFrozenError(ContractRevertError):
    """The token's metadata is frozen for ever."""

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id
        super().__init__(
            "TokenFrozen",
            {"tokenId": token_id},
            f"token {token_id} is frozen (TokenFrozen): its metadata can never change again.",
        )


class VersionMismatchError(ContractRevertError):
    """Compare-and-set failed: the token's on-chain version is not the one the caller built on."""

    def __init__(self, token_id: int, expected: int, actual: int) -> None:
        self.token_id = token_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            "VersionMismatch",
            {"tokenId": token_id, "expected": expected, "actual": actual},
            f"token {token_id} is at version {actual} on chain, not {expected} as expected (VersionMismatch): "
            "someone else evolved it in between, so nothing was changed. Read its current version and "
            "history before evolving it again.",
        )


class UnexpectedFirstTokenIdError(ContractRevertError):
    """mintDrop was built for ids that are no longer the next ones: another mint came in between."""

    def __init__(self, next_token_id: int, first_token_id: int) -> None:
        self.next_token_id = next_token_id
        self.first_token_id = first_token_id
        super().__init__(
            "UnexpectedFirstTokenId",
            {"nextTokenId": next_token_id, "firstTokenId": first_token_id},
            f"the drop's metadata folder was built for token ids from {first_token_id}, but the next token id is "
            f"{next_token_id} (UnexpectedFirstTokenId): another mint came in between, so nothing was minted. "
            f"Build the folder again for ids from {next_token_id} and send the drop again.",
        )


class MissingRoleError(ContractRevertError):
    """The sender lacks the AccessControl role the function needs."""

    def __init__(self, account: str, role: str, role_name: str) -> None:
        self.account = account
        self.role = role
        self.role_name = role_name
        super().__init__(
            "AccessControlUnauthorizedAccount",
            {"account": account, "neededRole": role},
            f"account {account} lacks {role_name} (AccessControlUnauthorizedAccount): an admin of the contract "
            f"must grant it (grant_role({role_name!r}, {account!r})).",
        )


class LocalChainError(ChainError):
    """The embedded anvil chain could not start or stop."""


class LocalChainBusyError(LocalChainError):
    """Another live studio process runs the embedded chain of this data directory."""


def _render(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)
