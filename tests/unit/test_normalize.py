"""English normalisation: every rule with its exact spoken output, and the look-alikes
that must not be read by it (versions, phone numbers, the pronoun I)."""

from __future__ import annotations

import time

import pytest

from pipeline.text import numbers as num
from pipeline.text.normalize import normalize_text
from pipeline.text.segment import split_sentences


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (21, "twenty-one"),
        (100, "one hundred"),
        (105, "one hundred five"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1_000_001, "one million one"),
        (12_345, "twelve thousand three hundred forty-five"),
        (2_000_000_000, "two billion"),
        (-42, "minus forty-two"),
    ],
)
def test_cardinal(n: int, words: str) -> None:
    assert num.cardinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (5, "fifth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (22, "twenty-second"),
        (100, "one hundredth"),
        (101, "one hundred first"),
    ],
)
def test_ordinal_words(n: int, words: str) -> None:
    assert num.ordinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1984, "nineteen eighty-four"),
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2010, "twenty ten"),
        (2024, "twenty twenty-four"),
        (1066, "ten sixty-six"),
    ],
)
def test_year_words(n: int, words: str) -> None:
    assert num.year(n) == words


def test_numbers_past_the_cardinal_range_are_read_digit_by_digit() -> None:
    assert num.cardinal(10**15) == "one " + "zero " * 14 + "zero"


@pytest.mark.parametrize(
    ("numeral", "value"),
    [("IV", 4), ("xiv", 14), ("MCMLXXXIV", 1984), ("IIII", None), ("IC", None)],
)
def test_roman(numeral: str, value: int | None) -> None:
    assert num.roman(numeral) == value


CASES = [
    # cardinals, decimals, negatives, thousands separators
    ("I have 3 cats.", "I have three cats."),
    (
        "It is 1,234,567 far.",
        "It is one million two hundred thirty-four thousand five hundred sixty-seven far.",
    ),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("It fell to -5 today.", "It fell to minus five today."),
    ("Agent 007 here.", "Agent zero zero seven here."),
    ("Read pages 10-20.", "Read pages ten to twenty."),
    ("COVID-19 spread.", "COVID-19 spread."),
    ("Part AB-1234 fits.", "Part AB-1234 fits."),
    ("A pre-2000 car.", "A pre-two thousand car."),
    ("The mid-1980s and the 80s.", "The mid-nineteen eighties and the eighties."),
    # ordinals
    ("The 1st and the 22nd.", "The first and the twenty-second."),
    ("The 101st and 11th and 13th.", "The one hundred first and eleventh and thirteenth."),
    ("A 3th is not an ordinal.", "A 3th is not an ordinal."),
    # years and decades
    ("In 1984 we met.", "In nineteen eighty-four we met."),
    ("In 2005 and 2024.", "In two thousand five and twenty twenty-four."),
    (
        "The 1900s, the 1980s and the '90s.",
        "The nineteen hundreds, the nineteen eighties and the nineties.",
    ),
    ("The war of 1914-1918.", "The war of nineteen fourteen to nineteen eighteen."),
    # currency
    ("It cost $3.50 today.", "It cost three dollars and fifty cents today."),
    ("Only $1.", "Only one dollar."),
    ("Just $0.99 each.", "Just ninety-nine cents each."),
    ("A £1,200 fee.", "A one thousand two hundred pounds fee."),
    ("Raised €5m in May.", "Raised five million euros in May."),
    ("A $2 billion deal.", "A two billion dollars deal."),
    ("A $3.5 million house.", "A three point five million dollars house."),
    # percentages
    ("Up 45% and 3.5% more.", "Up forty-five percent and three point five percent more."),
    # dates
    ("Due 2024-03-05.", "Due March fifth, twenty twenty-four."),
    ("On 12/25/2024 we ate.", "On December twenty-fifth, twenty twenty-four we ate."),
    ("On 25/12/2024 we ate.", "On December twenty-fifth, twenty twenty-four we ate."),
    ("On 5 March 2024 it rained.", "On the fifth of March, twenty twenty-four it rained."),
    ("By March 5th it was over.", "By March fifth it was over."),
    ("On March 5, 2024 it began.", "On March fifth, twenty twenty-four it began."),
    # times
    ("Meet at 3:30 pm.", "Meet at three thirty PM."),
    ("The train at 14:05 left.", "The train at fourteen oh five left."),
    ("At 14:00 sharp.", "At fourteen hundred sharp."),
    ("At 3pm or 9 a.m. we go.", "At three PM or nine AM we go."),
    ("We left at 9 a.m. Then it rained.", "We left at nine AM. Then it rained."),
    # abbreviations
    ("Dr. Smith met Mr. and Mrs. Jones.", "Doctor Smith met Mister and Missus Jones."),
    ("He lives on Baker St. near St. Paul's.", "He lives on Baker Street near Saint Paul's."),
    ("Visit St. Paul's today.", "Visit Saint Paul's today."),
    ("It was on Elm Dr. Then he left.", "It was on Elm Drive. Then he left."),
    ("Fruit, e.g. apples, i.e. food.", "Fruit, for example apples, that is food."),
    ("Apples, pears, etc. Then more.", "Apples, pears, et cetera. Then more."),
    ("Apples, etc. and so on.", "Apples, et cetera and so on."),
    ("Cats vs. dogs.", "Cats versus dogs."),
    ("No. 5 is here.", "Number five is here."),
    ("No. I won't.", "No. I won't."),
    ("See vol. 3 and pp. 10-20.", "See volume three and pages ten to twenty."),
    # Roman numerals in headings
    ("Chapter IV begins.", "Chapter four begins."),
    ("Part II of World War II.", "Part two of World War two."),
    ("I think I am, and I know it.", "I think I am, and I know it."),
    ("Chapter Mix is a name.", "Chapter Mix is a name."),
    # URLs and e-mail
    ("Write to jane.doe@example.com today.", "Write to jane dot doe at example dot com today."),
    (
        "See https://www.example.com/docs/page. Then go.",
        "See w w w dot example dot com slash docs slash page. Then go.",
    ),
    ("Visit example.org.", "Visit example dot org."),
    # units
    (
        "She ran 5 km and lifted 3kg, then 1 km.",
        "She ran five kilometers and lifted three kilograms, then one kilometer.",
    ),
    # look-alikes that no number rule may misread
    ("Python 3.11.2 is out.", "Python three point eleven point two is out."),
    ("Call 555-123-4567 now.", "Call five five five, one two three, four five six seven now."),
    ("Call (555) 123-4567.", "Call five five five, one two three, four five six seven."),
    ("Dial 555-1234.", "Dial five five five, one two three four."),
    ("An MP3 file.", "An MP3 file."),
    ("Plain words stay.", "Plain words stay."),
]


