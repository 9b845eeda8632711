"""A Maya1 model folder built by the tests: Maya1's vocabulary layout at a tiny size.

`build_tiny_maya1(folder)` writes what `hf download maya-research/maya1` would: a Llama
config.json (hidden 64, 2 layers, 4 heads, 2 KV heads, vocabulary 156940 as in Maya1),
random weights saved with save_pretrained (safetensors), and a byte-level BPE tokenizer
(tokenizer.json + tokenizer_config.json) whose special tokens sit at Maya1's ids
(BOS 128000, EOT 128009, SOS 128257, EOS-of-speech 128258, SOH 128259 ... 128265).
"""

from __future__ import annotations

from pathlib import Path

VOCAB_SIZE = 156940
FIRST_SPECIAL = 128000
SPECIAL_COUNT = 266  # 128000 .. 128265; audio tokens follow from 128266


def _special_names() -> list[str]:
    names = [f"<|reserved_special_token_{index}|>" for index in range(SPECIAL_COUNT)]
    names[0], names[1], names[9] = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
    for offset, name in {
        257: "<|start_of_speech|>",
        258: "<|end_of_speech|>",
        259: "<|start_of_human|>",
        260: "<|end_of_human|>",
        261: "<|start_of_ai|>",
        263: "<|pad|>",
    }.items():
        names[offset] = name
    return names


def build_tokenizer(folder: Path) -> None:
    """tokenizer.json + tokenizer_config.json: 256 byte tokens, fillers up to id 128000,
    then the special tokens at their Maya1 ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: index for index, char in enumerate(sorted(alphabet))}
    for index in range(len(vocab), FIRST_SPECIAL):
        vocab[f"<|filler_{index}|>"] = index  # unreachable: there are no merges
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(name, special=True) for name in _special_names()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|pad|>",
    )
    fast.save_pretrained(folder)


def build_tiny_maya1(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny Maya1-shaped model folder into `folder` and return it (about 2 s)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=128000,
        eos_token_id=128258,
        pad_token_id=128263,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Random weights never choose the stop token among 4096 audio candidates, and the
    # engine fails a chunk that runs into its token cap. Every (tied) row gets a shared
    # direction d, which the hidden states then carry: all logits shift alike, except the
    # stop token's, whose row is 2.5 d. So the stop is likely at each frame boundary, and
    # where it falls depends on the seed: chunks end after 4 to about 25 frames.
    with torch.no_grad():
        embeddings = model.model.embed_tokens.weight
        shared = torch.randn(config.hidden_size)
        shared *= 2 * embeddings[128266:156938].std() * config.hidden_size**0.5 / shared.norm()
        embeddings += shared
        embeddings[128258] = 2.5 * shared
    model.save_pretrained(folder, safe_serialization=True)
    build_tokenizer(folder)
    return folder
