"""The message drivers of assembly (distributed mode): assemble the item one message
names and say whether its job is ready to finalize; finalize the job one message names.

Either may run twice, or twice at once: the assembler first takes the item's (or job's)
assembly lease (pipeline.state.assembly), and a message that finds the lease live
elsewhere, or the work done, changes nothing. The lease is renewed while the work runs
and counts an attempt; an item or job whose assembly keeps failing is failed after
`max_attempts`, with its last error. Audio that retrying cannot fix (a chunk's object
that does not match its record) fails its item or job, recorded with its error, and the
rest of the job goes on. A chunk whose object vanished goes back to pending with its
item: the outcome names the chunks to render again.

A job is marked finished (and its webhook queued, in the same transaction) only once
every file it asked for is in its folder: the finalizer writes QA's results and then
the read-along EPUB under its lease, after the manifest and before the state change,
so a finalizer that dies between them leaves the job `assembling` for the next one,
which writes them again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from pipeline.assemble.book import finalize_job
from pipeline.assemble.items import assemble_item
from pipeline.assemble.leases import AssemblyLease, record_run, reopen_vanished
from pipeline.assemble.read_along_source import write_job_read_along
from pipeline.errors import (
    ChunkObjectsMissing,
    InputError,
    PermanentError,
    RecordGone,
    RetryableError,
)
from pipeline.qa.results import record_job
from pipeline.state import assembly, store
from pipeline.state.assembly import Reopened, Take
from pipeline.state.db import transaction
from pipeline.state.models import ItemStatus, JobStatus
from pipeline.storage.base import ObjectStore
from pipeline.storage.write_once import WriteOnceStore

log = logging.getLogger(__name__)

OutputStoreFor = Callable[[str], ObjectStore]  # a job's output_uri -> where its files go
# The recogniser's name in a job's QA summary when the finalizer has none of its own
# (the verdicts were made by the render workers; the finalizer only places them).
UNNAMED_MODEL = "unknown"


@dataclass(frozen=True)
class ItemOutcome:
    """What assembling one item ended as, and whether the job's finalize is due now."""

    status: str  # the item's status (or the job's, when the job was already final)
    finalize: bool  # publish finalize_job for the job: this run claimed it, or it waits
    # chunks whose objects were gone, back to pending: publish them to be rendered again
    reopened: Reopened = field(default_factory=Reopened)


@dataclass(frozen=True)
class JobOutcome:
    """What finalizing a job ended as (None: nothing done), and chunks to render again."""

    status: JobStatus | None
    reopened: Reopened = field(default_factory=Reopened)


@contextmanager
def _held(factory: sessionmaker[Session], lease: AssemblyLease) -> Iterator[None]:
    """Run the work under the heartbeat; hand the lease back if it stops unfinished:
    passing trouble gives the attempt back, anything else keeps it counted, with its
    error recorded for when the item or job is given up on."""
    try:
        with lease.heartbeat(factory):
            if lease.delay_seconds:
                time.sleep(lease.delay_seconds)
            yield
    except RetryableError:
        with transaction(factory) as session:
            assembly.release_assembly(session, owner=lease.owner, refund=True)
        raise
    except Exception as exc:
        with transaction(factory) as session:
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            assembly.release_assembly(session, owner=lease.owner, error=error)
        raise


