"""Sizing batch transactions: the one place that decides how many items go into each transaction.

Batch evolve and batch mint both send a list of items in as few transactions as fit under a gas budget
(and the per-transaction cap); the evolution cycle sizes its journal batches (one batch, one
transaction) with the same `fit_front`. Each part is estimated right before it is sent, because the
chain's state changes between parts; a part that does not fit is cut down by the measured gas per item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from contracts.errors import ChainError, ContractRevertError, RPCUnavailableError
from contracts.signer import TX_GAS_CAP

Item = TypeVar("Item")
Result = TypeVar("Result")


class PartialBatchError(ChainError):
    """A batch stopped part-way: `done` holds the results of the parts that did go through."""

    def __init__(self, done: Sequence[object], cause: ChainError) -> None:
        self.done = list(done)
        self.cause = cause
        super().__init__(f"{cause} ({len(done)} earlier part(s) of the batch were already mined)")


def fit_front(
    items: Sequence[Item],
    *,
    estimate: Callable[[Sequence[Item]], int],
    gas_buffer: float,
    gas_budget: int | None = None,
    gas_left: int | None = None,
) -> tuple[int, int]:
    """How many of `items`, from the front, one transaction can carry: the longest prefix whose gas
    limit (`estimate(prefix)` x `gas_buffer`) is within `gas_budget` (default and at most the
    per-transaction cap of 16,777,216) and, when `gas_left` is given, whose estimate is within it (what
    is left of a budget counted in gas used).

    Returns (count, the estimate for those `count` items). Count 0 means not even the first item fits;
    the estimate is then the first item's alone.

    A batch's gas is a fixed part plus about the same per item, so cutting the batch in proportion to
    the excess never cuts too deep: each cut is estimated again and the size comes down to the longest
    front that fits, in a few estimates. A revert (a frozen token, a stale version) and an unanswering
    node are raised as they are: neither depends on the batch's size (and splitting would only multiply
    transactions once the node answers again). Any other error estimating more than one item is taken
    as "too much at once", and half is tried.
    """
    limit = min(gas_budget or TX_GAS_CAP, TX_GAS_CAP)
    size = len(items)
    while size > 0:
        try:
            estimated = estimate(items[:size])
        except ChainError as exc:
            if size > 1 and not isinstance(exc, ContractRevertError | RPCUnavailableError):
                size //= 2
                continue
            raise
        gas = int(estimated * gas_buffer)
        if gas <= limit and (gas_left is None or estimated <= gas_left):
            return size, estimated
        if size == 1:
            return 0, estimated
        room = limit / max(1, gas)
        if gas_left is not None:
            room = min(room, gas_left / max(1, estimated))
        size = max(1, min(size - 1, int(size * room)))
    return 0, 0


def send_in_parts(
    items: Sequence[Item],
    *,
    estimate: Callable[[Sequence[Item]], int],
    send: Callable[[Sequence[Item], int], Result],
    gas_buffer: float,
    gas_budget: int | None,
    describe: Callable[[Item], str],
    partial: Callable[[list[Result], ChainError], ChainError],
) -> list[Result]:
    """Send `items` in consecutive parts, each the longest front that `fit_front` finds under
    `gas_budget` (default and ceiling: the per-transaction cap) with the gas buffer included; returns one
    result per part. Each part is sized right before it is sent: the chain's state changes between parts.

    `estimate(part)` is the node's raw estimate for one part, `send(part, gas)` sends it with that gas
    limit. If a part fails, the error is `partial(done, cause)` when earlier parts were mined (so the
    caller knows what went through) and the cause itself when nothing was sent.
    """
    limit = min(gas_budget or TX_GAS_CAP, TX_GAS_CAP)
    pending = list(items)
    results: list[Result] = []
    size = len(pending)  # each part starts from the size of the one before
    while pending:
        try:
            size, estimated = fit_front(pending[:size], estimate=estimate, gas_buffer=gas_buffer, gas_budget=limit)
        except ChainError as exc:
            raise _partial(results, exc, partial) from None
        if size == 0:
            cause = ChainError(
                f"{describe(pending[0])} alone needs {int(estimated * gas_buffer)} gas (with buffer), above the "
                f"gas budget of {limit}: raise the budget."
            )
            raise _partial(results, cause, partial)
        try:
            results.append(send(pending[:size], int(estimated * gas_buffer)))
        except ChainError as exc:
            raise _partial(results, exc, partial) from None
        pending = pending[size:]
    return results


def _partial(
    done: list[Result], cause: ChainError, partial: Callable[[list[Result], ChainError], ChainError]
) -> ChainError:
    return partial(done, cause) if done else cause
