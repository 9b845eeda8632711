"""Maya1 token layout, prompt format, per-request limits and seeds, and frame unpacking,
with hand-built token streams (no model, no torch)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.engines.base import SynthesisRequest
from pipeline.engines.maya1.tokens import (
    AUDIO_BASE,
    EOS_SPEECH,
    MIN_NEW_TOKENS,
    SLOTS,
    TOKENS_PER_SECOND,
    expected_new_tokens,
    left_pad,
    max_new_tokens,
    prompt_ids,
    prompt_text,
    request_seed,
    retry_seed,
    slot_range,
    voice_seed,
)
from pipeline.engines.maya1.unpack import MalformedAudio, check_unpacked, unpack
from pipeline.errors import InputError


class _CharTokenizer:
    """One id per character, so the test can see exactly what was encoded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.calls.append((text, add_special_tokens))
        return [ord(c) for c in text]


def _tokens(frames: np.ndarray) -> list[int]:
    """Audio tokens for (n, 7) codes, slot by slot."""
    return [AUDIO_BASE + slot * 4096 + int(code) for row in frames for slot, code in enumerate(row)]


def test_prompt_is_the_exact_maya1_layout() -> None:
    tokenizer = _CharTokenizer()
    ids = prompt_ids(tokenizer, "A calm narrator", "Hello <laugh> there.")
    text = '<description="A calm narrator"> Hello <laugh> there.'
    assert prompt_text("A calm narrator", "Hello <laugh> there.") == text
    # BOS SOH BOS ...: the tokenizer's own BOS in front of the card's SOH BOS (see below)
    assert ids == [
        128000,
        128259,
        128000,
        *[ord(c) for c in text],
        128009,
        128260,
        128261,
        128257,
    ]
    assert tokenizer.calls == [(text, False)]  # the special tokens are placed by hand


def _llama3_tokenizer(tmp_path: Path) -> Any:
    """The test tokenizer (Maya1's special ids) with Llama 3's post-processor, which puts
    <|begin_of_text|> in front of every encoded text, as Maya1's tokenizer.json does."""
    pytest.importorskip("transformers")
    from tokenizers import processors
    from transformers import AutoTokenizer

    from tests.support.maya1_fixtures import build_tokenizer

    build_tokenizer(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", 128000)],
    )
    return tokenizer


def _card_prompt_ids(tokenizer: Any, description: str, text: str) -> list[int]:
    """The model card's construction, step by step (huggingface.co/maya-research/maya1,
    "Quick start": build_prompt, then `tokenizer(prompt, return_tensors="pt")`)."""
    soh = tokenizer.decode([128259])
    eoh = tokenizer.decode([128260])
    soa = tokenizer.decode([128261])
    sos = tokenizer.decode([128257])
    eot = tokenizer.decode([128009])
    formatted = f'<description="{description}"> {text}'
    prompt = soh + tokenizer.bos_token + formatted + eot + eoh + soa + sos
    ids: list[int] = tokenizer(prompt)["input_ids"]
    return ids


@pytest.mark.parametrize(
    ("description", "text"),
    [
        ("A calm narrator", "Hello <laugh> there."),
        ("Realistic male voice in the 30s age with American accent.", "Wait... what? <sigh>"),
        ("Ünïcode voice, 40s; warm & low", "Ça va? 123 — fine."),
    ],
)
def test_prompt_ids_are_what_the_model_card_feeds(
    tmp_path: Path, description: str, text: str
) -> None:
    tokenizer = _llama3_tokenizer(tmp_path)
    expected = _card_prompt_ids(tokenizer, description, text)
    assert expected[:3] == [128000, 128259, 128000]  # the card's model sees BOS SOH BOS
    assert prompt_ids(tokenizer, description, text) == expected


@pytest.mark.parametrize(
    ("description", "shown"),
    [
        ('A "warm" voice', "'\"'"),
        ("Calm.\nThen angry.", "'\\n'"),
        ("Tab\tseparated\r", "'\\t', '\\r'"),
        ("line\u2028break", "'\\u2028'"),
    ],
)
def test_a_description_the_prompt_cannot_hold_is_refused(description: str, shown: str) -> None:
    with pytest.raises(InputError, match="may not hold") as info:
        prompt_text(description, "Hello.")
    message = str(info.value)
    assert "\n" not in message and shown in message
    from pipeline.engines.maya1.tokens import check_description

    with pytest.raises(InputError):
        check_description(description)


