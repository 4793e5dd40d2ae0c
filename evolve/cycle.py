"""One evolution cycle of one collection, readable top to bottom:

    0. take over: roll forward whatever an interrupted cycle left in the journal (reconcile with the chain)
    1. snapshot every feed the collection uses and pin the snapshot
    2. decide each living, unfrozen token's next state (pure evaluation)
    3. regenerate changed tokens by img2img from their current image; pin image and metadata
    4. update the chain in batches within the cycle's gas budget and the max fee cap
    5. record everything (token versions, the cycle's report)

Crash safety comes from the journal (evolve/journal.py): each step is committed before the side effect
it announces, and a token's version is recorded in the same database transaction that closes its
journal row. Before anything is sent again, the chain is asked what it already has.

`STUDIO_CRASH_AT=evolve:<point>` makes the process SIGKILL itself at that point (the kill-and-restart
test uses it; see CRASH_POINTS and studio/crashpoints.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts.errors import (
    ChainError,
    FeeCapExceededError,
    LocalChainBusyError,
    RPCUnavailableError,
    TokenFrozenError,
    VersionMismatchError,
)
from contracts.urls import redact_urls
from evolve.errors import CycleAborted, CycleBusy, FeedError
from evolve.evaluation import Decision, TokenInput, evaluate
from evolve.feeds import FetchPolicy, build_feeds
from evolve.feeds.base import FeedValue, error_json, iso
from evolve.journal import PINNED, PLANNED, RECORDED, SENDING, SUPERSEDED, Journal, OpenStep
from evolve.rules import Rules, load_collection
from metadata.errors import ContentError
from studio.crashpoints import crash_point as studio_crash_point
from studio.records import Token
from studio.services.publishing import pin_content, publish_version
from studio.services.studio import Studio
from studio.services.tokens import collection_query, record_version

log = logging.getLogger("evolve.cycle")

CRASH_POINTS = ("after_snapshot", "after_pin", "before_send", "after_send", "after_record")
# The contract's per-transaction gas cap (Osaka); batches are also held under settings.chain.batch_gas_budget.
TX_GAS_CAP = 16_777_216
HEARTBEAT_EVERY_S = 5.0


def crash_point(name: str) -> None:
    """The cycle's crash points are named `evolve:<point>`."""
    studio_crash_point(f"evolve:{name}")


@dataclass
class CycleReport:
    """What a cycle did; stored as the cycle's report and printed by the CLI."""

    collection: str
    dry_run: bool
    cycle_id: int | None = None
    status: str = "running"
    started_at: str = ""
    finished_at: str | None = None
    snapshot_cid: str | None = None
    feeds: dict[str, str] = field(default_factory=dict)
    tokens_considered: int = 0
    unchanged: int = 0
    changed: list[int] = field(default_factory=list)
    evolved: list[int] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    rolled_forward: list[int] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    frozen: list[int] = field(default_factory=list)
    would_change: list[dict[str, Any]] = field(default_factory=list)
    gas_used: int = 0
    estimated_gas: int = 0
    transactions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    blocked: str | None = None
    generation_s: float = 0.0
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LiveToken:
    pk: int
    token_id: int
    name: str
    description: str
    seed: int
    prompt: str
    current_version: int
    current_metadata_cid: str
    current_image_cid: str
    evolution_state: dict[str, Any] | None


def _now() -> datetime:
    return datetime.now(UTC)


