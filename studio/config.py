"""The studio's settings: one object, read from the environment, a `.env` file and `studio.toml`.

Precedence, highest first: arguments given in code, environment variables (`STUDIO_` prefix, `__`
between a section and its field, e.g. `STUDIO_CHAIN__RPC_URL`), the `.env` file, `studio.toml` (path
in `STUDIO_CONFIG`, default `./studio.toml`), then the embedded defaults below. The defaults run
everything locally: an anvil chain, a local IPFS store and gateway, SQLite, all under `data_dir`.

Secrets (`chain.private_key`, `chain.keystore_password`, `ipfs.pinata_jwt`, `credentials.key_password`) are
`SecretStr`: they print as `**********` and are read with `.get_secret_value()` only where they are used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from studio.errors import StudioError

ENV_PREFIX = "STUDIO_"
CONFIG_FILE_ENV = "STUDIO_CONFIG"
LOCAL_CHAIN_ID = 31337


class _SettingsPart(BaseModel):
    """A section of the settings. A refused value is never repeated in the error: it may be a secret
    (an RPC URL with its API key, a mirror URL with a token) and the error is printed and logged."""

    model_config = ConfigDict(hide_input_in_errors=True)


class ChainSettings(_SettingsPart):
    """Which EVM network the studio uses and how it signs."""

    network: Literal["local", "rpc"] = Field(
        "local",
        description="'local' starts the embedded anvil chain; 'rpc' uses rpc_url.",
    )
    rpc_url: str | None = Field(None, description="JSON-RPC endpoint when network = 'rpc'.")
    chain_id: int = Field(
        LOCAL_CHAIN_ID, description="Expected chain id; the studio refuses to send if the node differs."
    )
    private_key: SecretStr | None = Field(None, description="Hex private key of the sending account.")
    keystore_path: Path | None = Field(
        None, description="Encrypted JSON keystore (eth-account) instead of private_key."
    )
    keystore_password: SecretStr | None = None
    contract_address: str | None = Field(
        None, description="LivingNFT contract; empty on the local chain: deployed on first start."
    )
    local_host: str = "127.0.0.1"
    local_port: int = Field(8545, description="Port of the embedded anvil chain; 0 picks a free one.")
    max_fee_gwei: float = Field(
        200.0, gt=0, description="Refuse to send a transaction whose max fee per gas exceeds this."
    )
    priority_fee_gwei: float = Field(1.0, ge=0)
    gas_buffer: float = Field(1.25, ge=1.0, description="Gas limit = estimate * gas_buffer.")
    batch_gas_budget: int = Field(8_000_000, gt=0, description="Most gas one batch evolve or mint transaction may use.")
    rpc_timeout_s: float = Field(15.0, gt=0)
    receipt_timeout_s: float = Field(120.0, gt=0)
    royalty_bps: int = Field(500, ge=0, le=10_000, description="Default ERC-2981 royalty set at deployment.")
    collection_name: str = "Living NFT Studio"
    collection_symbol: str = "LIVE"


class IpfsSettings(_SettingsPart):
    """Where content is pinned and how it is served."""

    backends: list[Literal["local", "pinata", "kubo"]] = Field(
        default_factory=lambda: ["local"],  # type: ignore[arg-type]  # pydantic validates the literal
        description="Pinning backends; content goes to every one listed and all must agree on the CID.",
    )
    max_file_mb: float = Field(50.0, gt=0, description="Largest file the studio pins or serves.")
    public_gateway: str = Field(
        "https://ipfs.io",
        description="Gateway used for links shown to people (the studio's own /ipfs/ serves the local store).",
    )
    pinata_jwt: SecretStr | None = Field(None, description="Pinata API JWT (Pinata dashboard, API Keys).")
    pinata_api_url: str = "https://uploads.pinata.cloud"
    pinata_files_api_url: str = "https://api.pinata.cloud"
    kubo_api_url: str = "http://127.0.0.1:5001"
    connect_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(120.0, gt=0)
    retries: int = Field(4, ge=0)

    @property
    def max_file_bytes(self) -> int:
        """`max_file_mb` in bytes."""
        return int(self.max_file_mb * 1024 * 1024)


class ModelSettings(_SettingsPart):
    """The Stable Diffusion model and how it runs."""

    model_id: str = Field(
        "stabilityai/sd-turbo",
        description="Hugging Face hub id, a local diffusers folder or a single .safetensors file.",
    )
    revision: str | None = None
    hub_endpoint: str | None = Field(
        None,
        description="Base URL of the Hugging Face hub or a mirror of it (such as https://hf-mirror.com) to "
        "download hub models from; empty uses huggingface_hub's own (HF_ENDPOINT, else https://huggingface.co).",
    )
    single_file_config: str | None = Field(
        None,
        description="For a single .safetensors model_id: a hub id or local diffusers folder of the same "
        "architecture giving its configs (needed offline; online diffusers finds them itself).",
    )
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    preset: Literal["fast", "quality"] = "fast"
    tiny_autoencoder_id: str | None = Field(
        "madebyollin/taesd",
        description="AutoencoderTiny used as decoder by the 'fast' preset; empty to always use the full VAE.",
    )
    safety_checker: bool = Field(True, description="Use the model's own safety checker when it ships one.")
    cpu_optimizations: bool = Field(
        True,
        description="On CPU: the kernels measured to pay on this CPU class (studio/generation/cpu.py): weights "
        "prepacked for oneDNN at load, bf16 attention in blocks of queries. false runs PyTorch's stock kernels.",
    )
    memory: Literal["auto", "speed", "balanced", "low"] = Field(
        "auto",
        description="On CPU in float32: 'speed' the fastest kernels for every part of the model; 'balanced' "
        "the same for the UNet (its Winograd convolutions as F(2x2,3x3), a quarter of F(4x4,3x3)'s extra memory), "
        "the text encoders and VAE (run once per image) kept in float16 and computed in float32 (about 1.4 GiB "
        "less for sd-turbo, a few percent slower: 3% taking turns in the AVX2 bench); 'low' keeps all weights "
        "in float16 and computes in float32 (about half the memory, slower); 'auto' is low on machines with "
        "under 12 GiB of RAM and balanced elsewhere.",
    )
    max_side: int = Field(1024, ge=64, description="Largest width or height accepted.")
    max_steps: int = Field(150, ge=1)

    @field_validator("hub_endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        value = (value or "").strip().rstrip("/")
        if not value:
            return None
        parts = urlsplit(value)
        if parts.username or parts.password:
            # Shown in messages and logs: a token belongs in HF_TOKEN, which huggingface_hub sends itself.
            raise ValueError("hub_endpoint must not hold credentials: set HF_TOKEN for the hub's token instead.")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                f"hub_endpoint {value!r} is not an http(s) base URL: use one like https://hf-mirror.com, or leave "
                "it empty for the Hugging Face hub."
            )
        return value


class EvolveSettings(_SettingsPart):
    """The evolution scheduler."""

    enabled: bool = Field(True, description="Start the scheduler beside the web app.")
    rules_dir: Path | None = Field(None, description="Folder of collection rules files (default: <data_dir>/rules).")
    timezone: str = "UTC"
    cycle_gas_budget: int = Field(30_000_000, gt=0, description="Most gas one evolution cycle may spend.")
    misfire_grace_s: int = Field(3600, ge=1, description="How late a scheduled cycle may still run after a pause.")
    feed_secrets: list[str] = Field(
        default_factory=list,
        description="Environment variables a rules file may use as feed header or query secrets, e.g. "
        "'[\"WEATHER_API_KEY\"]' (JSON). Never STUDIO_* variables: they hold the studio's own secrets.",
    )
    allow_private_feeds: bool = Field(
        False,
        description="Let feeds reach loopback, private and link-local addresses (a feed on this machine or "
        "the LAN). Off: anyone who can save a rules file could read internal services with it.",
    )
    feed_max_body_bytes: int = Field(1 << 20, gt=0, le=64 << 20, description="Largest feed answer read, in bytes.")
    feed_deadline_s: float = Field(
        30.0, gt=0, le=600, description="Total time one feed read may take: connects, reads, redirects, retries."
    )

    @field_validator("feed_secrets")
    @classmethod
    def _no_studio_secrets(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"evolve.feed_secrets: '{name}' is not an environment variable name")
            if name.upper().startswith(ENV_PREFIX):
                raise ValueError(
                    f"evolve.feed_secrets lists {name}: STUDIO_* variables hold the studio's own secrets (the "
                    "signer's key, the pinning JWT) and may never be sent to a feed; give the feed's key a "
                    "variable of its own, e.g. WEATHER_API_KEY"
                )
        return names

    scheduler_lease_s: int = Field(
        60,
        ge=3,
        description="One scheduler per database: the running one renews its lease this often (a third of it); "
        "another waits and takes over once the lease expires.",
    )


class CredentialsSettings(_SettingsPart):
    """Content Credentials (C2PA) signed into every published image."""

    enabled: bool = Field(
        True, description="Sign every PNG the studio pins (mints and evolutions) with a C2PA manifest."
    )
    cert_chain: Path | None = Field(
        None,
        description="PEM certificate chain, signing (leaf) certificate first, then its CA(s); with `key`. Empty: the "
        "studio's own CA and signing certificate, created in <data_dir>/credentials on first use.",
    )
    key: Path | None = Field(None, description="PEM private key (EC P-256) of the chain's leaf certificate, mode 0600.")
    key_password: SecretStr | None = Field(None, description="Password of `key` when it is encrypted.")


class ScaleSettings(_SettingsPart):
    """Generation on a Ray cluster (docs/scaling.md). Empty ray_address: this process's engine, no Ray."""

    ray_address: str = Field(
        "",
        description="ray://HEAD:10001 (Ray Client), HEAD:6379 (from a cluster machine) or 'local'; empty: in-process.",
    )
    actors: int = Field(
        0, ge=0, description="Engine actors to start; 0: one per GPU of the cluster, else one per actor_cpus CPUs."
    )
    actor_cpus: float = Field(1.0, gt=0, description="CPUs each actor reserves.")
    actor_threads: int = Field(
        0,
        ge=0,
        description="torch threads per actor; 0: Ray's default (its CPUs). Match the coordinator's to "
        "get byte-identical images.",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="How long to try reaching the cluster at start-up.")
    request_timeout_s: float = Field(600.0, gt=0, description="Longest one image may take on a worker.")
    max_retries: int = Field(3, ge=0, description="Times a request is sent again after its actor was lost.")


