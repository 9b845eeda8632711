"""The Maya1 engine end to end on the CPU: a tiny model folder with Maya1's vocabulary
layout (tests/maya1_fixtures.py) and a SNAC 24 kHz decoder with random weights drive the
real loading, prompting, constrained sampling, static-cache decoding, unpacking and SNAC
decoding. The tiny model's stop token is made likely at frame boundaries
(build_tiny_maya1), so chunks end after a seed-dependent 4 to about 25 frames, under their
text-derived limit ("Hi" -> 154 tokens = 22 frames)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("snac")

from pipeline.batching import BatchingEngine, with_batching
from pipeline.config import Settings, load_settings
from pipeline.engines import create_engine, engine_info, engine_params
from pipeline.engines.base import StagedEngine, SynthesisRequest, SynthesisResult
from pipeline.engines.maya1.engine import (
    MAX_CHUNK_CHARS,
    Generated,
    Maya1Engine,
    UnfinishedSpeech,
)
from pipeline.engines.maya1.sampling import RowSampling
from pipeline.engines.maya1.tokens import (
    MAX_NEW_TOKENS,
    TYPICAL_CHARS_PER_SECOND,
    max_new_tokens,
    retry_seed,
    voice_seed,
)
from pipeline.engines.maya1.unpack import MalformedAudio
from tests.support.maya1_fixtures import build_tiny_maya1
from tests.support.snac_fixtures import build_tiny_snac

VOICE = "A calm female narrator with a low voice"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: for a model this small, thread hand-offs cost more than they
    gain, and on a busy 2-core CI runner two threads made these tests 7x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("maya1")
    return build_tiny_maya1(root / "model"), build_tiny_snac(root / "snac")


@pytest.fixture(scope="module")
def settings(folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    model, snac = folders
    return load_settings(
        engine="maya1",
        maya1_model_dir=model,
        snac_dir=snac,
        device="cpu",
        data_dir=tmp_path_factory.mktemp("data"),
        batch_size=4,
        batch_wait_ms=200,
    )


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Maya1Engine:
    made = create_engine(settings)
    assert isinstance(made, Maya1Engine)
    return made


@pytest.fixture(scope="module")
def requests() -> list[SynthesisRequest]:
    return [
        SynthesisRequest("Hi", VOICE),
        SynthesisRequest("Oh <sigh>", VOICE, seed=1234),
        SynthesisRequest("Yes", "An excited young man"),
    ]


@pytest.fixture(scope="module")
def batched(engine: Maya1Engine, requests: list[SynthesisRequest]) -> list[object]:
    return engine.generate_batch(requests)


@pytest.fixture(scope="module")
def decoded(
    engine: Maya1Engine, requests: list[SynthesisRequest], batched: list[object]
) -> list[SynthesisResult]:
    return engine.decode_batch(requests, batched)


def _frames(outcome: object) -> np.ndarray:
    assert isinstance(outcome, Generated), outcome
    return outcome.frames


def test_the_engine_is_a_staged_maya1_engine(engine: Maya1Engine, settings: Settings) -> None:
    assert isinstance(engine, StagedEngine)
    assert (engine.name, engine.sample_rate) == ("maya1", 24_000)
    assert engine.model_version.startswith("maya1-")
    assert engine.backend.name == "hf"
    info = engine_info(settings)
    assert (info.name, info.model_version, info.max_chunk_chars) == (
        "maya1",
        engine.model_version,
        engine.max_chunk_chars,
    )


def test_frames_end_at_the_stop_token_and_audio_is_frames_times_2048(
    requests: list[SynthesisRequest], batched: list[object], decoded: list[SynthesisResult]
) -> None:
    frames = [_frames(outcome) for outcome in batched]
    for item, request in zip(frames, requests, strict=True):
        # the model wrote the stop token: at least 4 frames, fewer than the text allows
        assert 4 <= len(item) < max_new_tokens(request.text) // 7
    for item in frames:
        assert item.shape[1] == 7 and item.dtype == np.int64
        assert item.min() >= 0 and item.max() < 4096
    for item, result in zip(frames, decoded, strict=True):
        assert result.sample_rate == 24_000 and result.audio.dtype == np.float32
        assert len(result.audio) == len(item) * 2048
        assert result.duration == pytest.approx(len(item) * 2048 / 24_000)
        assert np.abs(result.audio).max() > 0  # speech-shaped noise, not silence


def test_seeds_come_from_the_request_or_the_voice(
    requests: list[SynthesisRequest], batched: list[object]
) -> None:
    assert [item.seed for item in batched if isinstance(item, Generated)] == [
        voice_seed(VOICE),
        1234,
        voice_seed("An excited young man"),
    ]


def test_batched_generation_equals_unbatched_for_the_same_seeds(
    engine: Maya1Engine,
    requests: list[SynthesisRequest],
    batched: list[object],
    decoded: list[SynthesisResult],
) -> None:
    for request, together in zip(requests, batched, strict=True):
        alone = engine.generate_batch([request])[0]
        np.testing.assert_array_equal(_frames(alone), _frames(together))
    audio_alone = engine.decode_batch(requests[:1], batched[:1])
    np.testing.assert_allclose(audio_alone[0].audio, decoded[0].audio, atol=1e-5)


def test_a_reused_static_cache_is_reset_between_batches(
    engine: Maya1Engine, requests: list[SynthesisRequest], batched: list[object]
) -> None:
    """Compiled (CUDA graph) runs keep their caches; a kept cache must not leak the last
    batch's keys and values into the next."""
    from pipeline.engines.maya1.backends.hf import HFBackend

    inner = engine.backend
    assert isinstance(inner, HFBackend)
    backend = HFBackend(inner.model, pad_id=inner.pad_id, reuse_caches=True)
    reusing = Maya1Engine(
        backend=backend,
        tokenizer=engine.tokenizer,
        decoder=engine.decoder,
        model_version=engine.model_version,
    )
    first = reusing.generate_batch(requests[:2])
    kept = dict(backend._caches)
    second = reusing.generate_batch(requests[:2])
    assert len(kept) == 1 and backend._caches == kept  # the same cache object, reused
    for one, two, reference in zip(first, second, batched[:2], strict=True):
        np.testing.assert_array_equal(_frames(one), _frames(reference))
        np.testing.assert_array_equal(_frames(two), _frames(reference))


