"""QA while rendering, in the database: each done chunk's verdict, and the job's summary.

A verdict is written in the transaction that marks its chunk done (the renderer's), so a
done chunk of a QA job always has one; the job's summary, with the flagged chunks' times
in the finished files, once the job is assembled (pipeline.qa.results).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.state.models import Chunk, ChunkStatus, Item, Job
from pipeline.state.updates import conditional_update


def wants_qa(session: Session, *, job_id: uuid.UUID) -> bool:
    """Whether the job asked for QA while rendering (its `qa` option)."""
    options = session.scalar(select(Job.options).where(Job.id == job_id))
    return bool((options or {}).get("qa"))


def record_verdict(session: Session, *, chunk_id: uuid.UUID, columns: dict[str, Any]) -> bool:
    """Store a done chunk's verdict (`pipeline.qa.live.verdict_columns`)."""
    allowed = {"qa_error_rate", "qa_flags", "qa_takes", "qa_words"}
    if set(columns) - allowed:
        raise ValueError(f"not verdict columns: {sorted(set(columns) - allowed)}")
    where = (Chunk.id == chunk_id, Chunk.status == ChunkStatus.DONE)
    return conditional_update(session, Chunk, where, **columns) == 1


@dataclass(frozen=True)
class StoredVerdict:
    """A done chunk and its verdict, in reading order."""

    item: int  # the item's position
    seq: int
    text: str
    error_rate: float
    flags: tuple[str, ...]
    takes: int
    words: tuple[dict[str, Any], ...]


def job_verdicts(session: Session, *, job_id: uuid.UUID) -> list[StoredVerdict]:
    """Every checked, done chunk of the job, in reading order (once per job, at the end)."""
    rows = session.execute(
        select(
            Item.position,
            Chunk.seq,
            Chunk.text,
            Chunk.qa_error_rate,
            Chunk.qa_flags,
            Chunk.qa_takes,
            Chunk.qa_words,
        )
        .join(Item, Item.id == Chunk.item_id)
        .where(
            Chunk.job_id == job_id,
            Chunk.status == ChunkStatus.DONE,
            Chunk.qa_flags.is_not(None),
        )
        .order_by(Item.position, Chunk.seq)
    ).all()
    return [
        StoredVerdict(
            position,
            seq,
            text,
            float(rate or 0.0),
            tuple(f for f in (flags or "").split(",") if f),
            int(takes or 1),
            tuple(words or ()),
        )
        for position, seq, text, rate, flags, takes, words in rows
    ]


@dataclass(frozen=True)
class QaCounts:
    """How many of a job's chunks were checked, are flagged, and had more than one take."""

    checked: int
    flagged: int
    retaken: int


def qa_counts(session: Session, *, job_id: uuid.UUID) -> QaCounts:
    checked = Chunk.qa_flags.is_not(None)
    row = session.execute(
        select(
            func.count().filter(checked),
            func.count().filter(checked, Chunk.qa_flags != ""),
            func.count().filter(Chunk.qa_takes > 1),
        ).where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.DONE)
    ).one()
    return QaCounts(int(row[0]), int(row[1]), int(row[2]))


def set_job_qa(session: Session, *, job_id: uuid.UUID, summary: dict[str, Any]) -> bool:
    """Store the job's QA summary (its flagged chunks with their times included)."""
    return conditional_update(session, Job, (Job.id == job_id,), qa=summary) == 1


def flagged_so_far(session: Session, *, job_id: uuid.UUID, limit: int = 200) -> list[StoredVerdict]:
    """The job's done chunks QA flagged, in reading order (at most `limit`): what a job
    still rendering can show before its files, and their times, exist."""
    rows = session.execute(
        select(Item.position, Chunk.seq, Chunk.text, Chunk.qa_error_rate, Chunk.qa_flags,
               Chunk.qa_takes)
        .join(Item, Item.id == Chunk.item_id)
        .where(Chunk.job_id == job_id, Chunk.status == ChunkStatus.DONE, Chunk.qa_flags != "")
        .order_by(Chunk.seq)
        .limit(limit)
    ).all()  # fmt: skip
    return [
        StoredVerdict(
            position, seq, text, float(rate or 0.0), tuple((flags or "").split(",")),
            int(takes or 1), (),
        )
        for position, seq, text, rate, flags, takes in rows
    ]  # fmt: skip
