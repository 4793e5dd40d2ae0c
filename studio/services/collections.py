"""Generative collections: a spec's editions generated as drafts, reviewed, and minted as one drop.

The editions of a spec are drawn once (studio/collections/spec.py) and written to the database before
anything is generated; each edition becomes a draft through the same draft service the Create tab uses,
and its row names the draft as soon as it exists. So a stopped run (Stop, Ctrl-C, a crash) keeps every
edition it made, and the next run of the same spec generates only those still missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from metadata.collection import build_collection_metadata, validate_collection_metadata
from metadata.token import trait_attributes
from studio.collections.spec import (
    CollectionSpec,
    CollectionSpecError,
    RarityRow,
    draw_editions,
    edition_seed,
    parse_spec,
    rarity_table,
)
from studio.generation import GenerationCancelled
from studio.records import CollectionEdition, Draft, GenerativeCollection, MintIntent, Token
from studio.services import drafts
from studio.services.batch_minting import DraftToMint, mint_drafts
from studio.services.errors import InvalidInputError, NotFoundError, StudioError
from studio.services.minting import check_recipient
from studio.services.publishing import StepCallback, pin_content
from studio.services.studio import Studio
from studio.services.tokens import collection_query
from studio.services.trust_anchor import pin_trust_anchor

log = logging.getLogger("studio.collections")

# One run per collection per process: the UI's Generate and Regenerate buttons cannot overlap.
_RUN_LOCKS: dict[str, threading.Lock] = {}
_RUN_LOCKS_GUARD = threading.Lock()


class CollectionBusyError(StudioError):
    """Another generation or mint of the same collection is running in this process."""


@dataclass(frozen=True)
class Progress:
    """Where a run stands: `done` of `total` editions (of the whole collection), the edition just made
    (None at the start), seconds so far and the estimated seconds left (None before the first image)."""

    done: int
    total: int
    edition: int | None
    elapsed_s: float
    eta_s: float | None
    message: str = ""


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class EditionView:
    number: int
    traits: dict[str, str]
    seed: int
    draft_id: int | None
    image_cid: str | None
    excluded: bool
    token_id: int | None
    prompt: str


@dataclass(frozen=True)
class CollectionView:
    """A collection as the UI and CLI show it."""

    name: str
    spec: CollectionSpec
    spec_text: str
    editions: list[EditionView]
    metadata_cid: str | None

    @property
    def generated(self) -> int:
        return sum(1 for e in self.editions if e.draft_id is not None)

    @property
    def included(self) -> list[EditionView]:
        return [e for e in self.editions if not e.excluded]

    @property
    def minted(self) -> int:
        return sum(1 for e in self.editions if e.token_id is not None)


@dataclass(frozen=True)
class RunResult:
    """What a generation run did: editions made now, the collection's total made, stopped early or not."""

    name: str
    made: list[int]
    generated: int
    total: int
    stopped: bool
    elapsed_s: float


@dataclass(frozen=True)
class MintResult:
    name: str
    metadata_cid: str
    minted: dict[int, int]  # edition number -> token id, minted by this run
    already_minted: dict[int, int] = field(default_factory=dict)
    gas_used: int = 0


# --- opening a spec -------------------------------------------------------------------------------


def open_collection(studio: Studio, spec_text: str, *, source: str = "spec") -> CollectionView:
    """Record the spec's collection and its drawn editions (nothing generated yet), or find it again.

    The same name with the same spec is the same collection (a resume). A different spec under a
    name whose editions were generated is refused: its editions were drawn from the old spec."""
    spec = parse_spec(spec_text, source=source)
    with studio.db.session() as session:
        row = session.scalar(select(GenerativeCollection).where(GenerativeCollection.name == spec.name))
        if row is not None and row.spec_text != spec_text:
            made = sum(1 for e in row.editions if e.draft_id is not None)
            if made:
                raise InvalidInputError(
                    f"Collection '{spec.name}' already exists with another spec and {made} generated editions: "
                    "give this spec a new name, or keep the old spec to resume it."
                )
            session.delete(row)
            session.flush()
            row = None
        if row is None:
            row = GenerativeCollection(name=spec.name, spec_text=spec_text)
            for edition in draw_editions(spec):
                row.editions.append(CollectionEdition(number=edition.number, traits=edition.traits, seed=edition.seed))
            session.add(row)
    return get_collection(studio, spec.name)


def list_collections(studio: Studio) -> list[str]:
    with studio.db.session() as session:
        return list(session.scalars(select(GenerativeCollection.name).order_by(GenerativeCollection.id.desc())))


