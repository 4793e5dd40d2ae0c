"""The mint intent journal: what single mints (minting.mint_draft), batch mints (batch_minting.mint_drafts)
and the start-up reconcile (minting.reconcile_mints) write and read, so that no stop loses a token or mints
one twice.

A `MintIntent` row is written for each token before its transaction is signed; the transaction's hash and
nonce are added before it leaves; the row becomes the token's rows (`record_minted`) once the chain
confirmed the mint, or is dropped (`drop_intent`) once the mint certainly cannot happen. The operations
live here, not in either minting module, because both kinds of mint must journal exactly alike: the
reconcile that finishes their interrupted work does not know which kind wrote an intent.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.errors import ContractRevertError, TransactionFailedError
from studio.owners import process_owner
from studio.records import Draft, MintIntent, Token, TokenVersion
from studio.services.chain import ChainSession
from studio.services.errors import NotFoundError
from studio.services.publishing import PublishedVersion
from studio.services.studio import Studio
from studio.services.tokens import collection_query


def new_intent(
    chain: ChainSession,
    draft_id: int,
    published: PublishedVersion,
    name: str,
    description: str,
    recipient: str,
    living: bool,
    rules_name: str | None,
) -> MintIntent:
    """The intent row for minting `published` (version 0 of draft `draft_id`) to `recipient`, owned by
    this process. The caller adds it in a database transaction that commits before the mint's
    transaction is signed: a stop between confirmation and recording must leave the intent behind."""
    return MintIntent(
        owner=process_owner(),
        sender=chain.address,
        chain_id=chain.chain_id,
        contract_address=chain.contract_address,
        metadata_cid=published.metadata_cid,
        image_cid=published.image_cid,
        draft_id=draft_id,
        name=name,
        description=description,
        recipient=recipient,
        living=bool(living),
        rules_name=rules_name if living else None,
    )


def certainly_not_minted(studio: Studio, metadata_cid: str, exc: BaseException) -> bool:
    """Whether the mint of `metadata_cid`, which raised `exc`, certainly minted nothing: refused before
    its transaction was signed, or mined and failed. Only then may its intent be dropped; anything else
    (a lost answer, a timeout, Ctrl-C) may still be mined, and the intent stays for reconcile_mints."""
    with studio.db.session() as session:
        intent = session.scalar(select(MintIntent).where(MintIntent.metadata_cid == metadata_cid))
        if intent is None:
            return False
        if intent.tx_hash is None:
            return True  # refused before signing (a revert in the estimate, the fee cap, funds)
    # Raised from the receipt: the transaction was mined and failed.
    return isinstance(exc, ContractRevertError | TransactionFailedError)


def drop_intent(studio: Studio, metadata_cid: str) -> None:
    """Delete the intent for `metadata_cid`, if any: its mint can never happen (its draft can be minted
    again)."""
    with studio.db.session() as session:
        intent = session.scalar(select(MintIntent).where(MintIntent.metadata_cid == metadata_cid))
        if intent is not None:
            session.delete(intent)


def record_minted(
    studio: Studio, token_id: int, metadata_cid: str, *, tx_hash: str, block_number: int, gas_used: int | None
) -> None:
    """Turn the mint intent for `metadata_cid` into the token's rows, in one transaction. Another
    process's reconcile may have recorded it first (it found the mined token while this one awaited
    the receipt): then there is nothing left to do."""
    try:
        with studio.db.session() as session:
            intent = session.scalar(select(MintIntent).where(MintIntent.metadata_cid == metadata_cid))
            if intent is None:
                if _recorded(studio, session, token_id, metadata_cid):
                    return
                raise NotFoundError(
                    f"token {token_id} was minted with metadata {metadata_cid} but its mint intent is gone, so "
                    "the studio cannot record it: open the studio again (its reconcile records it from the chain)."
                )
            _add_token(session, intent, token_id, tx_hash=tx_hash, block_number=block_number, gas_used=gas_used)
    except IntegrityError:
        # Recorded at the same moment by another process (the token's unique key refused the second).
        with studio.db.session() as session:
            if not _recorded(studio, session, token_id, metadata_cid):
                raise


def _recorded(studio: Studio, session: Session, token_id: int, metadata_cid: str) -> bool:
    token = session.scalar(collection_query(studio.identity).where(Token.token_id == token_id))
    return token is not None and token.versions[0].metadata_cid == metadata_cid


def _add_token(
    session: Session, intent: MintIntent, token_id: int, *, tx_hash: str, block_number: int, gas_used: int | None
) -> None:
    draft = session.get(Draft, intent.draft_id)
    if draft is None:
        raise NotFoundError(
            f"draft {intent.draft_id}, which token {token_id} was minted from, is no longer in the database: restore "
            "the database from a backup to record the token with its draft."
        )
    token = Token(
        chain_id=intent.chain_id,
        contract_address=intent.contract_address,
        token_id=token_id,
        name=intent.name,
        description=intent.description,
        seed=draft.seed,
        prompt=draft.prompt,
        draft_id=draft.id,
        living=intent.living,
        rules_name=intent.rules_name,
        current_version=0,
        current_metadata_cid=intent.metadata_cid,
        current_image_cid=intent.image_cid,
    )
    token.versions.append(
        TokenVersion(
            version=0,
            metadata_cid=intent.metadata_cid,
            image_cid=intent.image_cid,
            tx_hash=tx_hash,
            block_number=block_number,
            gas_used=gas_used,
        )
    )
    session.add(token)
    session.delete(intent)
