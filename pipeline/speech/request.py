"""A speech request as OpenAI's API takes it, checked against this server's engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.engines import EngineInfo, check_voice
from pipeline.engines.maya1.tokens import check_description
from pipeline.errors import FieldError, InputError

# OpenAI's model names, served by whatever engine this server runs.
MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# OpenAI's voice names: each speaks with the voice VOICEBATCH_SPEECH_VOICES maps it to,
# else the engine's default voice.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
SPEED_RANGE = (0.25, 4.0)
# Engines that read a voice as a free description (and `instructions` as one too).
DESCRIBED_VOICES = ("maya1",)


class SpeechInputError(FieldError):
    """A speech request OpenAI's API would refuse: 400, naming its field."""

    http_status = 400


class SpeechInputTooLong(SpeechInputError):
    """`input` over `speech_max_input_chars`: 413 (issue 20's over-long input), stating the
    limit and the length received. OpenAI answers 400 here; its clients raise
    APIStatusError on any status, so the bigger-than-allowed status costs them nothing."""

    http_status = 413


@dataclass(frozen=True)
class SpeechRequest:
    """A checked request: what to say, with which engine voice, in which format."""

    text: str
    model: str  # as asked (an engine name or an OpenAI alias)
    voice: str  # the engine's voice (maya1: a description)
    response_format: str
    speed: float

    def message(self, request_id: str) -> dict[str, Any]:
        """What the worker is sent: JSON-safe, ids and text only."""
        return {
            "request_id": request_id,
            "text": self.text,
            "voice": self.voice,
            "speed": self.speed,
        }


def models(info: EngineInfo) -> list[str]:
    """Every model name this server answers to: its engine's, then OpenAI's aliases."""
    return [info.name, *MODEL_ALIASES]


def engine_voice(settings: Settings, info: EngineInfo, voice: str) -> str:
    """The engine voice an asked-for voice speaks with (InputError if there is none)."""
    if voice in settings.speech_voices:
        return settings.speech_voices[voice]
    if voice in OPENAI_VOICES:
        return info.default_voice
    if info.name in DESCRIBED_VOICES or voice == info.default_voice:
        return voice
    check_voice(settings, voice)  # piper: a path to a .onnx voice file on the workers
    return voice


def voices(settings: Settings, info: EngineInfo) -> list[dict[str, str]]:
    """`GET /v1/audio/voices`: the engine's default voice, the configured mapping and
    OpenAI's names, each with the engine voice it speaks with."""
    listed = [
        {
            "voice_id": info.default_voice,
            "name": info.default_voice,
            "speaks_as": info.default_voice,
        }
    ]
    for name in sorted(set(OPENAI_VOICES) | set(settings.speech_voices)):
        speaks_as = engine_voice(settings, info, name)
        listed.append({"voice_id": name, "name": name, "speaks_as": speaks_as})
    return listed


def check_speech(
    settings: Settings,
    info: EngineInfo,
    *,
    model: str,
    text: str,
    voice: str,
    response_format: str = "mp3",
    speed: float = 1.0,
    instructions: str | None = None,
) -> SpeechRequest:
    """The request checked field by field (SpeechInputError naming the first bad one)."""
    if model not in models(info):
        raise SpeechInputError(
            "model", f"unknown model {model!r}: this server speaks {', '.join(models(info))}"
        )
    limit = settings.speech_max_input_chars
    if not text.strip():
        raise SpeechInputError("input", "input is empty: give the text to speak")
    if len(text) > limit:
        raise SpeechInputTooLong(
            "input",
            f"input is {len(text):,} characters, over the limit of {limit:,} characters "
            "(VOICEBATCH_SPEECH_MAX_INPUT_CHARS): split the text into several requests",
        )
    if response_format not in RESPONSE_FORMATS:
        raise SpeechInputError(
            "response_format",
            f"unknown response_format {response_format!r}: use {', '.join(RESPONSE_FORMATS)}",
        )
    low, high = SPEED_RANGE
    if not low <= speed <= high:
        raise SpeechInputError("speed", f"speed {speed:g} is outside {low:g} to {high:g}")
    if info.name in DESCRIBED_VOICES and instructions and instructions.strip():
        # maya1 reads a voice as a description: instructions describe it better than a name
        chosen = " ".join(instructions.split())
    else:
        try:
            chosen = engine_voice(settings, info, voice)
        except InputError as exc:
            known = ", ".join([info.default_voice, *OPENAI_VOICES])
            raise SpeechInputError(
                "voice", f"unknown voice {voice!r} for {info.name}: use one of {known}"
            ) from exc
    if info.name in DESCRIBED_VOICES:
        try:
            check_description(chosen)  # a quote would end <description="..."> early
        except InputError as exc:
            field = "instructions" if chosen != voice else "voice"
            raise SpeechInputError(field, exc.message) from exc
    return SpeechRequest(text, model, chosen, response_format, speed)
