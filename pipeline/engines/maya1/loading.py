"""Maya1's model folder: checks, identity, device, precision, and loading (local files only).

The folder is what `hf download maya-research/maya1 --local-dir DIR` writes: config.json,
tokenizer files and *.safetensors weights. Nothing is ever fetched at run time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.engines.maya1.tokens import AUDIO_BASE, CODEBOOK, SLOTS
from pipeline.errors import InputError

if TYPE_CHECKING:  # types only: the GPU benchmark runs where pydantic is not
    import torch

    from pipeline.config import Settings

log = logging.getLogger(__name__)

AUDIO_VOCAB_END = AUDIO_BASE + SLOTS * CODEBOOK  # 156938: the model must cover every audio id
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
PRECISION_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def model_dir(settings: Settings) -> Path:
    """The checked model folder named by VOICEBATCH_MAYA1_MODEL_DIR."""
    folder = settings.maya1_model_dir
    if folder is None:
        raise InputError(
            "engine maya1 needs VOICEBATCH_MAYA1_MODEL_DIR: a local folder holding the model "
            "(hf download maya-research/maya1 --local-dir DIR)"
        )
    folder = folder.expanduser()
    if not folder.is_dir():
        raise InputError(f"maya1 model folder {folder} does not exist (VOICEBATCH_MAYA1_MODEL_DIR)")
    for name in ("config.json", *TOKENIZER_FILES):
        if not (folder / name).is_file():
            raise InputError(f"maya1 model folder {folder} has no {name}")
    if not weight_files(folder):
        raise InputError(f"maya1 model folder {folder} has no *.safetensors weights")
    read_config(folder)
    return folder


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files, sorted."""
    return sorted(folder.glob("*.safetensors"))


def read_config(folder: Path) -> dict[str, Any]:
    """config.json, checked to cover Maya1's audio vocabulary (its size is read, never assumed)."""
    path = folder / "config.json"
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or vocab < AUDIO_VOCAB_END:
        raise InputError(
            f"{path}: vocab_size {vocab} does not cover Maya1's audio tokens (needs "
            f">= {AUDIO_VOCAB_END}); is this a Maya1 model?"
        )
    return config


def model_version(folder: Path) -> str:
    """'maya1-' + a hash of config.json and the weights' identity, in milliseconds (no
    weight is read): the download's recorded etags (the LFS sha256 of each file, kept by
    `hf download --local-dir` under .cache/huggingface/download/), else each file's
    safetensors header and size. New weights mean a new version, hence new chunk hashes."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        digest.update(index.read_bytes())
    for path in weight_files(folder):
        digest.update(path.name.encode())
        metadata = folder / ".cache" / "huggingface" / "download" / f"{path.name}.metadata"
        if metadata.is_file():
            digest.update("\n".join(metadata.read_text().splitlines()[:2]).encode())  # commit, etag
        else:
            digest.update(str(path.stat().st_size).encode())
            digest.update(_safetensors_header(path))
    return f"maya1-{digest.hexdigest()[:16]}"


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        return handle.read(min(size, 100_000_000))


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else as given."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> bf16 on a GPU, fp32 on the CPU; anything else as asked."""
    if precision != "auto":
        return precision
    return "bf16" if device.startswith("cuda") else "fp32"


def _quiet_torchao() -> None:
    """transformers imports torchao when it is installed, and torchao's wheels log "Failed
    to load ..." at WARNING for every CUDA kernel library a CPU machine cannot load: noise
    that reads like an error. Its import-time log is raised to ERROR unless someone
    configured that logger."""
    logger = logging.getLogger("torchao")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)


def load_tokenizer(folder: Path) -> Any:
    """The folder's fast tokenizer, offline."""
    _quiet_torchao()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the maya1 tokenizer from {folder}: {exc}") from exc


def load_model(folder: Path, *, precision: str, device: str) -> torch.nn.Module:
    """The causal LM on `device` at `precision` (bf16, fp16, fp32, or int8 weight-only)."""
    _quiet_torchao()
    from transformers import AutoModelForCausalLM

    if precision == "int8":
        _int8_config()  # fail before minutes of loading, not after
    dtype = weight_dtype(precision, device)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=dtype, attn_implementation="sdpa"
        )
        model.to(device)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the maya1 model from {folder}: {exc}") from exc
    except (RuntimeError, AssertionError) as exc:  # a device torch cannot use
        raise InputError(f"cannot put the maya1 model on device '{device}': {exc}") from exc
    model.eval()
    if precision == "int8":
        quantize_int8(model)
    return model


def weight_dtype(precision: str, device: str) -> torch.dtype:
    """The torch dtype the weights load in: int8 quantises bf16 (GPU) or fp32 (CPU)
    weights after loading."""
    import torch

    if precision == "int8":
        precision = "bf16" if device.startswith("cuda") else "fp32"
    dtype: torch.dtype = getattr(torch, PRECISION_DTYPES[precision])
    return dtype


def quantize_int8(model: torch.nn.Module) -> None:
    """Quantise the model's linear weights to int8 in place (torchao weight-only)."""
    from torchao.quantization import quantize_

    quantize_(model, _int8_config())


def _int8_config() -> Any:
    """torchao's int8 weight-only config. torchao because it is the PyTorch team's own,
    maintained quantisation library, works on CPU and CUDA with plain nn.Linear, and keeps
    the model an ordinary module (the static cache and torch.compile still apply)."""
    try:
        from torchao.quantization import Int8WeightOnlyConfig
    except ImportError as exc:
        raise InputError(
            "precision int8 needs torchao (pip install 'voicebatch[maya1]' or pip install torchao)"
        ) from exc
    return Int8WeightOnlyConfig()
