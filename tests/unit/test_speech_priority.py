"""Speech beside batch work on a CPU engine of one request per call (Piper): speech
renders on a twin session at normal priority, batch rendering runs lowered
(pipeline.engines.priority, workers.context)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.batching import BatchingEngine
from pipeline.config import load_settings
from pipeline.engines.base import SynthesisRequest
from pipeline.engines.piper import PiperEngine
from pipeline.engines.priority import lower_this_thread, made_lowered, thread_niceness
from pipeline.errors import InputError
from pipeline.storage.local import LocalObjectStore
from workers.context import WorkerResources

SENTENCE = "Your order has shipped and will arrive on Thursday afternoon."
# a batch chunk of twenty sentences: several seconds of engine time on these cores
CHUNK = " ".join(f"Sentence number {n} of the chapter goes on a little longer." for n in range(20))


def _request(engine: PiperEngine, text: str) -> SynthesisRequest:
    return SynthesisRequest(
        text=text, voice=engine.default_voice, params={"speaking_rate": 1.0, "sentence_pause_ms": 0}
    )


def _thread_nices() -> dict[int, int]:
    nices = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nices[int(task.name)] = int(fields[16])  # stat field 19, nice
    return nices


def _resources(tmp_path: Path, **settings: object) -> WorkerResources:
    return WorkerResources(
        settings=load_settings(engine="piper", data_dir=tmp_path, **settings),
        factory=None,  # type: ignore[arg-type]  # the engine needs no database
        chunk_store=LocalObjectStore(tmp_path / "chunks"),
        index=None,
    )


def test_threads_started_by_a_lowered_loader_run_lowered() -> None:
    before = set(_thread_nices())
    engine = made_lowered(12, PiperEngine)
    started = {tid: nice for tid, nice in _thread_nices().items() if tid not in before}
    assert started and set(started.values()) == {12}  # onnxruntime's pool threads
    assert thread_niceness() == 0  # the caller is not lowered
    assert engine.niceness == 0  # the worker sets it


def test_a_lowered_engine_lowers_each_thread_that_renders_on_it() -> None:
    engine = PiperEngine()
    engine.niceness = 9
    seen: list[int] = []

    def render() -> None:
        engine.render_batch([_request(engine, "One short line.")])
        seen.append(thread_niceness())

    worker = threading.Thread(target=render)
    worker.start()
    worker.join()
    assert seen == [9]
    assert thread_niceness() == 0
    lower_this_thread(0)  # nothing to do
    assert thread_niceness() == 0


def test_speech_is_not_held_behind_the_batch_chunk_in_the_engine(tmp_path: Path) -> None:
    """A sentence sent while a long batch chunk renders finishes first: on the old code
    the worker's one session was held for the whole chunk."""
    resources = _resources(tmp_path)
    resources.serves_speech = True
    batch = resources.engine
    speech = resources.speech_engine
    assert isinstance(batch, PiperEngine) and batch.niceness == 15  # the default
    assert speech is not batch and isinstance(speech, PiperEngine) and speech.niceness == 0
    finished: list[str] = []
    started = threading.Event()

    def render_chunk() -> None:
        started.set()
        batch.render_batch([_request(batch, CHUNK)])
        finished.append("batch")

    chunk = threading.Thread(target=render_chunk)
    chunk.start()
    started.wait()
    # the chunk holds its session from here on (phonemizing takes milliseconds)
    threading.Event().wait(0.3)
    [result] = speech.render_batch([_request(speech, SENTENCE)])
    finished.append("speech")
    chunk.join()
    assert finished == ["speech", "batch"]
    assert result.duration > 2.0  # the whole sentence was spoken


def test_without_speech_the_engine_is_plain_and_not_lowered(tmp_path: Path) -> None:
    resources = _resources(tmp_path)
    engine = resources.engine
    assert isinstance(engine, PiperEngine) and engine.niceness == 0
    assert resources.speech_engine is engine


def test_nice_zero_keeps_one_session_behind_a_batcher_of_one(tmp_path: Path) -> None:
    resources = _resources(tmp_path, speech_batch_nice=0)
    resources.serves_speech = True
    engine = resources.engine
    assert isinstance(engine, BatchingEngine) and engine.batcher.max_batch == 1
    assert resources.speech_engine is engine  # speech goes in its realtime lane


@pytest.mark.parametrize("value", [-1, 20])
def test_the_nice_setting_is_bounded(tmp_path: Path, value: int) -> None:
    with pytest.raises(InputError, match="VOICEBATCH_SPEECH_BATCH_NICE"):
        load_settings(engine="piper", data_dir=tmp_path, speech_batch_nice=value)
