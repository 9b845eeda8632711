"""A Maya1 voice is a description written inside <description="..."> in the prompt: one
holding a double quote or a line break is refused as an input error where it comes in
(the submit API's fields, OpenAI's speech request, the CLI's --voice and a catalogue
row's voice), before any job exists or any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.engines import EngineInfo, check_engine, check_voice
from pipeline.errors import FieldError, InputError
from pipeline.ingest import Chapter, Document
from pipeline.plan.submit import check_submission

MAYA1 = EngineInfo("maya1", "A calm narrator.", "maya1-test", 180)
BAD = ['A "warm" voice', "Calm.\nThen angry.", "Low\tand slow"]


def _document(voice: str | None) -> Document:
    chapter = Chapter(title="One", paragraphs=("Hello there.",), heading=False, voice=voice)
    return Document(title="Book", chapters=(chapter,))


@pytest.mark.parametrize("voice", BAD)
def test_submit_refuses_a_description_the_prompt_cannot_hold(voice: str) -> None:
    with pytest.raises(FieldError, match="may not hold") as info:
        check_submission(
            _document(None), settings=load_settings(voice=voice), engine=MAYA1, lexicon=None
        )
    assert info.value.field == "voice" and "\n" not in str(info.value)
    with pytest.raises(FieldError, match="may not hold") as item:
        check_submission(_document(voice), settings=load_settings(), engine=MAYA1, lexicon=None)
    assert item.value.field.endswith(".voice")


def test_submit_takes_a_description_in_words() -> None:
    voice = "A 40-year-old woman's voice, British accent, slow & low."
    check_submission(
        _document(voice), settings=load_settings(voice=voice), engine=MAYA1, lexicon=None
    )


@pytest.mark.parametrize("voice", BAD)
def test_the_cli_checks_refuse_it_before_any_folder_or_model(voice: str) -> None:
    # no model folder is configured: the description is refused first, in milliseconds
    with pytest.raises(InputError, match="may not hold"):
        check_engine(load_settings(engine="maya1", voice=voice))
    with pytest.raises(InputError, match="may not hold"):
        check_voice(load_settings(engine="maya1"), voice)  # a catalogue row's voice
    check_voice(load_settings(engine="test-tone"), voice)  # other engines take any name


def test_the_speech_api_names_the_field_that_held_it(tmp_path: Path) -> None:
    from pipeline.speech.request import SpeechInputError, check_speech

    settings = load_settings(engine="test-tone", data_dir=tmp_path)
    request = {"model": "maya1", "text": "Hi."}
    with pytest.raises(SpeechInputError, match="may not hold") as info:
        check_speech(settings, MAYA1, voice='Sailor "Bob"', **request)  # type: ignore[arg-type]
    assert info.value.field == "voice" and info.value.http_status == 400
    with pytest.raises(SpeechInputError, match="may not hold") as info:
        check_speech(
            settings,
            MAYA1,
            voice="ash",
            instructions='An old "salty" sailor.',
            **request,  # type: ignore[arg-type]
        )
    assert info.value.field == "instructions"
