"""RabbitMQ: messages the quorum queues dead-lettered are published again by the
reconciler while their job is active, and dropped once it is not (real RabbitMQ, in a
private vhost; real PostgreSQL)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

from pipeline.config import Settings
from pipeline.state import store
from pipeline.state.db import transaction
from tests.support.services import need_service
from tests.support.stack import rabbit_vhost
from tests.support.workers import new_job
from workers.app import VoicebatchCelery, create_celery, declare_dead_letters
from workers.celery_config import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE
from workers.dispatch import RENDER_TASK
from workers.reconciler import queue_depth, reconcile_once

pytestmark = pytest.mark.integration


@pytest.fixture
def app(s3_settings: Settings, pg_migrated_url: str) -> Iterator[VoicebatchCelery]:
    need_service("RabbitMQ", "127.0.0.1", 5672)
    vhost, cleanup = rabbit_vhost()
    settings = s3_settings.model_copy(
        update={
            "database_url": pg_migrated_url,
            "broker_url": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "task_chunks": 2,
        }
    )
    app = create_celery(settings)
    declare_dead_letters(app)
    with app.connection_for_write() as connection:
        for queue in app.conf.task_queues:
            queue(connection.default_channel).declare()
    yield app
    for command in cleanup:
        subprocess.run(command, capture_output=True, timeout=60)


def test_dead_letters_of_active_jobs_are_replayed_and_the_rest_dropped(
    app: VoicebatchCelery,
) -> None:
    job_id = new_job(app)
    with transaction(app.context.resources.factory) as session:
        chunk = store.item_chunks(session, item_id=store.job_items(session, job_id=job_id)[0].id)[0]
    # as the queue does past its delivery limit: into the dead-letter exchange
    for args in ([str(job_id), [str(chunk.id)]], [str(uuid.uuid4()), [str(uuid.uuid4())]]):
        app.send_task(RENDER_TASK, args=args, exchange=DEAD_LETTER_EXCHANGE, routing_key="render")
    assert queue_depth(app, DEAD_LETTER_QUEUE) == 2
    due = reconcile_once(app, grace=timedelta(hours=1))  # idle pending chunks: not yet due
    assert due.replayed_messages == 1 and due.chunks == 0
    assert queue_depth(app, DEAD_LETTER_QUEUE) == 0
    (render,) = [q for q in app.conf.task_queues if q.name == "render.test-tone"]
    with app.connection_for_write() as connection:
        message = render(connection.default_channel).get(no_ack=True, accept=["json"])
    assert message is not None and message.headers["task"] == RENDER_TASK
    assert message.decode()[0] == [str(job_id), [str(chunk.id)]]
    assert reconcile_once(app, grace=timedelta(hours=1)).replayed_messages == 0
