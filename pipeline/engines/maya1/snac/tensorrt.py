"""SNAC on TensorRT, through onnxruntime's TensorRT execution provider.

Why the execution provider and not hand-driven TensorRT: the decoder then is the same
OnnxSnacDecoder (numpy in and out, no CUDA buffers managed by hand), the engine is built
from the exported ONNX file with an explicit shape profile and cached on disk by
onnxruntime, and INT8 comes from the int8 QDQ export (calibrated on real Maya1 frames by
snac.export): explicit quantization, the form TensorRT 10 recommends over its deprecated
implicit calibrators. FP16 builds from the fp32 export with TensorRT's fp16 flag, so
TensorRT picks the layers that keep fp32.

Engines are only valid for one GPU model and one shape profile, so each lives in a
folder (and under an onnxruntime cache prefix) naming both:
`<export_dir>/tensorrt/snac_<gpu>_<precision>_b<min>-<opt>-<max>_f<min>-<opt>-<max>/`.
They are built by `voicebatch engine export-snac --format tensorrt` into a temporary
folder that is renamed into place when complete, never built silently at render time.
Where the folders and their ONNX sources live is snac.artifacts'.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.engines.maya1.snac.artifacts import (
    engine_build_command,
    engine_dir,
    engine_files,
    onnx_export_command,
    read_noise_factors,
    source_model,
)
from pipeline.engines.maya1.snac.frames import (
    CODEBOOK_SIZE,
    CODES_PER_FRAME,
    DEFAULT_BATCH_FRAMES,
    Frames,
)
from pipeline.engines.maya1.snac.onnx import OnnxSnacDecoder, Provider
from pipeline.engines.maya1.tokens import MAX_NEW_TOKENS, SLOTS
from pipeline.errors import InputError

TENSORRT_PRECISIONS: tuple[str, ...] = ("fp16", "int8")
TENSORRT_PROVIDER = "TensorrtExecutionProvider"

# The longest chunk the engine may generate, in frames (tokens.MAX_NEW_TOKENS, the token
# cap, is whole frames): every TensorRT profile must reach it, or that chunk's decode fails.
MAX_CHUNK_FRAMES = MAX_NEW_TOKENS // SLOTS
# A decoder call never holds more padded frames than this (decode_groups): the profile's
# max batch x max frames, for which TensorRT reserves activation memory, stays inside it.
MAX_CALL_FRAMES = DEFAULT_BATCH_FRAMES
_DEFAULT_MAX_BATCH = max(1, MAX_CALL_FRAMES // MAX_CHUNK_FRAMES)


@dataclass(frozen=True)
class ShapeProfile:
    """The batch and frame ranges a TensorRT engine accepts (and is tuned for at opt).

    The default reaches the longest chunk (MAX_CHUNK_FRAMES) and reserves memory for
    calls of at most MAX_CALL_FRAMES frames, which is all a call ever holds: its batch is
    what fits beside that many frames, and it is tuned at a full batch of half-length
    chunks, the middle of what the batcher sends."""

    min_batch: int = 1
    opt_batch: int = _DEFAULT_MAX_BATCH
    max_batch: int = _DEFAULT_MAX_BATCH
    min_frames: int = 1
    opt_frames: int = MAX_CHUNK_FRAMES // 2
    max_frames: int = MAX_CHUNK_FRAMES

    def __post_init__(self) -> None:
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise InputError(f"TensorRT batch profile must be 1 <= min <= opt <= max: {self}")
        if not (1 <= self.min_frames <= self.opt_frames <= self.max_frames):
            raise InputError(f"TensorRT frame profile must be 1 <= min <= opt <= max: {self}")

    @classmethod
    def parse(cls, tag: str) -> ShapeProfile:
        """The profile a tag names ('b1-14-14_f1-146-292'), or the default for 'auto';
        InputError if it names none."""
        if tag.strip() == "auto":
            return cls()
        match = re.fullmatch(r"b(\d+)-(\d+)-(\d+)_f(\d+)-(\d+)-(\d+)", tag.strip())
        if not match:
            raise InputError(
                f"bad TensorRT shape profile '{tag}' (want auto or "
                "b<min>-<opt>-<max>_f<min>-<opt>-<max>)"
            )
        return cls(*(int(value) for value in match.groups()))

    def check_serves_the_engine(self) -> None:
        """InputError unless this profile decodes the longest chunk and reserves no more
        memory than a real call uses (see MAX_CHUNK_FRAMES and MAX_CALL_FRAMES)."""
        if self.max_frames < MAX_CHUNK_FRAMES:
            raise InputError(
                f"TensorRT profile {self.tag} stops at {self.max_frames} frames but a chunk "
                f"may reach {MAX_CHUNK_FRAMES}: use VOICEBATCH_SNAC_TRT_PROFILE=auto"
            )
        if self.max_batch * self.max_frames > MAX_CALL_FRAMES:
            raise InputError(
                f"TensorRT profile {self.tag} reserves memory for "
                f"{self.max_batch * self.max_frames} frames but a decoder call holds at most "
                f"{MAX_CALL_FRAMES}: use VOICEBATCH_SNAC_TRT_PROFILE=auto"
            )

    @property
    def tag(self) -> str:
        """b<min>-<opt>-<max>_f<min>-<opt>-<max>, part of the engine's file name."""
        return (
            f"b{self.min_batch}-{self.opt_batch}-{self.max_batch}"
            f"_f{self.min_frames}-{self.opt_frames}-{self.max_frames}"
        )

    def shapes(self, which: str, noise_factors: list[int]) -> str:
        """onnxruntime's trt_profile_{min,opt,max}_shapes value for `which`."""
        batch = getattr(self, f"{which}_batch")
        frames = getattr(self, f"{which}_frames")
        parts = [f"frames:{batch}x{frames}x{CODES_PER_FRAME}", f"lengths:{batch}"]
        parts += [f"noise{i}:{batch}x1x{frames * f}" for i, f in enumerate(noise_factors)]
        return ",".join(parts)


