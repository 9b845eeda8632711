"""Which token backend runs Maya1: transformers always, vLLM when a supported release is
installed (VLLM_RANGE: the releases whose logits-processor interface the backend uses)."""

from __future__ import annotations

import importlib.metadata
import logging
import re
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.engines.maya1.backends.base import TokenBackend
from pipeline.engines.maya1.backends.hf import HFBackend
from pipeline.engines.maya1.backends.vllm import VLLM_RANGE, VllmBackend
from pipeline.engines.maya1.loading import load_model, resolve_device, resolve_precision
from pipeline.errors import InputError

log = logging.getLogger(__name__)


def vllm_version() -> str | None:
    """The installed vllm distribution's version, read from its metadata (vllm itself is
    not imported: that takes seconds and initialises CUDA); None when it is not installed."""
    try:
        return importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return None


def vllm_supported(version: str | None) -> bool:
    """Whether a vllm version lies in VLLM_RANGE ('0.34.0', '0.33.1rc1', '0.34.0+cu130'…)."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if not match:
        return False
    release = (int(match.group(1)), int(match.group(2)))
    low, high = VLLM_RANGE
    return low <= release < high


def vllm_range_text() -> str:
    """VLLM_RANGE as a pip requirement: 'vllm>=0.32,<0.35'."""
    (low_major, low_minor), (high_major, high_minor) = VLLM_RANGE
    return f"vllm>={low_major}.{low_minor},<{high_major}.{high_minor}"


def backend_name(settings: Settings, device: str, installed: str | None = None) -> str:
    """'auto' -> vllm when a supported vllm is installed (`installed`, default: looked up)
    and the device is a GPU, else hf. An explicit 'vllm' outside the range is refused."""
    version = vllm_version() if installed is None else installed
    choice = settings.maya1_backend
    if choice == "vllm" and not vllm_supported(version):
        found = f"vllm {version} is installed" if version else "vllm is not installed"
        raise InputError(
            f"maya1_backend vllm needs {vllm_range_text()} ({found}): "
            "pip install 'voicebatch[vllm]', or use maya1_backend=hf"
        )
    if choice == "auto":
        if version and not vllm_supported(version):
            log.warning("maya1: vllm %s is outside %s; using hf", version, vllm_range_text())
        return "vllm" if vllm_supported(version) and device.startswith("cuda") else "hf"
    return choice


def load_backend(settings: Settings, folder: Path, tokenizer: Any) -> TokenBackend:
    """The token backend for settings, with the model loaded at the chosen precision."""
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    name = backend_name(settings, device)
    log.info("maya1: %s backend, %s on %s", name, precision, device)
    if name == "vllm":
        return VllmBackend(
            folder,
            precision=precision,
            device=device,
            max_model_len=settings.maya1_vllm_max_model_len,
            gpu_memory_utilization=settings.maya1_vllm_gpu_memory_utilization,
        )
    model = load_model(folder, precision=precision, device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return HFBackend(model, pad_id=int(pad_id), compile=settings.maya1_compile)
