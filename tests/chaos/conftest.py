"""Fixtures of the fault-injection suite: a Cluster per scenario, on real services, with
every service a scenario may break started privately for it."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.audit import install_audit
from tests.chaos.harness import PREFIX, Cluster, MakeCluster, base_env
from tests.chaos.services import PrivateRedis
from tests.support.postgres import PostgresAdmin, pg_url
from tests.support.s3 import S3_KEY, S3_REGION, s3_client_for
from tests.support.services import need_service
from tests.support.stack import rabbit_vhost


@pytest.fixture
def make_cluster(
    pg_admin: PostgresAdmin,
    pg_template: str,
    s3_endpoint: str,
    tmp_path: Path,
) -> Iterator[MakeCluster]:
    """make_cluster(scenario, broker="redis"|"rabbitmq", database_url=..., s3_url=..., **env):
    a fresh audited database (unless given), a private broker, a versioned bucket."""
    made: list[Cluster] = []
    cleanups: list[Callable[[], Any]] = []

    def make(
        scenario: str,
        *,
        broker: str = "redis",
        database_url: str | None = None,
        s3_url: str | None = None,
        **overrides: str,
    ) -> Cluster:
        if database_url is None:
            database = pg_admin.create(template=pg_template)
            cleanups.append(lambda: pg_admin.drop(database))
            database_url = pg_url(database)
        install_audit(database_url)
        redis: PrivateRedis | None = None
        if broker == "redis":
            redis = PrivateRedis(tmp_path)
            cleanups.append(redis.stop)
            broker_url = redis.url
        else:
            need_service("RabbitMQ", "127.0.0.1", 5672)
            vhost, commands = rabbit_vhost()
            cleanups.append(
                lambda: [subprocess.run(c, capture_output=True, timeout=60) for c in commands]
            )
            broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        bucket = f"chaos-{uuid.uuid4().hex[:12]}"
        s3 = s3_client_for(s3_endpoint)
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        journal = tmp_path / "renders.journal"
        env = base_env(
            VOICEBATCH_DATABASE_URL=database_url,
            VOICEBATCH_BROKER_URL=broker_url,
            VOICEBATCH_STORAGE_URL=f"s3://{bucket}/{PREFIX}",
            VOICEBATCH_S3_ENDPOINT_URL=s3_url or s3_endpoint,
            VOICEBATCH_S3_REGION=S3_REGION,
            VOICEBATCH_S3_ACCESS_KEY_ID=S3_KEY,
            VOICEBATCH_S3_SECRET_ACCESS_KEY=S3_KEY,
            VOICEBATCH_DATA_DIR=str(tmp_path / "data"),
            VOICEBATCH_ENGINE="test-tone",
            VOICEBATCH_OUTPUT_FORMAT="wav",  # the files are compared to their chunks, exactly
            VOICEBATCH_TASK_CHUNKS="4",
            VOICEBATCH_CHUNK_MAX_CHARS="40",
            # one sentence per chunk, as the scenarios count them: spelled-out numbers
            # ("line twenty-three") would push their sentences past 40 characters
            VOICEBATCH_NORMALIZE_TEXT="false",
            VOICEBATCH_LEASE_SECONDS="5",
            VOICEBATCH_MAX_ATTEMPTS="3",
            VOICEBATCH_WORKER_GRACE_SECONDS="4",
            VOICEBATCH_TASK_RETRY_SECONDS="20",
            VOICEBATCH_TEST_ENGINE_JOURNAL=str(journal),
            VOICEBATCH_ASSEMBLY_JOURNAL=str(tmp_path / "assemblies.journal"),
        ) | {f"VOICEBATCH_{k.upper()}": v for k, v in overrides.items()}
        cluster = Cluster(scenario, env, logs, s3, bucket, journal, redis=redis)
        cluster.watch_leases()
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
    for cleanup in reversed(cleanups):
        cleanup()
