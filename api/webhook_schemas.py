"""The bodies of GET /v1/jobs/{id}/webhooks: a job's webhooks and every attempt."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class WebhookAttemptOut(BaseModel):
    """One attempt at delivering one of a job's webhooks."""

    webhook_id: str = Field(description="The `webhook-id` header: the same on every retry.")
    event: str = Field(description="job.done, job.partially_failed, job.failed or job.cancelled.")
    number: int = Field(description="1 for the first attempt at this webhook.")
    url: str
    outcome: str = Field(
        description="delivered (2xx), retry (tried again later), gone (410: no more tries), "
        "refused (the address is not allowed) or exhausted (retries ran out)."
    )
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered.")
    error: str | None
    started_at: datetime
    duration_ms: int


class WebhookOut(BaseModel):
    """One of a job's webhooks (an event) and where its delivery stands."""

    webhook_id: str
    event: str
    url: str
    status: str = Field(description="pending, delivered, gone or exhausted.")
    attempts: int
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending).")
    created_at: datetime
    finished_at: datetime | None


class WebhookLog(BaseModel):
    webhooks: list[WebhookOut]
    attempts: list[WebhookAttemptOut] = Field(description="Every attempt, oldest first.")
