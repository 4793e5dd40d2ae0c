"""Minting a draft as a token: validate, publish version 0, mint on chain, record.

Each step is reported through `on_step` as it happens (the Mint tab shows them). Input is checked
before anything is pinned or sent, and the token is recorded only once the chain confirmed it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from web3 import Web3

from studio.crashpoints import crash_point
from studio.owners import owner_alive
from studio.records import MintIntent, Token
from studio.services.drafts import get_draft
from studio.services.errors import InvalidInputError
from studio.services.mint_journal import certainly_not_minted, drop_intent, new_intent, record_minted
from studio.services.publishing import PublishedVersion, StepCallback, notify_step, publish_version
from studio.services.rules_files import check_living_rules
from studio.services.studio import Studio
from studio.services.tokens import collection_query

# An intent not yet broadcast whose process runs on another host is taken for abandoned after this long.
STALE_INTENT = timedelta(minutes=10)

log = logging.getLogger("studio.minting")


@dataclass(frozen=True)
class MintOutcome:
    token_id: int
    tx_hash: str
    block_number: int
    gas_used: int
    published: PublishedVersion


class AlreadyMintedError(InvalidInputError):
    """The draft already became a token; minting it again must be asked for (another_edition=True)."""


def tokens_from_draft(studio: Studio, draft_id: int) -> list[Token]:
    """The collection's tokens minted from draft `draft_id`, oldest first."""
    with studio.db.session() as session:
        query = collection_query(studio.identity).where(Token.draft_id == int(draft_id)).order_by(Token.token_id)
        return list(session.scalars(query))


def check_recipient(recipient: str, *, field: str = "Recipient") -> str:
    """The checksummed address, or an error saying what a valid one looks like (`field` names the input)."""
    text = (recipient or "").strip()
    if not Web3.is_address(text):
        raise InvalidInputError(
            f"{field} {text!r} is not an Ethereum address: paste a 0x-prefixed address of 40 hex digits."
        )
    address = Web3.to_checksum_address(text)
    if int(address, 16) == 0:
        raise InvalidInputError(f"{field} is the zero address, where funds are lost for good: use a wallet address.")
    return address


def check_royalty(studio: Studio, royalty_bps: int | None, royalty_receiver: str | None) -> tuple[int, str] | None:
    """(basis points, receiver) of a token's own royalty, or None for the collection's default.

    A custom royalty always names who is paid: the token's recipient is a buyer as often as the artist,
    so paying them by default would silently send the artist's royalties to whoever received the token.
    """
    default_bps = studio.settings.chain.royalty_bps
    if royalty_bps is not None and not 0 <= int(royalty_bps) <= 10_000:
        raise InvalidInputError(f"Royalty {royalty_bps} basis points is out of range: use 0 to 10000 (100%).")
    receiver_text = (royalty_receiver or "").strip()
    custom_bps = royalty_bps is not None and int(royalty_bps) != default_bps
    if not receiver_text:
        if royalty_bps is not None and custom_bps:
            raise InvalidInputError(
                f"A custom royalty ({int(royalty_bps) / 100:g} %) needs a royalty receiver: paste the address that "
                f"is paid royalties, or set the royalty back to the collection's {default_bps / 100:g} %."
            )
        return None
    receiver = check_recipient(receiver_text, field="Royalty receiver")
    return (int(royalty_bps) if royalty_bps is not None else default_bps), receiver


