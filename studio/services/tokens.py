"""Tokens after the mint: listing, a token's timeline, its history as the chain records it, recording
new versions, freezing, the evolution animation."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from studio.records import Token, TokenVersion
from studio.services.chain import CollectionIdentity
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.publishing import PublishedVersion
from studio.services.studio import Studio


@dataclass(frozen=True)
class VersionView:
    """One version as a person reads it: what it looks like, why it changed, where it is on chain."""

    version: int
    metadata_cid: str
    image_cid: str
    previous_metadata_cid: str | None
    feed_snapshot_cid: str | None
    feed_values: dict[str, Any] | None
    state: dict[str, Any] | None
    tx_hash: str | None
    block_number: int | None
    gas_used: int | None
    created_at: str


def collection_query(identity: CollectionIdentity, *columns: Any) -> Select[Any]:
    """SELECT of the collection's tokens (its chain and contract), or of `columns` of them."""
    return select(*(columns or (Token,))).where(
        Token.chain_id == identity.chain_id, Token.contract_address == identity.contract_address
    )


def living_tokens_query(identity: CollectionIdentity, rules_name: str, *columns: Any) -> Select[Any]:
    """SELECT of the collection's tokens that evolve by the rules file `rules_name` (living, not frozen):
    what an evolution cycle considers, and what `python -m evolve status` counts."""
    return collection_query(identity, *columns).where(
        Token.living.is_(True), Token.frozen.is_(False), Token.rules_name == rules_name
    )


def list_tokens(studio: Studio) -> list[Token]:
    """The collection's tokens on the configured chain and contract, newest first."""
    with studio.db.session() as session:
        return list(session.scalars(collection_query(studio.identity).order_by(Token.token_id.desc())))


def get_token(studio: Studio, token_id: int, *, session: Session | None = None) -> Token:
    def _load(s: Session) -> Token:
        token: Token | None = s.scalar(collection_query(studio.identity).where(Token.token_id == int(token_id)))
        if token is None:
            raise NotFoundError(f"Token {token_id} is not in this collection: pick one from the Collection tab.")
        return token

    if session is not None:
        return _load(session)
    with studio.db.session() as own:
        return _load(own)


def record_version(
    studio: Studio,
    token_id: int,
    published: PublishedVersion,
    *,
    version: int,
    tx_hash: str | None,
    block_number: int | None,
    gas_used: int | None,
    state: dict[str, Any] | None = None,
    feed_snapshot_cid: str | None = None,
    session: Session | None = None,
) -> TokenVersion:
    """Record a version the chain confirmed and make it the token's current one.

    Idempotent for the same version and metadata (a replayed journal step records nothing twice);
    a different metadata CID for an existing version number is refused.
    """

    def _record(s: Session) -> TokenVersion:
        token = get_token(studio, token_id, session=s)
        existing = s.scalar(
            select(TokenVersion).where(TokenVersion.token_pk == token.id, TokenVersion.version == version)
        )
        if existing is not None:
            if existing.metadata_cid != published.metadata_cid:
                raise InvalidInputError(
                    f"Token {token_id} already has a version {version} with metadata {existing.metadata_cid}, "
                    f"not {published.metadata_cid}."
                )
            return existing
        entry = TokenVersion(
            token_pk=token.id,
            version=version,
            metadata_cid=published.metadata_cid,
            image_cid=published.image_cid,
            previous_metadata_cid=token.current_metadata_cid,
            feed_snapshot_cid=feed_snapshot_cid,
            state=state,
            tx_hash=tx_hash,
            block_number=block_number,
            gas_used=gas_used,
        )
        s.add(entry)
        if version > token.current_version:
            token.current_version = version
            token.current_metadata_cid = published.metadata_cid
            token.current_image_cid = published.image_cid
            if state is not None:
                token.evolution_state = state
        return entry

    if session is not None:
        return _record(session)
    with studio.db.session() as own:
        return _record(own)