def test_the_narrow_lm_head_samples_what_the_whole_head_would(
    engine: Maya1Engine, requests: list[SynthesisRequest], batched: list[object]
) -> None:
    """The backend multiplies only the slot's 4097 LM-head rows; the same rows of the
    whole head give the same frames."""
    from pipeline.engines.maya1.backends.hf import HFBackend

    inner = engine.backend
    assert isinstance(inner, HFBackend) and inner._head_weight is not None
    whole = HFBackend(inner.model, pad_id=inner.pad_id)
    whole._head_weight = None  # as for a quantised head: every row, then the slot's
    full = Maya1Engine(
        backend=whole,
        tokenizer=engine.tokenizer,
        decoder=engine.decoder,
        model_version=engine.model_version,
    )
    for narrow, wide in zip(batched[:2], full.generate_batch(requests[:2]), strict=True):
        np.testing.assert_array_equal(_frames(narrow), _frames(wide))


def test_sampling_params_are_per_request(engine: Maya1Engine, batched: list[object]) -> None:
    hotter = SynthesisRequest("Hi", VOICE, params={"temperature": 0.7, "top_p": 1.0})
    assert engine.sampling(hotter).temperature == 0.7
    assert not np.array_equal(_frames(engine.generate_batch([hotter])[0]), _frames(batched[0]))


