"""Which token backend runs Maya1: transformers always, vLLM when it is installed."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.engines.maya1.backends.base import TokenBackend
from pipeline.engines.maya1.backends.hf import HFBackend
from pipeline.engines.maya1.backends.vllm import VllmBackend
from pipeline.engines.maya1.loading import load_model, resolve_device, resolve_precision
from pipeline.errors import InputError

log = logging.getLogger(__name__)


def vllm_available() -> bool:
    """Whether the vllm package can be imported (looked up without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def backend_name(settings: Settings, device: str) -> str:
    """'auto' -> vllm when it is installed and the device is a GPU, else hf."""
    choice = settings.maya1_backend
    if choice == "vllm" and not vllm_available():
        raise InputError("maya1_backend vllm needs the vllm package (pip install vllm)")
    if choice == "auto":
        return "vllm" if vllm_available() and device.startswith("cuda") else "hf"
    return choice


def load_backend(settings: Settings, folder: Path, tokenizer: Any) -> TokenBackend:
    """The token backend for settings, with the model loaded at the chosen precision."""
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    name = backend_name(settings, device)
    log.info("maya1: %s backend, %s on %s", name, precision, device)
    if name == "vllm":
        return VllmBackend(folder, precision=precision, device=device)
    model = load_model(folder, precision=precision, device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return HFBackend(model, pad_id=int(pad_id), compile=settings.maya1_compile)
