"""/v1/jobs/{id}/webhooks: a job's webhooks and every attempt at delivering them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from fastapi import APIRouter

from api.context import ApiContext
from api.deps import Context, Reader
from api.routes.allow import AllowingRoute
from api.schemas import error_responses
from api.webhook_schemas import WebhookAttemptOut, WebhookLog, WebhookOut
from pipeline.errors import RetryableError
from pipeline.state import store
from pipeline.state import webhooks as outbox
from pipeline.state.db import transaction

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=AllowingRoute)
log = logging.getLogger(__name__)


def publish_webhooks(context: ApiContext, delivery_ids: Sequence[uuid.UUID]) -> None:
    """Queue deliveries the request's transaction just committed. A broker that is down
    loses nothing: they wait in the outbox for the reconciler's sweep."""
    if not delivery_ids:
        return
    try:
        context.dispatcher.webhooks(delivery_ids)
    except RetryableError as exc:
        log.warning("webhooks left for the reconciler: %s", exc.message)


@router.get(
    "/jobs/{job_id}/webhooks",
    response_model=WebhookLog,
    operation_id="getJobWebhooks",
    summary="The job's webhooks and every attempt at delivering them.",
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def job_webhooks(job_id: uuid.UUID, context: Context, key: Reader) -> WebhookLog:
    with transaction(context.factory) as session:
        store.get_owned_job(session, job_id=job_id, owner_id=key.id)
        # Attempts first: each statement sees what was committed when it ran, so the
        # deliveries read after them are at least as new (never an attempt whose
        # delivery still looks untried).
        attempts = outbox.job_attempts(session, job_id=job_id)
        deliveries = outbox.job_deliveries(session, job_id=job_id)
        events = {d.id: d.event for d in deliveries}
        return WebhookLog(
            webhooks=[
                WebhookOut(
                    webhook_id=outbox.webhook_id(d.id),
                    event=d.event,
                    url=d.url,
                    status=str(d.status),
                    attempts=d.attempts,
                    next_attempt_at=d.next_attempt_at,
                    created_at=d.created_at,
                    finished_at=d.finished_at,
                )
                for d in deliveries
            ],
            attempts=[
                WebhookAttemptOut(
                    webhook_id=outbox.webhook_id(a.delivery_id),
                    event=events[a.delivery_id],
                    number=a.number,
                    url=a.url,
                    outcome=str(a.outcome),
                    status_code=a.status_code,
                    error=a.error,
                    started_at=a.started_at,
                    duration_ms=a.duration_ms,
                )
                for a in attempts
            ],
        )
