"""SQLAlchemy 2 models for jobs, items and chunks. Only pipeline.state.store writes them."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RENDERING = "rendering"
    ASSEMBLING = "assembling"
    DONE = "done"
    PARTIALLY_FAILED = "partially_failed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_JOB_STATUSES


FINAL_JOB_STATUSES = frozenset(
    {JobStatus.DONE, JobStatus.PARTIALLY_FAILED, JobStatus.FAILED, JobStatus.CANCELLED}
)


class ItemStatus(enum.StrEnum):
    PENDING = "pending"
    # every chunk is final; claimed once for assembly, then assembled under a lease
    # (back to pending if a chunk's object vanished: that chunk is rendered again)
    ASSEMBLING = "assembling"
    DONE = "done"
    FAILED = "failed"


class ChunkStatus(enum.StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls, name=name, native_enum=False, length=24, values_callable=lambda e: [m.value for m in e]
    )


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


ACTIVE_JOB = "status IN ('pending', 'rendering', 'assembling')"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # One job in progress per command: two identical renders started together share it.
        Index(
            "uq_jobs_fingerprint_active",
            "fingerprint",
            unique=True,
            sqlite_where=text(ACTIVE_JOB),
            postgresql_where=text(ACTIVE_JOB),
        ),
        # A retried submit with the same Idempotency-Key finds the job the first one made.
        Index("uq_jobs_owner_id_idempotency_key", "owner_id", "idempotency_key", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16), default="book")
    title: Mapped[str] = mapped_column(String(500))
    author: Mapped[str | None] = mapped_column(String(500))
    source_name: Mapped[str] = mapped_column(String(1000))
    source_sha256: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "job_status"), default=JobStatus.PENDING
    )
    engine: Mapped[str] = mapped_column(String(64))
    voice: Mapped[str] = mapped_column(String(1000))
    model_version: Mapped[str] = mapped_column(String(500))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_format: Mapped[str] = mapped_column(String(16))
    output_uri: Mapped[str | None] = mapped_column(String(2000))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Jobs submitted through the API belong to a key; embedded jobs to nobody. No foreign
    # key: keys are revoked, never deleted, and SQLite cannot add one to a live table.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # The assembly lease (finalizing: the book and manifest), like a chunk's lease:
    # who holds it, until when (the database's clock), and how many times it was taken.
    assembly_owner: Mapped[str | None] = mapped_column(String(200))
    assembly_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assembly_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Where its final state is announced (a signed webhook); the key's default when the
    # submit named none. None: no webhook.
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    # QA while rendering: the summary and the chunks still flagged, with their times in
    # the finished files, written once the job is assembled (pipeline.qa.live).
    qa: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    items: Mapped[list[Item]] = relationship(back_populates="job", order_by="Item.position")


class Item(Base):
    """A chapter of a book or an entry of a catalogue: one output file."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("job_id", "position"),
        # A message asks whether any item of its job is still open: one index probe.
        Index("ix_items_job_id_status", "job_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(1000))
    status: Mapped[ItemStatus] = mapped_column(
        _enum(ItemStatus, "item_status"), default=ItemStatus.PENDING
    )
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    object_key: Mapped[str | None] = mapped_column(String(1000))
    # The gain and limiter the item was mastered with, so the whole-book file can apply
    # exactly the same to the same chunks and agree with the chapter files to the sample.
    mastering: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Catalogue items: a voice of their own (None: the job's), and the file name under
    # items/ that the name template gave them when the job was planned.
    voice: Mapped[str | None] = mapped_column(String(1000))
    file_name: Mapped[str | None] = mapped_column(String(1000))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The assembly lease (mastering and encoding its file), like a chunk's lease:
    # who holds it, until when (the database's clock), and how many times it was taken.
    assembly_owner: Mapped[str | None] = mapped_column(String(200))
    assembly_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assembly_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    job: Mapped[Job] = relationship(back_populates="items")


class Chunk(Base):
    """One engine-sized piece of text and, once rendered, where its audio is."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        Index("ix_chunks_job_id_status", "job_id", "status"),
        # The metrics exporter: open chunks and the oldest pending (state/monitoring.py).
        Index("ix_chunks_status_created_at", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    item_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)  # reading order within the job
    text: Mapped[str] = mapped_column(Text)
    paragraph_start: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ChunkStatus] = mapped_column(
        _enum(ChunkStatus, "chunk_status"), default=ChunkStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Indexed: every message renews and releases its leases by owner.
    lease_owner: Mapped[str | None] = mapped_column(String(200), index=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    object_key: Mapped[str | None] = mapped_column(String(1000))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rendered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # QA while rendering (pipeline.qa.live): the kept take's verdict; None: not checked.
    # qa_flags: the flags joined by commas, "" for a clean chunk; qa_takes: how many takes
    # were rendered; qa_words: the source words timed in the chunk's own audio.
    qa_error_rate: Mapped[float | None] = mapped_column(Float)
    qa_flags: Mapped[str | None] = mapped_column(String(200))
    qa_takes: Mapped[int | None] = mapped_column(Integer)
    qa_words: Mapped[list[Any] | None] = mapped_column(JSON)


class ApiKey(Base):
    """A submit-API key. Only its SHA-256 is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the key may do, space-separated (pipeline.state.keys.SCOPES); keys made
    # before scopes existed got every scope but admin (migration 0005).
    scopes: Mapped[str] = mapped_column(
        String(200),
        default="jobs:read jobs:write speech",
        server_default="jobs:read jobs:write speech",
    )
    # The callback URL of the key's jobs that name none (`voicebatch keys create --callback-url`).
    callback_url: Mapped[str | None] = mapped_column(String(2000))


class WebhookStatus(enum.StrEnum):
    """Where a webhook delivery (one event of one job) stands."""

    PENDING = "pending"  # due at next_attempt_at; taken for an attempt under a short lease
    DELIVERED = "delivered"  # a receiver answered 2xx: final
    GONE = "gone"  # the receiver answered 410 Gone: final, never tried again
    EXHAUSTED = "exhausted"  # retries ran out (the schedule's 24 h) or the URL was refused


class WebhookOutcome(enum.StrEnum):
    """What one delivery attempt ended with."""

    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # a network error, a timeout or any other status: tried again later
    GONE = "gone"  # 410: no more tries
    REFUSED = "refused"  # the URL points at an address the SSRF guard refuses: no more tries
    EXHAUSTED = "exhausted"  # failed like `retry`, but it was the last try the schedule allows


class WebhookDelivery(Base):
    """The outbox: one event of one job, written in the transaction that moved the job to
    its final state; its id is the `webhook-id` of every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The sweeper asks for pending deliveries that are due: one index range.
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2000))
    # The exact bytes signed and sent on every attempt (a retry is the same message).
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[WebhookStatus] = mapped_column(
        _enum(WebhookStatus, "webhook_status"), default=WebhookStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Taken for an attempt until then (the database's clock): two workers never send at once.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookAttempt(Base):
    """One try at delivering a webhook, whatever it ended with."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1 for the first try
    url: Mapped[str] = mapped_column(String(2000))
    status_code: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[WebhookOutcome] = mapped_column(
        _enum(WebhookOutcome, "webhook_attempt_outcome")
    )
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
