"""The message drivers of assembly (distributed mode): assemble the item one message
names and say whether its job is ready to finalize; finalize the job one message names.

Either may run twice, or twice at once: the state module's claims decide who does the
work, and a run that finds it done changes nothing. Audio that retrying cannot fix (a
chunk's object that does not match its record) fails its item or job, recorded with its
error, and the rest of the job goes on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.book import finalize_job
from pipeline.assemble.items import assemble_item
from pipeline.errors import PermanentError
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import ItemStatus, JobStatus
from pipeline.storage.base import ObjectStore

log = logging.getLogger(__name__)

OutputStoreFor = Callable[[str], ObjectStore]  # a job's output_uri -> where its files go


@dataclass(frozen=True)
class ItemOutcome:
    """What assembling one item ended as, and whether the job's finalize is due now."""

    status: str  # the item's status (or the job's, when the job was already final)
    finalize: bool  # publish finalize_job for the job: this run claimed it, or it waits


def assemble_item_message(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    item_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store_for: OutputStoreFor,
) -> ItemOutcome | None:
    """Assemble one item of a job; None when the job is final already (nothing to do)."""
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        if job.status.final or job.output_uri is None:
            return None
        output = output_store_for(job.output_uri)
    try:
        result = assemble_item(
            factory, item_id=item_id, chunk_store=chunk_store, output_store=output
        )
        status = str(result.status)
    except PermanentError as exc:
        log.error("item %s of job %s failed: %s", item_id, job_id, exc)
        with transaction(factory) as session:
            store.fail_item(session, item_id=item_id, error=exc.message)
        status = str(ItemStatus.FAILED)
    with transaction(factory) as session:
        claimed = store.claim_finalization(session, job_id=job_id)
        # An earlier run may have claimed it and then failed to publish: publish again
        # (finalize_job is idempotent) whenever the job waits in `assembling`.
        waiting = not claimed and store.get_job(session, job_id).status == JobStatus.ASSEMBLING
        open_items = store.items_in_assembly(session, job_id=job_id)
    return ItemOutcome(status, claimed or (waiting and not open_items))


def finalize_job_message(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store_for: OutputStoreFor,
) -> JobStatus | None:
    """Write the job's book and manifest and finish it; the status it ended in (failed,
    recorded with its error, when its audio cannot be assembled), or None when the job
    has no output folder."""
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        if job.output_uri is None:
            return None
        output = output_store_for(job.output_uri)
    try:
        result = finalize_job(factory, job_id=job_id, chunk_store=chunk_store, output_store=output)
    except PermanentError as exc:
        log.error("job %s failed at its final step: %s", job_id, exc)
        with transaction(factory) as session:
            store.fail_job(session, job_id=job_id, error=exc.message)
        return JobStatus.FAILED
    return result.status
