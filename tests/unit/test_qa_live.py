"""QA while rendering, the parts that need no speech: take seeds, the job option, the
submit rule, placing stored verdicts in a finished file, and the settings. The whole
loop, with Piper and Whisper, is in tests/e2e/test_render_qa_live.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.engines import engine_info
from pipeline.errors import FieldError, InputError
from pipeline.plan.documents import document_from_text
from pipeline.plan.spec import job_options
from pipeline.plan.submit import check_submission
from pipeline.qa.check import Span
from pipeline.qa.live import LiveQa, Verdict, take_seed, verdict_columns
from pipeline.qa.results import matched, placed
from pipeline.state.verdicts import StoredVerdict


def test_the_first_take_keeps_the_engines_seed_and_each_later_take_has_its_own() -> None:
    assert take_seed("ab" * 32, 0) is None  # the same first take as a job without QA
    seeds = [take_seed("ab" * 32, n) for n in range(1, 6)]
    assert len(set(seeds)) == 5 and all(s is not None and 0 <= s < 2**63 for s in seeds)
    assert seeds == [take_seed("ab" * 32, n) for n in range(1, 6)]  # the same every run
    assert take_seed("cd" * 32, 1) != seeds[0]  # another chunk, other seeds


def test_qa_is_a_job_option_only_when_on(settings: Settings) -> None:
    assert "qa" not in job_options(settings)  # jobs planned before QA existed still match
    assert job_options(settings.model_copy(update={"qa": True}))["qa"] is True


def test_a_server_without_a_model_refuses_qa_naming_the_field(settings: Settings) -> None:
    document = document_from_text("Book", "Hello there.").document
    with pytest.raises(FieldError) as caught:
        check_submission(
            document,
            settings=settings.model_copy(update={"qa": True, "asr_model_dir": None}),
            engine=engine_info(settings),
            lexicon=None,
        )
    assert caught.value.field == "qa" and "VOICEBATCH_ASR_MODEL_DIR" in str(caught.value)


def test_a_missing_model_folder_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="VOICEBATCH_ASR_MODEL_DIR"):
        LiveQa(None, retries=2)
    with pytest.raises(InputError, match="is not a CTranslate2 Whisper model folder"):
        LiveQa(tmp_path, retries=2)


def test_qa_retries_are_bounded(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="qa_retries"):
        load_settings(data_dir=tmp_path, qa_retries=11)
    assert load_settings(data_dir=tmp_path, qa_retries=0).qa_retries == 0


def test_a_verdict_is_stored_as_columns() -> None:
    from pipeline.qa.check import TimedWord

    verdict = Verdict(0.25, ("cut_off",), "the fox", (TimedWord("The", 0.1, 0.3),), takes=3)
    assert verdict_columns(verdict) == {
        "qa_error_rate": 0.25,
        "qa_flags": "cut_off",
        "qa_takes": 3,
        "qa_words": [{"text": "The", "start": 0.1, "end": 0.3}],
    }
    assert verdict_columns(Verdict(0.0, ()))["qa_flags"] == ""  # checked and clean


def stored(seq: int, text: str, **kw: object) -> StoredVerdict:
    fields: dict[str, object] = {"error_rate": 0.0, "flags": (), "takes": 1, "words": ()} | kw
    return StoredVerdict(0, seq, text, **fields)  # type: ignore[arg-type]


def test_a_files_spans_find_their_verdicts_in_reading_order_skipping_failed_chunks() -> None:
    chunks = [stored(0, "One."), stored(1, "Two."), stored(2, "Three."), stored(3, "Four.")]
    # chunk 1 failed: it is in no file
    first, at = matched([Span("One.", 0, 1), Span("Three.", 1.2, 2)], chunks, 0)
    assert [v.seq if v else None for v in first] == [0, 2] and at == 3
    second, _ = matched([Span("Four.", 0, 1), Span("Gone.", 1, 2)], chunks, at)
    assert [v.seq if v else None for v in second] == [3, None]


def test_word_times_move_into_the_file_and_stay_inside_their_chunk() -> None:
    verdict = stored(
        4,
        "The fox ran.",
        error_rate=1 / 3,
        flags=("cut_off",),
        words=(
            {"text": "The", "start": -0.05, "end": 0.2},
            {"text": "fox", "start": 0.3, "end": 9},
        ),
    )
    check = placed(verdict, 2, Span("The fox ran.", 10.0, 11.5))
    assert check.index == 2 and check.flags == ["cut_off"] and check.tokens == 3
    assert [(w.text, w.start, w.end) for w in check.words] == [
        ("The", 10.0, 10.2),
        ("fox", 10.3, 11.5),
    ]
    assert check.error_rate == pytest.approx(1 / 3)
    unchecked = placed(None, 0, Span("Hello.", 0, 1))
    assert unchecked.flags == [] and unchecked.words == []


def test_status_lists_flagged_chunks_from_the_api_with_nulls_and_from_the_database() -> None:
    from cli.output import console
    from cli.qa_listing import print_job_qa

    api_shaped = {  # GET /v1/jobs/{id}: every QaChunk field, null where unknown
        "chunks": 4,
        "flagged": 2,
        "retaken": 2,
        "checked_at": None,
        "flagged_chunks": [
            {"text": "Маленький дом.", "flags": ["invented_words"], "error_rate": 3.2,
             "takes": 3, "file": None, "start": None, "end": None, "book_start": None,
             "book_end": None, "seq": 2},
            {"text": "The hare ran.", "flags": ["cut_off"], "error_rate": 0.5, "takes": 3,
             "file": "chapters/01-a.mp3", "start": 65.0, "end": 70.4, "book_start": 125.2,
             "book_end": 130.6, "seq": None},
        ],
    }  # fmt: skip
    with console.capture() as captured:
        print_job_qa(api_shaped)
    shown = captured.get()
    assert "4 chunks checked, 2 rendered again, 2 flagged" in shown
    assert "chunk 2: invented_words (320%, 3 takes)" in shown
    assert "2:05-2:11 chapters/01-a.mp3: cut_off (50%, 3 takes)" in shown
