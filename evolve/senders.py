"""Where a cycle's work goes: the only thing that differs between a cycle and a dry run.

The cycle (evolve/cycle.py) calls the same `Sender` methods in both. A `ChainSender` commits every
step to the journal before the side effect it announces, sends to the chain, and records what the
chain confirmed; a `DrySender` writes nothing to the journal, sends nothing, and keeps what it would
have sent for the report.

Crash safety (evolve/journal.py) lives in `ChainSender`: rows are `sending` before a transaction may
leave; a batch refused before anything was mined goes back to `pinned`; a token's version is recorded
in the same database transaction that closes its journal row and counts its transaction's gas; and a
restart asks the chain about `sending` rows before anything is sent again (`take_over`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from eth_utils.address import to_checksum_address

from contracts.client import LivingNFTClient
from contracts.errors import FeeCapExceededError, VersionMismatchError
from contracts.signer import TxResult
from evolve.errors import CycleAborted
from evolve.journal import Journal, OpenStep, StepStatus
from evolve.plan import LiveToken
from studio.crashpoints import crash_point as studio_crash_point
from studio.records import Token
from studio.services.studio import Studio
from studio.services.tokens import record_version

log = logging.getLogger("evolve.cycle")

CRASH_POINTS = ("after_snapshot", "after_pin", "before_send", "after_send", "after_record")
HEARTBEAT_EVERY_S = 5.0


def crash_point(name: str) -> None:
    """The cycle's crash points are named `evolve:<point>` (STUDIO_CRASH_AT; studio/crashpoints.py)."""
    studio_crash_point(f"evolve:{name}")


@dataclass(frozen=True)
class Batch:
    """The journal rows one transaction carries, and the node's gas estimate for them (no buffer)."""

    steps: list[OpenStep]
    estimate: int


@dataclass(frozen=True)
class Sent:
    """What became of a batch: its transactions (one, unless the estimate grew between sizing and
    sending and the client split it), the transaction and block that carried each token, and the gas
    it takes from the cycle's budget (what it used; for a dry run, the estimate)."""

    steps: list[OpenStep]
    transactions: list[TxResult]
    carried: dict[int, tuple[str | None, int | None]]
    gas: int


@dataclass(frozen=True)
class Recorded:
    """A token's new version, recorded. `gas_counted` is its transaction's gas when this row was the
    first of that transaction to be recorded (the cycle counts it once), else 0."""

    token_id: int
    tx_hash: str | None
    gas_counted: int


class TransactionsWaiting(CycleAborted):
    """Transactions of the studio's account wait to be mined: no cycle sends anything until they are."""


class Sender(Protocol):
    """What a cycle does outside its own report, step by step (see evolve/cycle.py)."""

    would_change: list[dict[str, Any]]  # the versions a dry run pinned locally and would send

    def take_over(self) -> list[Recorded]:
        """0. Close the rows an interrupted cycle left `sending`; returns those the chain had."""
        ...

    def changed_on_chain(self, tokens: list[LiveToken]) -> dict[int, str]:
        """2. Tokens whose metadata on chain is not the version the studio recorded: id -> CID on chain."""
        ...

    def snapshot_pinned(self, cid: str, snapshot: dict[str, Any]) -> None:
        """1. The feed snapshot is pinned: the cycle's versions will name it."""
        ...

    def open_steps(self, token_pks: list[int]) -> dict[int, OpenStep]:
        """2. The tokens' open journal rows, by token pk."""
        ...

    def plan(self, fields: dict[str, Any]) -> OpenStep:
        """3. A new version is decided (a `planned` row): nothing outside the database has happened."""
        ...

    def pinned(self, step: OpenStep, *, image_cid: str, metadata_cid: str) -> OpenStep:
        """3. Its image and metadata are pinned."""
        ...

    def drop(self, step: OpenStep, reason: str, *, frozen: bool = False) -> None:
        """A version that will never be sent (its row is `superseded`); `frozen`: the token is frozen on chain."""
        ...

    def send(self, batch: Batch) -> Sent:
        """4. One transaction for the batch. Raises VersionMismatchError or FeeCapExceededError when
        nothing of it is on chain (the rows wait again), any other ChainError when some may be."""
        ...

    def record(self, sent: Sent) -> list[Recorded]:
        """5. The tokens' new versions, as the chain confirmed them."""
        ...

    def heartbeat(self) -> None:
        """Tell other processes the cycle's owner is alive."""
        ...