def check_attributes(attributes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    checked = []
    for index, attribute in enumerate(attributes, start=1):
        trait = str(attribute.get("trait_type", "")).strip()
        value = attribute.get("value")
        if not trait or value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidInputError(f"Attribute {index} needs both a trait type and a value: fill both or remove it.")
        entry: dict[str, Any] = {"trait_type": trait, "value": value}
        if attribute.get("display_type"):
            entry["display_type"] = attribute["display_type"]
        checked.append(entry)
    return checked


def mint_draft(
    studio: Studio,
    draft_id: int,
    *,
    name: str,
    description: str = "",
    attributes: Sequence[dict[str, Any]] = (),
    recipient: str,
    royalty_bps: int | None = None,
    royalty_receiver: str | None = None,
    living: bool = False,
    rules_name: str | None = None,
    on_step: StepCallback | None = None,
    another_edition: bool = False,
) -> MintOutcome:
    """Mint draft `draft_id` to `recipient` and record it. Nothing is recorded unless the chain confirmed.

    A draft that already became a token is refused (AlreadyMintedError, naming the token) unless
    `another_edition` says a second token of the same artwork is wanted: one click too many must not
    mint a duplicate.

    A token's own royalty (`royalty_bps` other than the collection's default, or any `royalty_receiver`)
    needs `royalty_receiver`: it is never assumed to be the recipient."""
    recipient = check_recipient(recipient)
    attributes = check_attributes(attributes)
    if not (name or "").strip():
        raise InvalidInputError("The token needs a name: type one in the Name field.")
    token_royalty = check_royalty(studio, royalty_bps, royalty_receiver)
    if living:
        if not rules_name:
            raise InvalidInputError("A living token needs a rules file: choose one, or untick 'Living'.")
        check_living_rules(studio, rules_name)
    draft = get_draft(studio, draft_id)
    if not another_edition:
        earlier = tokens_from_draft(studio, draft.id)
        if earlier:
            which = ", ".join(f"#{token.token_id} ({token.name})" for token in earlier)
            raise AlreadyMintedError(
                f"Draft #{draft.id} was already minted as token {which}; nothing was sent. To mint the same "
                "artwork again as another edition, tick 'Mint another edition' (another_edition=True)."
            )
    image_png = studio.store.cat(draft.image_cid)
    chain = studio.chain  # checked before pinning: without a started chain nothing is pinned

    published = publish_version(
        studio,
        name=name.strip(),
        description=description,
        attributes=attributes,
        image_png=image_png,
        generation_record=draft.provenance,
        version=0,
        previous_metadata_cid=None,
        on_step=on_step,
    )

    # Written before the transaction, so a stop between confirmation and recording loses no token; the
    # transaction's hash and nonce are added before it leaves, so a reconcile can tell its fate.
    with studio.db.session() as session:
        session.add(new_intent(chain, draft.id, published, name.strip(), description, recipient, living, rules_name))

    def record_broadcast(tx_hash: str, nonce: int) -> None:
        with studio.db.session() as session:
            intent = session.scalars(select(MintIntent).where(MintIntent.metadata_cid == published.metadata_cid)).one()
            intent.tx_hash, intent.nonce = tx_hash, nonce

    notify_step(on_step, "transaction", to=recipient, metadata_cid=published.metadata_cid)
    try:
        minted = chain.client.mint(recipient, published.metadata_cid, before_broadcast=record_broadcast)
    except BaseException as exc:
        # Only what certainly minted nothing drops the intent: nothing broadcast, or a failed receipt.
        # Anything else (a lost answer, a timeout, Ctrl-C) may still be mined: the intent stays and
        # reconcile_mints records the token, or drops the intent once its nonce went to another transaction.
        if certainly_not_minted(studio, published.metadata_cid, exc):
            drop_intent(studio, published.metadata_cid)
        raise
    crash_point("mint:after_confirmation")
    notify_step(
        on_step,
        "confirmation",
        token_id=minted.token_id,
        tx_hash=minted.tx_hash,
        block_number=minted.block_number,
        gas_used=minted.gas_used,
    )
    record_minted(
        studio,
        minted.token_id,
        published.metadata_cid,
        tx_hash=minted.tx_hash,
        block_number=minted.block_number,
        gas_used=minted.gas_used,
    )
    if token_royalty is not None:
        bps, receiver = token_royalty
        chain.client.set_token_royalty(minted.token_id, receiver, bps)
        notify_step(on_step, "royalty", token_id=minted.token_id, royalty_bps=bps, receiver=receiver)
    return MintOutcome(
        token_id=minted.token_id,
        tx_hash=minted.tx_hash,
        block_number=minted.block_number,
        gas_used=minted.gas_used,
        published=published,
    )


def reconcile_mints(studio: Studio) -> list[int]:
    """Record tokens the chain minted but the studio did not get to record (it stopped in between).

    Each open mint intent is looked up on chain by its metadata CID among the tokens this studio has
    not recorded; found, it is recorded as a normal mint. One not found is dropped only when nothing
    can mint it any more (see `_intent_fate`): its transaction failed, another transaction took its
    nonce, or it was never broadcast and its process is gone. One still in flight, maybe in another
    process, stays. (A dropped intent's draft is still there to mint again.) Returns the token ids
    recorded.
    """
    chain = studio.chain
    with studio.db.session() as session:
        intents = list(
            session.scalars(
                select(MintIntent).where(
                    MintIntent.chain_id == chain.chain_id, MintIntent.contract_address == chain.contract_address
                )
            )
        )
        known = set(session.scalars(collection_query(chain.identity, Token.token_id)))
    if not intents:
        return []
    # Each intent's fate is read BEFORE the chain is searched: an intent seen in flight here and
    # mined during the search is then found by the search, never dropped.
    fates = {intent.metadata_cid: _intent_fate(studio, intent) for intent in intents}
    wanted = {intent.metadata_cid: intent for intent in intents}
    recorded = []
    for token_id in range(chain.client.total_supply(), 0, -1):
        if not wanted:
            break
        if token_id in known:
            continue
        history = chain.client.history(token_id)
        if history and history[0].metadata_cid in wanted:
            mint = history[0]
            wanted.pop(mint.metadata_cid)
            record_minted(
                studio, token_id, mint.metadata_cid, tx_hash=mint.tx_hash, block_number=mint.block_number, gas_used=None
            )
            recorded.append(token_id)
    for metadata_cid in wanted:
        fate = fates[metadata_cid]
        if fate is None:
            log.info("mint intent for %s is still in flight: kept", metadata_cid)
            continue
        log.warning("dropped the mint intent for %s: %s", metadata_cid, fate)
        drop_intent(studio, metadata_cid)
    return recorded


def _intent_fate(studio: Studio, intent: MintIntent) -> str | None:
    """Why the intent's mint can never happen any more, or None while it still can."""
    chain = studio.chain
    if intent.tx_hash is None:
        if intent.owner is None:
            return "recorded before transactions were tracked, and not on chain"
        if owner_alive(intent.owner, intent.created_at, STALE_INTENT):
            return None  # its process is about to sign and send it
        return f"its process {intent.owner} stopped before sending the transaction"
    receipt = chain.signer.receipt_or_none(intent.tx_hash)
    if receipt is not None:
        return f"its transaction {intent.tx_hash} failed" if receipt["status"] != 1 else None
    sender = intent.sender or chain.address
    if intent.nonce is not None and chain.signer.mined_nonce(sender) > intent.nonce:
        return f"its nonce {intent.nonce} was taken by another transaction; {intent.tx_hash} can never be mined"
    return None  # sent and not mined yet
