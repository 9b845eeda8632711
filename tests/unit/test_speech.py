"""Speech requests without services: the batcher's realtime lane, the request checks,
the sentence plan and the streaming encoders (each format read back by FFmpeg)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio.encode import decode
from pipeline.batching import BatchingEngine, DynamicBatcher, with_batching
from pipeline.config import load_settings
from pipeline.engines import SynthesisRequest, engine_info
from pipeline.engines.testing import TestToneEngine
from pipeline.speech.encoding import FORMATS, PCM_RATE, SpeechEncoder
from pipeline.speech.request import SpeechInputError, check_speech, voices
from pipeline.speech.sentences import plan_sentences
from pipeline.storage.keys import content_hash


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_the_realtime_lane_goes_before_batch_requests_already_waiting(tmp_path: Path) -> None:
    fifo, journal = tmp_path / "pause", tmp_path / "journal"
    os.mkfifo(fifo)
    engine = TestToneEngine(journal=journal, pause_fifo=fifo, pause_after=0)
    batcher = DynamicBatcher(engine, max_batch=1, max_wait_ms=0)
    first = batcher.submit(SynthesisRequest("held in the engine", "tone"))
    released = False
    try:
        while batcher.stats.batches < 1:  # the batcher thread took it: it waits on the FIFO
            os.sched_yield()
        waiting = [batcher.submit(SynthesisRequest(f"batch chunk {i}", "tone")) for i in range(3)]
        urgent = batcher.submit(SynthesisRequest("a client is waiting", "tone"), realtime=True)
        with fifo.open("wb"):
            released = True  # let the engine go on
        for future in [first, *waiting, urgent]:
            future.result(timeout=60)
    finally:
        if not released:
            with fifo.open("wb"):
                pass
        batcher.close()
    order = [line.split()[1] for line in journal.read_text().splitlines()]
    expected = [
        "held in the engine",
        "a client is waiting",
        *(f"batch chunk {i}" for i in range(3)),
    ]
    assert order == [_digest(text) for text in expected]


@pytest.fixture
def piper_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_settings(engine="piper", data_dir=tmp_path, speech_voices={"nova": "custom.onnx"})


def test_requests_are_checked_field_by_field(piper_settings) -> None:  # type: ignore[no-untyped-def]
    info = engine_info(piper_settings)
    ok = check_speech(piper_settings, info, model="tts-1", text="Hi.", voice="alloy")
    assert ok.voice == info.default_voice and ok.response_format == "mp3"
    assert check_speech(piper_settings, info, model="piper", text="Hi.", voice="nova").voice == (
        "custom.onnx"
    )
    cases = [
        ({"model": "whisper-1"}, "model", 400),
        ({"text": "x" * 4097}, "input", 413),  # over-long input: 413, issue 20
        ({"text": "   "}, "input", 400),
        ({"voice": "no-such-voice"}, "voice", 400),
        ({"response_format": "ogg"}, "response_format", 400),
        ({"speed": 0.1}, "speed", 400),
    ]
    for change, field, status in cases:
        request = {"model": "tts-1", "text": "Hi.", "voice": "alloy"} | change
        with pytest.raises(SpeechInputError) as caught:
            check_speech(piper_settings, info, **request)  # type: ignore[arg-type]
        assert caught.value.field == field and caught.value.http_status == status
    with pytest.raises(SpeechInputError, match="5,000 characters, over the limit of 4,096"):
        check_speech(piper_settings, info, model="tts-1", text="x" * 5000, voice="alloy")
    listed = {v["voice_id"]: v["speaks_as"] for v in voices(piper_settings, info)}
    assert listed["nova"] == "custom.onnx" and listed["shimmer"] == info.default_voice


def test_maya1_reads_instructions_as_the_voice_description(tmp_path: Path) -> None:
    from pipeline.engines import EngineInfo
    from pipeline.speech.request import check_speech as check

    settings = load_settings(engine="test-tone", data_dir=tmp_path)
    info = EngineInfo("maya1", "a calm narrator", "maya1 test", 600)
    spoken = check(
        settings,
        info,
        model="gpt-4o-mini-tts",
        text="Hi.",
        voice="ash",
        instructions="A  warm, low voice.",
    )
    assert spoken.voice == "A warm, low voice."
    assert check(settings, info, model="maya1", text="Hi.", voice="An old sailor").voice == (
        "An old sailor"
    )


def test_sentences_are_normalised_and_hashed_as_batch_chunks_are(tmp_path: Path) -> None:
    settings = load_settings(engine="test-tone", data_dir=tmp_path)
    engine = TestToneEngine()
    plan = plan_sentences(
        "Dr. Smith paid $5. It rained.\n\nA new paragraph.",
        voice="tone",
        speed=1.0,
        engine=engine,
        settings=settings,
    )
    texts = [s.text for s in plan.sentences]
    assert texts == ["Doctor Smith paid five dollars.", "It rained.", "A new paragraph."]
    assert [s.pause_ms for s in plan.sentences] == [
        settings.pause_sentence_ms,
        settings.pause_paragraph_ms,
        0,
    ]
    # the hash a batch job gives the same chunk: one cache for both
    from pipeline.engines import engine_params

    assert plan.sentences[1].content_hash == content_hash(
        text="It rained.",
        voice="tone",
        engine=engine.name,
        model_version=engine.model_version,
        params=engine_params(settings),
    )
    faster = plan_sentences("It rained.", voice="tone", speed=1.5, engine=engine, settings=settings)
    assert faster.params["speaking_rate"] == 1.5
    assert faster.sentences[0].content_hash != plan.sentences[1].content_hash


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_streams_a_sentence_at_a_time_and_decodes(fmt: str) -> None:
    rate = 22050
    t = np.arange(rate) / rate
    sentence = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    encoder = SpeechEncoder(fmt, rate)
    pieces = [encoder.feed(sentence) for _ in range(3)]
    data = b"".join(pieces) + encoder.finish()
    assert all(pieces), "every sentence gives bytes at once"
    if fmt == "pcm":
        assert len(data) == 3 * PCM_RATE * 2
        return
    decoded = decode(data)
    assert decoded.sample_rate == (48_000 if fmt == "opus" else rate)
    assert abs(decoded.duration - 3.0) < 0.1
    assert 0.15 < float(np.sqrt(np.mean(decoded.audio**2))) < 0.25  # the tone, not silence


def test_a_stream_of_realtime_requests_slows_batch_work_but_never_starves_it(
    tmp_path: Path,
) -> None:
    from pipeline.batching.batcher import REALTIME_RUN

    fifo, journal = tmp_path / "pause", tmp_path / "journal"
    os.mkfifo(fifo)
    engine = TestToneEngine(journal=journal, pause_fifo=fifo, pause_after=0)
    batcher = DynamicBatcher(engine, max_batch=1, max_wait_ms=0)
    first = batcher.submit(SynthesisRequest("held in the engine", "tone"))
    released = False
    try:
        while batcher.stats.batches < 1:
            os.sched_yield()
        chunks = [batcher.submit(SynthesisRequest(f"batch chunk {i}", "tone")) for i in range(2)]
        speech = [
            batcher.submit(SynthesisRequest(f"speech {i}", "tone"), realtime=True)
            for i in range(2 * REALTIME_RUN)
        ]
        with fifo.open("wb"):
            released = True
        for future in [first, *chunks, *speech]:
            future.result(timeout=60)
    finally:
        if not released:
            with fifo.open("wb"):
                pass
        batcher.close()
    order = [line.split()[1] for line in journal.read_text().splitlines()]
    run = [f"speech {i}" for i in range(REALTIME_RUN)]
    rest = [f"speech {i}" for i in range(REALTIME_RUN, 2 * REALTIME_RUN)]
    expected = ["held in the engine", *run, "batch chunk 0", *rest, "batch chunk 1"]
    assert order == [_digest(text) for text in expected]


def test_the_lane_wait_of_each_realtime_request_is_observed() -> None:
    """voicebatch_speech_lane_wait_seconds: queued in the batcher -> its engine call."""
    batcher = DynamicBatcher(TestToneEngine(), max_batch=1, max_wait_ms=0)
    waits: list[float] = []
    batcher.on_lane_wait = waits.append
    try:
        batcher.submit(SynthesisRequest("batch work", "tone")).result(timeout=30)
        assert waits == []  # batch work has no lane wait
        batcher.submit(SynthesisRequest("speech", "tone"), realtime=True).result(timeout=30)
        assert len(waits) == 1 and 0 <= waits[0] < 5
    finally:
        batcher.close()


def test_a_speech_serving_process_gives_a_one_stage_engine_the_realtime_lane(
    tmp_path: Path,
) -> None:
    """Under the default `auto`, a render worker that serves speech puts even Piper (one
    stage) behind a batcher of one request per engine call; elsewhere it is left alone."""
    settings = load_settings(engine="test-tone", data_dir=tmp_path, batch_size=8)
    tone = TestToneEngine()
    assert with_batching(tone, settings) is tone
    lane = with_batching(tone, settings, realtime_lane=True)
    assert isinstance(lane, BatchingEngine)
    try:
        assert lane.batcher.max_batch == 1 and lane.batcher.max_wait == 0
    finally:
        lane.close()
    off = load_settings(engine="test-tone", data_dir=tmp_path, dynamic_batching="off")
    assert with_batching(tone, off, realtime_lane=True) is tone  # off stays off