class AppSettings(_SettingsPart):
    """The web app."""

    host: str = "127.0.0.1"
    port: int = 7860
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Names the app answers to besides 127.0.0.1, localhost, ::1 and `host` (a JSON list, "
        "e.g. the public name behind a reverse proxy); any other Host header gets 400 (DNS rebinding).",
    )
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    gallery_rpc_url: str | None = Field(
        None, description="The collector gallery reads this network's contract instead of the studio's own."
    )
    gallery_contract_address: str | None = Field(
        None, description="The contract the gallery shows (with gallery_rpc_url)."
    )
    gallery_from_block: int = Field(0, ge=0, description="First block to scan for token history on that network.")


class Settings(BaseSettings):
    """Everything configurable about the studio. See the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        toml_file="studio.toml",
        hide_input_in_errors=True,  # see _SettingsPart
    )

    data_dir: Path = Field(
        Path("studio-data"), description="Holds the database, the local chain's state and the IPFS store."
    )
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir.")
    log_level: str = "INFO"

    chain: ChainSettings = Field(default_factory=ChainSettings)
    ipfs: IpfsSettings = Field(default_factory=IpfsSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    evolve: EvolveSettings = Field(default_factory=EvolveSettings)
    app: AppSettings = Field(default_factory=AppSettings)
    credentials: CredentialsSettings = Field(default_factory=CredentialsSettings)
    scale: ScaleSettings = Field(default_factory=ScaleSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get(CONFIG_FILE_ENV, "studio.toml"))
        toml_settings = TomlConfigSettingsSource(settings_cls, toml_file=toml_path)
        return (init_settings, env_settings, dotenv_settings, toml_settings, file_secret_settings)

    @model_validator(mode="after")
    def _check_network(self) -> Settings:
        if self.chain.network == "rpc" and not self.chain.rpc_url:
            raise ValueError(
                "chain.network is 'rpc' but chain.rpc_url is empty: set STUDIO_CHAIN__RPC_URL "
                "(or [chain] rpc_url in studio.toml), or use network = 'local'."
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'studio.db').resolve()}"

    @property
    def chain_dir(self) -> Path:
        return self.data_dir / "chain"

    @property
    def ipfs_dir(self) -> Path:
        return self.data_dir / "ipfs"

    @property
    def credentials_dir(self) -> Path:
        """The studio's own Content Credentials CA and signing certificate (keys mode 0600)."""
        return self.data_dir / "credentials"

    @property
    def rules_dir(self) -> Path:
        return self.evolve.rules_dir or self.data_dir / "rules"

    def ensure_dirs(self) -> None:
        """Create the data directory and its parts; safe to call repeatedly."""
        for path in (self.data_dir, self.chain_dir, self.ipfs_dir, self.rules_dir):
            path.mkdir(parents=True, exist_ok=True)


