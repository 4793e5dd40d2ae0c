"""Chain session set-up: which node, which signing key, which LivingNFT contract.

`open_chain(settings, db)` is the one place that decides this, so the UI and the evolution daemon can
never disagree. On the embedded local chain it starts anvil (state in `settings.chain_dir`), signs with
anvil's dev account 0 and persists every confirmed transaction before reporting it. On any other
network it signs with the configured private key or keystore, refusing anvil's public dev keys. In both
cases the node's chain id is checked against the configured one before anything is sent, and the
contract is deployed on first use and recorded in the `deployments` table, then reused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import rlp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3 import Web3
from web3.exceptions import TransactionNotFound

from contracts.client import LivingNFTClient
from contracts.errors import ChainError, DevKeyRefusedError, SignerConfigError, TransactionTimeoutError
from contracts.localchain import DEV_PRIVATE_KEYS, LocalChain
from contracts.signer import Signer, make_web3, to_address, wait_for_rpc
from studio.config import Settings
from studio.crashpoints import crash_point
from studio.db import Database
from studio.records import Deployment
from studio.services.options import tx_policy

log = logging.getLogger(__name__)

DEV_ADDRESSES = frozenset(Account.from_key(key).address for key in DEV_PRIVATE_KEYS)


@dataclass(frozen=True)
class CollectionIdentity:
    """Which collection the studio serves: the chain id and the LivingNFT contract on it. Resolved once
    at start-up and passed to every query of the collection's tokens, so that tokens of another
    deployment sharing the database are never listed, counted or evolved."""

    chain_id: int
    contract_address: str


@dataclass
class ChainSession:
    """An open connection to the studio's chain and contract. Close it to stop the local chain."""

    client: LivingNFTClient
    w3: Web3
    address: str
    rpc_url: str
    chain_id: int
    contract_address: str
    local_chain: LocalChain | None = None
    deployed_now: bool = False
    _closed: bool = field(default=False, repr=False)

    @property
    def signer(self) -> Signer:
        return self.client.signer

    @property
    def identity(self) -> CollectionIdentity:
        return CollectionIdentity(self.chain_id, self.contract_address)

    def close(self) -> None:
        """Stop the embedded chain (after a final checkpoint); a no-op for remote networks."""
        if self._closed:
            return
        self._closed = True
        if self.local_chain is not None:
            self.local_chain.stop()


def load_account(settings: Settings) -> LocalAccount:
    """The signing account: the configured private key or keystore; on the local chain, dev account 0
    when neither is configured. Anvil's dev keys are refused on every other chain."""
    chain = settings.chain
    account: LocalAccount | None = None
    if chain.private_key is not None and chain.private_key.get_secret_value():
        try:
            account = Account.from_key(chain.private_key.get_secret_value().strip())
        except Exception:
            raise SignerConfigError(
                "STUDIO_CHAIN__PRIVATE_KEY is not a valid private key (expected 0x and 64 hex digits)."
            ) from None
    elif chain.keystore_path is not None:
        account = _account_from_keystore(settings)
    elif chain.network == "local":
        account = Account.from_key(DEV_PRIVATE_KEYS[0])
    else:
        raise SignerConfigError(
            "no signing key configured for network 'rpc': set STUDIO_CHAIN__PRIVATE_KEY, or "
            "STUDIO_CHAIN__KEYSTORE_PATH and STUDIO_CHAIN__KEYSTORE_PASSWORD."
        )
    if chain.network != "local" and account.address in DEV_ADDRESSES:
        raise DevKeyRefusedError(account.address, chain.chain_id)
    return account


