"""The SNAC decoder: real snac.SNAC with the 24 kHz config (random weights), on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("snac")

from pipeline.config import load_settings
from pipeline.engines.maya1.snac.base import FADE_SAMPLES, STARTUP_SAMPLES, SnacDecoder
from pipeline.engines.maya1.snac.factory import load_snac_decoder
from pipeline.engines.maya1.snac.frames import SAMPLES_PER_FRAME, decode_groups
from pipeline.engines.maya1.snac.torch import TorchSnacDecoder
from pipeline.errors import InputError
from tests.support.snac_fixtures import build_tiny_snac


@pytest.fixture(scope="module")
def snac_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_snac(tmp_path_factory.mktemp("snac"))


@pytest.fixture(scope="module")
def decoder(snac_dir: Path) -> TorchSnacDecoder:
    return TorchSnacDecoder(snac_dir)


def _frames(*counts: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4096, (count, 7), dtype=np.int64) for count in counts]


def test_audio_is_exactly_frames_times_2048_float32(decoder: TorchSnacDecoder) -> None:
    audio = decoder.decode(_frames(4, 9, 1), seeds=[1, 2, 3])
    assert [len(item) for item in audio] == [4 * 2048, 9 * 2048, 1 * 2048]
    assert all(item.dtype == np.float32 for item in audio)
    assert decoder.sample_rate == 24_000
    assert isinstance(decoder, SnacDecoder)


def test_batched_equals_unbatched_for_the_same_seeds(decoder: TorchSnacDecoder) -> None:
    """Padding to the longest and batch-mates' noise must not leak into a request's audio;
    without the per-conv length mask a short request's tail differs by ~0.1."""
    frames = _frames(3, 12, 7)
    batched = decoder.decode(frames, seeds=[11, 22, 33])
    for item, seed, together in zip(frames, [11, 22, 33], batched, strict=True):
        alone = decoder.decode([item], seeds=[seed])[0]
        np.testing.assert_allclose(together, alone, atol=1e-5)


def test_noise_follows_the_seed(decoder: TorchSnacDecoder) -> None:
    frames = _frames(5)
    first = decoder.decode(frames, seeds=[7])[0]
    again = decoder.decode(frames, seeds=[7])[0]
    other = decoder.decode(frames, seeds=[8])[0]
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_start_up_frame_muted_and_edges_faded(decoder: TorchSnacDecoder) -> None:
    audio = decoder.decode(_frames(6), seeds=[3])[0]
    raw = decoder.decode_raw(_frames(6), seeds=[3])[0]
    assert np.abs(raw[:STARTUP_SAMPLES]).max() > 0.01  # there was something to remove
    assert not audio[:STARTUP_SAMPLES].any()
    assert audio[STARTUP_SAMPLES] == 0.0 and audio[-1] == 0.0
    # the ramps are monotone gains: 5 ms in, 5 ms out, the body untouched
    fade_in = audio[STARTUP_SAMPLES : STARTUP_SAMPLES + FADE_SAMPLES]
    assert np.all(np.abs(fade_in) <= np.abs(raw[STARTUP_SAMPLES : STARTUP_SAMPLES + FADE_SAMPLES]))
    body = slice(STARTUP_SAMPLES + FADE_SAMPLES, len(audio) - FADE_SAMPLES)
    np.testing.assert_array_equal(audio[body], np.clip(raw[body], -1, 1))
    assert np.sqrt(np.mean(audio[body] ** 2)) > 0.01


def test_large_batches_split_into_bounded_decoder_calls(snac_dir: Path) -> None:
    assert decode_groups([5, 1, 3, 8], max_frames=10) == [[1, 2], [0], [3]]
    small = TorchSnacDecoder(snac_dir, max_batch_frames=8)
    frames = _frames(2, 6, 3)
    split = small.decode(frames, seeds=[1, 2, 3])
    whole = TorchSnacDecoder(snac_dir).decode(frames, seeds=[1, 2, 3])
    for a, b in zip(split, whole, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_load_from_settings_on_the_cpu(snac_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(snac_dir=snac_dir, device="cpu", data_dir=tmp_path)
    decoder = load_snac_decoder(settings)
    assert isinstance(decoder, TorchSnacDecoder) and decoder.device == "cpu"
    assert len(decoder.decode(_frames(2), seeds=[0])[0]) == 2 * SAMPLES_PER_FRAME


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "set VOICEBATCH_SNAC_DIR"),
        (lambda root: root / "absent", "has no config.json"),
        (lambda root: _without_weights(root), "has no pytorch_model.bin"),
        (lambda root: _bad_config(root), "is not a SNAC model"),
    ],
)
def test_bad_folders_are_one_line_input_errors(tmp_path: Path, make: object, message: str) -> None:
    folder = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(InputError, match=message) as info:
        TorchSnacDecoder(folder)
    assert "\n" not in str(info.value)


def _without_weights(root: Path) -> Path:
    (root / "w").mkdir()
    (root / "w" / "config.json").write_text("{}")
    return root / "w"


def _bad_config(root: Path) -> Path:
    folder = root / "bad"
    folder.mkdir()
    (folder / "config.json").write_text('{"no_such_option": 1}')
    (folder / "pytorch_model.bin").write_bytes(b"not weights")
    return folder


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([np.zeros((3, 6), np.int64)], r"frames must be \(n >= 1, 7\)"),
        ([np.zeros((0, 7), np.int64)], r"frames must be \(n >= 1, 7\)"),
        ([np.full((2, 7), 4096, np.int64)], "codes must lie in 0..4095"),
        ([np.zeros((2, 7), np.float32)], "codes must be integers"),
    ],
)
def test_malformed_frames_are_refused(
    decoder: TorchSnacDecoder, frames: list[np.ndarray], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        decoder.decode(frames, seeds=[0])


def test_the_cpu_decoder_has_no_cuda_stream_and_decodes(decoder: TorchSnacDecoder) -> None:
    # the stream path is the GPU's; on the CPU the plain path runs, no CUDA call made
    assert decoder.stream is None
    assert len(decoder.decode(_frames(3), seeds=[5])[0]) == 3 * SAMPLES_PER_FRAME


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (runs on the GPU box)"
)
def test_on_a_gpu_snac_decodes_on_its_own_stream_into_pinned_memory(
    snac_dir: Path, decoder: TorchSnacDecoder
) -> None:
    import torch

    gpu = TorchSnacDecoder(snac_dir, device="cuda")
    assert gpu.stream is not None
    assert gpu.stream != torch.cuda.default_stream()
    frames = _frames(4, 9)
    audio = gpu.decode(frames, seeds=[1, 2])
    assert gpu._host is not None and gpu._host.is_pinned()
    for on_gpu, on_cpu in zip(audio, decoder.decode(frames, seeds=[1, 2]), strict=True):
        np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-3)
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    # the caller's stream (the LLM's) busy with a long kernel: the decode neither queues
    # behind it nor waits for it. On one shared stream the copy back would wait for it.
    # _sleep spins ~2.5 s at H100 clocks; a warm decode of 9 frames takes milliseconds.
    torch.cuda._sleep(5_000_000_000)
    gpu.decode(frames, seeds=[1, 2])
    busy = not torch.cuda.default_stream().query()
    torch.cuda.synchronize()
    assert busy
