"""Scenario 7: S3 failing a share of requests (503 before the write, 500 after it, and
answers slower than the client's timeout, whose writes land late) through a fault proxy
in front of the S3 server; and a chunk's key that already exists before it is rendered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.audio.process import to_wav_bytes, trim_silence
from pipeline.engines import SynthesisRequest
from pipeline.engines.testing import TestToneEngine
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.storage.keys import chunk_key
from tests.chaos.harness import PREFIX, MakeCluster
from tests.chaos.services import S3FaultProxy
from workers.app import create_celery
from workers.dispatch import CeleryDispatcher

pytestmark = pytest.mark.e2e


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[S3FaultProxy]:
    proxy = S3FaultProxy(s3_endpoint, share=0.2, delay=2.5)
    yield proxy
    proxy.close()


def test_s3_errors_and_timeouts_on_a_fifth_of_requests_only_slow_the_jobs(
    make_cluster: MakeCluster, s3_proxy: S3FaultProxy
) -> None:
    cluster = make_cluster(
        "7. S3: 5xx and timeouts on 20% of requests, and a key that already exists",
        s3_url=s3_proxy.url,
        s3_timeout_seconds="1",
    )
    s3_proxy.enabled = False  # the job is set up cleanly; the faults start with the work
    jobs = [
        cluster.submit(cluster.book(n, chapters=2, sentences=4), publish=False) for n in range(2)
    ]
    # One chunk's object is in the bucket already (an earlier deployment rendered the same
    # text): its conditional put must count as success, and the object stay as it was.
    with transaction(cluster.factory) as session:
        (item, *_) = store.job_items(session, job_id=jobs[0])
        chunk = store.item_chunks(session, item_id=item.id)[1]
        groups = {
            job: [
                [c.id for c in store.item_chunks(session, item_id=i.id)]
                for i in store.job_items(session, job_id=job)
            ]
            for job in jobs
        }
    engine = TestToneEngine()
    result = engine.render_one(SynthesisRequest(chunk.text, engine.default_voice, {}))
    existing = to_wav_bytes(trim_silence(result.audio, result.sample_rate), result.sample_rate)
    key = f"{PREFIX}/{chunk_key(chunk.content_hash)}"
    cluster.s3.put_object(Bucket=cluster.bucket, Key=key, Body=existing)
    dispatcher = CeleryDispatcher(create_celery(cluster.settings))
    for job, chapters in groups.items():
        dispatcher.render(job, chapters)
    s3_proxy.enabled = True
    cluster.fault()
    cluster.assemble_worker()
    cluster.reconciler()
    cluster.render_worker("render")
    recovered = cluster.wait_final(180)
    s3_proxy.enabled = False
    cluster.faults += sum(s3_proxy.faults.values())
    summary = cluster.verify(recover_seconds=recovered)
    assert cluster.s3.get_object(Bucket=cluster.bucket, Key=key)["Body"].read() == existing
    assert set(s3_proxy.faults) == set(S3FaultProxy.KINDS), s3_proxy.faults  # every kind hit
    assert summary.faults > 10
