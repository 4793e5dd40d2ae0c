"""Minting many drafts as tokens in as few transactions as fit: a drop or a collection.

Each draft becomes a token exactly as `minting.mint_draft` makes one (the same published version 0: image
and metadata pinned, provenance, the same rows), but the chain sees one transaction per part, each part
as large as fits under the per-transaction gas budget (`STUDIO_CHAIN__BATCH_GAS_BUDGET`) and the block gas
limit. Two ways to mint a part, by what the tokens are for:

- static tokens (no rules): `mintDrop`, the drop way. The part's metadata files are pinned once more as
  one folder (`<tokenId>.json` each) and the contract records only the folder: about 10,000 gas a token
  instead of 33,000 (bench/gas.py). A token reads `ipfs://<folder>/<tokenId>.json` until it is evolved,
  if ever; its first evolution then stores its own digest (about 17,000 gas more than a later one).
- living tokens (a rules file): `mintBatch`, each token's digest stored at mint, so that every
  evolution, the first included, costs what evolving any token costs.

The journal is the single mint's (`mint_journal`): one mint intent per draft, written before anything is
sent, with its part's transaction hash and nonce added before that part leaves; each part is
recorded as soon as it is mined. A stop anywhere loses nothing and mints nothing twice:
`minting.reconcile_mints` (run when the studio starts its chain) records every token the chain has for an
open intent, and drops intents whose part can never be mined.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from contracts.client import BatchMintError, MintBatchResult
from studio.crashpoints import crash_point
from studio.records import MintIntent
from studio.services.drafts import get_draft
from studio.services.errors import InvalidInputError
from studio.services.mint_journal import certainly_not_minted, drop_intent, new_intent, record_minted
from studio.services.minting import check_attributes, check_recipient
from studio.services.publishing import (
    PublishedVersion,
    StepCallback,
    notify_step,
    pin_metadata_folder,
    publish_version,
)
from studio.services.rules_files import check_living_rules
from studio.services.studio import Studio

log = logging.getLogger("studio.batch_minting")

# Beyond this many drafts per call, split the list: every draft is published (pinned) before the first
# transaction, and a call this large already takes several transactions.
MAX_DRAFTS_PER_CALL = 10_000


@dataclass(frozen=True)
class DraftToMint:
    """One draft of a batch and what its token's metadata says about it."""

    draft_id: int
    name: str
    description: str = ""
    attributes: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


@dataclass(frozen=True)
class MintedDraft:
    """A draft recorded as a token."""

    draft_id: int
    token_id: int
    metadata_cid: str
    image_cid: str
    tx_hash: str
    block_number: int


@dataclass(frozen=True)
class BatchMintOutcome:
    """Every token minted by one `mint_drafts` call, in the order of its drafts, and its transactions."""

    tokens: list[MintedDraft]
    tx_hashes: list[str]
    gas_used: int


