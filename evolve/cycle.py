"""One evolution cycle of one collection, readable top to bottom (`Cycle.run`):

    0. roll forward: close what an interrupted cycle left in the journal (reconciled with the chain)
    1. snapshot: read every feed the collection uses and pin the snapshot
    2. decide: each living, unfrozen token's next state and what to do about it (evolve/plan.py: pure)
    3. prepare: regenerate changed tokens by img2img from their current image (as many at once as the
       generator takes: one per Ray actor); pin image and metadata, token by token in token order
    4. send: update the chain in batches within the cycle's gas budget and the max fee cap
    5. record: each token's new version as the chain confirmed it, then the cycle's report

Everything that leaves the process goes through a sender (evolve/senders.py): a `ChainSender` for a
cycle, a `DrySender` for a dry run, which writes and sends nothing. Crash safety comes from the
journal (evolve/journal.py): each step is committed before the side effect it announces, and a token's
version is recorded in the same database transaction that closes its journal row. Before anything is
sent again, the chain is asked what it already has.

`STUDIO_CRASH_AT=evolve:<point>` makes the process SIGKILL itself at that point (the kill-and-restart
test uses it; see CRASH_POINTS in evolve/senders.py and studio/crashpoints.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
from evolve.feeds import FetchPolicy, build_feeds
from evolve.feeds.base import Feed, FeedValue, error_json, iso
from evolve.journal import CycleStatus, Journal, OpenStep, StepStatus
from evolve.plan import STATE_MOVED_ON, Change, CyclePlan, LiveToken, plan_cycle
from evolve.progress import CycleProgress, CycleStage, ProgressCallback
from evolve.senders import (
    Batch,
    ChainSender,
    DrySender,
    Recorded,
    Sender,
    TransactionsWaiting,
    batch_items,
    crash_point,
)
from metadata.errors import ContentError
from studio.records import Token
from studio.rules import Rules, load_collection
from studio.rules.evaluation import Decision
from studio.services.cycles import value_words
from studio.services.publishing import pin_content, publish_version
from studio.services.studio import Studio
from studio.services.tokens import living_tokens_query, timeline

if TYPE_CHECKING:  # studio.generation loads torch: imported where a cycle generates
    from studio.generation import GenerationRequest, GenerationResult
    from studio.generation.pool import Window

log = logging.getLogger("evolve.cycle")


@dataclass
class CycleReport:
    """What a cycle did; stored as the cycle's report and printed by the CLI."""

    collection: str
    dry_run: bool
    cycle_id: int | None = None
    status: CycleStatus = CycleStatus.RUNNING
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
    generation_s: float = 0.0  # how long the cycle waited for its images (several may be made at once)
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Refused:
    """The node would not estimate a batch because one of its tokens cannot take its new version:
    frozen on chain, or at another version than the one the step was built on. That token leaves
    the cycle; the others are sized again."""

    step: OpenStep
    error: TokenFrozenError | VersionMismatchError


@dataclass(frozen=True, eq=False)
class _Turn:
    """A change waiting its turn in the prepare step: its journal row and, for a regeneration, its
    number among the cycle's regenerations (0: pinned by an earlier cycle, nothing to make)."""

    change: Change
    step: OpenStep
    number: int = 0

    @property
    def tag(self) -> str:
        return f"#{self.change.token.token_id}"

    @property
    def label(self) -> str:
        return f"token {self.tag} v{self.step.version}"


@dataclass
class _Regenerations:
    """The prepare step's count while regenerations are in flight."""

    total: int  # tokens this cycle regenerates
    sent: int = 0  # sent to the generator so far (each one's number in "Generating k/n")
    generated: int = 0  # come back with an image so far (the progress count)
    stopped: str | None = None  # why no further token is regenerated this cycle (pinning or the model is out)
    line: deque[_Turn] = field(default_factory=deque)  # changes in token order, not ready yet
    ready: list[OpenStep] = field(default_factory=list)  # rows ready to send, in token order


