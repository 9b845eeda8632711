"""Maya1's token layout and prompt format, and the per-request numbers derived from a
request: its seed and how many tokens it may generate. No torch here: the API and the
batcher use these without the model."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Protocol

from pipeline.engines.base import SynthesisRequest

SOH = 128259  # start of human turn
BOS = 128000  # Llama <|begin_of_text|>
EOT = 128009  # Llama <|eot_id|>: end of the text turn
EOH = 128260  # end of human turn
SOA = 128261  # start of AI turn
SOS = 128257  # start of speech: audio tokens follow
EOS_SPEECH = 128258  # end of speech: the stop token
AUDIO_BASE = 128266  # audio token = AUDIO_BASE + slot * CODEBOOK + code
CODEBOOK = 4096
SLOTS = 7  # tokens per SNAC frame
MIN_NEW_TOKENS = 28  # the reference never stops before 4 frames
TOKENS_PER_SECOND = 82  # 7 tokens per 2048 samples at 24 kHz: 82.03
PROMPT_PREFIX = (SOH, BOS)
PROMPT_SUFFIX = (EOT, EOH, SOA, SOS)

# The longest a chunk may take: a slow reader (10 characters a second; conversational
# English runs ~14-15) plus one second for leading/trailing silence and inline tags such as
# <laugh>, with 50% on top. Audio is never cut short by a cap that ignores the text.
SLOW_CHARS_PER_SECOND = 10.0
TYPICAL_CHARS_PER_SECOND = 14.0
EXTRA_SECONDS = 1.0
MARGIN = 1.5


class TextTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the prompt needs."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def prompt_text(voice: str, text: str) -> str:
    """The text part of a Maya1 prompt: the voice description, then the words (emotion tags
    such as <laugh> stay inline in `text`)."""
    return f'<description="{voice}"> {text}'


def prompt_ids(tokenizer: TextTokenizer, voice: str, text: str) -> list[int]:
    """SOH BOS <description="voice"> text EOT EOH SOA SOS, as token ids."""
    words = tokenizer.encode(prompt_text(voice, text), add_special_tokens=False)
    return [*PROMPT_PREFIX, *words, *PROMPT_SUFFIX]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[list[list[int]], list[int]]:
    """Rows padded on the left to the longest (the last position of every row is then its
    SOS, where generation starts) and each row's padding count."""
    width = max(len(row) for row in rows)
    pads = [width - len(row) for row in rows]
    return [[pad_id] * pad + list(row) for pad, row in zip(pads, rows, strict=True)], pads


def slot_range(slot: int) -> tuple[int, int]:
    """The token ids [low, high) an audio token in `slot` (0..6) may take."""
    low = AUDIO_BASE + slot * CODEBOOK
    return low, low + CODEBOOK


def max_new_tokens(text: str) -> int:
    """The most tokens a chunk of `text` may generate, in whole frames (see MARGIN)."""
    seconds = EXTRA_SECONDS + len(text) / SLOW_CHARS_PER_SECOND
    frames = math.ceil(seconds * TOKENS_PER_SECOND * MARGIN / SLOTS)
    return max(frames * SLOTS, MIN_NEW_TOKENS + SLOTS)


def expected_new_tokens(text: str) -> int:
    """How many tokens a chunk of `text` usually takes (typical pace): the batcher's guess."""
    seconds = 0.5 + len(text) / TYPICAL_CHARS_PER_SECOND
    return math.ceil(seconds * TOKENS_PER_SECOND / SLOTS) * SLOTS


def voice_seed(voice: str) -> int:
    """A stable seed from the voice description alone: every chunk of a voice, in every
    job, samples with the same seed, so the voice does not drift between chunks and the
    content-addressed cache (whose key holds no job id) stays truthful."""
    return int.from_bytes(hashlib.sha256(voice.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF


def request_seed(request: SynthesisRequest) -> int:
    """The request's own seed, else the voice's."""
    return int(request.seed) if request.seed is not None else voice_seed(request.voice)


def retry_seed(seed: int, attempt: int) -> int:
    """Another seed for re-generating a request whose audio came out malformed; attempt 0
    is the seed itself, so a clean first try is unchanged."""
    if attempt == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