def test_descriptions_in_words_pass_and_blank_ones_are_refused() -> None:
    from pipeline.engines.maya1.tokens import check_description

    check_description("A 40-year-old woman's voice, British accent: <calm>, slow & low.")
    with pytest.raises(InputError, match="is empty"):
        check_description("   ")


def test_left_padding_puts_every_sos_in_the_last_column() -> None:
    rows, pads = left_pad([[1, 2, 3], [4], [5, 6]], pad_id=0)
    assert rows == [[1, 2, 3], [0, 0, 4], [0, 5, 6]]
    assert pads == [0, 2, 1]


def test_slot_ranges_tile_the_audio_vocabulary() -> None:
    assert slot_range(0) == (128266, 128266 + 4096)
    assert slot_range(6) == (128266 + 6 * 4096, 128266 + 7 * 4096)
    assert slot_range(6)[1] == 156938  # Maya1's audio vocabulary ends here


@pytest.mark.parametrize("text", ["Hi.", "x" * 40, "y" * 120, "z" * 180])  # up to MAX_CHUNK_CHARS
def test_max_new_tokens_follows_the_text_with_room_to_spare(text: str) -> None:
    limit = max_new_tokens(text)
    assert limit % SLOTS == 0 and limit > MIN_NEW_TOKENS
    # a slow reader (10 chars/s) fits, and the usual guess sits well below the limit
    assert limit >= len(text) / 10 * TOKENS_PER_SECOND
    assert expected_new_tokens(text) < limit


def test_max_new_tokens_grows_with_the_text_up_to_the_model_cards_2048() -> None:
    limits = [max_new_tokens("w" * n) for n in (10, 100, 1000, 5000)]
    assert limits == sorted(limits) and limits[0] < limits[1]
    assert limits[-1] == limits[-2] == 2044  # 292 whole frames: at most the card's 2048


def test_seed_comes_from_the_request_else_from_the_voice_alone() -> None:
    voice = "A warm female voice, slow"
    a = SynthesisRequest("first chunk", voice)
    b = SynthesisRequest("a different chunk", voice, params={"temperature": 0.5})
    assert request_seed(a) == request_seed(b) == voice_seed(voice)
    assert voice_seed("another voice") != voice_seed(voice)
    assert request_seed(SynthesisRequest("x", voice, seed=7)) == 7
    assert retry_seed(7, 0) == 7 and len({retry_seed(7, n) for n in range(5)}) == 5


def test_unpack_deinterleaves_frames_and_stops_at_end_of_speech() -> None:
    codes = np.random.default_rng(0).integers(0, 4096, (5, 7))
    out = unpack([*_tokens(codes), EOS_SPEECH, *_tokens(codes[:1])])
    np.testing.assert_array_equal(out.frames, codes)
    assert out.frames.dtype == np.int64 and out.malformed == 0


def test_a_token_in_the_wrong_slot_makes_its_frame_malformed() -> None:
    codes = np.random.default_rng(1).integers(0, 4096, (6, 7))
    tokens = _tokens(codes)
    tokens[2 * 7 + 3] = AUDIO_BASE + 2 * 4096 + 5  # slot 3's place holds a slot-2 token
    tokens[4 * 7 + 0] = 1234  # a text token in an audio frame
    out = unpack(tokens + tokens[:3])  # and a partial frame at the end
    np.testing.assert_array_equal(out.frames, codes[[0, 1, 3, 5]])
    assert out.malformed == 3 and out.total == 7


def test_few_malformed_frames_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    codes = np.zeros((9, 7), dtype=np.int64)
    tokens = _tokens(codes)
    tokens[0] = AUDIO_BASE + 4096  # slot-1 token in slot 0
    out = unpack(tokens)
    with caplog.at_level(logging.WARNING):
        check_unpacked(out, 0.2, label="chunk 'x'")
    assert len(out.frames) == 8
    assert "dropped 1 malformed of 9 audio frames" in caplog.text


def test_too_many_malformed_frames_raise() -> None:
    tokens = _tokens(np.zeros((4, 7), dtype=np.int64))
    tokens[0] = tokens[7] = AUDIO_BASE + 6 * 4096
    with pytest.raises(MalformedAudio, match="2 of 4 audio frames malformed"):
        check_unpacked(unpack(tokens), 0.2, label="chunk")
    with pytest.raises(MalformedAudio, match="no valid audio frame"):
        check_unpacked(unpack([EOS_SPEECH]), 0.2, label="chunk")