def _regenerates(change: Change) -> bool:
    """Whether this cycle makes the change's image (no row yet, or one an earlier cycle only planned)."""
    return change.step is None or change.step.step == StepStatus.PLANNED


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
        on_step: ProgressCallback | None = None,
    ) -> None:
        self.studio = studio
        self.on_step = on_step
        self.settings = studio.settings
        self.collection = collection
        self.dry_run = dry_run
        self.stop = stop or threading.Event()
        self.now = now
        self.journal = Journal(studio.db, collection)
        self.report = CycleReport(collection=collection, dry_run=dry_run, started_at=iso(_now()))
        self.gas_left = self.settings.evolve.cycle_gas_budget
        self.cycle_id = 0
        self.sender: Sender  # chosen once the cycle is stored (run)
        self.confirmed = 0  # tokens the chain confirmed so far (progress only)

    def tell(self, stage: CycleStage, text: str, **details: Any) -> None:
        """Report a step to `on_step`; a failing watcher is logged, never the cycle's problem."""
        if self.on_step is None:
            return
        try:
            self.on_step(CycleProgress(stage, text, **details))
        except Exception:
            log.exception("a cycle progress callback failed", extra={"event": "progress_error"})

    # --- the whole cycle ---------------------------------------------------------------------------

    def run(self) -> CycleReport:
        started = time.perf_counter()
        rules = load_collection(
            self.settings.rules_dir, self.collection, default_timezone=self.settings.evolve.timezone
        )
        self._refuse_while_another_process_holds_the_chain()
        self.cycle_id, taken_over = self.journal.begin_cycle(dry_run=self.dry_run)
        self.report.cycle_id = self.cycle_id
        self.sender = DrySender() if self.dry_run else ChainSender(self.studio, self.journal, self.cycle_id)
        log.info(
            "cycle started",
            extra={"event": "cycle_start", "cycle_id": self.cycle_id, "dry_run": self.dry_run, "took_over": taken_over},
        )
        status, error = CycleStatus.DONE, None
        what = "Dry run" if self.dry_run else f"Cycle #{self.cycle_id}"
        self.tell(CycleStage.STARTED, f"{what} of {self.collection} started: reading the feeds")
        try:
            self.studio.start_chain()  # what kept the chain from starting is this cycle's error, recorded
            self.roll_forward()  # 0
            snapshot, snapshot_cid = self.snapshot(rules)  # 1
            plan = self.decide(rules, snapshot)  # 2
            ready = self.prepare(rules, plan, snapshot_cid)  # 3
            self.send(ready)  # 4 and 5, batch by batch
        except CycleAborted as exc:
            status, error = CycleStatus.PARTIAL, str(exc)
            self.report.errors.append(str(exc))
            log.error(str(exc), extra={"event": "cycle_aborted", "cycle_id": self.cycle_id})
        except Exception as exc:
            status, error = CycleStatus.FAILED, f"{type(exc).__name__}: {exc}"
            self.report.errors.append(error)
            log.exception("cycle failed", extra={"event": "cycle_failed", "cycle_id": self.cycle_id})
        self.finish(status, error, started)
        self.tell(CycleStage.FINISHED, f"{what} {self.report.status} in {self.report.wall_s:.1f} s")
        return self.report

    def _refuse_while_another_process_holds_the_chain(self) -> None:
        """An attempt while another studio process runs the embedded chain is refused before a cycle
        is stored: it did nothing, and is no failure of the collection (other errors opening the
        chain are the cycle's own and are recorded with it)."""
        try:
            self.studio.start_chain()  # a no-op when the process's start-up already started it
        except LocalChainBusyError as exc:
            raise CycleBusy(f"collection '{self.collection}': {exc}") from None
        except Exception:  # noqa: S110 - met again inside the cycle, which records it
            pass

    # --- 0. roll forward ---------------------------------------------------------------------------

    def roll_forward(self) -> None:
        """Close what interrupted cycles left open: a `sending` row is recorded if the chain has it,
        else it goes back to `pinned` and this cycle sends it; `pinned` rows wait for step 4 of this
        cycle. Transactions of ours still waiting in the node's pool stop the cycle here."""
        try:
            recorded = self.sender.take_over()
        except TransactionsWaiting as exc:
            self.report.blocked = str(exc)
            raise
        for done in recorded:
            self.report.rolled_forward.append(done.token_id)
            if done.tx_hash and done.tx_hash not in self.report.transactions:
                self.report.transactions.append(done.tx_hash)
            self.report.gas_used += done.gas_counted

    # --- 1. snapshot -------------------------------------------------------------------------------

    def snapshot(self, rules: Rules) -> tuple[dict[str, Any], str]:
        """Read every feed at the same moment, then pin the snapshot document (the versions this
        cycle makes name it in their provenance). A feed that fails is reported; its tokens wait."""
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
        values = {
            name: value_words(result.value) if isinstance(result, FeedValue) else f"unavailable: {result}"
            for name, result in sorted(results.items())
        }
        self.tell(
            CycleStage.FEEDS,
            "Feeds read: " + ("; ".join(f"{name}: {value}" for name, value in values.items()) or "none"),
            feeds=values,
        )
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
        self.report.snapshot_cid = cid
        self.tell(CycleStage.SNAPSHOT, f"Feed snapshot pinned: ipfs://{cid}")
        self.sender.snapshot_pinned(cid, document)
        crash_point("after_snapshot")
        return document, cid

    # --- 2. decide ---------------------------------------------------------------------------------

    def decide(self, rules: Rules, snapshot: dict[str, Any]) -> CyclePlan:
        """Read the tokens, their open journal rows and whether the chain still holds what the studio
        recorded; the plan itself is pure (evolve/plan.py)."""
        tokens = self.living_tokens()
        plan = plan_cycle(
            rules,
            snapshot,
            tokens,
            open_steps=self.sender.open_steps([t.pk for t in tokens]),
            changed_on_chain=self.sender.changed_on_chain(tokens),
        )
        self.report.tokens_considered = plan.considered
        self.report.unchanged = plan.unchanged
        self.report.changed.extend(plan.changed)
        self.report.waiting.update({str(token_id): reason for token_id, reason in plan.waiting.items()})
        self.report.pending.update({str(token_id): reason for token_id, reason in plan.pending.items()})
        changing = ", ".join(f"#{change.token.token_id}" for change in plan.changes) or "none"
        self.tell(
            CycleStage.DECIDED,
            f"Tokens decided: {plan.considered} living, {len(plan.changes)} to change ({changing}), "
            f"{plan.unchanged} unchanged, {len(plan.waiting) + len(plan.pending)} waiting",
            total=len(plan.changes),
        )
        return plan

    def living_tokens(self) -> list[LiveToken]:
        with self.studio.db.session() as session:
            rows = session.scalars(
                living_tokens_query(self.studio.identity, self.collection).order_by(Token.token_id)
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

    # --- 3. prepare: regenerate and pin ------------------------------------------------------------

    def prepare(self, rules: Rules, plan: CyclePlan, snapshot_cid: str) -> list[OpenStep]:
        """Close the rows the plan supersedes, then give each change its journal row (continuing an
        open one) and regenerate and pin each that is not pinned yet. Returns the rows ready to send,
        in token order.

        Regenerations go to the generator as many at once as it takes (`capacity`: one in-process,
        one per Ray actor). Their results are taken back in token order, and each is pinned and
        journaled here, in that order: the journal rows, pins and crash points follow one another
        exactly as when the tokens were made one at a time; only the making of the pixels (which
        changes nothing outside this process) overlaps. In-process, one request is in flight at a
        time and the order of everything is as it always was."""
        # Imported here: studio.generation loads torch, which `status` and the rules checks never need.
        from studio.generation.pool import Window

        for stale in plan.superseded:
            self.sender.drop(stale, STATE_MOVED_ON)
            self.report.superseded.append(stale.token_id)
        todo = _Regenerations(total=sum(1 for c in plan.changes if _regenerates(c)))
        with Window[_Turn](
            self.studio.generator,
            on_stage=lambda turn, stage, details: self._tell_stage(todo, turn, stage, details),
            on_finished=lambda turn, error: self._tell_generated(todo, turn, error),
            name="evolve-generate",
        ) as window:
            for change in plan.changes:
                token_id = change.token.token_id
                if _regenerates(change) and not (todo.stopped or self.stop.is_set()):
                    while window.full:  # the oldest is taken back and pinned before a row is planned
                        self._settle(rules, todo, window)
                step = change.step or self.sender.plan(change.new_step_fields(snapshot_cid))
                if step.step != StepStatus.PLANNED:
                    todo.line.append(_Turn(change, step))  # pinned by an earlier cycle: waits its turn
                    continue
                if todo.stopped or self.stop.is_set():
                    self.report.pending[str(token_id)] = todo.stopped or "stop requested: generated next cycle"
                    continue
                turn = _Turn(change, step, number=todo.sent + 1)
                window.relay()  # what came back meanwhile: the count below is the truth
                try:
                    window.send(turn, self._request(rules, change))
                except Exception as exc:
                    self._not_prepared(todo, token_id, exc)
                    continue
                todo.sent += 1
                todo.line.append(turn)
                running = window.running
                self.tell(
                    CycleStage.GENERATING,
                    f"Generating {turn.number}/{todo.total}: {turn.label}"
                    + (f" ({len(running)} in flight: {', '.join(t.tag for t in running)})" if len(running) > 1 else ""),
                    done=todo.generated,
                    total=todo.total,
                    token_id=token_id,
                )
            while todo.line:
                self._settle(rules, todo, window)
        return todo.ready

    def _settle(self, rules: Rules, todo: _Regenerations, window: Window[_Turn]) -> None:
        """The oldest change of the line: a row pinned by an earlier cycle is ready as it is; a
        regeneration is taken back from the generator (waiting for it if need be), then pinned."""
        turn = todo.line.popleft()
        token_id = turn.change.token.token_id
        step = turn.step
        if turn.number:
            started = time.perf_counter()
            back = window.take()
            self.report.generation_s += time.perf_counter() - started
            assert back.key is turn, "the generation window hands results back in the order they were sent"
            try:
                result = back.result()
                if todo.stopped:
                    # Pinning (or the model) went out after it was sent: it stays planned, made next cycle.
                    self.report.pending[str(token_id)] = todo.stopped
                    return
                step = self._publish(rules, turn, result, todo)
            except Exception as exc:
                self._not_prepared(todo, token_id, exc)
                return
            crash_point("after_pin")
        self.sender.heartbeat()
        todo.ready.append(step)

    def _not_prepared(self, todo: _Regenerations, token_id: int, exc: Exception) -> None:
        """A token that could not be regenerated or pinned waits for the next cycle, and says why.
        A pinning outage or a missing model stops the step for every further token (each would fail
        the same way); any other generation error is that token's alone. Anything else is raised."""
        from studio.generation import GenerationError, ModelNotAvailableError, UnsupportedCheckpointError

        if isinstance(exc, ContentError):
            todo.stopped = f"pinning failed ({_cause(exc)}): retried next cycle"
            self.report.pending[str(token_id)] = todo.stopped
            self.report.errors.append(f"token {token_id}: {exc}")
            log.error(str(exc), extra={"event": "pin_error", "token_id": token_id})
        elif isinstance(exc, GenerationError):
            reason = f"generation failed ({type(exc).__name__}): retried next cycle"
            if isinstance(exc, ModelNotAvailableError | UnsupportedCheckpointError):
                todo.stopped = reason  # no model: every other token would fail the same way
            self.report.pending[str(token_id)] = reason
            self.report.errors.append(f"token {token_id}: {exc}")
            log.error(str(exc), extra={"event": "generation_error", "token_id": token_id})
        else:
            raise exc

    def _request(self, rules: Rules, change: Change) -> GenerationRequest:
        """img2img from the token's current image with its own seed (the decision gives prompt and strength)."""
        from studio.generation import GenerationRequest, init_image_from_png

        token, decision = change.token, change.decision
        init, init_latents = init_image_from_png(self.studio.store.cat(token.current_image_cid))
        return GenerationRequest(
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

    def _tell_stage(self, todo: _Regenerations, turn: _Turn, stage: str, details: dict[str, Any]) -> None:
        """A regeneration's stage as the generator reports it (relayed to this thread by the window)."""
        generating = f"Generating {turn.number}/{todo.total}: {turn.label}"
        if stage == "denoising" and details.get("total"):
            text = f"{generating}, denoising step {details.get('step', 0)} of {details['total']}"
        elif stage == "waiting" and "ahead" in details:
            text = f"{generating}, waiting for the generator ({details['ahead']} ahead)"
        elif stage == "waiting":
            text = f"{generating}, waiting for {details.get('for', 'the generator')}"
        else:
            text = f"{generating}, {stage}"
        token_id = turn.change.token.token_id
        self.tell(CycleStage.GENERATING, text, done=todo.generated, total=todo.total, token_id=token_id)

    def _tell_generated(self, todo: _Regenerations, turn: _Turn, error: BaseException | None) -> None:
        """A regeneration came back: counted (and said) when it made an image; its error is reported
        when its turn comes."""
        if error is not None:
            return
        todo.generated += 1
        self.tell(
            CycleStage.GENERATING,
            f"Generated {todo.generated}/{todo.total}: {turn.label}",
            done=todo.generated,
            total=todo.total,
            token_id=turn.change.token.token_id,
        )

    def _publish(self, rules: Rules, turn: _Turn, result: GenerationResult, todo: _Regenerations) -> OpenStep:
        """Pin the regenerated image (its provenance naming the previous version and the feed snapshot),
        its animation and metadata; the row becomes `pinned`."""
        token, decision, step = turn.change.token, turn.change.decision, turn.step
        self.tell(
            CycleStage.PINNING,
            f"Pinning token #{token.token_id} v{step.version}: image, animation, then its metadata",
            done=todo.generated,
            total=todo.total,
            token_id=token.token_id,
        )
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
                token_id=token.token_id,
                # The versions recorded before this one: the frames of its animation_url.
                earlier_image_cids=[
                    view.image_cid for view in timeline(self.studio, token.token_id) if view.version < step.version
                ],
            )
        )
        return self.sender.pinned(step, image_cid=published.image_cid, metadata_cid=published.metadata_cid)

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
        """Batch by batch, each one transaction within the per-transaction gas budget and what is left
        of the cycle's; what does not fit waits (`pinned`) for the next cycle and is reported. Each
        batch is recorded (step 5) before the next is sized."""
        queue = [s for s in steps if s.metadata_cid]
        while queue:
            if self.stop.is_set():
                for s in queue:
                    self.report.pending[str(s.token_id)] = "stop requested: sent next cycle"
                return
            batch = self._next_batch(queue)
            if isinstance(batch, Refused):
                self._drop_refused(batch)
                queue = [s for s in queue if s.token_id != batch.step.token_id]
                continue
            if not batch.steps:
                for s in queue:
                    self.report.pending[str(s.token_id)] = (
                        f"cycle gas budget spent ({self.settings.evolve.cycle_gas_budget} gas): sent next cycle"
                    )
                return
            self.report.estimated_gas += batch.estimate
            tokens = ", ".join(f"#{s.token_id}" for s in batch.steps)
            self.tell(
                CycleStage.SENDING,
                f"Estimated {batch.estimate:,} gas for {tokens} (dry run: nothing sent)"
                if self.dry_run
                else f"Sending {tokens} in one transaction (estimated {batch.estimate:,} gas)",
                total=len(steps),
            )
            try:
                sent = self.sender.send(batch)
            except VersionMismatchError as exc:
                # Evolved by someone else between our estimate and the send: the transaction reverted as a
                # whole, so none of the batch is on chain. That token waits; the others go again.
                step = next(s for s in batch.steps if s.token_id == exc.token_id)
                self._changed_on_chain(step, exc)
                queue = [s for s in queue if s.token_id != exc.token_id]
                continue
            except FeeCapExceededError as exc:
                # Refused before anything was sent: the rows wait again.
                for s in queue:
                    self.report.pending[str(s.token_id)] = "fee above the cap: sent when fees fall"
                raise CycleAborted(f"fee spike: {exc}") from exc
            except ChainError as exc:
                # Some or all of it may have been sent (or mined): the rows stay `sending` and the next
                # cycle asks the chain what it has before sending anything again.
                for s in queue:
                    self.report.pending[str(s.token_id)] = "chain error: reconciled and sent next cycle"
                if isinstance(getattr(exc, "cause", exc), RPCUnavailableError):
                    self._log_stall(exc, len(batch.steps))
                done = getattr(exc, "done", [])
                self.report.transactions.extend(r.tx_hash for r in done)
                raise CycleAborted(f"chain error while sending a batch of {len(batch.steps)}: {exc}") from exc
            self.gas_left -= sent.gas
            self.report.transactions.extend(r.tx_hash for r in sent.transactions)
            self.record(self.sender.record(sent))  # 5
            self.sender.heartbeat()
            queue = queue[len(batch.steps) :]

    def _next_batch(self, queue: list[OpenStep]) -> Batch | Refused:
        """As many rows from the front of the queue as one transaction carries within the
        per-transaction budget and what is left of the cycle's (sized by the chain client, which
        sizes its transactions the same way: one batch here is one transaction there). An empty
        batch: the cycle's budget is spent."""
        client = self.studio.chain.client
        try:
            count, estimate = client.fit_evolve_batch(
                batch_items(queue), gas_budget=self.settings.chain.batch_gas_budget, gas_left=self.gas_left
            )
        except (TokenFrozenError, VersionMismatchError) as exc:
            return Refused(next(s for s in queue if s.token_id == exc.token_id), exc)
        except RPCUnavailableError as exc:
            # A stall or an outage, not a batch too large: cutting the batch would only multiply
            # transactions once the node answers again. Nothing was sent: all of it waits.
            self._log_stall(exc, len(queue))
            for s in queue:
                self.report.pending[str(s.token_id)] = "the RPC endpoint did not answer: sent next cycle"
            raise CycleAborted(f"RPC stall while estimating a batch of {len(queue)}: {exc}") from exc
        return Batch(queue[:count], estimate if count else 0)

    def _drop_refused(self, refused: Refused) -> None:
        if isinstance(refused.error, TokenFrozenError):
            self._frozen_on_chain(refused.step)
        else:
            self._changed_on_chain(refused.step, refused.error)

    def _frozen_on_chain(self, step: OpenStep) -> None:
        """Frozen by its owner since it was minted: it never evolves again; say so and record it."""
        self.report.frozen.append(step.token_id)
        log.warning("token is frozen on chain", extra={"event": "frozen", "token_id": step.token_id})
        self.sender.drop(step, "the token is frozen on chain", frozen=True)

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
        self.sender.drop(step, reason)

    def _log_stall(self, exc: ChainError, tokens: int) -> None:
        log.error(
            "the RPC endpoint stalled: the batch waits for the next cycle (not split: it is not too large)",
            extra={"event": "rpc_stall", "tokens": tokens, "error": str(exc)},
        )

    # --- 5. record ---------------------------------------------------------------------------------

    def record(self, recorded: list[Recorded]) -> None:
        """The versions the sender recorded (with their transaction's gas, counted once) go in the report."""
        for done in recorded:
            self.report.evolved.append(done.token_id)
            self.report.gas_used += done.gas_counted
        if recorded:
            self.confirmed += len(recorded)
            tokens = ", ".join(f"#{done.token_id}" for done in recorded)
            txs = ", ".join(sorted({done.tx_hash[:12] + "…" for done in recorded if done.tx_hash}))
            self.tell(
                CycleStage.CONFIRMED,
                f"Confirmed on chain: {tokens}" + (f" (transaction {txs})" if txs else ""),
                done=self.confirmed,
            )

    def finish(self, status: CycleStatus, error: str | None, started: float) -> None:
        """The cycle's row gets its status and report. A cycle with tokens waiting or errors is partial."""
        if status == CycleStatus.DONE and (self.report.pending or self.report.errors):
            status = CycleStatus.PARTIAL
        if status == CycleStatus.PARTIAL and error is None:
            error = "; ".join(self.report.errors) or f"{len(self.report.pending)} token(s) wait for the next cycle"
        self.report.status = status
        self.report.would_change = self.sender.would_change
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


def _needs_chain(rules: Rules) -> bool:
    return any(f.type in ("activity",) or (f.type == "chainlink" and not f.rpc_url) for f in rules.feeds.values())


def _safe_read(feed: Feed, moment: datetime) -> FeedValue | FeedError:
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
    on_step: ProgressCallback | None = None,
) -> CycleReport:
    """Run one cycle of `collection` (its rules in `<rules_dir>/<collection>.toml`) and return its
    report. Raises RulesError for a broken rules file and CycleBusy when another live process runs a
    cycle of the same collection; everything else is in the report (and the journal). `on_step` sees
    each step as it happens (evolve/progress.py)."""
    return Cycle(studio, collection, dry_run=dry_run, stop=stop, now=now, on_step=on_step).run()
