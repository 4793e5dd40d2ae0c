"""The studio's tables. The chain and IPFS are the source of truth for tokens; these records are the
studio's working memory of them (what it generated, pinned, minted and evolved) and its journal.

A change here needs a migration: `make migration m="what changed"` writes one from the difference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Unicode,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from studio.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class Deployment(Base):
    """A LivingNFT contract the studio deployed or was pointed at, per chain."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("chain_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger, index=True)
    address: Mapped[str] = mapped_column(String(42))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    deployer: Mapped[str | None] = mapped_column(String(42))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Pin(Base):
    """Content pinned to one backend. The CID was computed locally and checked against the backend's."""

    __tablename__ = "pins"
    __table_args__ = (UniqueConstraint("cid", "backend"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cid: Mapped[str] = mapped_column(String(128), index=True)
    backend: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str | None] = mapped_column(String(100))
    pinned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Draft(Base):
    """A generated image not (yet) minted. Its PNG lives in the local IPFS store under image_cid,
    so a draft survives a failed pin or mint and can be retried."""

    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int] = mapped_column(Integer)
    guidance_scale: Mapped[float]
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    strength: Mapped[float | None]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("drafts.id"))
    image_cid: Mapped[str] = mapped_column(String(128))
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON)


class Token(Base):
    """A minted token. `current_*` mirror the newest confirmed version."""

    __tablename__ = "tokens"
    __table_args__ = (UniqueConstraint("chain_id", "contract_address", "token_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract_address: Mapped[str] = mapped_column(String(42))
    token_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    prompt: Mapped[str] = mapped_column(Text)
    draft_id: Mapped[int | None] = mapped_column(ForeignKey("drafts.id"))
    living: Mapped[bool] = mapped_column(Boolean, default=False)
    rules_name: Mapped[str | None] = mapped_column(String(200))
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    current_version: Mapped[int] = mapped_column(Integer, default=0)
    current_metadata_cid: Mapped[str] = mapped_column(String(128))
    current_image_cid: Mapped[str] = mapped_column(String(128))
    evolution_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    minted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[TokenVersion]] = relationship(
        back_populates="token", order_by="TokenVersion.version", cascade="all, delete-orphan"
    )


class TokenVersion(Base):
    """One version of a token's metadata as set on chain (version 0 is the mint)."""

    __tablename__ = "token_versions"
    __table_args__ = (UniqueConstraint("token_pk", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_pk: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    metadata_cid: Mapped[str] = mapped_column(String(128))
    image_cid: Mapped[str] = mapped_column(String(128))
    previous_metadata_cid: Mapped[str | None] = mapped_column(String(128))
    feed_snapshot_cid: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    token: Mapped[Token] = relationship(back_populates="versions")


class MintIntent(Base):
    """A mint about to be sent, written before the transaction and removed with the token's recording.

    If the studio stops between the chain confirming a mint and recording the token, the intent says
    which token to look for on chain (by its metadata CID) and how to record it; see
    studio.services.minting.reconcile_mints.

    `owner` is the minting process (studio/owners.py), `sender` and `nonce` the transaction's and
    `tx_hash` its hash, all written before it is broadcast: a reconcile drops an intent only when its
    transaction failed or another transaction took its nonce, never one still in flight."""

    __tablename__ = "mint_intents"

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contract_address: Mapped[str] = mapped_column(String(42))
    metadata_cid: Mapped[str] = mapped_column(String(128), unique=True)
    image_cid: Mapped[str] = mapped_column(String(128))
    draft_id: Mapped[int] = mapped_column(ForeignKey("drafts.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    recipient: Mapped[str] = mapped_column(String(42))
    living: Mapped[bool] = mapped_column(Boolean, default=False)
    rules_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    owner: Mapped[str | None] = mapped_column(String(200))
    sender: Mapped[str | None] = mapped_column(String(42))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(66))


# --- evolution (evolve/): cycles, their per-token journal, the scheduler's job store ------------


class EvolveCycle(Base):
    """One evolution cycle of one collection. `owner` and `heartbeat_at` tell a restarted daemon
    whether a 'running' cycle belongs to a live process or must be rolled forward.

    At most one cycle per collection runs (dry runs aside): a unique index over the running rows
    makes the database refuse a second one, whatever the processes saw before inserting it."""

    __tablename__ = "evolve_cycles"
    __table_args__ = (
        Index(
            "uq_evolve_cycles_one_running",
            "collection",
            unique=True,
            sqlite_where=text("status = 'running' AND dry_run = 0"),
            postgresql_where=text("status = 'running' AND dry_run = false"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    collection: Mapped[str] = mapped_column(String(200), index=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    owner: Mapped[str] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    snapshot_cid: Mapped[str | None] = mapped_column(String(128))
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    gas_used: Mapped[int] = mapped_column(BigInteger, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class EvolveStep(Base):
    """The journal: one row per token and new version, advanced (planned -> pinned -> sending ->
    confirmed -> recorded) in the database BEFORE each side effect, so a restart knows exactly what
    may have happened and reconciles with the chain before doing anything again."""

    __tablename__ = "evolve_journal"

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("evolve_cycles.id"), index=True)
    token_pk: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"), index=True)
    token_id: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(20), index=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    previous_metadata_cid: Mapped[str] = mapped_column(String(128))
    image_cid: Mapped[str | None] = mapped_column(String(128))
    metadata_cid: Mapped[str | None] = mapped_column(String(128))
    feed_snapshot_cid: Mapped[str | None] = mapped_column(String(128))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class EvolveLease(Base):
    """A lease one process holds until `expires_at` and renews while it lives: the scheduler's
    ("scheduler": one per database, the others wait for it to expire)."""

    __tablename__ = "evolve_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EvolveSchedulerJob(Base):
    """APScheduler's SQLAlchemyJobStore table (same columns as APScheduler creates), declared here so
    that migrations own the whole schema. Rows are written by APScheduler only."""

    __tablename__ = "evolve_scheduler_jobs"

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


# --- generative collections (studio/services/collections.py) -------------------------------------


class GenerativeCollection(Base):
    """A collection generated from a spec (studio/collections/spec.py). The spec text is kept as it was
    given, so a stopped generation resumes on exactly the editions it drew."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    spec_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    metadata_cid: Mapped[str | None] = mapped_column(String(128))

    editions: Mapped[list[CollectionEdition]] = relationship(
        back_populates="collection", order_by="CollectionEdition.number", cascade="all, delete-orphan"
    )


class CollectionEdition(Base):
    """One edition: its drawn traits and seed, its draft once generated (None until then), whether the
    artist excluded it from the drop, and the token it was minted as."""

    __tablename__ = "collection_editions"
    __table_args__ = (UniqueConstraint("collection_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    traits: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(BigInteger)
    regenerations: Mapped[int] = mapped_column(Integer, default=0)
    draft_id: Mapped[int | None] = mapped_column(ForeignKey("drafts.id"))
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    token_id: Mapped[int | None] = mapped_column(BigInteger)

    collection: Mapped[GenerativeCollection] = relationship(back_populates="editions")
