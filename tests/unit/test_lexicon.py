"""Lexicon files: the format, case and whole-word rules, one-line errors naming the line,
phonemes only for engines that take them, and plan-time effects on chunk hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.engines import EngineInfo
from pipeline.errors import InputError
from pipeline.ingest import Chapter, Document, SourceFile
from pipeline.plan.spec import build_spec
from pipeline.text.lexicon import lexicon_from_mapping, load_lexicon, parse_lexicon

TONE = EngineInfo("test-tone", "tone", "test-tone 1", 1000)
PHONEME_ENGINE = EngineInfo("piper", "v", "piper x", 600, takes_phonemes=True)

LEXICON = r"""
# names in this book
Nguyen = win
nginx = engine x
Nice = niece
/\bDr\.? Who\b/i = Doctor Who
/(\d+)x(\d+)/ = \1 by \2
C++ = see plus plus
"""


def test_plain_entries_match_whole_words_with_the_documented_case_rules() -> None:
    lexicon = parse_lexicon(LEXICON)
    assert lexicon.apply("Nguyen and Nguyens met.") == "win and Nguyens met."
    # a lowercase key matches any case; a key with a capital only itself
    assert lexicon.apply("NGINX, Nginx and nginx.") == "engine x, engine x and engine x."
    assert lexicon.apply("Nice is nice.") == "niece is nice."
    assert lexicon.apply("I code C++ daily.") == "I code see plus plus daily."


def test_regex_entries_apply_after_plain_ones_with_groups_and_flags() -> None:
    lexicon = parse_lexicon(LEXICON)
    assert lexicon.apply("dr who rides a 4x4.") == "Doctor Who rides a 4 by 4."


def test_a_json_map_is_the_same_lexicon_as_the_file() -> None:
    mapping = lexicon_from_mapping({"Nguyen": "win", "/colou?r/i": "kuller"})
    assert mapping.apply("Nguyen likes Colour and color.") == "win likes kuller and kuller."
    assert mapping.digest == parse_lexicon("Nguyen = win\n/colou?r/i = kuller").digest


def test_the_digest_changes_with_any_entry() -> None:
    assert parse_lexicon("a = b").digest != parse_lexicon("a = c").digest
    assert parse_lexicon("# note\na = b\n").digest == parse_lexicon("a = b").digest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ok = fine\njust words", "lexicon line 2: expected `word = replacement`"),
        ("/abc = y", "lexicon line 1: regex has no closing slash"),
        ("\n\n/a(/ = y", "lexicon line 3: bad regex /a(/: missing )"),
        ("/a/z = y", "lexicon line 1: unknown regex flag 'z' (use i)"),
        ("a = b\na = c", "lexicon line 2: 'a' is already given on line 1"),
        (r"/(a)/ = \2", "lexicon line 1: bad replacement '\\\\2': no group 2"),
        ("x = [[ab", "lexicon line 1: unbalanced phoneme brackets [[ ]]"),
        ("/a/ =   ", "lexicon line 1: 'a' has an empty replacement"),
    ],
)
def test_a_bad_line_is_one_error_naming_it(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_lexicon(text)
    assert caught.value.message.startswith(message)
    assert "\n" not in caught.value.message


def test_a_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "words.lex"
    path.write_text("Nguyen = win\nbroken line\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"^lexicon {path} line 2: expected"):
        load_lexicon(path)
    with pytest.raises(InputError, match="no such file"):
        load_lexicon(tmp_path / "missing.lex")
    path.write_bytes(b"caf\xe9 = x\n")
    with pytest.raises(InputError, match="not UTF-8 text"):
        load_lexicon(path)


def _spec(paragraphs: tuple[str, ...], lexicon_text: str | None, engine: EngineInfo = TONE):
    document = Document(
        title="Book", chapters=(Chapter(title="One", paragraphs=paragraphs, heading=False),)
    )
    source = SourceFile(path=Path("book.txt"), text="", sha256="0" * 64)
    lexicon = parse_lexicon(lexicon_text) if lexicon_text is not None else None
    return build_spec(
        document,
        source,
        engine=engine,
        settings=Settings(chunk_max_chars=200),
        output_uri=None,
        lexicon=lexicon,
    )


PARAGRAPHS = (
    "Mr. Nguyen arrived on 5 March 2024 at noon.",
    "The weather was fine and the roads were clear all day long.",
    "Nobody else came by before dark.",
    "Then Nguyen left again, paying $3.50 for the ride home.",
)


def test_changing_one_entry_changes_only_the_chunks_with_its_word() -> None:
    before = _spec(PARAGRAPHS, "Nguyen = win\nroads = rodes")
    after = _spec(PARAGRAPHS, "Nguyen = nuh-win\nroads = rodes")
    old = [c for item in before.items for c in item.chunks]
    new = [c for item in after.items for c in item.chunks]
    assert len(old) == len(new) == 4
    changed = [o.text for o, n in zip(old, new, strict=True) if o.content_hash != n.content_hash]
    assert changed == [
        "Mister win arrived on the fifth of March, twenty twenty-four at noon.",
        "Then win left again, paying three dollars and fifty cents for the ride home.",
    ]
    assert new[1].text == "The weather was fine and the rodes were clear all day long."
    assert before.fingerprint != after.fingerprint  # a new job, not a resume of the old one


def test_a_lexicon_that_blows_a_chunk_past_the_engine_limit_is_refused() -> None:
    with pytest.raises(InputError, match=r"lexicon makes a chunk 10[0-9]{2} characters long"):
        _spec(PARAGRAPHS, "Nguyen = " + "very " * 200 + "long")


def test_normalisation_can_be_switched_off_and_that_is_a_different_job() -> None:
    document = Document(
        title="B", chapters=(Chapter(title="Chapter IV", paragraphs=("At 3pm.",), heading=True),)
    )
    source = SourceFile(path=Path("b.txt"), text="", sha256="1" * 64)
    spoken = build_spec(document, source, engine=TONE, settings=Settings(), output_uri=None)
    raw = build_spec(
        document, source, engine=TONE, settings=Settings(normalize_text=False), output_uri=None
    )
    assert [c.text for c in spoken.items[0].chunks] == ["Chapter four", "At three PM."]
    assert [c.text for c in raw.items[0].chunks] == ["Chapter IV", "At 3pm."]
    assert spoken.items[0].title == raw.items[0].title == "Chapter IV"  # markers as written
    assert spoken.fingerprint != raw.fingerprint


def test_phonemes_only_for_an_engine_that_takes_them() -> None:
    spec = _spec(PARAGRAPHS[:1], "Nguyen = [[ŋwˈɪn]]", engine=PHONEME_ENGINE)
    assert spec.items[0].chunks[0].text.startswith("Mister [[ŋwˈɪn]] arrived")
    with pytest.raises(InputError, match=r"line 1: gives phonemes .* engine test-tone does not"):
        _spec(PARAGRAPHS[:1], "Nguyen = [[ŋwˈɪn]]")


def test_piper_reads_a_phoneme_block_as_phonemes() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("piper")
    from piper import PiperVoice

    from pipeline.engines.piper import BUNDLED_VOICE, voice_files

    model, config = voice_files(BUNDLED_VOICE)
    voice = PiperVoice.load(model, config_path=config)
    phonemes = voice.phonemize("Mister [[ŋwˈɪn]] arrived.")
    flat = "".join(p for sentence in phonemes for p in sentence)
    assert "ŋwˈɪn" in flat  # passed through as written, not spelled out by espeak
    assert "ŋwˈɪn" not in "".join(p for s in voice.phonemize("Mister Nguyen arrived.") for p in s)
