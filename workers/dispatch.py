"""Publishing task messages: what the API and the tasks themselves send to the broker."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from celery import Celery

from pipeline.errors import RetryableError

RENDER_TASK = "voicebatch.render_chunks"
ASSEMBLE_TASK = "voicebatch.assemble_item"
FINALIZE_TASK = "voicebatch.finalize_job"
WEBHOOK_TASK = "voicebatch.deliver_webhook"
WEBHOOKS_QUEUE = "webhooks"  # signed webhooks: any worker may consume it, no engine needed
RENDER_QUEUE = "render"  # as `--queues` names it: the worker's own engine's render queue
# Speech requests (POST /v1/audio/speech): a queue per engine, `speech.<engine>`, that
# the engine's render workers consume beside their render queue (workers.speech).
SPEECH_TASK = "voicebatch.speak"
SPEECH_QUEUE = "speech"


def render_queue(engine: str) -> str:
    """The queue a job's render messages go to: one per engine, `render.<engine>`."""
    return f"{RENDER_QUEUE}.{engine}"


def speech_queue(engine: str) -> str:
    """The queue an engine's speech requests go to: `speech.<engine>`."""
    return f"{SPEECH_QUEUE}.{engine}"


class CeleryDispatcher:
    """Sends ids, never audio. A broker that cannot be reached is a RetryableError."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def _send(self, messages: Sequence[tuple[str, list[object]]], queue: str | None = None) -> None:
        options = {} if queue is None else {"queue": queue}
        try:
            with self.app.producer_or_acquire() as producer:
                for name, args in messages:
                    self.app.send_task(name, args=args, producer=producer, **options)
        except Exception as exc:
            if isinstance(exc, RetryableError):
                raise
            raise RetryableError(f"broker unreachable: {' '.join(str(exc).split())}") from exc

    def render(
        self,
        job_id: uuid.UUID,
        groups: Sequence[Sequence[uuid.UUID]],
        *,
        engine: str | None = None,
    ) -> None:
        """To the render queue of the job's `engine`; None: this app's own engine's (the
        API plans every job for the engine it runs, VOICEBATCH_ENGINE)."""
        self._send(
            [(RENDER_TASK, [str(job_id), [str(c) for c in group]]) for group in groups if group],
            queue=render_queue(engine) if engine else self.app.conf.task_default_queue,
        )

    def speech(self, message: dict[str, object], *, engine: str) -> None:
        """One speech request (`pipeline.speech.request.SpeechRequest.message`) to the
        speech queue of `engine`; the audio comes back on its Redis stream."""
        self._send([(SPEECH_TASK, [message])], queue=speech_queue(engine))

    def assemble(self, job_id: uuid.UUID, item_ids: Sequence[uuid.UUID]) -> None:
        self._send([(ASSEMBLE_TASK, [str(job_id), str(item)]) for item in item_ids])

    def finalize(self, job_id: uuid.UUID) -> None:
        self._send([(FINALIZE_TASK, [str(job_id)])])

    def webhooks(
        self, delivery_ids: Sequence[uuid.UUID], *, countdown: float | None = None
    ) -> None:
        """Webhook deliveries to the webhooks queue (`countdown`: not before that many
        seconds; a retry). The outbox is the record: a lost message is swept up again."""
        messages: list[tuple[str, list[object]]] = [(WEBHOOK_TASK, [str(d)]) for d in delivery_ids]
        if countdown is None:
            self._send(messages, queue=WEBHOOKS_QUEUE)
            return
        try:
            for name, args in messages:
                self.app.send_task(name, args=args, queue=WEBHOOKS_QUEUE, countdown=countdown)
        except Exception as exc:
            raise RetryableError(f"broker unreachable: {' '.join(str(exc).split())}") from exc

    def ping(self, timeout: float = 3.0) -> None:
        """Raise RetryableError unless the broker accepts a connection within `timeout`."""
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=timeout)
        except Exception as exc:
            raise RetryableError(f"broker unreachable: {' '.join(str(exc).split())}") from exc