@dataclass
class DrySender:
    """A dry run: nothing in the journal, nothing sent, no remote pins (the cycle pins to the local
    store only, for a look). Each batch is estimated; its estimate stands for the gas it would use."""

    would_change: list[dict[str, Any]] = field(default_factory=list)

    def take_over(self) -> list[Recorded]:
        return []  # a dry run leaves the journal to the next real cycle

    def changed_on_chain(self, tokens: list[LiveToken]) -> dict[int, str]:
        return {}  # not looked at: such a token shows up as a version conflict when its batch is estimated

    def snapshot_pinned(self, cid: str, snapshot: dict[str, Any]) -> None:
        pass

    def open_steps(self, token_pks: list[int]) -> dict[int, OpenStep]:
        return {}  # every change is planned afresh

    def plan(self, fields: dict[str, Any]) -> OpenStep:
        return OpenStep(
            id=0, cycle_id=0, step=StepStatus.PLANNED, image_cid=None, metadata_cid=None, tx_hash=None, **fields
        )

    def pinned(self, step: OpenStep, *, image_cid: str, metadata_cid: str) -> OpenStep:
        self.would_change.append(
            {
                "token_id": step.token_id,
                "version": step.version,
                "state": step.state,
                "image_cid": image_cid,
                "metadata_cid": metadata_cid,
            }
        )
        return replace(step, step=StepStatus.PINNED, image_cid=image_cid, metadata_cid=metadata_cid)

    def drop(self, step: OpenStep, reason: str, *, frozen: bool = False) -> None:
        pass

    def send(self, batch: Batch) -> Sent:
        return Sent(batch.steps, transactions=[], carried={}, gas=batch.estimate)

    def record(self, sent: Sent) -> list[Recorded]:
        return []

    def heartbeat(self) -> None:
        pass