@pytest.mark.parametrize(("raw", "spoken"), CASES, ids=[raw for raw, _ in CASES])
def test_normalize(raw: str, spoken: str) -> None:
    assert normalize_text(raw) == spoken


def test_no_digits_survive_the_rules() -> None:
    for raw, spoken in CASES:
        if raw not in (
            "A 3th is not an ordinal.",
            "An MP3 file.",
            "COVID-19 spread.",
            "Part AB-1234 fits.",
        ):
            assert not any(ch.isdigit() for ch in spoken), raw


@pytest.mark.parametrize(
    ("heading", "spoken"), [("IV.", "four"), ("I", "one"), ("Chapter XII", "Chapter twelve")]
)
def test_a_numeral_alone_is_a_number_only_as_a_heading(heading: str, spoken: str) -> None:
    assert normalize_text(heading, heading=True) == spoken
    if heading in ("IV.", "I"):
        assert normalize_text(heading) == heading


def test_segmentation_sees_the_spoken_sentences() -> None:
    text = normalize_text(
        "Dr. Smith paid $3.50 at 9 a.m. Then he left for St. Paul's, e.g. to pray. It was 1984."
    )
    assert split_sentences(text) == [
        "Doctor Smith paid three dollars and fifty cents at nine AM.",
        "Then he left for Saint Paul's, for example to pray.",
        "It was nineteen eighty-four.",
    ]


def test_a_300k_word_book_normalises_in_a_few_seconds() -> None:
    paragraph = (
        "On 5 March 2024 Dr. Smith paid $3.50, about 45% of the 1,200 pounds he owed since "
        "1984; see https://example.com/a or mail jane@example.com at 3:30 pm, e.g. today. "
        "The 22nd of the month was quiet, and the hills were green and the river ran on "
        "past the old mill where nobody had worked for years and years and years."
    )
    words = len(paragraph.split())
    paragraphs = [paragraph] * (300_000 // words)
    started = time.perf_counter()
    out = [normalize_text(p) for p in paragraphs]
    seconds = time.perf_counter() - started
    assert "Doctor Smith paid three dollars and fifty cents" in out[-1]
    assert seconds < 10, f"{seconds:.1f} s for 300k words"
