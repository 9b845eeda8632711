"""SNAC decoder: torch vs the ONNX exports (fp32, fp16, int8) on onnxruntime, same run.

    python bench/bench_snac_export.py [--snac-dir DIR] [--batch 8] [--frames 50] [--rounds 3]

Without --snac-dir it builds the SNAC 24 kHz model with random weights (real shapes, so
the timings are the real model's; the int8 error is a random-weight model's). For each
precision: export time, file size, best-of-rounds decode time of `batch` requests of
`frames` frames (the full SnacDecoder.decode: padding, seeded noise, mute, fades) and the
error against the torch fp32 decoder with the same noise (max abs and worst SNR).
Calibration for int8: 4 requests of random codes (pass --snac-dir with real weights and
real frames through `voicebatch engine export-snac --calibration` for a real model).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.engines.maya1.snac.base import BatchedSnacDecoder  # noqa: E402
from pipeline.engines.maya1.snac.export import export_onnx  # noqa: E402
from pipeline.engines.maya1.snac.frames import SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: E402
from pipeline.engines.maya1.snac.onnx import OnnxSnacDecoder  # noqa: E402
from pipeline.engines.maya1.snac.torch import TorchSnacDecoder  # noqa: E402


def best_time(decoder: BatchedSnacDecoder, frames: list[np.ndarray], rounds: int) -> float:
    seeds = list(range(len(frames)))
    decoder.decode(frames[:1], seeds[:1])  # warm-up: first-call allocations
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        decoder.decode(frames, seeds)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snac-dir", type=Path)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        snac_dir = args.snac_dir
        if snac_dir is None:
            from tests.support.snac_fixtures import build_tiny_snac

            snac_dir = build_tiny_snac(Path(work) / "snac")
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 4096, (args.frames, 7)) for _ in range(args.batch)]
        calibration = [rng.integers(0, 4096, (n, 7)) for n in (16, 24, 32, 40)]
        seeds = list(range(args.batch))
        audio_s = args.batch * args.frames * SAMPLES_PER_FRAME / SAMPLE_RATE
        reference = TorchSnacDecoder(snac_dir)
        torch_s = best_time(reference, frames, args.rounds)
        expected = reference.decode(frames, seeds)
        print(
            f"decode {args.batch} x {args.frames} frames ({audio_s:.1f} s of audio), best of "
            f"{args.rounds}"
        )
        print(f"torch fp32: {torch_s:.2f} s ({audio_s / torch_s:.1f}x real time)")
        for precision in ("fp32", "fp16", "int8"):
            result = export_onnx(
                snac_dir, Path(work) / "out", precision=precision, calibration=calibration
            )
            decoder = OnnxSnacDecoder(result.path)
            seconds = best_time(decoder, frames, args.rounds)
            got = decoder.decode(frames, seeds)
            error = max(float(np.abs(a - b).max()) for a, b in zip(got, expected, strict=True))
            snr = min(
                10 * np.log10(np.sum(b**2) / max(np.sum((a - b) ** 2), 1e-30))
                for a, b in zip(got, expected, strict=True)
            )
            print(
                f"onnx {precision}: export {result.seconds:.1f} s, "
                f"{result.path.stat().st_size / 2**20:.1f} MiB; decode {seconds:.2f} s "
                f"({audio_s / seconds:.1f}x real time, {torch_s / seconds:.2f}x torch); "
                f"max abs error {error:.1e}, worst SNR {snr:.1f} dB"
            )


if __name__ == "__main__":
    main()
