"""What planning needs of Maya1, in milliseconds and without torch: the folders exist and
hold the right files, and the engine's description (model version from config + weight
identity)."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.engines.maya1.engine import DEFAULT_VOICE, MAX_CHUNK_CHARS, Maya1Engine
from pipeline.engines.maya1.loading import model_dir, model_version
from pipeline.errors import InputError


def check_maya1_folders(settings: Settings) -> None:
    """The model folder and the SNAC folder are there; raises InputError naming what is not."""
    model_dir(settings)
    snac = settings.snac_dir
    if snac is None:
        raise InputError("maya1 needs the SNAC decoder folder: set VOICEBATCH_SNAC_DIR")
    if not (snac.expanduser() / "config.json").is_file():
        raise InputError(f"SNAC decoder folder {snac} has no config.json (VOICEBATCH_SNAC_DIR)")


def maya1_info(settings: Settings) -> tuple[str, str, str, int]:
    """(name, default voice, model version, max chunk chars), loading no weights."""
    check_maya1_folders(settings)
    return Maya1Engine.name, DEFAULT_VOICE, model_version(model_dir(settings)), MAX_CHUNK_CHARS