def _account_from_keystore(settings: Settings) -> LocalAccount:
    chain = settings.chain
    assert chain.keystore_path is not None
    try:
        keystore = json.loads(chain.keystore_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SignerConfigError(f"cannot read the keystore {chain.keystore_path}: {exc}") from None
    password = chain.keystore_password.get_secret_value() if chain.keystore_password else ""
    try:
        key = Account.decrypt(keystore, password)
    except ValueError:
        raise SignerConfigError(
            f"cannot decrypt the keystore {chain.keystore_path}: wrong STUDIO_CHAIN__KEYSTORE_PASSWORD?"
        ) from None
    account: LocalAccount = Account.from_key(key)
    return account


def open_chain(settings: Settings, db: Database) -> ChainSession:
    """Connect (starting the local chain if configured), check the chain id, and return a session on
    the studio's LivingNFT contract, deploying and recording it on first use."""
    chain = settings.chain
    account = load_account(settings)  # before starting anything: a refused key must not start a chain
    local_chain: LocalChain | None = None
    if chain.network == "local":
        settings.chain_dir.mkdir(parents=True, exist_ok=True)
        local_chain = LocalChain(settings.chain_dir, host=chain.local_host, port=chain.local_port)
        rpc_url = local_chain.start()
    else:
        assert chain.rpc_url is not None  # Settings validates this
        rpc_url = chain.rpc_url
    try:
        w3 = make_web3(rpc_url, chain.rpc_timeout_s)
        if local_chain is not None:
            wait_for_rpc(w3, chain.rpc_timeout_s)
        signer = Signer(
            w3,
            account,
            chain_id=chain.chain_id,
            policy=tx_policy(chain),
            on_confirmed=local_chain.checkpoint if local_chain is not None else None,
        )
        signer.check_chain_id()
        client, deployed_now = _contract(settings, db, signer)
        if deployed_now or local_chain is not None:
            _ensure_roles(client)
    except BaseException:
        if local_chain is not None:
            local_chain.stop()
        raise
    return ChainSession(
        client=client,
        w3=w3,
        address=signer.address,
        rpc_url=rpc_url,
        chain_id=chain.chain_id,
        contract_address=client.address,
        local_chain=local_chain,
        deployed_now=deployed_now,
    )


def recorded_identity(settings: Settings, db: Database) -> CollectionIdentity | None:
    """The collection's identity from the settings and the database alone (no chain I/O): the
    configured contract address, else the deployment `open_chain` would reuse (the latest recorded on
    the configured chain). None when the studio never deployed on this chain."""
    chain = settings.chain
    if chain.contract_address:
        return CollectionIdentity(chain.chain_id, to_address(chain.contract_address))
    with db.session() as session:
        latest = session.scalar(
            select(Deployment).where(Deployment.chain_id == chain.chain_id).order_by(Deployment.id.desc()).limit(1)
        )
        return CollectionIdentity(chain.chain_id, latest.address) if latest is not None else None


def _contract(settings: Settings, db: Database, signer: Signer) -> tuple[LivingNFTClient, bool]:
    chain = settings.chain
    if chain.contract_address:
        address: str = to_address(chain.contract_address)
        with db.session() as session:
            known = _deployment_row(session, chain.chain_id, address)
            from_block = (known.block_number or 0) if known else 0
            if known is None:
                session.add(Deployment(chain_id=chain.chain_id, address=address))
        return LivingNFTClient.at(signer, address, from_block=from_block), False

    with db.session() as session:
        latest = session.scalar(
            select(Deployment).where(Deployment.chain_id == chain.chain_id).order_by(Deployment.id.desc()).limit(1)
        )
        if latest is not None:
            address, from_block = latest.address, latest.block_number or 0
            # Recorded before its transaction and never completed: the studio stopped mid-deploy.
            interrupted = latest.deployer is not None and latest.block_number is None
            deploy_tx = latest.tx_hash
    if latest is not None:
        if interrupted:  # its signed transaction's receipt, if it was mined, says where and when
            address, from_block = _mined_deployment(signer, deploy_tx) or (address, 0)
        try:
            client = LivingNFTClient.at(signer, address, from_block=from_block)
        except ChainError as exc:
            if interrupted:  # the studio stopped before its deploy was mined: deploy again
                _forget_deployment(db, chain.chain_id, latest.address)
                return _deploy(settings, db, signer)
            raise ChainError(
                f"the studio's LivingNFT contract {address} (chain {chain.chain_id}, recorded in the database) "
                f"has no code on the node: {exc}. If the local chain's state in {settings.chain_dir} was deleted, "
                "restore it, or start from an empty data directory."
            ) from None
        if interrupted:  # deployed, but the studio stopped before recording it: finish the record
            with db.session() as session:
                row = session.scalars(select(Deployment).where(Deployment.id == latest.id)).one()
                row.address = address
                row.block_number = from_block  # 0 when unknown: history is then read from the chain's start
            log.warning("recorded LivingNFT %s, deployed before the studio last stopped", address)
        return client, interrupted

    return _deploy(settings, db, signer)


def _mined_deployment(signer: Signer, tx_hash: str | None) -> tuple[str, int] | None:
    """The contract address and block of the deployment signed as `tx_hash`, once mined; None otherwise
    (not mined, dropped, or recorded by a studio version that did not keep the hash before sending)."""
    if tx_hash is None:
        return None
    try:
        receipt = signer.receipt(tx_hash)
    except (ChainError, TransactionNotFound):
        return None
    if receipt.get("status") != 1 or not receipt.get("contractAddress"):
        return None
    return to_address(receipt["contractAddress"]), int(receipt["blockNumber"])


def create_address(sender: str, nonce: int) -> str:
    """Where a CREATE from `sender` at `nonce` puts the contract: keccak(rlp([sender, nonce]))[12:]."""
    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def _deployment_row(session: Session, chain_id: int, address: str) -> Deployment | None:
    return session.scalar(select(Deployment).where(Deployment.chain_id == chain_id, Deployment.address == address))


def _deploy_in_progress(session: Session, chain_id: int, address: str) -> Deployment:
    """The row this process wrote before sending its deploy transaction."""
    row = _deployment_row(session, chain_id, address)
    if row is None:
        raise ChainError(
            f"the record of the deploy to {address} on chain {chain_id} was removed while deploying: is another "
            "studio process using this database? Stop it and start again."
        )
    return row


def _forget_deployment(db: Database, chain_id: int, address: str) -> None:
    with db.session() as session:
        row = _deployment_row(session, chain_id, address)
        if row is not None:
            session.delete(row)


def _deploy(settings: Settings, db: Database, signer: Signer) -> tuple[LivingNFTClient, bool]:
    """Deploy LivingNFT. Its address is recorded before the transaction (it follows from the sender and
    nonce), so a studio stopped between the deploy's confirmation and its record finds the contract
    again on the next start instead of deploying a second one."""
    chain = settings.chain
    expected = create_address(signer.address, signer.w3.eth.get_transaction_count(signer.address, "pending"))
    with db.session() as session:
        session.add(Deployment(chain_id=chain.chain_id, address=expected, deployer=signer.address))

    def record_hash(
        tx_hash: str, _nonce: int
    ) -> None:  # before the transaction leaves: a restart finds its receipt by it
        with db.session() as session:
            _deploy_in_progress(session, chain.chain_id, expected).tx_hash = tx_hash

    try:
        client, result = LivingNFTClient.deploy(
            signer,
            name=chain.collection_name,
            symbol=chain.collection_symbol,
            royalty_receiver=signer.address,
            royalty_bps=chain.royalty_bps,
            before_broadcast=record_hash,
        )
    except TransactionTimeoutError:
        raise  # it may still be mined: the next start finds it by the hash recorded before sending
    except BaseException:
        _forget_deployment(db, chain.chain_id, expected)
        raise
    crash_point("chain:after_deploy")
    with db.session() as session:
        row = _deploy_in_progress(session, chain.chain_id, expected)
        row.address = client.address  # the same unless another sender's transaction took the nonce
        row.tx_hash = result.tx_hash
        row.block_number = result.block_number
    log.info("deployed LivingNFT at %s on chain %s (tx %s)", client.address, chain.chain_id, result.tx_hash)
    return client, True


def _ensure_roles(client: LivingNFTClient) -> None:
    """The studio's own signer mints and evolves: grant it both roles where it is the admin."""
    me = client.signer.address
    if not client.has_role("DEFAULT_ADMIN_ROLE", me):
        return
    for role in ("MINTER_ROLE", "EVOLVER_ROLE"):
        if not client.has_role(role, me):
            client.grant_role(role, me)
