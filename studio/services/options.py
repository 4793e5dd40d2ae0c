"""The lower layers' own typed options, built from the studio's Settings.

contracts/ and metadata/ do not read Settings: each takes a small frozen options object of its own
(`metadata.store.StoreOptions`, `metadata.pinning.pinner.PinnerOptions`, `contracts.signer.TxPolicy`),
and this module is the one place that fills them in from the settings the person wrote.
"""

from __future__ import annotations

from contracts.signer import TxPolicy
from metadata.pinning.pinner import PinnerOptions
from metadata.store import StoreOptions
from studio.config import ChainSettings, IpfsSettings, Settings


def store_options(settings: Settings) -> StoreOptions:
    """The local IPFS store in the data directory, with the size limit `ipfs.max_file_mb`."""
    return StoreOptions(root=settings.ipfs_dir, max_file_bytes=settings.ipfs.max_file_bytes)


def pinner_options(ipfs: IpfsSettings) -> PinnerOptions:
    """The pinning backends `ipfs.backends` lists, their endpoints, credentials, timeouts and retries."""
    return PinnerOptions(
        backends=tuple(ipfs.backends),
        max_file_bytes=ipfs.max_file_bytes,
        connect_timeout_s=ipfs.connect_timeout_s,
        read_timeout_s=ipfs.read_timeout_s,
        retries=ipfs.retries,
        pinata_jwt=ipfs.pinata_jwt.get_secret_value() if ipfs.pinata_jwt is not None else None,
        pinata_api_url=ipfs.pinata_api_url,
        pinata_files_api_url=ipfs.pinata_files_api_url,
        kubo_api_url=ipfs.kubo_api_url,
    )


def tx_policy(chain: ChainSettings) -> TxPolicy:
    """How the signer prices and awaits transactions: the fee caps, gas buffer and receipt timeout."""
    return TxPolicy(
        max_fee_gwei=chain.max_fee_gwei,
        priority_fee_gwei=chain.priority_fee_gwei,
        gas_buffer=chain.gas_buffer,
        receipt_timeout_s=chain.receipt_timeout_s,
    )
