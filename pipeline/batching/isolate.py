"""Running a batch with each failure kept to the request that causes it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from pipeline.engines.failures import as_engine_error
from pipeline.errors import EngineBroken, EngineOutOfMemory

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def isolate(
    run: Callable[[list[T]], Sequence[R]], items: list[T]
) -> tuple[list[R | BaseException], int]:
    """run(items) with failures kept to the items that cause them. Returns the outcomes
    in order and the number of splits.

    Out of memory (EngineOutOfMemory, or a library's own out-of-memory error) splits the
    batch in halves, down to one item, whose error it becomes. A sticky device error
    (EngineBroken) is every item's: the engine, not an item, is at fault, and running the
    items one by one would only fail each again. Any other error retries item by item."""
    try:
        results: list[R | BaseException] = list(run(items))
        if len(results) != len(items):
            raise RuntimeError(f"the engine returned {len(results)} results for {len(items)}")
        return results, 0
    except KeyboardInterrupt:
        raise
    except Exception as raised:
        exc = as_engine_error(raised)
        if isinstance(exc, EngineBroken):
            log.error("batch of %d failed on a broken engine: %s", len(items), exc)
            return [exc] * len(items), 0
        if len(items) == 1:
            return [exc], 0
        if isinstance(exc, EngineOutOfMemory):
            half = len(items) // 2
            log.warning("batch of %d ran out of memory (%s); splitting it", len(items), exc)
            first, first_splits = isolate(run, items[:half])
            second, second_splits = isolate(run, items[half:])
            return first + second, 1 + first_splits + second_splits
        log.info("batch of %d failed (%s); retrying one by one", len(items), exc)
        outcomes: list[R | BaseException] = []
        splits = 0
        for item in items:
            outcome, more = isolate(run, [item])
            outcomes += outcome
            splits += more
        return outcomes, splits
