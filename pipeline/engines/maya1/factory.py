"""`load_maya1`: the Maya1 engine built from settings. Apart from `engine` so that the
engine's module needs no settings (pydantic): the GPU benchmark builds the engine from its
parts on a machine without it."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.engines.maya1.backends.factory import load_backend
from pipeline.engines.maya1.engine import Maya1Engine, SamplingDefaults
from pipeline.engines.maya1.loading import load_tokenizer, model_dir, model_version
from pipeline.engines.maya1.snac.factory import load_snac_decoder


def load_maya1(settings: Settings) -> Maya1Engine:
    """Load the model, tokenizer, backend and SNAC decoder named in settings, from local
    folders only. Takes as long as the weights take to read: once per process."""
    folder = model_dir(settings)
    tokenizer = load_tokenizer(folder)
    backend = load_backend(settings, folder, tokenizer)
    return Maya1Engine(
        backend=backend,
        tokenizer=tokenizer,
        decoder=load_snac_decoder(settings),
        model_version=model_version(folder),
        defaults=SamplingDefaults.from_settings(settings),
        max_malformed=settings.maya1_max_malformed,
        retries=settings.maya1_retries,
    )