def sanitize(name: str) -> str:
    """A GPU name as a file-name part: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def engine_prefix(gpu_name: str, precision: str, profile: ShapeProfile) -> str:
    """The cache prefix of one engine: GPU model, precision and shape profile."""
    return f"snac_{sanitize(gpu_name)}_{precision}_{profile.tag}"


def gpu_name(device_id: int = 0) -> str:
    """The CUDA device's model name (torch, which every maya1 GPU worker has)."""
    try:
        import torch
    except ImportError as exc:
        raise InputError("TensorRT SNAC engines need torch to name the GPU") from exc
    if not torch.cuda.is_available():
        raise InputError("TensorRT SNAC engines need a CUDA GPU; none is visible")
    return str(torch.cuda.get_device_name(device_id))


def require_tensorrt() -> None:
    """Raise InputError unless TensorRT and onnxruntime's TensorRT provider are installed."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise InputError(
            "the tensorrt SNAC runtime needs TensorRT: pip install tensorrt onnxruntime-gpu "
            "on a CUDA machine (or use VOICEBATCH_SNAC_RUNTIME=onnx)"
        ) from exc
    import onnxruntime

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        raise InputError(
            "this onnxruntime has no TensorRT provider: pip install onnxruntime-gpu "
            "(or use VOICEBATCH_SNAC_RUNTIME=onnx)"
        )


def require_provider(session: object, provider: str = TENSORRT_PROVIDER) -> None:
    """InputError unless `session` (an onnxruntime InferenceSession) runs on `provider`.

    onnxruntime drops a provider that fails to start (a missing TensorRT library, a CUDA
    mismatch, an engine that will not build) with only a log line, and runs the whole graph
    on the next one: a "TensorRT" decoder would silently be a CUDA (or CPU) one."""
    used = list(session.get_providers())  # type: ignore[attr-defined]
    if provider not in used:
        raise InputError(
            f"onnxruntime did not start its {provider} (the session runs on "
            f"{', '.join(used) or 'nothing'}): check the TensorRT and CUDA installation"
        )


def trt_providers(
    cache_dir: Path, prefix: str, precision: str, profile: ShapeProfile, noise_factors: list[int]
) -> list[Provider]:
    """TensorRT first (engine cached under `prefix`), CUDA and CPU for anything it refuses."""
    options: dict[str, object] = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_engine_cache_prefix": prefix,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
        "trt_fp16_enable": True,  # int8 too: the layers left unquantized run in fp16
        "trt_int8_enable": precision == "int8",  # QDQ graph: scales come from its Q/DQ nodes
        "trt_profile_min_shapes": profile.shapes("min", noise_factors),
        "trt_profile_opt_shapes": profile.shapes("opt", noise_factors),
        "trt_profile_max_shapes": profile.shapes("max", noise_factors),
    }
    # CUDA and the CPU stay listed for the few nodes TensorRT may leave (shape arithmetic);
    # TensorRT itself failing is refused by require_provider, never run on them instead
    return [(TENSORRT_PROVIDER, options), "CUDAExecutionProvider", "CPUExecutionProvider"]


def build_engine(
    export_dir: Path, precision: str, profile: ShapeProfile, device_id: int = 0
) -> list[Path]:
    """Build (or rebuild) the TensorRT engine for this GPU, precision and profile from the
    ONNX export in `export_dir`; returns the engine files. Built in a temporary folder
    and renamed into export_dir/tensorrt, so a crash leaves no half-written engine."""
    require_tensorrt()
    if precision not in TENSORRT_PRECISIONS:
        raise InputError(f"TensorRT SNAC precision must be fp16 or int8, not '{precision}'")
    profile.check_serves_the_engine()
    prefix = engine_prefix(gpu_name(device_id), precision, profile)
    final = engine_dir(export_dir, prefix)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{prefix}.build-"))
    try:
        decoder = TensorrtSnacDecoder(
            export_dir, precision, profile, device_id=device_id, cache_dir=work
        )
        # one decode at the optimal shape makes onnxruntime build and write the engine
        rng = np.random.default_rng(0)
        frames = rng.integers(
            0, CODEBOOK_SIZE, (profile.opt_frames, CODES_PER_FRAME), dtype=np.int64
        )
        decoder.decode([frames] * profile.opt_batch, list(range(profile.opt_batch)))
        del decoder
        if not list(work.glob("*.engine")):
            raise InputError(f"TensorRT wrote no SNAC engine for {prefix} (is the GPU supported?)")
        shutil.rmtree(final, ignore_errors=True)  # a rebuild replaces the old engine
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return engine_files(export_dir, prefix)


class TensorrtSnacDecoder(OnnxSnacDecoder):
    """OnnxSnacDecoder on a prebuilt TensorRT engine; calls stay inside the profile."""

    def __init__(
        self,
        export_dir: Path,
        precision: str,
        profile: ShapeProfile | None = None,
        *,
        device_id: int = 0,
        noise: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        require_tensorrt()
        self.profile = profile or ShapeProfile()
        self.profile.check_serves_the_engine()
        prefix = engine_prefix(gpu_name(device_id), precision, self.profile)
        if cache_dir is None:  # at render time: the engine must have been built already
            cache_dir = engine_dir(export_dir, prefix)
            if not engine_files(export_dir, prefix):
                build = engine_build_command(precision)
                raise InputError(f"no TensorRT SNAC engine in {cache_dir}: run {build}")
        model = source_model(export_dir, precision)
        if not model.is_file():
            raise InputError(
                f"TensorRT {precision} engines are built from {model}, which is missing: run "
                f"{onnx_export_command('int8' if precision == 'int8' else 'fp32')}"
            )
        factors = read_noise_factors(model)
        super().__init__(
            model,
            providers=trt_providers(cache_dir, prefix, precision, self.profile, factors),
            noise=noise,
            max_batch_frames=min(
                DEFAULT_BATCH_FRAMES, self.profile.max_batch * self.profile.max_frames
            ),
            max_batch_size=self.profile.max_batch,
        )
        require_provider(self.session)

    def run_batch(
        self,
        padded: Frames,
        lengths: Frames,
        noise: list[npt.NDArray[np.float32]] | None,
    ) -> npt.NDArray[np.floating]:
        """See OnnxSnacDecoder.run_batch; refuses a request past the profile's frames."""
        if padded.shape[1] > self.profile.max_frames:
            raise ValueError(
                f"SNAC request of {padded.shape[1]} frames is past the TensorRT profile's "
                f"{self.profile.max_frames}: rebuild the engine with a larger --max-frames"
            )
        return super().run_batch(padded, lengths, noise)
