"""The recogniser: a CTranslate2 Whisper model run by faster-whisper, loaded from a folder
the user names (VOICEBATCH_ASR_MODEL_DIR), never downloaded.

faster-whisper is imported when a model is loaded, so nothing else pays for it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.errors import InputError
from pipeline.qa.check import HeardWord
from pipeline.qa.forced import WORKERS

SAMPLE_RATE = 16_000  # what Whisper listens at
MODEL_FILES = ("model.bin", "config.json")
SETTING = "VOICEBATCH_ASR_MODEL_DIR"


def check_model_dir(folder: Path | None) -> Path:
    """The model folder, checked: one line naming what is wrong otherwise."""
    if folder is None:
        raise InputError(
            f"no speech-recognition model: set {SETTING} (or --asr-model) to a "
            "CTranslate2 Whisper model folder; the README shows how to fetch one"
        )
    if not folder.is_dir():
        raise InputError(f"{SETTING}: {folder} is not a folder")
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing or not any((folder / n).is_file() for n in ("tokenizer.json", "vocabulary.txt")):
        absent = ", ".join(missing) or "tokenizer.json"
        raise InputError(
            f"{SETTING}: {folder} is not a CTranslate2 Whisper model folder (no {absent})"
        )
    return folder


@dataclass
class Recogniser:
    """A loaded Whisper model; `transcribe` turns 16 kHz samples into timed words."""

    model: Any
    name: str
    language: str | None
    decodes: int = 0  # free decodings so far (`transcribe` calls): what stage 2 costs

    def transcribe(self, samples: np.ndarray) -> list[HeardWord]:
        """Every word heard, with its times (seconds from the start of `samples`).

        Greedy decoding without conditioning on the previous window: a window the
        recogniser got wrong does not drag the next one with it, and it is several times
        faster than a beam search, which QA does not need. Voice-activity detection cuts
        the silences out before decoding: without it, the word after a long silence (a
        silenced chunk) is timed as if it spanned the silence, and lands in the wrong
        chunk."""
        self.decodes += 1
        segments, _info = self.model.transcribe(
            samples,
            language=self.language,
            beam_size=1,
            best_of=1,
            temperature=0.0,
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=True,
        )
        return [
            HeardWord(word.word, float(word.start), float(word.end))
            for segment in segments
            for word in segment.words or []
        ]


def load_recogniser(folder: Path | None, *, language: str | None = "en") -> Recogniser:
    """The model in `folder` (checked), on the CPU with int8 weights."""
    folder = check_model_dir(folder)
    from faster_whisper import WhisperModel

    try:
        model = WhisperModel(
            str(folder),
            device="cpu",
            compute_type="int8",
            cpu_threads=os.cpu_count() or 1,
            num_workers=WORKERS,  # stage 1 scores this many chunks at once (qa.forced)
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(f"{SETTING}: cannot load the model in {folder}: {exc}") from exc
    english_only = folder.name.endswith(".en") or _english_only(model)
    return Recogniser(
        model, folder.name, None if not english_only and language is None else language
    )


def _english_only(model: Any) -> bool:
    return not bool(getattr(model, "model", None) and model.model.is_multilingual)


def decode(source: str | IO[bytes]) -> np.ndarray:
    """An audio file (any format PyAV reads) as mono float32 samples at 16 kHz."""
    from faster_whisper.audio import decode_audio

    try:
        return np.asarray(decode_audio(source, sampling_rate=SAMPLE_RATE), dtype=np.float32)
    except Exception as exc:  # PyAV raises its own error tree: one line, named file
        name = source if isinstance(source, str) else getattr(source, "name", "audio")
        raise InputError(f"{name}: cannot decode the audio ({exc})") from exc
