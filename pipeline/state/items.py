"""Item state: claimed for assembly once its chunks are final, then done or failed.

Part of the state module (pipeline.state.store re-exports every name here).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.errors import RecordGone
from pipeline.state.clock import clock
from pipeline.state.models import Chunk, ChunkStatus, Item, ItemStatus
from pipeline.state.updates import conditional_update as _update


def job_items(session: Session, *, job_id: uuid.UUID) -> Sequence[Item]:
    return session.scalars(select(Item).where(Item.job_id == job_id).order_by(Item.position)).all()


def claim_ready_items(
    session: Session, *, job_id: uuid.UUID, item_ids: Sequence[uuid.UUID] | None = None
) -> list[uuid.UUID]:
    """pending -> assembling for items none of whose chunks is pending or leased.

    Called after the transaction that finished a chunk has committed, by everyone who
    finished one: whichever caller sees the last chunk done wins the conditional update,
    so each item is claimed for assembly exactly once however the renders interleave.
    """
    open_chunk = (
        select(Chunk.id)
        .where(
            Chunk.item_id == Item.id,
            Chunk.status.in_([ChunkStatus.PENDING, ChunkStatus.LEASED]),
        )
        .exists()
    )
    where = [Item.job_id == job_id, Item.status == ItemStatus.PENDING, ~open_chunk]
    if item_ids is not None:
        where.append(Item.id.in_(list(item_ids)))
    claimed = session.scalars(
        update(Item)
        .where(*where)
        .values(status=ItemStatus.ASSEMBLING, updated_at=clock(session, None))
        .returning(Item.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(claimed, key=str)


def items_in_assembly(session: Session, *, job_id: uuid.UUID) -> list[uuid.UUID]:
    """Items claimed for assembly and not yet finished (an assembler stopped midway)."""
    return list(
        session.scalars(
            select(Item.id)
            .where(Item.job_id == job_id, Item.status == ItemStatus.ASSEMBLING)
            .order_by(Item.position)
        )
    )


def get_item(session: Session, *, item_id: uuid.UUID) -> Item:
    item = session.get(Item, item_id)
    if item is None:
        raise RecordGone(f"no item {item_id}")
    return item


def complete_item(
    session: Session,
    *,
    item_id: uuid.UUID,
    object_key: str | None,
    duration: float,
    mastering: dict[str, Any] | None = None,
    owner: str | None = None,
) -> bool:
    """assembling -> done with its output file (None: a chapter that goes only into the
    book). A second assembly of a done item updates nothing; with `owner`, nor does an
    assembler whose lease was handed on (pipeline.state.assembly)."""
    return (
        _update(
            session,
            Item,
            _assembling(item_id, owner),
            status=ItemStatus.DONE,
            assembly_owner=None,
            assembly_expires_at=None,
            object_key=object_key,
            duration_seconds=duration,
            mastering=mastering,
            error=None,
            updated_at=clock(session, None),
        )
        == 1
    )


def fail_item(
    session: Session, *, item_id: uuid.UUID, error: str, owner: str | None = None
) -> bool:
    """assembling -> failed (some of its chunks could not be rendered, or its audio
    cannot be assembled); with `owner`, only while that assembler holds its lease."""
    return (
        _update(
            session,
            Item,
            _assembling(item_id, owner),
            status=ItemStatus.FAILED,
            error=error[:4000],
            assembly_owner=None,
            assembly_expires_at=None,
            updated_at=clock(session, None),
        )
        == 1
    )


def _assembling(item_id: uuid.UUID, owner: str | None) -> tuple[Any, ...]:
    where: tuple[Any, ...] = (Item.id == item_id, Item.status == ItemStatus.ASSEMBLING)
    return where if owner is None else (*where, Item.assembly_owner == owner)
