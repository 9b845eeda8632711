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
from pipeline.speech.request import SpeechInputError, SpeechRequest, check_speech, models, voices

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
    raise SpeechFailed(
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
        **error_responses(401, 403, 429, 503),
    },
)
async def create_speech(request: Request, context: Context, _caller: Speaker) -> StreamingResponse:
    speech = _checked(context, await _speech_body(request))
    if context.redis is None:
        raise SpeechFailed("speech needs Redis (VOICEBATCH_REDIS_URL), which is not configured")
    request_id = uuid.uuid4().hex
    reader = SpeechReader(context.redis, request_id)
    message = speech.message(request_id)
    await run_in_threadpool(lambda: context.dispatcher.speech(message, engine=context.engine.name))
    wait = context.settings.speech_wait_seconds
    try:
        first = await _next_events(reader, wait)
    except BaseException:
        await anyio.to_thread.run_sync(reader.delete)
        raise
    if first[0].kind == ERROR:
        await anyio.to_thread.run_sync(reader.delete)
        raise _failed(first[0])
    return StreamingResponse(
        _audio(reader, first, speech.response_format, wait),
        media_type=content_type(speech.response_format),
        headers={"X-Request-Id": request_id},
    )


async def _audio(
    reader: SpeechReader, first: list[SpeechEvent], fmt: str, wait: float
) -> AsyncIterator[bytes]:
    """Encoded bytes, a sentence at a time; a worker failure mid-way ends the response
    without its final chunk, so the client sees the audio cut short."""
    encoder: SpeechEncoder | None = None
    events = first
    try:
        while True:
            for event in events:
                if event.kind == ERROR:
                    raise _failed(event)
                if event.kind == END:
                    encoder = encoder or SpeechEncoder(fmt, 24_000)
                    yield encoder.finish()
                    return
                if event.kind == AUDIO:
                    encoder = encoder or SpeechEncoder(fmt, event.sample_rate)
                    data = encoder.feed(event.pcm)
                    if data:
                        yield data
            events = await _next_events(reader, wait)
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
