"""A SNAC 24 kHz decoder folder built by the tests: the real configuration, random weights.

`build_tiny_snac(folder)` writes `config.json` (the values of hubertsiuzdak/snac_24khz)
and `pytorch_model.bin` (a state dict of `snac.SNAC(**config)` with seeded random
weights), so the real offline loading and decoding code runs without any download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The published hubertsiuzdak/snac_24khz config.json, value for value.
SNAC_24KHZ_CONFIG: dict[str, Any] = {
    "sampling_rate": 24000,
    "encoder_dim": 48,
    "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 1024,
    "decoder_rates": [8, 8, 4, 2],
    "attn_window_size": None,
    "codebook_size": 4096,
    "codebook_dim": 8,
    "vq_strides": [4, 2, 1],
    "noise": True,
    "depthwise": True,
}


def build_tiny_snac(folder: Path, *, seed: int = 0) -> Path:
    """Write a SNAC 24 kHz model folder (config.json + pytorch_model.bin) into `folder`
    and return it. "Tiny" only in that it is built in a second: the shapes are real."""
    import torch
    from snac import SNAC

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = SNAC(**SNAC_24KHZ_CONFIG)
    (folder / "config.json").write_text(json.dumps(SNAC_24KHZ_CONFIG, indent=2))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder
