"""What the Settings tab shows: network, contract, pinning backends and their health, wallet and
balance, model and device. Secrets are reported only as set or not set, never their values, and an
RPC URL is shown by its host alone (provider URLs often carry an API key in their path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from contracts.errors import ChainError
from contracts.signer import rpc_call, to_address
from metadata.errors import ContentError
from studio.config import Settings
from studio.generation.loading import model_availability
from studio.services.studio import ChainNotStartedError, Studio

WEI_PER_ETH = 10**18


@dataclass(frozen=True)
class PinningStatus:
    backend: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class StudioOverview:
    network: str
    rpc_host: str
    chain_id: int
    contract_address: str | None
    wallet_address: str | None
    balance_eth: str | None
    chain_error: str | None
    pinning: list[PinningStatus]
    public_gateway: str
    model: dict[str, object]
    secrets: dict[str, bool]
    data_dir: str
    evolve_enabled: bool
    # Per secret: (whether this configuration needs it, why or when it is used). Most are optional.
    secret_needs: dict[str, tuple[bool, str]] = field(default_factory=dict)
    model_status: ModelStatus | None = None


@dataclass(frozen=True)
class ModelStatus:
    """Whether a generation can run, known before the first click: "loaded", "ready" (on this machine,
    loads on first use), "download" (fetched from the hub on first use) or "missing", and what to say."""

    state: Literal["loaded", "ready", "download", "missing"]
    message: str


def model_status(studio: Studio) -> ModelStatus:
    """The configured model's status without loading it or touching the network."""
    if studio.engine.loaded:
        return ModelStatus("loaded", f"Model {studio.engine.describe().get('model_id')} is loaded.")
    state, message = model_availability(studio.settings.model)
    return ModelStatus(state, message)


LOCAL_BINDS = frozenset({"127.0.0.1", "localhost", "::1"})


def secret_needs(settings: Settings) -> dict[str, tuple[bool, str]]:
    """For each secret the Settings tab lists: (needed by this configuration, why or when it is used)."""
    rpc = settings.chain.network == "rpc"
    pinata = "pinata" in settings.ipfs.backends
    beyond_localhost = settings.app.host.strip("[]") not in LOCAL_BINDS
    signer = "signs transactions on the RPC network (the private key or a keystore)"
    return {
        "chain private key": (
            rpc,
            signer if rpc else "only for an RPC network; the embedded anvil uses its dev account",
        ),
        "chain keystore": (False, "an alternative to the private key on an RPC network"),
        "Pinata JWT": (pinata, "ipfs.backends lists pinata" if pinata else "only when ipfs.backends lists pinata"),
        "web login": (
            beyond_localhost,
            "the studio listens beyond localhost" if beyond_localhost else "only when listening beyond localhost",
        ),
    }


def rpc_host(url: str) -> str:
    """The scheme and host of an RPC URL, without path, query or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else host


def studio_overview(studio: Studio, *, check_pinning: bool = True) -> StudioOverview:
    """The studio's configuration and live state. The chain is read with the configured timeouts; a
    chain that cannot be reached is reported in `chain_error`, not raised."""
    settings = studio.settings
    chain_settings = settings.chain
    contract = wallet = balance = error = None
    rpc = "embedded anvil" if chain_settings.network == "local" else rpc_host(chain_settings.rpc_url or "")
    try:
        chain = studio.chain
        contract, wallet = chain.contract_address, chain.address
        wei = int(rpc_call(chain.w3, lambda: chain.w3.eth.get_balance(to_address(chain.address))))
        balance = f"{wei / WEI_PER_ETH:.6f}"
        if chain.local_chain is not None:
            rpc = f"embedded anvil at {rpc_host(chain.rpc_url)}"
    except (ChainError, ChainNotStartedError) as exc:
        error = str(exc)
    pinning: list[PinningStatus] = []
    if check_pinning:
        for backend in studio.pinner.backends:
            try:
                health = backend.health()
                pinning.append(PinningStatus(health.backend, health.ok, health.detail))
            except ContentError as exc:
                pinning.append(PinningStatus(getattr(backend, "name", "?"), False, str(exc)))
    else:
        pinning = [PinningStatus(name, True, "not checked") for name in settings.ipfs.backends]
    return StudioOverview(
        network=chain_settings.network,
        rpc_host=rpc,
        chain_id=chain_settings.chain_id,
        contract_address=contract,
        wallet_address=wallet,
        balance_eth=balance,
        chain_error=error,
        pinning=pinning,
        public_gateway=settings.ipfs.public_gateway,
        model=studio.engine.describe(),
        secrets={
            "chain private key": bool(chain_settings.private_key and chain_settings.private_key.get_secret_value()),
            "chain keystore": chain_settings.keystore_path is not None,
            "Pinata JWT": bool(settings.ipfs.pinata_jwt and settings.ipfs.pinata_jwt.get_secret_value()),
            "web login": bool(settings.app.auth_username and settings.app.auth_password),
        },
        data_dir=str(settings.data_dir.resolve()),
        evolve_enabled=settings.evolve.enabled,
        secret_needs=secret_needs(settings),
        model_status=model_status(studio),
    )
