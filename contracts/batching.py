"""Sizing batch transactions: the one place that decides how many items go into each transaction.

Batch evolve and batch mint both send a list of items in as few transactions as fit under a gas budget
(and the per-transaction cap). Each part is estimated right before it is sent, because the chain's
state changes between parts; a part that does not fit is cut down by the measured gas per item.
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
    """Send `items` in consecutive parts, each as large as fits under `gas_budget` (default and ceiling:
    the per-transaction cap of 16,777,216) with the gas buffer included; returns one result per part.

    `estimate(part)` is the node's raw estimate for one part, `send(part, gas)` sends it with that gas
    limit. If a part fails, the error is `partial(done, cause)` when earlier parts were mined (so the
    caller knows what went through) and the cause itself when nothing was sent.
    """
    limit = min(gas_budget or TX_GAS_CAP, TX_GAS_CAP)
    pending = list(items)
    results: list[Result] = []
    size = len(pending)
    while pending:
        size = min(size, len(pending))
        part = pending[:size]
        try:
            estimated = estimate(part)
        except ChainError as exc:
            # The node could not estimate so much: try less. Not on a revert (it reverts at any size)
            # nor when the node did not answer at all (a stall is no sign of size: splitting would only
            # multiply transactions once it answers again).
            if size > 1 and not isinstance(exc, ContractRevertError | RPCUnavailableError):
                size = max(1, size // 2)
                continue
            raise _partial(results, exc, partial) from None
        gas = int(estimated * gas_buffer)
        if gas > limit:
            if size == 1:
                cause = ChainError(
                    f"{describe(part[0])} alone needs {gas} gas (with buffer), above the gas budget of {limit}: "
                    "raise the budget."
                )
                raise _partial(results, cause, partial)
            # Scale down by the measured gas per item, keeping a margin for the fixed part.
            size = max(1, min(size - 1, int(size * limit / gas * 0.95)))
            continue
        try:
            results.append(send(part, gas))
        except ChainError as exc:
            raise _partial(results, exc, partial) from None
        pending = pending[size:]
    return results


def _partial(
    done: list[Result], cause: ChainError, partial: Callable[[list[Result], ChainError], ChainError]
) -> ChainError:
    return partial(done, cause) if done else cause