def mint_drafts(
    studio: Studio,
    drafts: Sequence[DraftToMint],
    *,
    recipient: str,
    rules_name: str | None = None,
    gas_budget: int | None = None,
    on_step: StepCallback | None = None,
) -> BatchMintOutcome:
    """Mint every draft in `drafts` to `recipient` (consecutive token ids, in order) and record them.

    `rules_name` makes the tokens living, evolved by that rules file (validated before anything is
    pinned); None mints static tokens. `gas_budget` caps each transaction (default: the chain settings'
    batch_gas_budget). Tokens get the collection's default royalty.

    Everything is checked, then every draft's version 0 is published (pinned), then the tokens are minted
    in parts; `on_step` hears the publishing steps of each draft and, per part, "transaction" and
    "confirmation". If a part fails, the parts before it are recorded and the error propagates: the drafts
    of parts that certainly minted nothing can be minted again, the others are reconciled from the chain.
    """
    items = _check(studio, drafts, rules_name)
    recipient = check_recipient(recipient)
    sources = [get_draft(studio, item.draft_id) for item in items]  # NotFoundError before any pin
    chain = studio.chain  # started before pinning, so a chain that cannot start costs no pins
    budget = gas_budget if gas_budget is not None else studio.settings.chain.batch_gas_budget
    if budget <= 0:
        raise InvalidInputError(f"gas budget {budget} is not a gas amount: give a positive number of gas units.")

    published: list[PublishedVersion] = []
    for item, draft in zip(items, sources, strict=True):
        published.append(
            publish_version(
                studio,
                name=item.name,
                description=item.description,
                attributes=[dict(a) for a in item.attributes],
                image_png=studio.store.cat(draft.image_cid),
                generation_record=draft.provenance,
                version=0,
                previous_metadata_cid=None,
                on_step=on_step,
            )
        )
    cids = [p.metadata_cid for p in published]
    if len(set(cids)) != len(cids):
        duplicate = next(cid for cid in cids if cids.count(cid) > 1)
        raise InvalidInputError(
            f"two drafts of the batch give the same metadata {duplicate} (same image, name and description): "
            "give each token its own name or leave the copy out."
        )

    # All intents before the first transaction, in one database transaction: a stop between a part's
    # confirmation and its recording loses no token.
    living = rules_name is not None
    with studio.db.session() as session:
        for item, draft, version in zip(items, sources, published, strict=True):
            intent = new_intent(chain, draft.id, version, item.name, item.description, recipient, living, rules_name)
            session.add(intent)

    by_cid = {p.metadata_cid: (item, p) for item, p in zip(items, published, strict=True)}
    minted: list[MintedDraft] = []

    def record_broadcast(part: Sequence[str], tx_hash: str, nonce: int) -> None:
        with studio.db.session() as session:
            for intent in session.scalars(select(MintIntent).where(MintIntent.metadata_cid.in_(list(part)))):
                intent.tx_hash, intent.nonce = tx_hash, nonce
        notify_step(on_step, "transaction", to=recipient, tokens=len(part), tx_hash=tx_hash)

    def record_part(result: MintBatchResult) -> None:
        crash_point("batch_mint:after_confirmation")
        notify_step(
            on_step,
            "confirmation",
            token_ids=result.token_ids,
            tx_hash=result.tx_hash,
            block_number=result.block_number,
            gas_used=result.gas_used,
        )
        share = result.gas_used // len(result.token_ids)
        for token_id, cid in zip(result.token_ids, result.metadata_cids, strict=True):
            record_minted(
                studio, token_id, cid, tx_hash=result.tx_hash, block_number=result.block_number, gas_used=share
            )
            item, version = by_cid[cid]
            minted.append(
                MintedDraft(item.draft_id, token_id, cid, version.image_cid, result.tx_hash, result.block_number)
            )
        crash_point("batch_mint:after_record")

    def pin_folder(first_token_id: int, part: Sequence[str]) -> str:
        notify_step(on_step, "metadata folder", first_token_id=first_token_id, tokens=len(part))
        return pin_metadata_folder(studio, {first_token_id + i: cid for i, cid in enumerate(part)})

    try:
        if living:
            results = chain.client.mint_batch(
                recipient, cids, gas_budget=budget, before_broadcast=record_broadcast, on_mined=record_part
            )
        else:
            results = chain.client.mint_drop(
                recipient,
                cids,
                pin_folder=pin_folder,
                gas_budget=budget,
                before_broadcast=record_broadcast,
                on_mined=record_part,
            )
    except BaseException as exc:
        # The parts mined before the failure are recorded (record_part ran for each). Of the rest, only
        # what certainly minted nothing drops its intent (never broadcast, or its part failed on chain);
        # anything else may still be mined and stays for reconcile_mints.
        cause = exc.cause if isinstance(exc, BatchMintError) else exc
        done = {m.metadata_cid for m in minted}
        for cid in cids:
            if cid not in done and certainly_not_minted(studio, cid, cause):
                drop_intent(studio, cid)
        raise
    log.info("minted %d drafts in %d transaction(s)", len(minted), len(results))
    return BatchMintOutcome(
        tokens=minted, tx_hashes=[r.tx_hash for r in results], gas_used=sum(r.gas_used for r in results)
    )


def _check(studio: Studio, drafts: Sequence[DraftToMint], rules_name: str | None) -> list[DraftToMint]:
    """The drafts with trimmed names and checked attributes; every problem is found before any pin."""
    if isinstance(drafts, DraftToMint) or not drafts:
        raise InvalidInputError("No drafts to mint: pass a list of DraftToMint (draft id and token name).")
    if len(drafts) > MAX_DRAFTS_PER_CALL:
        raise InvalidInputError(
            f"{len(drafts)} drafts in one call is more than {MAX_DRAFTS_PER_CALL}: mint them in several calls."
        )
    seen: set[int] = set()
    checked: list[DraftToMint] = []
    for position, item in enumerate(drafts, start=1):
        if not isinstance(item, DraftToMint):
            raise InvalidInputError(f"Item {position} is {type(item).__name__}, not a DraftToMint.")
        if item.draft_id in seen:
            raise InvalidInputError(f"Draft {item.draft_id} is listed twice: each draft becomes one token.")
        seen.add(item.draft_id)
        name = (item.name or "").strip()
        if not name:
            raise InvalidInputError(f"Draft {item.draft_id} needs a token name: give each DraftToMint a name.")
        checked.append(
            DraftToMint(
                draft_id=int(item.draft_id),
                name=name,
                description=item.description or "",
                attributes=check_attributes([dict(a) for a in item.attributes]),
            )
        )
    if rules_name is not None:
        check_living_rules(studio, rules_name)
    return checked