def timeline(studio: Studio, token_id: int) -> list[VersionView]:
    """The token's versions, oldest first, with the feed values that caused each change."""
    with studio.db.session() as session:
        token = get_token(studio, token_id, session=session)
        versions = list(token.versions)
    views = []
    for entry in versions:
        feed_values = None
        if entry.feed_snapshot_cid and studio.store.has(entry.feed_snapshot_cid):
            feed_values = json.loads(studio.store.cat(entry.feed_snapshot_cid))
        views.append(
            VersionView(
                version=entry.version,
                metadata_cid=entry.metadata_cid,
                image_cid=entry.image_cid,
                previous_metadata_cid=entry.previous_metadata_cid,
                feed_snapshot_cid=entry.feed_snapshot_cid,
                feed_values=feed_values,
                state=entry.state,
                tx_hash=entry.tx_hash,
                block_number=entry.block_number,
                gas_used=entry.gas_used,
                created_at=entry.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            )
        )
    return views


@dataclass(frozen=True)
class ChainEvent:
    """One event of a token on chain: a MetadataSet (`version`, `metadata_cid`), a Transfer
    (`from_address`, `to_address`; the mint comes from the zero address) or its PermanentURI, the freeze
    (`uri`: its metadata for ever after)."""

    kind: str
    block_number: int
    log_index: int
    tx_hash: str
    timestamp: int
    version: int | None = None
    metadata_cid: str | None = None
    from_address: str | None = None
    to_address: str | None = None
    uri: str | None = None


@dataclass(frozen=True)
class ChainHistory:
    """A token as the chain records it: whether it is frozen, and its events in chain order."""

    frozen: bool
    events: list[ChainEvent]


def chain_history(studio: Studio, token_id: int) -> ChainHistory:
    """The token's MetadataSet, Transfer and PermanentURI events from the studio's contract, oldest first."""
    client = studio.chain.client
    events = [
        ChainEvent(
            kind="MetadataSet",
            block_number=change.block_number,
            log_index=change.log_index,
            tx_hash=change.tx_hash,
            timestamp=change.timestamp,
            version=change.version,
            metadata_cid=change.metadata_cid,
        )
        for change in client.history(int(token_id))
    ]
    events += [
        ChainEvent(
            kind="Transfer",
            block_number=transfer.block_number,
            log_index=transfer.log_index,
            tx_hash=transfer.tx_hash,
            timestamp=transfer.timestamp,
            from_address=transfer.from_address,
            to_address=transfer.to_address,
        )
        for transfer in client.transfers(int(token_id))
    ]
    events += [
        ChainEvent(
            kind="PermanentURI",
            block_number=freeze.block_number,
            log_index=freeze.log_index,
            tx_hash=freeze.tx_hash,
            timestamp=freeze.timestamp,
            uri=freeze.uri,
        )
        for freeze in client.freezes(int(token_id))
    ]
    events.sort(key=lambda event: (event.block_number, event.log_index))
    return ChainHistory(frozen=client.is_frozen(int(token_id)), events=events)


def freeze_token(studio: Studio, token_id: int) -> str:
    """Freeze a token for good: its metadata can never change again. Returns the transaction hash."""
    token = get_token(studio, token_id)
    if token.frozen:
        raise InvalidInputError(f"Token {token_id} is already frozen; freezing is permanent.")
    result = studio.chain.client.freeze(int(token_id))
    with studio.db.session() as session:
        get_token(studio, token_id, session=session).frozen = True
    return result.tx_hash


def evolution_animation(studio: Studio, token_id: int, *, frame_ms: int = 700, side: int = 256) -> bytes:
    """An animated GIF of the token's versions, oldest first (a single frame for a token that never changed)."""
    frames = []
    for view in timeline(studio, token_id):
        image = Image.open(io.BytesIO(studio.store.cat(view.image_cid))).convert("RGB")
        image.thumbnail((side, side))
        frames.append(image)
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return buffer.getvalue()
