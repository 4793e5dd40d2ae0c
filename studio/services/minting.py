"""Minting a draft as a token: validate, publish version 0, mint on chain, record.

Each step is reported through `on_step` as it happens (the Mint tab shows them). Input is checked
before anything is pinned or sent, and the token is recorded only once the chain confirmed it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from studio.records import Token, TokenVersion
from studio.services.drafts import get_draft
from studio.services.errors import InvalidInputError, NotFoundError
from studio.services.publishing import PublishedVersion, StepCallback, _notify, publish_version
from studio.services.studio import Studio

RULES_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class MintOutcome:
    token_id: int
    tx_hash: str
    block_number: int
    gas_used: int
    published: PublishedVersion


def check_recipient(recipient: str) -> str:
    """The checksummed address, or an error saying what a valid one looks like."""
    text = (recipient or "").strip()
    if not Web3.is_address(text):
        raise InvalidInputError(
            f"Recipient {text!r} is not an Ethereum address: paste a 0x-prefixed address of 40 hex digits."
        )
    return Web3.to_checksum_address(text)


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


def rules_path(studio: Studio, rules_name: str):
    if not RULES_NAME.match(rules_name or ""):
        raise InvalidInputError(
            f"Rules name {rules_name!r} is not valid: use letters, digits, '-', '_' or '.' (the file's name "
            "without .toml)."
        )
    path = studio.settings.rules_dir / f"{rules_name}.toml"
    if not path.is_file():
        raise NotFoundError(
            f"No rules file {path}: write it (see README, Evolution) or choose an existing one in the Evolve tab."
        )
    return path


def mint_draft(
    studio: Studio,
    draft_id: int,
    *,
    name: str,
    description: str = "",
    attributes: Sequence[dict[str, Any]] = (),
    recipient: str,
    royalty_bps: int | None = None,
    living: bool = False,
    rules_name: str | None = None,
    on_step: StepCallback | None = None,
) -> MintOutcome:
    """Mint draft `draft_id` to `recipient` and record it. Nothing is recorded unless the chain confirmed."""
    recipient = check_recipient(recipient)
    attributes = check_attributes(attributes)
    if not (name or "").strip():
        raise InvalidInputError("The token needs a name: type one in the Name field.")
    if royalty_bps is not None and not 0 <= int(royalty_bps) <= 10_000:
        raise InvalidInputError(f"Royalty {royalty_bps} basis points is out of range: use 0 to 10000 (100%).")
    if living:
        if not rules_name:
            raise InvalidInputError("A living token needs a rules file: choose one, or untick 'Living'.")
        _validate_rules(studio, rules_name)
    draft = get_draft(studio, draft_id)
    image_png = studio.store.cat(draft.image_cid)
    chain = studio.chain  # started before pinning, so a chain that cannot start costs no pins

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

    _notify(on_step, "transaction", to=recipient, metadata_cid=published.metadata_cid)
    minted = chain.client.mint(recipient, published.metadata_cid)
    _notify(
        on_step,
        "confirmation",
        token_id=minted.token_id,
        tx_hash=minted.tx_hash,
        block_number=minted.block_number,
        gas_used=minted.gas_used,
    )
    if royalty_bps is not None and int(royalty_bps) != studio.settings.chain.royalty_bps:
        chain.client.set_token_royalty(minted.token_id, recipient, int(royalty_bps))
        _notify(on_step, "royalty", token_id=minted.token_id, royalty_bps=int(royalty_bps))

    with studio.db.session() as session:
        token = Token(
            chain_id=chain.chain_id,
            contract_address=chain.contract_address,
            token_id=minted.token_id,
            name=name.strip(),
            description=description,
            seed=draft.seed,
            prompt=draft.prompt,
            draft_id=draft.id,
            living=bool(living),
            rules_name=rules_name if living else None,
            current_version=0,
            current_metadata_cid=published.metadata_cid,
            current_image_cid=published.image_cid,
        )
        token.versions.append(
            TokenVersion(
                version=0,
                metadata_cid=published.metadata_cid,
                image_cid=published.image_cid,
                tx_hash=minted.tx_hash,
                block_number=minted.block_number,
                gas_used=minted.gas_used,
            )
        )
        session.add(token)
    return MintOutcome(
        token_id=minted.token_id,
        tx_hash=minted.tx_hash,
        block_number=minted.block_number,
        gas_used=minted.gas_used,
        published=published,
    )


def _validate_rules(studio: Studio, rules_name: str) -> None:
    # Rules parsing is pure and imports no service, so this does not turn the layering around.
    from evolve.rules import load_rules

    load_rules(rules_path(studio, rules_name), default_timezone=studio.settings.evolve.timezone)