def assemble_item_message(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    item_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store_for: OutputStoreFor,
    lease: AssemblyLease,
) -> ItemOutcome | None:
    """Assemble one item of a job; None when the job is final already (nothing to do)."""
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        if job.status.final or job.output_uri is None:
            return None
        output = output_store_for(job.output_uri)
        took = assembly.take_item_assembly(
            session,
            item_id=item_id,
            owner=lease.owner,
            ttl=lease.ttl,
            max_attempts=lease.max_attempts,
        )
    if took == Take.BUSY:  # another assembler holds it, alive: this message is a duplicate
        return ItemOutcome(str(ItemStatus.ASSEMBLING), False)
    status = str(ItemStatus.FAILED) if took == Take.GAVE_UP else ""
    if took == Take.TAKEN:
        record_run(lease.journal, "item", item_id)
        try:
            with _held(factory, lease):
                result = assemble_item(
                    factory,
                    item_id=item_id,
                    chunk_store=chunk_store,
                    output_store=output,
                    owner=lease.owner,
                )
            status = str(result.status)
        except ChunkObjectsMissing as exc:
            reopened = reopen_vanished(factory, chunk_store, job_id=job_id, keys=exc.keys)
            return ItemOutcome(str(ItemStatus.PENDING), False, reopened)
        except (PermanentError, InputError) as exc:
            if isinstance(exc, RecordGone):
                raise
            # also input met during the work (storage refusing access, a missing bucket,
            # an invalid key): the item fails with its message, nothing goes round
            log.error("item %s of job %s failed: %s", item_id, job_id, exc)
            with transaction(factory) as session:
                store.fail_item(session, item_id=item_id, error=exc.message)
            status = str(ItemStatus.FAILED)
    with transaction(factory) as session:
        if not status:
            status = str(store.get_item(session, item_id=item_id).status)
        claimed = store.claim_finalization(session, job_id=job_id)
    # Published once, by the run that claimed it; a claim whose publish was lost is the
    # reconciler's to publish again (claimed and never started, past its grace).
    return ItemOutcome(status, claimed)


def finalize_job_message(
    factory: sessionmaker[Session],
    *,
    job_id: uuid.UUID,
    chunk_store: ObjectStore,
    output_store_for: OutputStoreFor,
    lease: AssemblyLease,
    qa_model: str | None = None,
) -> JobOutcome:
    """Write the job's book and manifest, QA's results (a job rendered with QA: the
    verdicts in the timing files, qa.json, the manifest's and the row's `qa`; `qa_model`
    names the recogniser) and the read-along EPUB (a job that asked for one), then finish
    it; the status it ended in (failed, recorded with its error, when its audio cannot be
    assembled), or None when the job has no output folder, is not being assembled, or
    another finalizer holds it."""
    with transaction(factory) as session:
        job = store.get_job(session, job_id)
        if job.output_uri is None:
            return JobOutcome(None)
        output = output_store_for(job.output_uri)
        read_along = bool((job.options or {}).get("read_along"))
        source = job.source_name
        took = assembly.take_job_finalization(
            session,
            job_id=job_id,
            owner=lease.owner,
            ttl=lease.ttl,
            max_attempts=lease.max_attempts,
        )
    if took == Take.GAVE_UP:
        return JobOutcome(JobStatus.FAILED)
    if took != Take.TAKEN:
        return JobOutcome(None)
    record_run(lease.journal, "job", job_id)

    def results() -> None:
        # QA's word times first: the read-along EPUB takes them from the timing files
        record_job(
            factory,
            job_id=job_id,
            output_store_for=output_store_for,
            model=qa_model or UNNAMED_MODEL,
        )
        if read_along:
            inner = output.inner if isinstance(output, WriteOnceStore) else output
            write_job_read_along(inner, where=source)

    try:
        with _held(factory, lease):
            result = finalize_job(
                factory,
                job_id=job_id,
                chunk_store=chunk_store,
                output_store=output,
                before_finish=results,
            )
    except ChunkObjectsMissing as exc:
        return JobOutcome(None, reopen_vanished(factory, chunk_store, job_id=job_id, keys=exc.keys))
    except (PermanentError, InputError) as exc:
        if isinstance(exc, RecordGone):
            raise
        log.error("job %s failed at its final step: %s", job_id, exc)
        with transaction(factory) as session:
            store.fail_job(session, job_id=job_id, error=exc.message)
        return JobOutcome(JobStatus.FAILED)
    return JobOutcome(result.status)
