"""OpenAI's speech API: `POST /v1/audio/speech`, `GET /v1/models`, `GET /v1/audio/voices`.

A request is checked here (pipeline.speech.request), published to the engine's speech
queue, and answered from its Redis stream (pipeline.speech.channel) as the worker speaks
it: the status and headers leave with the first sentence's audio, then each sentence is
encoded and sent as it arrives (chunked transfer). Errors have OpenAI's shape (`type`,
`param`, `code`) beside this API's own `field` (api.errors).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from api.context import ApiContext
from api.deps import Context, Speaker
from api.routes.allow import AllowingRoute
from api.schemas import ErrorBody, error_responses
from api.speech_metrics import SpeechObservation, prepare_speech_metrics
from api.speech_schemas import (
    ModelList,
    ModelOut,
    SpeechBody,
    VoiceList,
    VoiceOut,
)
from pipeline.errors import RetryableError, VoicebatchError
from pipeline.speech.channel import AUDIO, END, ERROR, SpeechEvent, SpeechReader
from pipeline.speech.encoding import SpeechEncoder, content_type
from pipeline.speech.request import (
    RESPONSE_FORMATS,
    SpeechInputError,
    SpeechRequest,
    check_speech,
    models,
    voices,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["speech"], route_class=AllowingRoute)

READ_BLOCK_MS = 1000
SPEECH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SpeechBody"}}},
    }
}
AUDIO_RESPONSE = {
    "description": "The audio, streamed sentence by sentence (chunked transfer).",
    "content": {
        kind: {"schema": {"type": "string", "format": "binary"}}
        for kind in ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm")
    },
}


class SpeechFailed(RetryableError):
    """The worker could not speak the request, or no worker answered in time."""


class NoSpeechWorker(SpeechFailed):
    """No worker answered within `speech_wait_seconds` (the `no_worker` outcome)."""


async def _speech_body(request: Request) -> SpeechBody:
    """The JSON body, each bad field a 400 naming it (OpenAI answers 400, not 422)."""
    try:
        raw = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpeechInputError("body", f"the body is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpeechInputError("body", "the body must be a JSON object")
    try:
        return SpeechBody.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise SpeechInputError(field, f"{field}: {first.get('msg', 'invalid')}") from exc


def _checked(context: ApiContext, body: SpeechBody) -> SpeechRequest:
    return check_speech(
        context.settings,
        context.engine,
        model=body.model,
        text=body.input,
        voice=body.voice,
        response_format=body.response_format,
        speed=body.speed,
        instructions=body.instructions,
    )


async def _next_events(reader: SpeechReader, wait_seconds: float) -> list[SpeechEvent]:
    """The stream's next events; SpeechFailed when none come for `wait_seconds`."""
    waited = 0.0
    while waited < wait_seconds:
        events = await anyio.to_thread.run_sync(reader.read, READ_BLOCK_MS)
        if events:
            return events
        waited += READ_BLOCK_MS / 1000
    raise NoSpeechWorker(
        f"no speech worker answered within {wait_seconds:g} s "
        "(VOICEBATCH_SPEECH_WAIT_SECONDS); try again shortly"
    )


def _failed(event: SpeechEvent) -> VoicebatchError:
    return SpeechFailed(f"the speech worker failed: {event.message}")


@router.post(
    "/audio/speech",
    operation_id="createSpeech",
    summary="Speak text (OpenAI-compatible): audio streamed as each sentence is rendered.",
    openapi_extra=SPEECH_BODY,
    response_class=StreamingResponse,
    responses={
        200: AUDIO_RESPONSE,
        400: {
            "model": ErrorBody,
            "description": "A bad field, named by `field`; the body also has OpenAI's "
            "`type` (invalid_request_error), `param` (the field) and `code`.",
        },
        413: {
            "model": ErrorBody,
            "description": "`input` is over the limit (4,096 characters by default); the "
            "message states the limit and the length received. OpenAI's error shape.",
        },
        **error_responses(401, 403, 429, 503),
    },
)
async def create_speech(request: Request, context: Context, _caller: Speaker) -> StreamingResponse:
    received = time.perf_counter()
    speech = _checked(context, await _speech_body(request))
    prepare_speech_metrics(context.engine.name, RESPONSE_FORMATS)
    seen = SpeechObservation(context.engine.name, speech.response_format, received)
    if context.redis is None:
        seen.outcome("error")
        raise SpeechFailed("speech needs Redis (VOICEBATCH_REDIS_URL), which is not configured")
    request_id = uuid.uuid4().hex
    reader = SpeechReader(context.redis, request_id)
    message = speech.message(request_id)
    timing = ServerTiming(received)
    timing.lap("parse")
    wait = context.settings.speech_wait_seconds
    stream = _Encoding(speech.response_format)
    try:
        message["published_at"] = time.time()
        await run_in_threadpool(
            lambda: context.dispatcher.speech(message, engine=context.engine.name)
        )
        timing.lap("publish")
        first = await _next_events(reader, wait)
        timing.worker(first[0].timings)
        # the first sentence encoded before the headers leave: its time is in them too
        head = await anyio.to_thread.run_sync(stream.feed, first)
        timing.lap("encode")
    except BaseException as exc:
        seen.outcome(_outcome_of(exc))
        await anyio.to_thread.run_sync(reader.delete)
        raise
    return StreamingResponse(
        _audio(reader, head, stream, seen, wait),
        media_type=content_type(speech.response_format),
        headers={"X-Request-Id": request_id, "Server-Timing": timing.header()},
    )