def get_collection(studio: Studio, name: str) -> CollectionView:
    with studio.db.session() as session:
        row = session.scalar(select(GenerativeCollection).where(GenerativeCollection.name == name))
        if row is None:
            raise NotFoundError(
                f"No collection named '{name}': generate it from its spec first (python -m studio collection "
                "generate SPEC.toml, or the Collections tab)."
            )
        spec = parse_spec(row.spec_text, source=f"collection {name}")
        draft_ids = [e.draft_id for e in row.editions if e.draft_id is not None]
        images = dict(session.execute(select(Draft.id, Draft.image_cid).where(Draft.id.in_(draft_ids))).all())
        editions = [
            EditionView(
                number=e.number,
                traits=dict(e.traits),
                seed=e.seed,
                draft_id=e.draft_id,
                image_cid=images.get(e.draft_id) if e.draft_id is not None else None,
                excluded=e.excluded,
                token_id=e.token_id,
                prompt=spec.prompt.format_map(e.traits),
            )
            for e in row.editions
        ]
        return CollectionView(
            name=row.name, spec=spec, spec_text=row.spec_text, editions=editions, metadata_cid=row.metadata_cid
        )


# --- generating -----------------------------------------------------------------------------------


def generate_collection(
    studio: Studio,
    spec_text: str,
    *,
    source: str = "spec",
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Generate every edition of the spec still missing, in order; `cancel` stops the run after (or,
    through the engine, during) the current image, keeping everything made. Run it again to resume."""
    view = open_collection(studio, spec_text, source=source)
    return resume_collection(studio, view.name, on_progress=on_progress, cancel=cancel)


def resume_collection(
    studio: Studio,
    name: str,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RunResult:
    """Generate the editions of an opened collection that have no draft yet (excluded ones are skipped)."""
    with _run_lock(name):
        view = get_collection(studio, name)
        todo = [e for e in view.editions if e.draft_id is None and not e.excluded]
        total = len(view.included)
        done = total - len(todo)
        started = time.monotonic()
        made: list[int] = []
        _notify(on_progress, Progress(done, total, None, 0.0, None, "starting"))
        stopped = False
        failure: BaseException | None = None
        # As many editions in flight as the generator takes at once (1 in-process; one per Ray actor),
        # each recorded by this process as soon as it is back.
        waiting = iter(todo)
        with ThreadPoolExecutor(max_workers=studio.generator.capacity, thread_name_prefix="collection") as pool:
            running: dict[Future[Draft], EditionView] = {}

            def submit_next() -> None:
                edition = next(waiting, None)
                if edition is not None:
                    future = pool.submit(
                        _generate_edition, studio, view.spec, edition.number, edition.traits, edition.seed, cancel
                    )
                    running[future] = edition

            for _ in range(studio.generator.capacity):
                submit_next()
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    edition = running.pop(future)
                    try:
                        draft = future.result()
                    except GenerationCancelled:
                        stopped = True
                        continue
                    except Exception as exc:
                        failure = failure or exc
                        continue
                    _attach_draft(studio, name, edition.number, draft.id, seed=edition.seed, regenerated=False)
                    made.append(edition.number)
                    done += 1
                    elapsed = time.monotonic() - started
                    eta = elapsed / len(made) * (total - done)
                    _notify(
                        on_progress, Progress(done, total, edition.number, elapsed, eta, f"edition {edition.number}")
                    )
                    if cancel is not None and cancel.is_set():
                        stopped = True
                    if not stopped and failure is None:
                        submit_next()
        if failure is not None:
            raise failure
        return RunResult(
            name=name,
            made=made,
            generated=get_collection(studio, name).generated,
            total=len(view.editions),
            stopped=stopped,
            elapsed_s=time.monotonic() - started,
        )


def _generate_edition(
    studio: Studio,
    spec: CollectionSpec,
    number: int,
    traits: dict[str, str],
    seed: int,
    cancel: threading.Event | None,
) -> Draft:
    result = drafts.create_draft(
        studio,
        prompt=spec.prompt.format_map(traits),
        negative_prompt=spec.negative_prompt,
        seed=seed,
        steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        width=spec.width,
        height=spec.height,
        preset=spec.preset,
        cancel=cancel,
    )
    log.info("collection %s: edition %s is draft %s", spec.name, number, result.draft.id)
    return result.draft


def _attach_draft(studio: Studio, name: str, number: int, draft_id: int, *, seed: int, regenerated: bool) -> None:
    with studio.db.session() as session:
        edition = _edition_row(session, name, number)
        if edition.token_id is not None:
            raise InvalidInputError(f"Edition {number} of '{name}' is minted as token {edition.token_id}: it is final.")
        edition.draft_id = draft_id
        edition.seed = seed
        if regenerated:
            edition.regenerations += 1


def regenerate_edition(studio: Studio, name: str, number: int) -> EditionView:
    """Generate edition `number` again with a new seed (derived from the base seed, the edition and how
    many times it was regenerated, so it too can be retraced); its traits stay."""
    with _run_lock(name):
        view = get_collection(studio, name)
        with studio.db.session() as session:
            row = _edition_row(session, name, number)
            if row.token_id is not None:
                raise InvalidInputError(
                    f"Edition {number} of '{name}' is minted as token {row.token_id}: it can no longer change."
                )
            seed = edition_seed(view.spec.base_seed, number, row.regenerations + 1)
            traits = dict(row.traits)
        draft = _generate_edition(studio, view.spec, number, traits, seed, None)
        _attach_draft(studio, name, number, draft.id, seed=seed, regenerated=True)
    return _edition_view(studio, name, number)


def set_excluded(studio: Studio, name: str, number: int, excluded: bool = True) -> EditionView:
    """Leave edition `number` out of the drop (or take it back in). Its traits stay drawn, so no other
    edition changes."""
    with studio.db.session() as session:
        row = _edition_row(session, name, number)
        if row.token_id is not None and excluded:
            raise InvalidInputError(f"Edition {number} of '{name}' is already minted as token {row.token_id}.")
        row.excluded = bool(excluded)
    return _edition_view(studio, name, number)


def rarity(studio: Studio, name: str) -> list[RarityRow]:
    """Each trait value's count and share among the editions kept (excluded ones left out)."""
    view = get_collection(studio, name)
    return rarity_table(view.spec, [e.traits for e in view.included])


def _edition_view(studio: Studio, name: str, number: int) -> EditionView:
    return next(e for e in get_collection(studio, name).editions if e.number == number)


def _edition_row(session: Session, name: str, number: int) -> CollectionEdition:
    row: CollectionEdition | None = session.scalar(
        select(CollectionEdition)
        .join(GenerativeCollection)
        .where(GenerativeCollection.name == name, CollectionEdition.number == int(number))
    )
    if row is None:
        raise NotFoundError(f"Collection '{name}' has no edition {number}: editions are numbered from 1.")
    return row


# --- minting --------------------------------------------------------------------------------------


def publish_collection_metadata(studio: Studio, name: str) -> str:
    """Pin the collection's ERC-7572 metadata (name, description, first kept edition as its image, the
    contract's royalty) and point the contract's `contractURI` at it; return its CID."""
    view = get_collection(studio, name)
    first_cid = next((e.image_cid for e in view.included if e.image_cid is not None), None)
    if first_cid is None:
        raise InvalidInputError(f"Collection '{name}' has no generated edition to show: generate it first.")
    chain = studio.chain
    image_cid = pin_content(studio, studio.store.cat(first_cid), name=f"{first_cid}.png", content_type="image/png")
    royalty = studio.settings.chain.royalty_bps
    document = build_collection_metadata(
        name=view.spec.display_name,
        description=view.spec.description,
        image_cid=image_cid,
        seller_fee_basis_points=royalty,
        fee_recipient=chain.address if royalty else None,
        symbol=studio.settings.chain.collection_symbol,
        credentials_ca_cid=pin_trust_anchor(studio),  # the collection's images are checked against it
    )
    data = validate_collection_metadata(document)
    metadata_cid = pin_content(studio, data, name=f"{name}-collection.json", content_type="application/json")
    uri = f"ipfs://{metadata_cid}"
    if chain.client.contract_uri() != uri:
        chain.client.set_contract_uri(uri)
    with studio.db.session() as session:
        session.execute(
            update(GenerativeCollection).where(GenerativeCollection.name == name).values(metadata_cid=metadata_cid)
        )
    return metadata_cid


# Editions per batch-mint call: progress and Stop come between calls (each call is itself as few
# transactions as fit the gas budget; 100 editions of 33k gas each fit one transaction).
MINT_PART = 100


def mint_collection(
    studio: Studio,
    name: str,
    *,
    recipient: str | None = None,
    living: bool = False,
    rules_name: str | None = None,
    on_progress: ProgressCallback | None = None,
    on_step: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> MintResult:
    """Mint every kept edition of the collection not minted yet, to `recipient` (default: the studio's
    own account), after publishing the collection metadata. Each edition is a token named
    "<title> #<number>" with its traits as attributes. A stopped run mints, when run again, only what
    is left; an edition whose mint may still be in flight (an open mint intent) is not sent again.

    Minted with batch mint (studio.services.batch_minting): consecutive token ids, as few
    transactions as fit the gas budget, each journaled so that a stop loses nothing."""
    with _run_lock(name):
        view = get_collection(studio, name)
        missing = [e.number for e in view.included if e.draft_id is None]
        if missing:
            raise InvalidInputError(
                f"Collection '{name}' has {len(missing)} editions not generated yet (first: {missing[0]}): resume "
                "the generation, or exclude them, before minting."
            )
        if not view.included:
            raise InvalidInputError(f"Every edition of '{name}' is excluded: include at least one to mint.")
        if living and not rules_name:
            raise InvalidInputError(
                "A living collection needs a rules file: name one (--living RULES, or pick it in the tab)."
            )
        to = check_recipient(recipient) if recipient else studio.chain.address
        _adopt_recorded_tokens(studio, name)
        view = get_collection(studio, name)
        metadata_cid = publish_collection_metadata(studio, name)
        already = {e.number: e.token_id for e in view.included if e.token_id is not None}
        todo = [e for e in view.included if e.token_id is None]
        pending = _draft_ids_in_flight(studio)
        total = len(view.included)
        done = len(already)
        started = time.monotonic()
        minted: dict[int, int] = {}
        gas = 0
        types = {trait: view.spec.trait_type(trait) for trait in view.spec.traits}
        _notify(on_progress, Progress(done, total, None, 0.0, None, "minting"))
        # Editions go in parts of MINT_PART: each part is minted in as few mintBatch transactions as fit
        # the gas budget (batch_minting.mint_drafts, journaled), with progress and Stop between parts.
        for start in range(0, len(todo), MINT_PART):
            if cancel is not None and cancel.is_set():
                break
            part = todo[start : start + MINT_PART]
            for edition in part:
                if edition.draft_id in pending:
                    raise InvalidInputError(
                        f"Edition {edition.number}'s mint may still be in flight (an open mint intent): open the "
                        "studio again later (its reconcile records it), then mint the rest."
                    )
            items = [
                DraftToMint(
                    draft_id=int(edition.draft_id or 0),  # every kept edition is generated: checked above
                    name=f"{view.spec.display_name} #{edition.number}",
                    description=view.spec.description,
                    attributes=[a.to_json() for a in trait_attributes(edition.traits, types)],
                )
                for edition in part
            ]
            try:
                outcome = mint_drafts(
                    studio, items, recipient=to, rules_name=rules_name if living else None, on_step=on_step
                )
            finally:
                _adopt_recorded_tokens(studio, name)  # what a part that failed midway did mint is kept
            token_of = {token.draft_id: token.token_id for token in outcome.tokens}
            for edition in part:
                minted[edition.number] = token_of[int(edition.draft_id or 0)]
            gas += outcome.gas_used
            done += len(part)
            elapsed = time.monotonic() - started
            eta = elapsed / max(1, len(minted)) * (total - done)
            last = part[-1]
            _notify(on_progress, Progress(done, total, last.number, elapsed, eta, f"token {minted[last.number]}"))
        return MintResult(name=name, metadata_cid=metadata_cid, minted=minted, already_minted=already, gas_used=gas)


def _adopt_recorded_tokens(studio: Studio, name: str) -> None:
    """An edition minted by a run that stopped before noting it (its token was recorded by the mint
    service or its reconcile) gets its token id now, so it is never minted again."""
    with studio.db.session() as session:
        rows = session.scalars(
            select(CollectionEdition)
            .join(GenerativeCollection)
            .where(
                GenerativeCollection.name == name,
                CollectionEdition.token_id.is_(None),
                CollectionEdition.draft_id.is_not(None),
            )
        ).all()
        for row in rows:
            token_id = session.scalar(
                collection_query(studio.identity, Token.token_id).where(Token.draft_id == row.draft_id)
            )
            if token_id is not None:
                row.token_id = token_id


def _draft_ids_in_flight(studio: Studio) -> set[int]:
    with studio.db.session() as session:
        return set(session.scalars(select(MintIntent.draft_id)))


# --- helpers --------------------------------------------------------------------------------------


def _run_lock(name: str) -> _HeldLock:
    with _RUN_LOCKS_GUARD:
        lock = _RUN_LOCKS.setdefault(name, threading.Lock())
    return _HeldLock(lock, name)


class _HeldLock:
    def __init__(self, lock: threading.Lock, name: str) -> None:
        self._lock = lock
        self._name = name

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            raise CollectionBusyError(
                f"Collection '{self._name}' is already being generated or minted: wait for that run to finish, "
                "or stop it first."
            )

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


def _notify(callback: ProgressCallback | None, progress: Progress) -> None:
    if callback is not None:
        callback(progress)


__all__ = [
    "CollectionBusyError",
    "CollectionSpecError",
    "CollectionView",
    "EditionView",
    "MintResult",
    "Progress",
    "RarityRow",
    "RunResult",
    "generate_collection",
    "get_collection",
    "list_collections",
    "mint_collection",
    "open_collection",
    "publish_collection_metadata",
    "rarity",
    "regenerate_edition",
    "resume_collection",
    "set_excluded",
]
