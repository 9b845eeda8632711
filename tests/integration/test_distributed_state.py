"""Distributed-mode pieces on the real services: exactly-once claims on PostgreSQL under
concurrency, the Redis chunk index, and the Celery settings the invariants require."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import load_settings
from pipeline.errors import InputError
from pipeline.render.chunk_index import RedisChunkIndex
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.store import RenderedAudio
from tests.support.state import lease, new_job
from tests.unit.test_leases import (  # noqa: F401  (runs here on PostgreSQL)
    test_a_beating_renderer_keeps_its_leases_and_a_stopped_one_loses_them,
)


def test_each_item_and_the_job_are_claimed_exactly_once_however_completions_interleave(
    db: sessionmaker[Session],
) -> None:
    # 8 items of 6 chunks; 6 threads each finish one chunk of every item at the same time,
    # then try to claim, as render tasks do after their commit.
    job_id = new_job(db, chunks_per_item=(6,) * 8)
    leases = lease(db, job_id, "w", limit=100)
    by_thread: dict[int, list[store.ChunkLease]] = {}
    for index, chunk in enumerate(leases):
        by_thread.setdefault(index % 6, []).append(chunk)
    claims: list[uuid.UUID] = []
    barrier = threading.Barrier(6)

    def work(mine: list[store.ChunkLease]) -> None:
        barrier.wait()
        for chunk in mine:
            with transaction(db) as session:
                assert store.complete_chunk(
                    session,
                    chunk_id=chunk.chunk_id,
                    owner="w",
                    object_key="k",
                    duration=1.0,
                    sample_rate=22050,
                )
            with transaction(db) as session:
                claims.extend(
                    store.claim_ready_items(session, job_id=job_id, item_ids=[chunk.item_id])
                )  # type: ignore[list-item]

    threads = [threading.Thread(target=work, args=(by_thread[i],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = Counter(claims)
    assert len(counts) == 8 and set(counts.values()) == {1}  # every item once, none twice

    finals: list[bool] = []

    def finish(item_id: uuid.UUID) -> None:
        with transaction(db) as session:
            assert store.complete_item(session, item_id=item_id, object_key="f", duration=1.0)
        with transaction(db) as session:
            finals.append(store.claim_finalization(session, job_id=job_id))

    threads = [threading.Thread(target=finish, args=(i,)) for i in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert finals.count(True) == 1


@pytest.fixture
def index() -> RedisChunkIndex:
    from tests.support.services import private_redis_url

    found = RedisChunkIndex.from_url(private_redis_url(12))
    found.client.flushdb()
    return found


def test_the_redis_index_remembers_audio_and_grants_each_claim_to_one_owner(
    index: RedisChunkIndex,
) -> None:
    audio = RenderedAudio("chunks/ab/ab.wav", 1.25, 22050)
    assert index.lookup(["ab", "cd"]) == {}
    index.remember({"ab": audio})
    assert index.lookup(["ab", "cd"]) == {"ab": audio}
    assert 0 < index.client.ttl("vb:chunk:ab") <= 7 * 24 * 3600
    assert index.claim(["x", "y"], "w1", 30) == {"x", "y"}
    assert index.claim(["x", "z"], "w2", 30) == {"z"}
    index.release(["x"], "w2")  # not w2's claim: it stays
    assert index.claim(["x"], "w3", 30) == set()
    index.release(["x", "y"], "w1")
    assert index.claim(["x", "y"], "w3", 30) == {"x", "y"}


def test_an_unreachable_index_is_a_miss_not_an_error() -> None:
    from tests.support.services import free_port

    dead = RedisChunkIndex.from_url(f"redis://127.0.0.1:{free_port()}/0")
    assert dead.lookup(["ab"]) == {}
    assert dead.claim(["ab"], "w", 30) == {"ab"}  # render it: the database still decides
    dead.remember({"ab": RenderedAudio("k", 1.0, 1)})
    dead.release(["ab"], "w")


@pytest.mark.parametrize(
    "broker", ["redis://127.0.0.1:6379/13", "amqp://guest:guest@127.0.0.1:5672//"]
)
def test_celery_settings_follow_the_invariants(broker: str) -> None:
    from workers.app import create_celery

    app = create_celery(load_settings(broker_url=broker, worker_grace_seconds=45))
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.task_ignore_result
    assert conf.worker_soft_shutdown_timeout == 45.0
    # one render queue per engine (the default engine is piper)
    assert {q.name for q in conf.task_queues} >= {"render.piper", "render.maya1", "assemble"}
    assert set(app.tasks) >= {
        "voicebatch.render_chunks",
        "voicebatch.assemble_item",
        "voicebatch.finalize_job",
    }
    render = next(q for q in conf.task_queues if q.name == "render.piper")
    if broker.startswith("redis"):
        assert conf.broker_transport_options["visibility_timeout"] == 7200
    else:
        assert render.queue_arguments["x-queue-type"] == "quorum"
        assert render.queue_arguments["x-dead-letter-exchange"] == "voicebatch.dlx"


def test_worker_refuses_a_missing_broker_and_unknown_queues() -> None:
    from workers.app import create_celery
    from workers.worker import run_worker

    with pytest.raises(InputError, match="VOICEBATCH_BROKER_URL"):
        create_celery(load_settings())
    with pytest.raises(InputError, match="unknown queue gpu"):
        run_worker(
            load_settings(broker_url="redis://127.0.0.1:6379/13"),
            queues=["gpu"],
            pool="threads",
            concurrency=1,
        )
    with pytest.raises(InputError, match="unknown pool"):
        run_worker(
            load_settings(broker_url="redis://127.0.0.1:6379/13"),
            queues=["render"],
            pool="gevent",
            concurrency=1,
        )
    with pytest.raises(InputError, match="VOICEBATCH_BROKER_URL"):
        load_settings(broker_url="kafka://x")
