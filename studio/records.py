"""The studio's tables. The chain and IPFS are the source of truth for tokens; these records are the
studio's working memory of them (what it generated, pinned, minted and evolved) and its journal.

A change here needs a migration: `make migration m="what changed"` writes one from the difference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
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