def test_the_dynamic_batcher_merges_threads_into_one_batch(
    engine: Maya1Engine,
    settings: Settings,
    requests: list[SynthesisRequest],
    decoded: list[SynthesisResult],
) -> None:
    wrapped = with_batching(engine, settings)
    assert isinstance(wrapped, BatchingEngine)
    results: dict[int, np.ndarray] = {}

    def one(index: int) -> None:
        results[index] = wrapped.render_batch([requests[index]])[0].audio

    threads = [threading.Thread(target=one, args=(index,)) for index in range(len(requests))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        stats = wrapped.batcher.stats
    finally:
        wrapped.close()
    for index, result in enumerate(decoded):
        np.testing.assert_allclose(results[index], result.audio, atol=1e-5)
    assert stats.requests == 3 and stats.batches < 3  # at least two rode together


class _Altered:
    """The real backend, each row's tokens then changed by `alter` (tokens, row), in
    place: a fault the real model makes. Records the seed of every row generated."""

    def __init__(
        self, inner: object, alter: Callable[[list[int], RowSampling], None], name: str
    ) -> None:
        self.inner = inner
        self.alter = alter
        self.name = name
        self.seeds: list[int] = []

    def generate(
        self, prompts: Sequence[Sequence[int]], rows: Sequence[RowSampling]
    ) -> list[list[int]]:
        out = self.inner.generate(prompts, rows)  # type: ignore[attr-defined]
        for tokens, row in zip(out, rows, strict=True):
            self.seeds.append(row.seed)
            self.alter(tokens, row)
        return out


def _altered(
    engine: Maya1Engine,
    alter: Callable[[list[int], RowSampling], None],
    name: str,
    max_malformed: float = 0.05,
) -> tuple[Maya1Engine, _Altered]:
    """`engine` over its backend _Altered by `alter`, with two retries."""
    backend = _Altered(engine.backend, alter, name)
    altered = Maya1Engine(
        backend=backend,
        tokenizer=engine.tokenizer,
        decoder=engine.decoder,
        model_version=engine.model_version,
        max_malformed=max_malformed,
        retries=2,
    )
    return altered, backend


def _faulty(
    engine: Maya1Engine, bad: dict[int, int], max_malformed: float = 0.05
) -> tuple[Maya1Engine, _Altered]:
    """Slot 3 of the first `bad[seed]` frames overwritten by a slot-2 token: what a model
    that loses its place in the frame writes."""

    def corrupt(tokens: list[int], row: RowSampling) -> None:
        for frame in range(min(bad.get(row.seed, 0), len(tokens) // 7)):
            tokens[frame * 7 + 3] = tokens[frame * 7 + 2]

    return _altered(engine, corrupt, "hf+faults", max_malformed=max_malformed)


def test_a_few_malformed_frames_are_dropped_with_a_warning(
    engine: Maya1Engine, batched: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    request = SynthesisRequest("Hi", VOICE)
    frames_alone = len(_frames(batched[0]))
    # 1 frame of the first few: under the engine's limit
    faulty, backend = _faulty(engine, {voice_seed(VOICE): 1}, max_malformed=1.5 / frames_alone)
    with caplog.at_level(logging.WARNING):
        frames = _frames(faulty.generate_batch([request])[0])
    np.testing.assert_array_equal(frames, _frames(batched[0])[1:])
    assert backend.seeds == [voice_seed(VOICE)]
    assert f"dropped 1 malformed of {frames_alone} audio frames" in caplog.text


def test_many_malformed_frames_regenerate_with_another_seed(engine: Maya1Engine) -> None:
    first = voice_seed(VOICE)
    faulty, backend = _faulty(engine, {first: 5})
    outcomes = faulty.generate_batch([SynthesisRequest("Hi", VOICE), SynthesisRequest("Yes", "X")])
    assert backend.seeds == [first, voice_seed("X"), retry_seed(first, 1)]
    retried = outcomes[0]
    assert isinstance(retried, Generated) and retried.seed == retry_seed(first, 1)
    again = engine.generate_batch([SynthesisRequest("Hi", VOICE, seed=retry_seed(first, 1))])[0]
    np.testing.assert_array_equal(retried.frames, _frames(again))
    assert isinstance(outcomes[1], Generated)


def test_a_request_malformed_on_every_try_fails_alone(engine: Maya1Engine) -> None:
    first = voice_seed(VOICE)
    bad = {seed: 10 for seed in (first, retry_seed(first, 1), retry_seed(first, 2))}
    faulty, backend = _faulty(engine, bad)
    outcomes = faulty.generate_batch([SynthesisRequest("Hi", VOICE), SynthesisRequest("Yes", "X")])
    assert isinstance(outcomes[0], MalformedAudio)
    assert "audio frames malformed" in str(outcomes[0])
    assert "on all 3 tries" in str(outcomes[0])
    assert isinstance(outcomes[1], Generated)
    assert len(backend.seeds) == 4  # the good request was generated once


def test_engine_params_carry_the_sampling_settings(settings: Settings) -> None:
    params = engine_params(settings)
    assert (params["temperature"], params["top_p"], params["repetition_penalty"]) == (0.4, 0.9, 1.1)
    assert "temperature" not in engine_params(load_settings(engine="piper"))


def test_an_embedded_render_speaks_a_file_with_maya1(
    engine: Maya1Engine, settings: Settings, tmp_path: Path
) -> None:
    """The whole pipeline (plan, render, store, assemble) with the maya1 engine; a second
    render finds every chunk in the content-addressed cache."""
    from pipeline.audio.encode import decode
    from pipeline.plan.prepare import check_inputs
    from pipeline.runner import LocalRuntime, render_file
    from pipeline.state.models import JobStatus

    source = tmp_path / "note.txt"
    source.write_text("Hi.\n\nYes.\n", encoding="utf-8")
    local = settings.model_copy(
        update={"data_dir": tmp_path / "data", "output_format": "wav", "subtitles": "none"}
    )
    runtime = LocalRuntime.open(local)
    runtime.engine = engine
    outcome = render_file(runtime, check_inputs(source, local), output_dir=tmp_path / "out")
    assert outcome.assembly is not None and outcome.assembly.status == JobStatus.DONE
    assert outcome.stats.rendered == 2
    book = outcome.assembly.book_key
    assert book is not None
    audio = decode(tmp_path / "out" / book)
    # the two chunks' frames (85.3 ms each), less trimmed edges, plus the pause
    voice = local.voice or engine.default_voice
    alone = engine.generate_batch([SynthesisRequest(text, voice) for text in ("Hi.", "Yes.")])
    speech = sum(len(_frames(outcome)) for outcome in alone) * 2048 / 24_000
    assert speech - 0.5 < len(audio.audio) / audio.sample_rate < speech + 1.5
    again = render_file(runtime, check_inputs(source, local), output_dir=tmp_path / "out2")
    assert again.stats.rendered == 0


def _endless(engine: Maya1Engine, endless: set[int]) -> tuple[Maya1Engine, _Altered]:
    """The rows of the seeds in `endless` never write the stop token: their audio runs
    on, valid frame after frame, up to the row's cap. What the real model does on a text
    it cannot finish."""

    def never_stop(tokens: list[int], row: RowSampling) -> None:
        if row.seed in endless:
            frames = [tokens[i : i + 7] for i in range(0, len(tokens) - 6, 7)]
            while len(tokens) < row.max_new_tokens:
                tokens.extend(frames[(len(tokens) // 7) % len(frames)])
            del tokens[row.max_new_tokens :]

    return _altered(engine, never_stop, "hf+endless")


def test_a_chunk_that_never_ends_its_speech_is_tried_with_another_seed(
    engine: Maya1Engine,
) -> None:
    first = voice_seed(VOICE)
    endless, backend = _endless(engine, {first})
    outcome = endless.generate_batch([SynthesisRequest("Hi", VOICE)])[0]
    assert backend.seeds == [first, retry_seed(first, 1)]
    assert isinstance(outcome, Generated) and outcome.seed == retry_seed(first, 1)
    assert len(outcome.frames) < max_new_tokens("Hi") // 7  # this try wrote the stop token


def test_a_chunk_at_its_token_cap_on_every_try_fails_and_is_never_kept(
    engine: Maya1Engine,
) -> None:
    from pipeline.render.failures import Failure, classify

    first = voice_seed(VOICE)
    seeds = [first, retry_seed(first, 1), retry_seed(first, 2)]
    endless, backend = _endless(engine, set(seeds))
    outcomes = endless.generate_batch([SynthesisRequest("Hi", VOICE), SynthesisRequest("Yes", "X")])
    assert isinstance(outcomes[0], UnfinishedSpeech)
    assert "used all 154 tokens" in str(outcomes[0]) and "on all 3 tries" in str(outcomes[0])
    assert classify(outcomes[0]) is Failure.FINAL  # the chunk fails with this message
    assert isinstance(outcomes[1], Generated)
    assert backend.seeds == [first, voice_seed("X"), seeds[1], seeds[2]]
    with pytest.raises(UnfinishedSpeech):
        endless.render_batch([SynthesisRequest("Hi", VOICE)])


def test_chunks_fit_the_clips_maya1_was_trained_on(settings: Settings) -> None:
    """Maya1 learned from clips of about 1-14 s: the planner's longest chunk, read at a
    narrator's pace, fits; its token limit stays at or under the model card's 2,048 and
    still holds a slow (10 characters a second) reading of it."""
    info = engine_info(settings)
    assert info.max_chunk_chars == MAX_CHUNK_CHARS
    assert 0.5 + MAX_CHUNK_CHARS / TYPICAL_CHARS_PER_SECOND <= 14.0
    longest = "w" * MAX_CHUNK_CHARS
    assert max_new_tokens(longest) <= 2048 and max_new_tokens(longest) == MAX_NEW_TOKENS
    assert max_new_tokens(longest) >= (1 + MAX_CHUNK_CHARS / 10) * 82
