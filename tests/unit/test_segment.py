"""Segmentation: sentence-aware, never inside a word, bounded, paragraph-preserving."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.text.segment import segment_paragraph, segment_paragraphs, split_long, split_sentences

WORD = st.text(
    alphabet=st.characters(codec="utf-8", categories=["Lu", "Ll", "Lo", "Nd"]),
    min_size=1,
    max_size=12,
)
PUNCT = st.sampled_from(
    ["", "", "", ",", ";", ":", ".", "!", "?", "...", "…", "—", '."', ".”", "。"]
)
TOKEN = st.builds(lambda w, p: w + p, WORD, PUNCT)
PARAGRAPH = st.lists(TOKEN, min_size=1, max_size=80).map(" ".join)


def words(text: str) -> list[str]:
    return text.split()


@settings(max_examples=300, deadline=None)
@given(paragraph=PARAGRAPH, budget=st.integers(min_value=15, max_value=400))
def test_chunks_keep_every_word_in_order_and_fit_the_budget(paragraph: str, budget: int) -> None:
    chunks = segment_paragraph(paragraph, budget)
    # Every letter and digit, in any script, comes through once and in order.
    assert [c for c in "".join(chunks) if c.isalnum()] == [c for c in paragraph if c.isalnum()]
    # Space-separated words are never cut (a full stop inside a CJK run is a sentence end).
    speakable = [w for w in words(paragraph) if any(c.isalnum() for c in w)]
    rejoined = [w for w in words(" ".join(chunks)) if any(c.isalnum() for c in w)]
    if all(len(w) <= budget for w in words(paragraph)) and "。" not in paragraph:
        assert rejoined == speakable
    assert all(0 < len(chunk) <= budget for chunk in chunks)
    assert all(chunk == chunk.strip() for chunk in chunks)


@settings(max_examples=200, deadline=None)
@given(
    paragraphs=st.lists(PARAGRAPH, min_size=1, max_size=6),
    budget=st.integers(min_value=20, max_value=300),
)
def test_no_chunk_spans_two_paragraphs(paragraphs: list[str], budget: int) -> None:
    segments = list(segment_paragraphs(paragraphs, budget))
    expected = [segment_paragraph(p, budget) for p in paragraphs]
    assert [s.text for s in segments] == [c for chunks in expected for c in chunks]
    starts = [s.paragraph_start for s in segments]
    assert starts == [i == 0 for chunks in expected for i in range(len(chunks))]


@settings(max_examples=200, deadline=None)
@given(
    sentence=st.lists(WORD, min_size=1, max_size=60).map(" ".join),
    budget=st.integers(min_value=12, max_value=80),
)
def test_overlong_sentence_splits_only_between_words(sentence: str, budget: int) -> None:
    pieces = split_long(sentence, budget)
    if all(len(w) <= budget for w in words(sentence)):
        assert words(" ".join(pieces)) == words(sentence)
    assert all(len(p) <= budget for p in pieces)


def test_short_sentences_are_merged_up_to_the_budget() -> None:
    text = "One. Two. Three. Four. Five."
    assert segment_paragraph(text, 12) == ["One. Two.", "Three. Four.", "Five."]
    assert segment_paragraph(text, 400) == [text]


def test_sentence_boundaries_respect_abbreviations_initials_and_decimals() -> None:
    text = 'Mr. Smith met Dr. Jones at 3.30 p.m. on the pier. J. R. R. Tolkien wrote "The Hobbit." It sold well!'
    assert split_sentences(text) == [
        "Mr. Smith met Dr. Jones at 3.30 p.m. on the pier.",
        'J. R. R. Tolkien wrote "The Hobbit."',
        "It sold well!",
    ]


def test_quotes_ellipses_and_lowercase_continuations() -> None:
    assert split_sentences("“Wait…” she said. He waited... and waited. Done?") == [
        "“Wait…” she said.",
        "He waited... and waited.",
        "Done?",
    ]


def test_cjk_sentences_split_on_full_width_stops() -> None:
    assert split_sentences("你好。今天天气很好！我们走吧？") == [
        "你好。",
        "今天天气很好！",
        "我们走吧？",
    ]


def test_long_sentence_prefers_clause_boundaries() -> None:
    sentence = (
        "The storm broke over the valley at dawn; the river rose, the bridges failed, "
        "and by noon the village was an island — silent, cut off, waiting."
    )
    pieces = split_long(sentence, 70)
    assert pieces[0] == "The storm broke over the valley at dawn;"
    assert all(len(p) <= 70 for p in pieces)
    assert words(" ".join(pieces)) == words(sentence)


def test_symbol_only_text_produces_no_chunk() -> None:
    assert segment_paragraph("* * * — …", 100) == []


def test_a_single_token_longer_than_the_budget_is_cut_to_fit() -> None:
    url = "https://example.com/" + "a" * 200
    pieces = segment_paragraph(f"See {url} now.", 50)
    assert all(len(p) <= 50 for p in pieces)
    assert "".join(pieces).replace(" ", "") == f"See{url}now."


def test_long_cjk_sentence_splits_after_full_width_commas() -> None:
    text = "吾輩は猫である、名前はまだ無い、どこで生れたかとんと見当がつかぬ、何でも薄暗いじめじめした所で泣いていた。"
    pieces = split_long(text, 30)
    assert all(p.endswith(("、", "。")) for p in pieces) and "".join(pieces) == text


def test_hard_cut_never_splits_a_grapheme_cluster() -> None:
    pieces = split_long("क्ष" * 40, 25)
    assert "".join(pieces) == "क्ष" * 40
    assert all(p.startswith("क") and p.endswith("ष") for p in pieces)
