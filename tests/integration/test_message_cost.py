"""A message's cost does not grow with its catalogue: one render message and one
assemble message read as many rows of PostgreSQL in a 10,000-item catalogue as in a
100-item one (issue 16, defect 6).

No ANALYZE is run by the test: the submit must leave the planner knowing the job's
rows (before, every message of a new big job was planned as if its tables were empty and
scanned all of the job's chunks until autovacuum came by).

Rows read are PostgreSQL's own count (pg_stat_user_tables: tuples read by sequential
scans plus rows fetched by index scans) over the message's connections, flushed when
they close; no wall clock is involved.
"""

from __future__ import annotations

import inspect
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text

from pipeline.assemble.messages import assemble_item_message
from pipeline.config import Settings, load_settings
from pipeline.plan.documents import document_from_items
from pipeline.plan.submit import SubmittedJob
from pipeline.render.messages import render_chunk_ids
from pipeline.storage.factory import open_store
from tests.support.workers import chunk_renderer, submit
from workers.context import WorkerResources

pytestmark = pytest.mark.integration

TABLES = ("jobs", "items", "chunks")


@dataclass(frozen=True)
class MessageCost:
    rows_read: int  # PostgreSQL's count of tuples read on jobs, items and chunks
    statements: int


def _rows_read(url: str) -> int:
    """Tuples read so far on the job tables, once every other connection is closed (a
    backend flushes its counts when it exits)."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + 60
        while True:
            with admin.connect() as conn:
                others = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            if not others:
                break
            assert time.monotonic() < deadline, "the message's connections did not close"
            time.sleep(0.05)
        with admin.connect() as conn:  # a new backend: a fresh statistics snapshot
            return int(
                conn.execute(
                    text(
                        "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0) "
                        "FROM pg_stat_user_tables WHERE relname IN ('jobs', 'items', 'chunks')"
                    )
                ).scalar_one()
            )
    finally:
        admin.dispose()


def _settings(url: str, root: Path) -> Settings:
    return load_settings(
        engine="test-tone",
        database_url=url,
        data_dir=root / "data",
        storage_url=str(root / "objects"),
        output_format="wav",
        task_chunks=4,
        read_titles=False,
    )


def _catalogue(url: str, settings: Settings, items: int) -> SubmittedJob:
    resources = WorkerResources.open(settings)
    try:
        parsed = document_from_items(
            "Catalogue", [(f"sku{i}", f"Item number {i}.") for i in range(items)]
        )
        submitted = submit(resources.factory, settings, parsed, kind="catalogue")
    finally:
        resources.factory.kw["bind"].dispose()
    return submitted


def _one_message_each(settings: Settings, submitted: SubmittedJob) -> MessageCost:
    """One render message (the job's first chunk group), then one assemble message for
    an item it finished; the rows they read and the statements they ran."""
    resources = WorkerResources.open(settings)
    bind = resources.factory.kw["bind"]
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(bind, "before_cursor_execute", count)
    try:
        renderer = chunk_renderer(resources, settings)
        outcome = render_chunk_ids(
            renderer, job_id=submitted.job_id, chunk_ids=submitted.chunk_groups[0]
        )
        assert outcome.retry_in is None and outcome.ready_items, outcome
        assert renderer.stats.rendered == len(submitted.chunk_groups[0])
        extra: dict[str, object] = {}
        if "lease" in inspect.signature(assemble_item_message).parameters:
            # assembly leases (issue 16, defect 5); the starting commit had none
            from pipeline.assemble.leases import AssemblyLease

            extra["lease"] = AssemblyLease(owner=f"cost-{uuid.uuid4().hex[:8]}")
        done = assemble_item_message(
            resources.factory,
            job_id=submitted.job_id,
            item_id=outcome.ready_items[0],
            chunk_store=resources.chunk_store,
            output_store_for=lambda uri: open_store(uri, settings),
            **extra,  # type: ignore[arg-type]
        )
        assert done is not None and done.status == "done" and not done.finalize
    finally:
        event.remove(bind, "before_cursor_execute", count)
        bind.dispose()
    return MessageCost(0, statements)


def _cost(url: str, root: Path, items: int) -> MessageCost:
    settings = _settings(url, root)
    submitted = _catalogue(url, settings, items)
    before = _rows_read(url)
    ran = _one_message_each(settings, submitted)
    return MessageCost(_rows_read(url) - before, ran.statements)


def test_a_message_reads_as_many_rows_in_a_big_catalogue_as_in_a_small_one(
    pg_admin: object, pg_template: str, tmp_path: Path
) -> None:
    from tests.support.postgres import PostgresAdmin, pg_url

    assert isinstance(pg_admin, PostgresAdmin)
    costs = {}
    for items in (100, 10_000):
        name = pg_admin.create(template=pg_template)
        try:
            costs[items] = _cost(pg_url(name), tmp_path / str(items), items)
        finally:
            pg_admin.drop(name)
    small, big = costs[100], costs[10_000]
    # The same statements, and about the same rows: nothing scales with the 100x bigger
    # catalogue (before, each message read every item of its job, and every lease).
    assert big.statements == small.statements, costs
    assert big.rows_read <= 2 * small.rows_read + 100, costs