def _outcome_of(exc: BaseException) -> str:
    """The `voicebatch_speech_requests_total` outcome of a request that ended in `exc`:
    anything not an Exception (cancellation, GeneratorExit) is its client leaving."""
    if isinstance(exc, NoSpeechWorker):
        return "no_worker"
    return "error" if isinstance(exc, Exception) else "client_gone"


class _Encoding:
    """The response's encoder, fed the stream's events a read at a time (in a pool
    thread: encoding is CPU work the event loop must not wait on)."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.encoder: SpeechEncoder | None = None
        self.ended = False

    def feed(self, events: list[SpeechEvent]) -> bytes:
        """The bytes these events encode to; SpeechFailed at an `error` event."""
        out = bytearray()
        for event in events:
            if event.kind == ERROR:
                raise _failed(event)
            if event.kind == END:
                self.encoder = self.encoder or SpeechEncoder(self.format, 24_000)
                out += self.encoder.finish()
                self.ended = True
                break
            if event.kind == AUDIO:
                self.encoder = self.encoder or SpeechEncoder(self.format, event.sample_rate)
                out += self.encoder.feed(event.pcm)
        return bytes(out)


class ServerTiming:
    """Where a request's time to first byte went, as a Server-Timing header (ms): the
    API's stages (parse, publish, encode), the worker's (queue, pool, plan, lookup, claim,
    lane, engine, store, fetch: pipeline.speech.render.StageClock), `stream` (the worker's
    XADD to this read) and `api-wait` (publish to read, all the worker's time in it), and
    `total`. bench/bench_speech.py reads it."""

    def __init__(self, received: float) -> None:
        self.received = received
        self.last = received
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = (now - self.last) * 1000
        self.last = now

    def worker(self, timings: dict[str, float]) -> None:
        """The wait for the first events, and the worker's stages within it."""
        self.lap("api-wait")
        sent_at = timings.get("sent_at")
        for stage, ms in timings.items():
            if stage != "sent_at":
                self.stages[f"w-{stage}"] = ms
        if sent_at:
            self.stages["stream"] = max(0.0, (time.time() - sent_at) * 1000)

    def header(self) -> str:
        total = (time.perf_counter() - self.received) * 1000
        parts = [f"{name};dur={ms:.1f}" for name, ms in self.stages.items()]
        return ", ".join([*parts, f"total;dur={total:.1f}"])


async def _audio(
    reader: SpeechReader,
    head: bytes,
    stream: _Encoding,
    seen: SpeechObservation,
    wait: float,
) -> AsyncIterator[bytes]:
    """Encoded bytes, a read of the stream at a time, starting with the first sentence's
    (`head`); a worker failure mid-way ends the response without its final chunk, so the
    client sees the audio cut short."""
    try:
        if head:
            seen.first_byte()  # handed to the server, which writes it at once
            yield head
        while not stream.ended:
            events = await _next_events(reader, wait)
            data = await anyio.to_thread.run_sync(stream.feed, events)
            if data:
                seen.first_byte()
                yield data
        seen.outcome("ok")
    except BaseException as exc:
        seen.outcome(_outcome_of(exc))
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(reader.delete)


@router.get(
    "/models",
    response_model=ModelList,
    operation_id="listModels",
    summary="The model names POST /v1/audio/speech takes (OpenAI-compatible).",
    responses=error_responses(401, 403, 429),
)
async def list_models(context: Context, _caller: Speaker) -> ModelList:
    return ModelList(data=[ModelOut(id=name) for name in models(context.engine)])


@router.get(
    "/audio/voices",
    response_model=VoiceList,
    operation_id="listVoices",
    summary="The voices POST /v1/audio/speech takes, and the engine voice each speaks with.",
    responses=error_responses(401, 403, 429),
)
async def list_voices(context: Context, _caller: Speaker) -> VoiceList:
    listed = voices(context.settings, context.engine)
    return VoiceList(voices=[VoiceOut(**entry) for entry in listed])
