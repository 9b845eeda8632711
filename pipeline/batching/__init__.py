"""The dynamic batcher: many producers submit single requests, one loop runs them in batches.

Producers (a render worker's task threads, the embedded renderer) call
`DynamicBatcher.submit(request)` and wait on the returned future. One loop thread forms
batches of at most `max_batch` requests, waits at most `max_wait_ms` for the oldest request
to get company, keeps a batch's padded cost (requests x longest expected tokens) under
`token_budget`, and groups requests of similar expected length (a power-of-two bucket of
`engine.expected_tokens`, else of the text length) so a short chunk does not ride in a
batch that runs as long as its longest member. A batch that leaves before it is full (its
oldest request's wait is over) takes the nearest-length requests waiting elsewhere: a
half-empty batch costs as many steps as a full one.

Requests submitted `realtime` (a speech request a client is waiting for) form the next
batch at once, ahead of any batch request waiting; after `REALTIME_RUN` realtime batches
in a row, the oldest batch work goes once, so speech slows batch jobs but never starves
them.

With a StagedEngine the second stage of batch k (Maya1: SNAC decoding) runs on its own
thread while the loop already runs the first stage of batch k+1 (Maya1: LLM generation).

Failures stay with their request (`isolate`): a stage may return an exception for one
element; a batch that runs out of memory (in either stage) is split in halves and tried
again; a sticky device error is every request's (`EngineBroken`: trying them one by one
cannot help); any other error of a whole batch is retried one request at a time to find
the one that fails. A batcher thread that dies fails every waiting request, and every
later one, at once (`BatcherDead`).

`BatchingEngine` wraps a batcher as an ordinary Engine, so the renderer needs no change.

Modules: `isolate` (failures kept to their request), `batcher` (`DynamicBatcher`),
`engine` (`BatchingEngine`, `with_batching`).
"""

from pipeline.batching.batcher import (
    BatcherClosed,
    BatcherDead,
    BatcherStats,
    DynamicBatcher,
    length_bucket,
)
from pipeline.batching.engine import BatchingEngine, Outcome, batching_wanted, with_batching
from pipeline.batching.isolate import isolate

__all__ = [
    "BatcherClosed",
    "BatcherDead",
    "BatcherStats",
    "BatchingEngine",
    "DynamicBatcher",
    "Outcome",
    "batching_wanted",
    "isolate",
    "length_bucket",
    "with_batching",
]
