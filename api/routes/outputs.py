"""/v1/jobs/{id}/outputs and /restore: download links of a finished job's files, aware
of archived ones (a restore is needed first, and can be asked for here)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from api.context import ApiContext
from api.deps import Caller, Context, Reader, Writer
from api.errors import error_response
from api.requests import RESTORE_BODY, restore_request
from api.routes.allow import AllowingRoute
from api.schemas import OutputFile, Outputs, RestoreRequest, error_responses
from pipeline.assemble.manifest import manifest_files, read_manifest
from pipeline.errors import VoicebatchError
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import Job, JobStatus
from pipeline.storage.archive import ArchiveState, archive_state, outputs_message, request_restore
from pipeline.storage.base import ObjectStore

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=AllowingRoute)


def _finished_files(
    context: ApiContext, job_id: uuid.UUID, key: Caller
) -> tuple[Job, ObjectStore, list[tuple[str, str]]] | Any:
    """A finished job's folder and the files its manifest lists; a 409 response if the
    job has none (yet)."""
    # The connection goes back to the pool before storage is read, in this same thread.
    with transaction(context.factory) as session:
        job = store.get_owned_job(session, job_id=job_id, owner_id=key.id)
    if job.status not in (JobStatus.DONE, JobStatus.PARTIALLY_FAILED) or not job.output_uri:
        later = "its files are ready once it is done"
        return error_response(
            409,
            f"job {job_id} is {job.status}; "
            + (later if not job.status.final else "it has no files"),
        )
    folder = context.folder(job.output_uri)
    manifest = read_manifest(folder)
    if manifest is None:
        raise VoicebatchError(f"job {job_id}: its manifest is missing from storage")
    return job, folder, manifest_files(manifest)


def _listing(
    context: ApiContext,
    job: Job,
    folder: ObjectStore,
    files: list[tuple[str, str]],
    states: list[ArchiveState],
) -> Outputs:
    message = outputs_message(str(job.id), states)
    return Outputs(
        job_id=job.id,
        status=str(job.status),
        expires_in=context.settings.s3_presign_seconds,
        ready=message is None,
        message=message,
        files=[
            OutputFile(
                name=name,
                kind=kind,  # type: ignore[arg-type]
                url=folder.url(name) if state.state == "ready" else None,
                storage_class=state.storage_class,
                state=state.state,
                restored_until=state.restored_until,
            )
            for (kind, name), state in zip(files, states, strict=True)
        ],
    )


@router.get(
    "/jobs/{job_id}/outputs",
    response_model=Outputs,
    operation_id="getOutputs",
    summary="Presigned download URLs of a finished job's files (archived files need a restore).",
    responses=error_responses(401, 403, 404, 409, 422, 429, 503, e409="Not finished yet."),
)
def outputs(job_id: uuid.UUID, context: Context, key: Reader) -> Any:
    found = _finished_files(context, job_id, key)
    if not isinstance(found, tuple):
        return found
    job, folder, files = found
    states = [archive_state(folder, name) for _, name in files]
    return _listing(context, job, folder, files, states)


@router.post(
    "/jobs/{job_id}/restore",
    response_model=Outputs,
    operation_id="restoreOutputs",
    summary="Ask for archived files of a finished job to be restored for download.",
    openapi_extra=RESTORE_BODY,
    responses=error_responses(
        401, 403, 404, 409, 413, 415, 422, 429, 503, e409="Not finished yet."
    ),
)
def restore(
    job_id: uuid.UUID,
    context: Context,
    key: Writer,
    body: Annotated[RestoreRequest | None, Depends(restore_request)],
) -> Any:
    found = _finished_files(context, job_id, key)
    if not isinstance(found, tuple):
        return found
    job, folder, files = found
    days = (body.days if body else None) or context.settings.restore_days
    tier = (body.tier if body else None) or context.settings.restore_tier
    states = [request_restore(folder, name, days=days, tier=tier) for _, name in files]
    return _listing(context, job, folder, files, states)
