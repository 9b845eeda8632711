"""Token backends for Maya1: transformers (`hf`) always, vLLM (`vllm`) when installed,
both behind the `base.TokenBackend` interface; `factory` picks one for the settings."""
