"""A speech request's text as the sentences the engine speaks: normalised, lexicon
applied and hashed exactly as a batch job's chunks are, so the chunk cache serves both."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.engines import Engine, EngineInfo, engine_params
from pipeline.engines.base import ParamValue, request_params
from pipeline.errors import InputError
from pipeline.storage.keys import content_hash
from pipeline.text.lexicon import Lexicon, load_lexicon
from pipeline.text.normalize import normalize_text
from pipeline.text.segment import split_long, split_sentences

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Sentence:
    """One engine request of a speech response, and the silence that follows it."""

    text: str
    content_hash: str
    pause_ms: int  # after it: a sentence's pause, a paragraph's, or none after the last


@dataclass(frozen=True)
class SentencePlan:
    voice: str
    params: dict[str, ParamValue]
    sentences: tuple[Sentence, ...]


def speech_params(settings: Settings, speed: float) -> dict[str, ParamValue]:
    """The engine parameters of a request: the server's, its pace scaled by `speed`."""
    params = engine_params(settings)
    params["speaking_rate"] = round(float(settings.speaking_rate) * speed, 6)
    return request_params(params)


def plan_sentences(
    text: str,
    *,
    voice: str,
    speed: float,
    engine: Engine | EngineInfo,
    settings: Settings,
    lexicon: Lexicon | None = None,
) -> SentencePlan:
    """Paragraphs (blank-line separated) -> sentences (long ones cut at clauses to the
    engine's limit), each normalised, given the lexicon (the settings' file by default)
    and content-hashed with the engine, voice and parameters."""
    if lexicon is None and settings.lexicon is not None:
        lexicon = load_lexicon(settings.lexicon)
    params = speech_params(settings, speed)
    max_chars = min(settings.chunk_max_chars, engine.max_chunk_chars)
    pieces: list[tuple[str, bool]] = []  # (text, ends its paragraph)
    for paragraph in _PARAGRAPH_BREAK.split(text):
        spoken = normalize_text(paragraph) if settings.normalize_text else paragraph
        parts = [
            piece
            for sentence in split_sentences(spoken)
            for piece in split_long(sentence, max_chars)
            if any(ch.isalnum() for ch in piece)
        ]
        pieces += [(piece, index == len(parts) - 1) for index, piece in enumerate(parts)]
    if not pieces:
        raise InputError("input has nothing to speak (no letters or digits)")
    sentences = []
    for index, (piece, last_of_paragraph) in enumerate(pieces):
        spoken = lexicon.apply(piece) if lexicon is not None else piece
        if index == len(pieces) - 1:
            pause = 0
        elif last_of_paragraph:
            pause = settings.pause_paragraph_ms
        else:
            pause = settings.pause_sentence_ms
        digest = content_hash(
            text=spoken,
            voice=voice,
            engine=engine.name,
            model_version=engine.model_version,
            params=params,
        )
        sentences.append(Sentence(spoken, digest, pause))
    return SentencePlan(voice, params, tuple(sentences))