class ChainSender:
    """A real cycle: every step through the journal, then the chain."""

    def __init__(self, studio: Studio, journal: Journal, cycle_id: int) -> None:
        self.studio = studio
        self.journal = journal
        self.cycle_id = cycle_id
        self.would_change: list[dict[str, Any]] = []  # a real cycle reports what it sent instead
        self._tx_gas: dict[str, int] = {}
        self._last_beat = time.monotonic()

    @property
    def client(self) -> LivingNFTClient:
        return self.studio.chain.client

    # --- 0. take over ----------------------------------------------------------------------------

    def take_over(self) -> list[Recorded]:
        """A `sending` row is checked against the chain's history of its token: recorded if the chain
        has it, back to `pinned` (sent again by this cycle) if not. Nothing is sent twice."""
        self._refuse_with_pending_transactions()
        recorded = []
        for step in self.journal.open_steps().values():
            if step.step != StepStatus.SENDING:
                continue
            change = next((c for c in self.client.history(step.token_id) if c.metadata_cid == step.metadata_cid), None)
            if change is None:
                self.journal.advance(step.id, StepStatus.PINNED, tx_hash=None)
                log.info("not on chain: will resend", extra={"event": "reconcile", "token_id": step.token_id})
                continue
            recorded.append(self._record(step, tx_hash=change.tx_hash, block_number=change.block_number, gas_used=None))
            log.info(
                "already on chain: recorded without resending",
                extra={"event": "reconcile", "token_id": step.token_id, "tx_hash": change.tx_hash},
            )
        return recorded

    def _refuse_with_pending_transactions(self) -> None:
        """Transactions of ours still waiting to be mined stop the cycle (the journal cannot tell yet
        what they carry). Say plainly which, and, where the node lists its pool, whether their fee is
        under the base fee (stuck until fees fall or they are replaced) and what to do."""
        chain = self.studio.chain
        account = to_checksum_address(chain.address)
        pending = chain.w3.eth.get_transaction_count(account, "pending")
        mined = chain.w3.eth.get_transaction_count(account, "latest")
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
        log.error(message, extra={"event": "blocked", "transactions": pending - mined})
        raise TransactionsWaiting(message)

    # --- 1.-3. snapshot, decide, prepare ------------------------------------------------------------

    def snapshot_pinned(self, cid: str, snapshot: dict[str, Any]) -> None:
        self.journal.set_snapshot(self.cycle_id, cid, snapshot)

    def changed_on_chain(self, tokens: list[LiveToken]) -> dict[int, str]:
        """One changed by someone else (another evolver, another tool) is left as it is and reported.
        (The roll-forward has already recorded the studio's own sends.)"""
        changed = {}
        for token in tokens:
            on_chain = self.client.metadata_cid(token.token_id)
            if on_chain is None:
                continue  # a drop token still reading its drop's file: never evolved, so nobody changed it
            if on_chain != token.current_metadata_cid:
                changed[token.token_id] = on_chain
                log.warning(
                    "token changed outside the studio", extra={"event": "foreign_change", "token_id": token.token_id}
                )
        return changed

    def open_steps(self, token_pks: list[int]) -> dict[int, OpenStep]:
        return self.journal.open_steps(token_pks)

    def plan(self, fields: dict[str, Any]) -> OpenStep:
        return self.journal.plan(self.cycle_id, **fields)

    def pinned(self, step: OpenStep, *, image_cid: str, metadata_cid: str) -> OpenStep:
        return self.journal.advance(step.id, StepStatus.PINNED, image_cid=image_cid, metadata_cid=metadata_cid)

    def drop(self, step: OpenStep, reason: str, *, frozen: bool = False) -> None:
        if not frozen:
            self.journal.advance(step.id, StepStatus.SUPERSEDED, error=reason)
            return
        with self.studio.db.session() as session:  # the token and its row, together
            token = session.get(Token, step.token_pk)
            if token is not None:
                token.frozen = True
            self.journal.advance(step.id, StepStatus.SUPERSEDED, session=session, error=reason)

    # --- 4. send ---------------------------------------------------------------------------------

    def send(self, batch: Batch) -> Sent:
        ids = [s.id for s in batch.steps]
        self.journal.advance_many(ids, StepStatus.SENDING)
        crash_point("before_send")
        try:
            budget = self.studio.settings.chain.batch_gas_budget
            results = self.client.evolve_batch(batch_items(batch.steps), gas_budget=budget)
        except (VersionMismatchError, FeeCapExceededError):
            # Reverted as a whole, or refused before it left: none of it is on chain, the rows wait
            # again. Any other chain error leaves them `sending`: some of it may have been sent (or
            # mined), and the next cycle asks the chain what it has before sending anything again.
            self.journal.advance_many(ids, StepStatus.PINNED)
            raise
        crash_point("after_send")
        self._tx_gas.update((r.tx_hash, r.gas_used) for r in results)
        return Sent(
            batch.steps,
            transactions=results,
            carried=self._where_mined(batch.steps, results),
            gas=sum(r.gas_used for r in results),
        )

    def _where_mined(self, steps: list[OpenStep], results: list[TxResult]) -> dict[int, tuple[str | None, int | None]]:
        """(tx hash, block) per token. One transaction is the rule; should the estimate have grown
        between sizing and sending and the client split the batch, each token's own MetadataSet
        event says which transaction carried it."""
        if len(results) == 1:
            return {s.token_id: (results[0].tx_hash, results[0].block_number) for s in steps}
        where: dict[int, tuple[str | None, int | None]] = {}
        for s in steps:
            change = next((c for c in self.client.history(s.token_id) if c.metadata_cid == s.metadata_cid), None)
            where[s.token_id] = (change.tx_hash, change.block_number) if change else (None, None)
        return where

    # --- 5. record -------------------------------------------------------------------------------

    def record(self, sent: Sent) -> list[Recorded]:
        per_token = sent.gas // max(1, len(sent.steps))
        recorded = []
        for step in sent.steps:
            tx_hash, block = sent.carried[step.token_id]
            recorded.append(self._record(step, tx_hash=tx_hash, block_number=block, gas_used=per_token))
        log.info(
            "batch confirmed",
            extra={
                "event": "batch",
                "tokens": len(sent.steps),
                "gas_used": sent.gas,
                "tx_hashes": [r.tx_hash for r in sent.transactions],
            },
        )
        crash_point("after_record")
        return recorded

    def _record(
        self, step: OpenStep, *, tx_hash: str | None, block_number: int | None, gas_used: int | None
    ) -> Recorded:
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
        counted = 0
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
            if tx_hash and not self.journal.tx_recorded(tx_hash, session=session):
                counted = self._gas_of(tx_hash)
                self.journal.add_gas(self.cycle_id, counted, session=session)
            self.journal.advance(
                step.id,
                StepStatus.RECORDED,
                session=session,
                tx_hash=tx_hash,
                block_number=block_number,
                gas_used=gas_used,
            )
        return Recorded(step.token_id, tx_hash, counted)

    def _gas_of(self, tx_hash: str) -> int:
        """A transaction's gas: from its result when this cycle sent it, else from its receipt."""
        if tx_hash not in self._tx_gas:
            self._tx_gas[tx_hash] = int(self.studio.chain.signer.receipt(tx_hash)["gasUsed"])
        return self._tx_gas[tx_hash]

    def heartbeat(self) -> None:
        """At most every few seconds: each beat is a commit."""
        if time.monotonic() - self._last_beat >= HEARTBEAT_EVERY_S:
            self.journal.heartbeat(self.cycle_id)
            self._last_beat = time.monotonic()


def batch_items(steps: list[OpenStep]) -> list[tuple[int, str, int]]:
    """evolveBatch's items: a step builds `version` on the token's current version, `version - 1`,
    which the contract compare-and-sets."""
    return [(s.token_id, s.metadata_cid or "", s.version - 1) for s in steps]


def _quantity(value: Any) -> int:
    """A JSON-RPC quantity (hex text or a number) as an int; 0 when missing or malformed."""
    try:
        return int(value, 16) if isinstance(value, str) else int(value or 0)
    except (TypeError, ValueError):
        return 0
