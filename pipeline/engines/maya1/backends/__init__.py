"""Token backends for Maya1: transformers (`hf`) always, vLLM (`vllm`) when installed;
`factory` picks one for the settings."""