class Cycle:
    """Runs one cycle. Use `run_cycle()`; this class only keeps the cycle's pieces together."""

    def __init__(
        self,
        studio: Studio,
        collection: str,
        *,
        dry_run: bool = False,
        stop: threading.Event | None = None,
        now: datetime | None = None,
    ) -> None:
        self.studio = studio
        self.settings = studio.settings
        self.collection = collection
        self.dry_run = dry_run
        self.stop = stop or threading.Event()
        self.now = now
        self.journal = Journal(studio.db, collection)
        self.report = CycleReport(collection=collection, dry_run=dry_run, started_at=iso(_now()))
        self.gas_left = self.settings.evolve.cycle_gas_budget
        self.rules: Rules | None = None
        self.cycle_id: int | None = None
        self._last_beat = time.monotonic()
        self._tx_gas: dict[str, int] = {}

    # --- 0. take over ----------------------------------------------------------------------------

    def roll_forward(self) -> None:
        """Close what interrupted cycles left open: a `sending` row is checked against the chain's
        history of the token (recorded if the chain has it, back to `pinned` if not); `pinned` rows
        wait for step 4 of this cycle; nothing is sent twice."""
        chain = self.studio.chain
        self._refuse_with_pending_transactions()
        for step in self.journal.open_steps().values():
            if step.step != SENDING:
                continue
            change = next((c for c in chain.client.history(step.token_id) if c.metadata_cid == step.metadata_cid), None)
            if change is None:
                self.journal.advance(step.id, PINNED, tx_hash=None)
                log.info("not on chain: will resend", extra={"event": "reconcile", "token_id": step.token_id})
                continue
            self._record(step, tx_hash=change.tx_hash, block_number=change.block_number, gas_used=None)
            self.report.rolled_forward.append(step.token_id)
            if change.tx_hash not in self.report.transactions:
                self.report.transactions.append(change.tx_hash)
            log.info(
                "already on chain: recorded without resending",
                extra={"event": "reconcile", "token_id": step.token_id, "tx_hash": change.tx_hash},
            )

    def _refuse_while_another_process_holds_the_chain(self) -> None:
        """An attempt while another studio process runs the embedded chain is refused before a cycle
        is stored: it did nothing, and is no failure of the collection (other errors opening the
        chain are the cycle's own and are recorded with it)."""
        try:
            self.studio.chain  # noqa: B018 - opens the chain on first use
        except LocalChainBusyError as exc:
            raise CycleBusy(f"collection '{self.collection}': {exc}") from None
        except Exception:  # noqa: S110 - met again inside the cycle, which records it
            pass

    def _refuse_with_pending_transactions(self) -> None:
        """Transactions of ours still waiting to be mined stop the cycle (the journal cannot tell yet
        what they carry). Say plainly which, and, where the node lists its pool, whether their fee is
        under the base fee (stuck until fees fall or they are replaced) and what to do."""
        chain = self.studio.chain
        pending = chain.w3.eth.get_transaction_count(chain.address, "pending")
        mined = chain.w3.eth.get_transaction_count(chain.address, "latest")
        if pending <= mined:
            return
        waiting = chain.signer.pooled_transactions()
        base_fee = int(chain.w3.eth.get_block("latest").get("baseFeePerGas") or 0)
        described = []
        for nonce in range(mined, pending):
            tx = waiting.get(nonce)
            if tx is None:
                described.append(f"nonce {nonce}")
                continue
            max_fee = _quantity(tx.get("maxFeePerGas") or tx.get("gasPrice"))
            low = " (under the base fee: stuck until fees fall or it is replaced)" if max_fee < base_fee else ""
            described.append(f"nonce {nonce}: {tx.get('hash')}, max fee {max_fee / 1e9:g} gwei{low}")
        message = (
            f"blocked: {pending - mined} transaction(s) from {chain.address} wait to be mined "
            f"[{'; '.join(described)}]; base fee now {base_fee / 1e9:g} gwei. No cycle sends anything until "
            "they are mined (the journal cannot tell yet what they carry). If one is stuck under the base fee, "
            "replace it with a higher fee from a wallet (same nonce), or wait for fees to fall."
        )
        self.report.blocked = message
        log.error(message, extra={"event": "blocked", "transactions": pending - mined})
        raise CycleAborted(message)

    # --- 1. snapshot -------------------------------------------------------------------------------

    def snapshot(self, rules: Rules) -> tuple[dict[str, Any], str]:
        moment = self.now or _now()
        chain = self.studio.chain if _needs_chain(rules) else None
        feeds = build_feeds(
            rules,
            default_timezone=self.settings.evolve.timezone,
            web3=chain.w3 if chain else None,
            contract_address=chain.contract_address if chain else None,
            contract_from_block=chain.client.from_block if chain else 0,
            policy=FetchPolicy.from_settings(self.settings.evolve),
        )
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(feeds)))) as pool:
            results = dict(zip(feeds, pool.map(lambda f: _safe_read(f, moment), feeds.values()), strict=True))
        document = {
            "collection": self.collection,
            "taken_at": iso(moment),
            "feeds": {
                name: result.to_json() if isinstance(result, FeedValue) else error_json(result)
                for name, result in sorted(results.items())
            },
        }
        for name, result in results.items():
            self.report.feeds[name] = "ok" if isinstance(result, FeedValue) else str(result)
            if isinstance(result, FeedError):
                log.warning(str(result), extra={"event": "feed_error", "feed": name, "kind": result.kind})
                # The tokens that read it wait: the cycle is partial and says why, never "done".
                self.report.errors.append(f"feed {name}: {result}")
        data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            cid = _storing(
                lambda: pin_content(
                    self.studio,
                    data,
                    name=f"feed-snapshot-{self.collection}-{document['taken_at']}.json",
                    content_type="application/json",
                    dry_run=self.dry_run,
                )
            )
        except ContentError as exc:
            # Versions name their snapshot in their provenance: without it pinned, nothing may change.
            # Every living token waits, and says why.
            reason = f"pinning failed ({_cause(exc)}): retried next cycle"
            for token in self.living_tokens():
                self.report.pending[str(token.token_id)] = reason
            log.error(str(exc), extra={"event": "pin_error", "what": "feed snapshot"})
            raise CycleAborted(f"cannot pin the feed snapshot ({exc}); the next cycle tries again") from exc
        return document, cid

    # --- 2. decide ---------------------------------------------------------------------------------

    def living_tokens(self) -> list[LiveToken]:
        with self.studio.db.session() as session:
            rows = session.scalars(
                collection_query(self.studio)
                .where(Token.living.is_(True), Token.frozen.is_(False), Token.rules_name == self.collection)
                .order_by(Token.token_id)
            ).all()
            return [
                LiveToken(
                    pk=t.id,
                    token_id=t.token_id,
                    name=t.name,
                    description=t.description,
                    seed=t.seed,
                    prompt=t.prompt,
                    current_version=t.current_version,
                    current_metadata_cid=t.current_metadata_cid,
                    current_image_cid=t.current_image_cid,
                    evolution_state=t.evolution_state,
                )
                for t in rows
            ]

    def as_recorded_on_chain(self, tokens: list[LiveToken]) -> list[LiveToken]:
        """The tokens whose metadata on chain is the version the studio recorded.

        One changed by someone else (another evolver, another tool) is left as it is and reported:
        evolving it from the studio's older version would drop a link from its provenance chain and
        misnumber its versions. (The roll-forward above has already recorded the studio's own sends.)
        """
        client = self.studio.chain.client
        kept = []
        for token in tokens:
            on_chain = client.metadata_cid(token.token_id)
            if on_chain == token.current_metadata_cid:
                kept.append(token)
                continue
            self.report.waiting[str(token.token_id)] = (
                f"changed on chain outside the studio (metadata {on_chain}, the studio recorded "
                f"{token.current_metadata_cid}): left as it is so its history stays straight"
            )
            log.warning(
                "token changed outside the studio", extra={"event": "foreign_change", "token_id": token.token_id}
            )
        return kept

    def decide(self, rules: Rules, snapshot: dict[str, Any], tokens: list[LiveToken]) -> list[Decision]:
        decisions = []
        for token in tokens:
            decision = evaluate(
                rules, snapshot, TokenInput(token.token_id, token.seed, token.prompt, token.evolution_state)
            )
            decisions.append(decision)
            if decision.waiting_on:
                self.report.waiting[str(token.token_id)] = "no value yet for " + ", ".join(decision.waiting_on)
            elif decision.changed:
                self.report.changed.append(token.token_id)
            else:
                self.report.unchanged += 1
        return decisions

    # --- 3. regenerate and pin ---------------------------------------------------------------------

    def regenerate(self, rules: Rules, token: LiveToken, decision: Decision, step: OpenStep) -> OpenStep:
        """img2img from the token's current image with its own seed; pin image then metadata."""
        from studio.generation import GenerationRequest, init_image_from_png

        init, init_latents = init_image_from_png(self.studio.store.cat(token.current_image_cid))
        started = time.perf_counter()
        result = self.studio.generator.generate(
            GenerationRequest(
                prompt=decision.prompt or token.prompt,
                seed=token.seed,
                negative_prompt=decision.negative_prompt,
                steps=rules.evolution.steps,
                guidance_scale=rules.evolution.guidance_scale,
                width=init.width,
                height=init.height,
                init_image=init,
                init_latents=init_latents,
                init_image_cid=token.current_image_cid,
                strength=decision.strength,
            )
        )
        self.report.generation_s += time.perf_counter() - started
        provenance = {
            "version": step.version,
            "previous": f"ipfs://{step.previous_metadata_cid}",
            "feed_snapshot": f"ipfs://{step.feed_snapshot_cid}" if step.feed_snapshot_cid else None,
        }
        published = _storing(
            lambda: publish_version(
                self.studio,
                name=token.name,
                description=token.description,
                attributes=self._attributes(rules, token, decision, step.version),
                image_png=result.png_with(provenance),
                generation_record=result.record,
                version=step.version,
                previous_metadata_cid=step.previous_metadata_cid,
                feed_snapshot_cid=step.feed_snapshot_cid,
                dry_run=self.dry_run,
            )
        )
        if self.dry_run:
            return OpenStep(
                **{**asdict(step), "image_cid": published.image_cid, "metadata_cid": published.metadata_cid}
            )
        return self.journal.advance(step.id, PINNED, image_cid=published.image_cid, metadata_cid=published.metadata_cid)

    def _attributes(self, rules: Rules, token: LiveToken, decision: Decision, version: int) -> list[dict[str, Any]]:
        """The mint's own attributes, then one per trait (its fragment) and the version number."""
        previous = json.loads(self.studio.store.cat(token.current_metadata_cid))
        ours = {name.replace("_", " ").title() for name in rules.traits} | {"Version"}
        attributes = [a for a in previous.get("attributes", []) if a.get("trait_type") not in ours]
        traits = (decision.state or {}).get("traits", {})
        for name in rules.traits:
            if traits.get(name):
                attributes.append({"trait_type": name.replace("_", " ").title(), "value": traits[name]})
        attributes.append({"trait_type": "Version", "value": version, "display_type": "number"})
        return attributes

    # --- 4. send -----------------------------------------------------------------------------------

    def send(self, steps: list[OpenStep]) -> None:
        """Batches within the per-transaction cap and what is left of the cycle's gas budget; what
        does not fit waits (`pinned`) for the next cycle and is reported."""
        client = self.studio.chain.client
        queue = [s for s in steps if s.metadata_cid]
        per_tx = min(self.settings.chain.batch_gas_budget, TX_GAS_CAP)
        # The client sends estimate x gas_buffer as the gas limit: fit batches so that one batch is
        # one transaction (and so one journal step), never split behind our back.
        per_tx_estimate = int(per_tx / client.signer.policy.gas_buffer)
        while queue:
            if self.stop.is_set():
                for s in queue:
                    self.report.pending[str(s.token_id)] = "stop requested: sent next cycle"
                return
            batch, estimate = self._fit(client, queue, min(per_tx_estimate, self.gas_left))
            queue = [
                s for s in queue if s.token_id not in self.report.frozen and str(s.token_id) not in self.report.waiting
            ]
            batch = [
                s for s in batch if s.token_id not in self.report.frozen and str(s.token_id) not in self.report.waiting
            ]
            if not batch and queue and self.gas_left > 0 and estimate == -1:
                continue  # a frozen token was dropped: fit again
            if not batch:
                for s in queue:
                    self.report.pending[str(s.token_id)] = (
                        f"cycle gas budget spent ({self.settings.evolve.cycle_gas_budget} gas): sent next cycle"
                    )
                return
            self.report.estimated_gas += estimate
            if self.dry_run:
                self.gas_left -= estimate
                queue = queue[len(batch) :]
                continue
            self.journal.advance_many([s.id for s in batch], SENDING)
            crash_point("before_send")
            try:
                results = client.evolve_batch(_items(batch), gas_budget=per_tx)
            except VersionMismatchError as exc:
                # Evolved by someone else between our estimate and the send: the transaction reverted as a
                # whole, so none of the batch is on chain. That token waits; the others go again.
                self.journal.advance_many([s.id for s in batch], PINNED)
                self._changed_on_chain(next(s for s in batch if s.token_id == exc.token_id), exc)
                queue = [s for s in queue if s.token_id != exc.token_id]
                continue
            except FeeCapExceededError as exc:
                # Refused before anything was sent: the rows go back to waiting.
                self.journal.advance_many([s.id for s in batch], PINNED)
                for s in queue:
                    self.report.pending[str(s.token_id)] = "fee above the cap: sent when fees fall"
                raise CycleAborted(f"fee spike: {exc}") from exc
            except ChainError as exc:
                # Some or all of it may have been sent (or mined): the rows stay `sending` and the next
                # cycle asks the chain what it has before sending anything again.
                for s in queue:
                    self.report.pending[str(s.token_id)] = "chain error: reconciled and sent next cycle"
                if isinstance(getattr(exc, "cause", exc), RPCUnavailableError):
                    self._log_stall(exc, len(batch))
                done = getattr(exc, "done", [])
                self.report.transactions.extend(r.tx_hash for r in done)
                raise CycleAborted(f"chain error while sending a batch of {len(batch)}: {exc}") from exc
            crash_point("after_send")
            gas = sum(r.gas_used for r in results)
            self.gas_left -= gas
            self._tx_gas.update((r.tx_hash, r.gas_used) for r in results)
            self.report.transactions.extend(r.tx_hash for r in results)
            where = self._where_mined(client, batch, results)
            for s in batch:
                tx_hash, block = where[s.token_id]
                self._record(s, tx_hash=tx_hash, block_number=block, gas_used=gas // max(1, len(batch)))
                self.report.evolved.append(s.token_id)
            log.info(
                "batch confirmed",
                extra={
                    "event": "batch",
                    "tokens": len(batch),
                    "gas_used": gas,
                    "tx_hashes": [r.tx_hash for r in results],
                },
            )
            crash_point("after_record")
            self._heartbeat()
            queue = queue[len(batch) :]

    def _where_mined(self, client: Any, batch: list[OpenStep], results: list[Any]) -> dict[int, tuple[str, int]]:
        """(tx hash, block) per token. One transaction is the rule; should the estimate have grown
        between our fit and the send and the client split the batch, each token's own MetadataSet
        event says which transaction carried it."""
        if len(results) == 1:
            return {s.token_id: (results[0].tx_hash, results[0].block_number) for s in batch}
        where = {}
        for s in batch:
            change = next((c for c in client.history(s.token_id) if c.metadata_cid == s.metadata_cid), None)
            where[s.token_id] = (change.tx_hash, change.block_number) if change else (None, None)
        return where

    def _fit(self, client: Any, queue: list[OpenStep], budget: int) -> tuple[list[OpenStep], int]:
        """The longest prefix of `queue` whose estimated gas fits `budget` (estimates scale linearly
        with the batch, so one estimate and a proportional cut, checked once more). A token found
        frozen on chain is taken out of the cycle (estimate -1 says "fit again")."""
        size = len(queue)
        while size > 0:
            batch = queue[:size]
            try:
                estimate = int(client.estimate_evolve_batch(_items(batch)))
            except TokenFrozenError as exc:
                self._frozen_on_chain(next(s for s in queue if s.token_id == exc.token_id))
                return [], -1
            except VersionMismatchError as exc:
                self._changed_on_chain(next(s for s in queue if s.token_id == exc.token_id), exc)
                return [], -1
            except RPCUnavailableError as exc:
                # A stall or an outage, not a batch too large: cutting the batch would only multiply
                # transactions once the node answers again. Nothing was sent: all of it waits.
                raise self._stalled(exc, queue) from exc
            if estimate <= budget:
                return batch, estimate
            smaller = int(size * budget / estimate)
            size = smaller if smaller < size else size - 1
        return [], 0

    def _stalled(self, exc: RPCUnavailableError, queue: list[OpenStep]) -> CycleAborted:
        self._log_stall(exc, len(queue))
        for s in queue:
            self.report.pending[str(s.token_id)] = "the RPC endpoint did not answer: sent next cycle"
        return CycleAborted(f"RPC stall while estimating a batch of {len(queue)}: {exc}")

    def _log_stall(self, exc: ChainError, tokens: int) -> None:
        log.error(
            "the RPC endpoint stalled: the batch waits for the next cycle (not split: it is not too large)",
            extra={"event": "rpc_stall", "tokens": tokens, "error": str(exc)},
        )

    def _frozen_on_chain(self, step: OpenStep) -> None:
        """Frozen by its owner since it was minted: it never evolves again; say so and record it."""
        self.report.frozen.append(step.token_id)
        log.warning("token is frozen on chain", extra={"event": "frozen", "token_id": step.token_id})
        if self.dry_run:
            return
        with self.studio.db.session() as session:
            token = session.get(Token, step.token_pk)
            if token is not None:
                token.frozen = True
            self.journal.advance(step.id, SUPERSEDED, session=session, error="the token is frozen on chain")

    def _changed_on_chain(self, step: OpenStep, exc: VersionMismatchError) -> None:
        """The contract's compare-and-set refused this token: another evolver (or another studio process)
        moved it past the version this one was built on. Its pinned version is dropped (its provenance
        names the wrong predecessor); the token waits, and the next cycle reports it as changed outside."""
        reason = (
            f"version conflict: on chain it is at version {exc.actual}, this cycle built version {step.version} "
            f"on version {exc.expected}; someone else evolved it, so nothing was sent for it"
        )
        self.report.waiting[str(step.token_id)] = reason
        log.warning(reason, extra={"event": "version_conflict", "token_id": step.token_id})
        if not self.dry_run:
            self.journal.advance(step.id, SUPERSEDED, error=reason)

    def _heartbeat(self) -> None:
        """Tell other processes this cycle's owner is alive (at most every few seconds: each beat is a commit)."""
        if time.monotonic() - self._last_beat >= HEARTBEAT_EVERY_S:
            self.journal.heartbeat(self.cycle_id or 0)
            self._last_beat = time.monotonic()

    # --- 5. record ---------------------------------------------------------------------------------

    def _record(self, step: OpenStep, *, tx_hash: str | None, block_number: int | None, gas_used: int | None) -> None:
        """The token's new version and the journal row's end, in ONE database transaction. The first
        row recorded for a transaction adds that transaction's gas to the cycle in the same database
        transaction: a cycle killed afterwards keeps it, and a roll-forward of the batch's other rows
        (or of a send whose cycle died) counts it once."""
        from studio.services.publishing import PublishedVersion

        metadata_bytes = self.studio.store.cat(step.metadata_cid or "")
        published = PublishedVersion(
            image_cid=step.image_cid or "",
            metadata_cid=step.metadata_cid or "",
            metadata=json.loads(metadata_bytes),
            metadata_bytes=metadata_bytes,
        )
        with self.studio.db.session() as session:
            record_version(
                self.studio,
                step.token_id,
                published,
                version=step.version,
                tx_hash=tx_hash,
                block_number=block_number,
                gas_used=gas_used,
                state=step.state,
                feed_snapshot_cid=step.feed_snapshot_cid,
                session=session,
            )
            if tx_hash and not self.dry_run and not self.journal.tx_recorded(tx_hash, session=session):
                tx_gas = self._gas_of(tx_hash)
                self.report.gas_used += tx_gas
                self.journal.add_gas(self.cycle_id or 0, tx_gas, session=session)
            self.journal.advance(
                step.id, RECORDED, session=session, tx_hash=tx_hash, block_number=block_number, gas_used=gas_used
            )

    def _gas_of(self, tx_hash: str) -> int:
        """A transaction's gas: from its result when this cycle sent it, else from its receipt."""
        if tx_hash not in self._tx_gas:
            self._tx_gas[tx_hash] = int(self.studio.chain.signer.receipt(tx_hash)["gasUsed"])
        return self._tx_gas[tx_hash]

    # --- the whole cycle ---------------------------------------------------------------------------

    def run(self) -> CycleReport:
        started = time.perf_counter()
        rules = load_collection(
            self.settings.rules_dir, self.collection, default_timezone=self.settings.evolve.timezone
        )
        self.rules = rules
        self._refuse_while_another_process_holds_the_chain()
        self.cycle_id, taken_over = self.journal.begin_cycle(dry_run=self.dry_run)
        self.report.cycle_id = self.cycle_id
        log.info(
            "cycle started",
            extra={"event": "cycle_start", "cycle_id": self.cycle_id, "dry_run": self.dry_run, "took_over": taken_over},
        )
        status, error = "done", None
        try:
            if not self.dry_run:
                self.roll_forward()
            snapshot, snapshot_cid = self.snapshot(rules)
            self.report.snapshot_cid = snapshot_cid
            if not self.dry_run:
                self.journal.set_snapshot(self.cycle_id, snapshot_cid, snapshot)
            crash_point("after_snapshot")
            tokens = self.living_tokens()
            if not self.dry_run:
                tokens = self.as_recorded_on_chain(tokens)
            self.report.tokens_considered = len(tokens)
            decisions = self.decide(rules, snapshot, tokens)
            to_send = self.prepare(rules, tokens, decisions, snapshot_cid)
            self.send(to_send)
        except CycleAborted as exc:
            status, error = "partial", str(exc)
            self.report.errors.append(str(exc))
            log.error(str(exc), extra={"event": "cycle_aborted", "cycle_id": self.cycle_id})
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            self.report.errors.append(error)
            log.exception("cycle failed", extra={"event": "cycle_failed", "cycle_id": self.cycle_id})
        if status == "done" and (self.report.pending or self.report.errors):
            status = "partial"
        if status == "partial" and error is None:
            error = "; ".join(self.report.errors) or f"{len(self.report.pending)} token(s) wait for the next cycle"
        self.report.status = status
        self.report.finished_at = iso(_now())
        self.report.wall_s = round(time.perf_counter() - started, 4)
        self.report.generation_s = round(self.report.generation_s, 4)
        self.journal.finish_cycle(
            self.cycle_id, status=status, report=self.report.to_json(), gas_used=self.report.gas_used, error=error
        )
        log.info(
            "cycle finished",
            extra={
                "event": "cycle_end",
                "cycle_id": self.cycle_id,
                "status": status,
                "evolved": len(self.report.evolved),
                "pending": len(self.report.pending),
                "gas_used": self.report.gas_used,
            },
        )
        return self.report

    def prepare(
        self, rules: Rules, tokens: list[LiveToken], decisions: list[Decision], snapshot_cid: str
    ) -> list[OpenStep]:
        """Journal rows for the changed tokens (reusing an open row whose state still holds), then
        regenerate and pin each one that is not pinned yet. Returns the rows ready to send."""
        # Imported here: studio.generation loads torch, which `status` and the rules checks never need.
        from studio.generation import GenerationError, ModelNotAvailableError, UnsupportedCheckpointError

        open_steps = {} if self.dry_run else self.journal.open_steps([t.pk for t in tokens])
        ready: list[OpenStep] = []
        pinning_down: str | None = None  # set when pinning or the model is out for this cycle
        for token, decision in zip(tokens, decisions, strict=True):
            step = open_steps.get(token.pk)
            if step is not None and step.step == SENDING:
                self.report.pending[str(token.token_id)] = "an earlier transaction is not reconciled yet"
                continue
            if decision.waiting_on:
                continue  # reported by decide(); an open row waits with it
            if step is not None and not (decision.changed and _same_state(step.state, decision.state or {})):
                # The feeds moved on (or back) before this version was sent: it was never on chain.
                self.journal.advance(step.id, SUPERSEDED, error="the token's state changed again before it was sent")
                self.report.superseded.append(token.token_id)
                step = None
            if not decision.changed:
                continue
            if step is None:
                step = self._plan(token, decision, snapshot_cid)
            if step.step == PLANNED:
                if pinning_down or self.stop.is_set():
                    self.report.pending[str(token.token_id)] = pinning_down or "stop requested: generated next cycle"
                    continue
                try:
                    step = self.regenerate(rules, token, decision, step)
                except ContentError as exc:
                    # A pinning outage: stop pinning for this cycle (every further try would fail too).
                    pinning_down = f"pinning failed ({_cause(exc)}): retried next cycle"
                    self.report.pending[str(token.token_id)] = pinning_down
                    self.report.errors.append(f"token {token.token_id}: {exc}")
                    log.error(str(exc), extra={"event": "pin_error", "token_id": token.token_id})
                    continue
                except GenerationError as exc:
                    reason = f"generation failed ({type(exc).__name__}): retried next cycle"
                    if isinstance(exc, ModelNotAvailableError | UnsupportedCheckpointError):
                        pinning_down = reason  # no model: every other token would fail the same way
                    self.report.pending[str(token.token_id)] = reason
                    self.report.errors.append(f"token {token.token_id}: {exc}")
                    log.error(str(exc), extra={"event": "generation_error", "token_id": token.token_id})
                    continue
                crash_point("after_pin")
            if self.dry_run:
                self.report.would_change.append(
                    {
                        "token_id": token.token_id,
                        "version": step.version,
                        "state": decision.state,
                        "image_cid": step.image_cid,
                        "metadata_cid": step.metadata_cid,
                    }
                )
            else:
                self._heartbeat()
            ready.append(step)
        return ready

    def _plan(self, token: LiveToken, decision: Decision, snapshot_cid: str) -> OpenStep:
        fields = {
            "token_pk": token.pk,
            "token_id": token.token_id,
            "version": token.current_version + 1,
            "state": decision.state or {},
            "previous_metadata_cid": token.current_metadata_cid,
            "feed_snapshot_cid": snapshot_cid,
        }
        if self.dry_run:
            return OpenStep(id=0, cycle_id=0, step=PLANNED, image_cid=None, metadata_cid=None, tx_hash=None, **fields)
        return self.journal.plan(self.cycle_id or 0, **fields)


def _items(steps: list[OpenStep]) -> list[tuple[int, str, int]]:
    """evolveBatch's items: a step builds `version` on the token's current version, `version - 1`,
    which the contract compare-and-sets."""
    return [(s.token_id, s.metadata_cid or "", s.version - 1) for s in steps]


class StoreWriteError(ContentError):
    """The local store could not be written (permissions, a full disk): a pinning outage like any other."""


def _storing(pin: Any) -> Any:
    """Run `pin()`, turning an OS error writing the local store into a ContentError, so a folder
    without write permission or a full disk makes the cycle wait and say why, never fail."""
    try:
        return pin()
    except OSError as exc:
        raise StoreWriteError(f"cannot write to the local IPFS store: {exc}") from exc


def _cause(exc: BaseException) -> str:
    """The short cause of a pinning failure: the OS error's own class and text where there is one."""
    root = exc.__cause__ if isinstance(exc, StoreWriteError) and exc.__cause__ else exc
    text = f"{type(root).__name__}: {root}" if isinstance(root, OSError) else type(root).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _quantity(value: Any) -> int:
    """A JSON-RPC quantity (hex text or a number) as an int; 0 when missing or malformed."""
    try:
        return int(value, 16) if isinstance(value, str) else int(value or 0)
    except (TypeError, ValueError):
        return 0


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("traits"), a.get("variation")) == (b.get("traits"), b.get("variation"))


def _needs_chain(rules: Rules) -> bool:
    return any(f.type in ("activity",) or (f.type == "chainlink" and not f.rpc_url) for f in rules.feeds.values())


def _safe_read(feed: Any, moment: datetime) -> FeedValue | FeedError:
    try:
        return feed.read(moment)
    except Exception as exc:  # a feed must never take the cycle down, whatever it raises
        return FeedError(getattr(feed, "name", "?"), f"unexpected {type(exc).__name__}: {redact_urls(str(exc))}")


def run_cycle(
    studio: Studio,
    collection: str,
    *,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    now: datetime | None = None,
) -> CycleReport:
    """Run one cycle of `collection` (its rules in `<rules_dir>/<collection>.toml`) and return its
    report. Raises RulesError for a broken rules file and CycleBusy when another live process runs a
    cycle of the same collection; everything else is in the report (and the journal)."""
    return Cycle(studio, collection, dry_run=dry_run, stop=stop, now=now).run()
