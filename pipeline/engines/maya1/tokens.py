"""Maya1's token layout and prompt format, and the per-request numbers derived from a
request: its seed and how many tokens it may generate. No torch here: the API and the
batcher use these without the model."""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Sequence
from typing import Protocol

from pipeline.engines.base import SynthesisRequest
from pipeline.errors import InputError

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
# The model card (https://huggingface.co/maya-research/maya1, "Quick start") builds the
# string SOH BOS <description="..."> text EOT EOH SOA SOS from the tokenizer's special
# tokens, then encodes it with `tokenizer(prompt)`, whose Llama 3 post-processor puts one
# more BOS in front: the model was trained on BOS SOH BOS ..., so that is what it is fed.
PROMPT_PREFIX = (BOS, SOH, BOS)
PROMPT_SUFFIX = (EOT, EOH, SOA, SOS)
# A description sits between the quotes of <description="...">: a quote would end it early
# and a line break or other control character is nothing the model was trained on. There
# is no escape the model knows, so such a description is refused, never rewritten.
DESCRIPTION_FORBIDDEN = '"'

# The longest a chunk may take: a slow reader (10 characters a second; conversational
# English runs ~14-15) plus one second for leading/trailing silence and inline tags such as
# <laugh>, with 50% on top, and never more than the model card's max_new_tokens=2048 (in
# whole frames: 2044, 24.9 s). The engine's chunks (MAX_CHUNK_CHARS in engine.py) are short
# enough that the slow reading of the longest one (19 s, 1,558 tokens) fits under that cap:
# the cap only stops a chunk that does not end its speech, which is then tried again.
SLOW_CHARS_PER_SECOND = 10.0
TYPICAL_CHARS_PER_SECOND = 14.0
EXTRA_SECONDS = 1.0
MARGIN = 1.5
CARD_MAX_NEW_TOKENS = 2048  # the model card's generate(max_new_tokens=2048)
MAX_NEW_TOKENS = CARD_MAX_NEW_TOKENS // SLOTS * SLOTS


class TextTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the prompt needs."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def check_description(voice: str) -> None:
    """Raise InputError (one line) when `voice` cannot be a Maya1 voice description: empty,
    or holding a double quote or a control character such as a line break."""
    if not voice.strip():
        raise InputError("a maya1 voice description is empty: describe the voice in words")
    bad = sorted({char for char in voice if char in DESCRIPTION_FORBIDDEN or _control(char)})
    if bad:
        shown = ", ".join(repr(char) for char in bad)
        raise InputError(
            f"a maya1 voice description may not hold {shown}: it is written inside "
            '<description="..."> in the prompt; use single quotes and one line'
        )


def _control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp")


def prompt_text(voice: str, text: str) -> str:
    """The text part of a Maya1 prompt: the voice description, then the words (emotion tags
    such as <laugh> stay inline in `text`). InputError for a description the prompt cannot
    hold (`check_description`)."""
    check_description(voice)
    return f'<description="{voice}"> {text}'


def prompt_ids(tokenizer: TextTokenizer, voice: str, text: str) -> list[int]:
    """BOS SOH BOS <description="voice"> text EOT EOH SOA SOS, as token ids: exactly what
    the model card's `tokenizer(prompt)` feeds (see PROMPT_PREFIX)."""
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
    """The most tokens a chunk of `text` may generate, in whole frames (see MARGIN), at
    most MAX_NEW_TOKENS."""
    seconds = EXTRA_SECONDS + len(text) / SLOW_CHARS_PER_SECOND
    frames = math.ceil(seconds * TOKENS_PER_SECOND * MARGIN / SLOTS)
    return min(max(frames * SLOTS, MIN_NEW_TOKENS + SLOTS), MAX_NEW_TOKENS)


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
