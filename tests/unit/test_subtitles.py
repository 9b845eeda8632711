"""Subtitle cues: wrapped in at most two lines of 42 characters, split at sentences then
clauses, timed in proportion to their characters, never overlapping."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from pipeline.audio.subtitles import TimedText, cues, split_text, to_srt, to_vtt, wrap

RATE = 22050


def test_short_text_is_one_line_and_two_lines_are_balanced() -> None:
    assert wrap("A short line.") == ("A short line.",)
    lines = wrap("This sentence is a little too long for a single subtitle line.")
    assert len(lines) == 2 and all(len(line) <= 42 for line in lines)
    assert abs(len(lines[0]) - len(lines[1])) <= 12


def test_long_chunks_split_after_sentences_then_clauses() -> None:
    text = (
        "The storm came in from the west over the hills. Everyone ran for the barn, "
        "the dogs first, the children after them, and the old farmer last of all."
    )
    pieces = split_text(text)
    assert pieces[0] == "The storm came in from the west over the hills."
    assert all(len(wrap(p)) <= 2 for p in pieces)
    assert " ".join(pieces) == text
    assert any(p.endswith(",") for p in pieces[1:-1])  # then at a clause


def test_cue_times_are_shared_in_proportion_to_characters() -> None:
    opening = "A first sentence that is quite short here."
    text = (
        opening
        + " "
        + "Then a much longer second sentence follows, which has many more words in it."
    )
    (first, second) = cues([TimedText(text, 1000, 1000 + 22050)])
    assert first.lines == wrap(opening)
    assert first.start == 1000 and second.end == 1000 + 22050 and first.end == second.start
    share = (first.end - first.start) / 22050
    assert abs(share - len(opening) / len(text)) < 0.03


def test_srt_and_vtt_formats() -> None:
    chunks = [TimedText("Hello <there> & you.", 0, 22050), TimedText("Bye.", 44100, 55125)]
    srt = to_srt(chunks, RATE)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,000\nHello <there> & you.\n")
    assert "2\n00:00:02,000 --> 00:00:02,500\nBye.\n" in srt
    vtt = to_vtt(chunks, RATE)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\n")
    assert "Hello &lt;there&gt; &amp; you." in vtt


@given(
    st.lists(
        st.text(alphabet=st.sampled_from("abcdefgh ,.;!?—'xyz"), min_size=1, max_size=400).filter(
            lambda t: t.split()
        ),
        min_size=1,
        max_size=6,
    )
)
def test_cues_are_ordered_and_never_overlap(texts: list[str]) -> None:
    chunks, at = [], 0
    for text in texts:
        chunks.append(TimedText(text, at, at + 10 * len(text) + 100))
        at += 10 * len(text) + 400
    made = cues(chunks)
    assert all(c.start <= c.end for c in made)
    assert all(a.end <= b.start for a, b in pairwise(made))
    words = [w for c in made for line in c.lines for w in line.split()]
    assert words == [w for t in texts for w in t.split()]  # nothing lost, nothing added
    for cue in made:  # two lines of 42, unless one word is longer than a line
        assert len(cue.lines) <= 2 or any(len(w) > 42 for line in cue.lines for w in line.split())
