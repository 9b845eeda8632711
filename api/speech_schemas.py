"""The bodies of OpenAI's speech routes (api.routes.speech), in OpenAI's own shapes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SpeechBody(BaseModel):
    """`POST /v1/audio/speech`, as OpenAI's API takes it (parsed by the handler, which
    answers a bad field 400 in OpenAI's error shape)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        description="This server's engine name, or tts-1, tts-1-hd, gpt-4o-mini-tts."
    )
    input: str = Field(description="The text to speak: at most 4,096 characters (by default).")
    voice: str = Field(
        description="An engine voice, or an OpenAI voice name (alloy, ash, ballad, coral, echo, "
        "fable, nova, onyx, sage, shimmer, verse, ...) mapped to one (VOICEBATCH_SPEECH_VOICES); "
        "with maya1, a description of the voice."
    )
    instructions: str | None = Field(
        None, description="maya1: a description of the voice, used instead of `voice`."
    )
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = Field(
        "mp3", description="pcm is 16-bit little-endian mono at 24 kHz."
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="1.0: the voice's own pace.")


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "voicebatch"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class VoiceOut(BaseModel):
    voice_id: str
    name: str
    speaks_as: str = Field(description="The engine voice this name speaks with.")


class VoiceList(BaseModel):
    voices: list[VoiceOut]
