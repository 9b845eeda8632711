"""/v1/jobs: submit, list, inspect, cancel. Each handler: check, call, translate."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api import metrics
from api.context import ApiContext
from api.deps import Caller, Context, Reader, Writer
from api.errors import error_response
from api.qa_schemas import QaOut
from api.requests import JOB_BODY, JobSubmission, parse_submission
from api.routes.allow import AllowingRoute
from api.routes.webhooks import publish_webhooks
from api.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    ChunkCounts,
    FailedChunk,
    IdempotencyKey,
    ItemCounts,
    JobOut,
    JobPage,
    error_responses,
)
from pipeline.plan.submit import submit_and_publish
from pipeline.qa.results import job_qa
from pipeline.state import store
from pipeline.state.cache_hits import own_cache_hits
from pipeline.state.db import transaction
from pipeline.state.models import Job
from pipeline.state.webhooks import pending_deliveries

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=AllowingRoute)

MAX_OFFSET = 1_000_000_000  # far past any key's jobs, and far inside a 64-bit OFFSET

# OpenAPI links: what a client (or a stateful fuzzer) can do next with a submitted job.
JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for name, operation in [
        ("GetJob", "getJob"),
        ("CancelJob", "cancelJob"),
        ("GetOutputs", "getOutputs"),
        ("RestoreOutputs", "restoreOutputs"),
    ]
}


def job_out(session: Session, job: Job, *, detail: bool = True) -> JobOut:
    """A job as the API shows it: status, counts and (with `detail`) its failed chunks."""
    progress = store.job_progress(session, job_id=job.id)
    failed = (
        [
            FailedChunk(seq=c.seq, text=c.text, error=c.error)
            for c in store.failed_chunks(session, job_id=job.id)
        ]
        if detail
        else []
    )
    return JobOut(
        id=job.id,
        status=str(job.status),
        kind=job.kind,
        title=job.title,
        engine=job.engine,
        voice=job.voice,
        format=job.output_format,
        progress=round(progress.fraction, 4),
        chunks=ChunkCounts(
            total=progress.chunks_total,
            done=progress.chunks_done,
            failed=progress.chunks_failed,
            pending=progress.chunks_pending,
            leased=progress.chunks_leased,
            # Never `progress.chunks_cached`: that counts other tenants' renders too.
            cached=own_cache_hits(session, job_id=job.id, owner_id=job.owner_id),
        ),
        items=ItemCounts(
            total=progress.items_total, done=progress.items_done, failed=progress.items_failed
        ),
        audio_seconds=round(progress.audio_seconds, 3),
        error=job.error,
        failed=failed,
        created_at=job.created_at,
        finished_at=job.finished_at,
        callback_url=job.callback_url,
        qa=QaOut.model_validate(qa) if detail and (qa := job_qa(session, job)) else None,
    )


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobOut,
    operation_id="submitJob",
    summary="Submit a book (text, chapters or a file) or a catalogue (items).",
    openapi_extra=JOB_BODY,
    responses={
        201: {
            "description": "The job, created.",
            "headers": {"Location": {"schema": {"type": "string"}, "description": "The job."}},
            "links": JOB_LINKS,
        },
        200: {
            "model": JobOut,
            "description": "Replay of an earlier Idempotency-Key.",
            "links": JOB_LINKS,
        },
        **error_responses(401, 403, 413, 415, 422, 429, 503),
    },
)
async def submit(
    request: Request,
    response: Response,
    context: Context,
    key: Writer,
    idempotency_key: Annotated[
        IdempotencyKey,
        Header(
            alias="Idempotency-Key",
            description="Retrying with the same value returns the same job.",
            json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
        ),
    ] = None,
) -> JobOut:
    submission = await parse_submission(request, context.settings)
    # Segmenting, hashing, inserting and publishing block: off the event loop with them.
    out = await run_in_threadpool(_submit, context, key, submission, idempotency_key, response)
    request.state.job_id = out.id  # for the audit line (api.audit)
    return out


def _submit(
    context: ApiContext,
    key: Caller,
    submission: JobSubmission,
    idempotency_key: str | None,
    response: Response,
) -> JobOut:
    submitted = submit_and_publish(
        context.factory,
        submission.parsed,
        engine=context.engine,
        settings=context.settings,
        overrides=submission.overrides,
        kind=submission.kind,
        owner_id=key.id,
        idempotency_key=idempotency_key,
        publish=context.dispatcher.render,
        cover=submission.cover,
        folder=context.folder,
        lexicon=submission.lexicon,
        # The request's own callback URL, else its API key's default (none for a JWT).
        callback_url=submission.callback_url or (key.key.callback_url if key.key else None),
        callback_field="callback_url" if submission.callback_url else "callback_url (the key's)",
    )
    if submitted.created:
        metrics.JOBS_SUBMITTED.inc()
        metrics.CHUNKS_SUBMITTED.inc(sum(len(g) for g in submitted.chunk_groups))
        response.headers["Location"] = f"/v1/jobs/{submitted.job_id}"
    else:
        response.status_code = 200
    with transaction(context.factory) as session:
        return job_out(
            session, store.get_owned_job(session, job_id=submitted.job_id, owner_id=key.id)
        )


@router.get(
    "/jobs",
    response_model=JobPage,
    operation_id="listJobs",
    summary="This key's jobs, newest first.",
    responses=error_responses(401, 403, 422, 429, 503),
)
def list_jobs(
    context: Context,
    key: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JobPage:
    with transaction(context.factory) as session:
        rows = store.list_jobs(session, limit=limit + 1, offset=offset, owner_id=key.id)
        jobs = [job_out(session, job, detail=False) for job in rows[:limit]]
    return JobPage(jobs=jobs, next_offset=offset + limit if len(rows) > limit else None)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    operation_id="getJob",
    summary="One job: status, counts, errors.",
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_job(job_id: uuid.UUID, context: Context, key: Reader) -> JobOut:
    with transaction(context.factory) as session:
        return job_out(session, store.get_owned_job(session, job_id=job_id, owner_id=key.id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    operation_id="cancelJob",
    summary="Cancel a job that has not finished.",
    responses=error_responses(
        401, 403, 404, 409, 413, 422, 429, 503, e409="The job already finished."
    ),
)
def cancel(job_id: uuid.UUID, context: Context, key: Writer) -> Any:
    with transaction(context.factory) as session:
        job = store.get_owned_job(session, job_id=job_id, owner_id=key.id)
        if not store.cancel_job(session, job_id=job_id):
            return error_response(
                409, f"job {job_id} is already {job.status}; it cannot be cancelled"
            )
        deliveries = pending_deliveries(session, job_id=job_id)
    publish_webhooks(context, deliveries)
    with transaction(context.factory) as session:
        return job_out(session, store.get_owned_job(session, job_id=job_id, owner_id=key.id))