class UnreachableContentError(StudioError, ValueError):
    """A real network whose tokens would point at content that only this machine holds."""


def check_content_reachable(settings: Settings) -> None:
    """Refuse to start on a real network (`network = 'rpc'`, any chain id but the dev chains' 31337, which
    the node must confirm before anything is sent) when content is pinned only in the local store: tokens
    minted there would point at metadata and images no marketplace or collector can ever fetch."""
    if settings.chain.network != "rpc" or settings.chain.chain_id == LOCAL_CHAIN_ID:
        return
    if set(settings.ipfs.backends) - {"local"}:
        return
    raise UnreachableContentError(
        f"chain.network is 'rpc' (chain id {settings.chain.chain_id}) but content is pinned only on this disk "
        '(ipfs.backends = ["local"]): tokens would point at metadata nobody else can fetch. Add a public '
        'pinning service: Pinata (STUDIO_IPFS__BACKENDS=\'["local", "pinata"]\' and STUDIO_IPFS__PINATA_JWT) '
        'or your own Kubo node (STUDIO_IPFS__BACKENDS=\'["local", "kubo"]\' and STUDIO_IPFS__KUBO_API_URL).'
    )


def load_settings(**overrides: Any) -> Settings:
    """Read settings from all sources; `overrides` win over everything (used by tests and CLIs)."""
    return Settings(**overrides)
