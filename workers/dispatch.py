"""Publishing task messages: what the API and the tasks themselves send to the broker."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from celery import Celery

from pipeline.errors import RetryableError

RENDER_TASK = "voicebatch.render_chunks"
ASSEMBLE_TASK = "voicebatch.assemble_item"
FINALIZE_TASK = "voicebatch.finalize_job"
RENDER_QUEUE = "render"  # as `--queues` names it: the worker's own engine's render queue


def render_queue(engine: str) -> str:
    """The queue a job's render messages go to: one per engine, `render.<engine>`."""
    return f"{RENDER_QUEUE}.{engine}"


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

    def assemble(self, job_id: uuid.UUID, item_ids: Sequence[uuid.UUID]) -> None:
        self._send([(ASSEMBLE_TASK, [str(job_id), str(item)]) for item in item_ids])

    def finalize(self, job_id: uuid.UUID) -> None:
        self._send([(FINALIZE_TASK, [str(job_id)])])

    def ping(self, timeout: float = 3.0) -> None:
        """Raise RetryableError unless the broker accepts a connection within `timeout`."""
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=timeout)
        except Exception as exc:
            raise RetryableError(f"broker unreachable: {' '.join(str(exc).split())}") from exc
