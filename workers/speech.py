"""Speech requests on a render worker: a consumer of the engine's `speech.<engine>` queue
beside Celery's own, with threads of its own.

Celery's pool would take speech messages only as its task threads free up, and a render
worker's threads are busy with batch messages for seconds at a time: a client waiting
for its first sentence would wait behind them. So the render worker consumes its speech
queue on a thread of its own (a kombu consumer on the Celery app's broker connection
settings) and speaks each request on one of `speech_threads` threads. The engine is the
worker's one engine: behind a dynamic batcher a sentence goes in the realtime lane, ahead
of the batch chunks waiting; without one (Piper), it takes the engine lock between two
batch chunks.

Messages are Celery task messages (`voicebatch.speak`, one argument: the request), so
any publisher's `send_task` speaks to it. Each is acknowledged as it is taken: a
request is worth answering only while its client waits, and a redelivery after a crash
would speak to nobody.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis as redis_lib

from pipeline.batching import BatchingEngine
from pipeline.speech.render import SpeechRenderer
from workers.app import VoicebatchCelery
from workers.celery_config import speech_queues
from workers.dispatch import SPEECH_TASK, speech_queue

log = logging.getLogger(__name__)

SOURCES = ("cache", "rendered")  # voicebatch_speech_sentences_total's `source`


class SpeechConsumer:
    """Consumes `speech.<engine>` and speaks each request on a pool of threads."""

    def __init__(self, app: VoicebatchCelery) -> None:
        settings = app.settings
        resources = app.context.resources
        redis_url = settings.resolved_redis_url
        if not redis_url:
            raise RuntimeError("speech needs Redis (VOICEBATCH_REDIS_URL) for its audio streams")
        self.app = app
        self.queue_name = speech_queue(settings.engine)
        self.renderer = SpeechRenderer(
            engine=resources.speech_engine,
            settings=settings,
            chunk_store=resources.chunk_store,
            factory=resources.factory,
            index=resources.index,
            redis=redis_lib.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5),
        )
        self.engine_name = settings.engine
        self.metrics = app.metrics
        for source in SOURCES:  # at 0, so the first sentence is an increase
            self.metrics.speech_sentences.labels(self.engine_name, source)
        lane_wait = self.metrics.speech_lane_wait.labels(self.engine_name)
        if isinstance(resources.engine, BatchingEngine):
            resources.engine.batcher.on_lane_wait = lane_wait.observe
        self.threads = settings.speech_threads
        self._slots = threading.Semaphore(self.threads)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="speech")
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speech-consumer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._consume()
            except Exception as exc:  # the broker went away: connect again
                log.warning("speech consumer: %s; reconnecting", exc)
                self.stopping.wait(1.0)

    def _consume(self) -> None:
        (queue,) = [
            q
            for q in speech_queues(self.app.settings.broker_url or "")
            if q.name == self.queue_name
        ]
        with self.app.connection_for_read() as connection:
            channel = connection.channel()
            consumer = connection.Consumer(
                queue(channel), callbacks=[self._on_message], accept=["json"], no_ack=False
            )
            consumer.qos(prefetch_count=self.threads)
            with consumer:
                while not self.stopping.is_set():
                    self._slots.acquire()  # a free speech thread before taking a message
                    self._slots.release()
                    try:
                        connection.drain_events(timeout=1.0)
                    except TimeoutError:
                        continue

    def _on_message(self, body: Any, message: Any) -> None:
        message.ack()
        if message.headers.get("task") != SPEECH_TASK:
            log.warning("speech queue: dropped a %s message", message.headers.get("task"))
            return
        args = body[0] if isinstance(body, list | tuple) else []
        if not args or not isinstance(args[0], dict):
            log.warning("speech queue: dropped a message without a request")
            return
        request = dict(args[0], taken_at=time.time())  # stage timings (pipeline.speech.render)
        self._slots.acquire()
        self._pool.submit(self._speak, request)

    def _speak(self, request: dict[str, Any]) -> None:
        try:
            stats = self.renderer.speak(request)
            sentences = self.metrics.speech_sentences
            sentences.labels(self.engine_name, "cache").inc(stats.cached)
            sentences.labels(self.engine_name, "rendered").inc(stats.rendered)
            log.info(
                "spoke request %s: %d sentence(s) rendered, %d cached, %.1f s of audio",
                request.get("request_id"),
                stats.rendered,
                stats.cached,
                stats.audio_seconds,
            )
        finally:
            self._slots.release()
