"""English text normalisation: write numbers, dates, money, abbreviations, URLs as words.

Runs on each paragraph before segmentation, so the segmenter sees the spoken text ("Dr.
Smith" is "Doctor Smith" and no longer looks like a sentence end) and every chunk's
content hash is of what the engine is asked to say.

Each rule is one compiled regex and one replacement function, applied once per paragraph
in a fixed order: the specific shapes first (URLs, phone numbers, dates, times, money),
then the general ones (ordinals, years, plain numbers), so a general rule never sees the
digits a specific rule already turned into words. A rule's output has no digits left.

Reading choices, documented so users know what to expect (and fix with a lexicon):
- a bare four-digit number from 1100 to 2099 is read as a year ("1984" -> "nineteen
  eighty-four"); write "1,984" for the quantity;
- a/b/yyyy dates are month/day (US) unless the first number is over 12;
- version-like strings (3.11.2) are read part by part with "point"; strings shaped like
  phone numbers digit by digit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.text import numbers as num
from pipeline.text.abbreviations import ends_sentence, expand_abbreviations
from pipeline.text.spoken_web import speak_emails, speak_urls

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MONTH_RE = "|".join(MONTHS)


def _int(text: str) -> int | None:
    """The value of a digit string, or None past the cardinal range (read digit by digit;
    Python refuses int() of more than 4,300 digits)."""
    plain = text.replace(",", "")
    return int(plain) if len(plain) <= num.MAX_CARDINAL_DIGITS else None


# --- phone numbers ------------------------------------------------------------------
_PHONE = re.compile(
    r"(?<![\w.,-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])"
    r"|(?<![\w.,-])\d{3}-\d{4}(?![\w-])"
)


def _phone(match: re.Match[str]) -> str:
    groups = re.findall(r"\d+", match.group(0))
    plus = "plus " if match.group(0).startswith("+") else ""
    return plus + ", ".join(num.digits(group) for group in groups)


# --- dates ----------------------------------------------------------------------------
_ISO_DATE = re.compile(r"(?<![\w.-])(\d{4})-(\d{2})-(\d{2})(?![\w-])")
_SLASH_DATE = re.compile(r"(?<![\w./])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\w/])")
_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)? ({_MONTH_RE})(,? (\d{{4}}))?\b")
_MONTH_DAY = re.compile(rf"\b({_MONTH_RE}) (\d{{1,2}})(?:st|nd|rd|th)?\b(,? (\d{{4}})\b)?")


def _date_words(month: int, day: int, year: int | None) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    words = f"{MONTHS[month - 1]} {num.ordinal(day)}"
    return f"{words}, {num.year(year)}" if year is not None else words


def _iso_date(match: re.Match[str]) -> str:
    year, month, day = (int(g) for g in match.groups())
    return _date_words(month, day, year) or match.group(0)


def _slash_date(match: re.Match[str]) -> str:
    first, second, year_text = match.groups()
    a, b = int(first), int(second)
    year = int(year_text) if len(year_text) == 4 else 2000 + int(year_text)
    month, day = (b, a) if a > 12 else (a, b)
    return _date_words(month, day, year) or match.group(0)


def _day_month(match: re.Match[str]) -> str:
    day, month, _, year = match.groups()
    if not 1 <= int(day) <= 31:
        return match.group(0)
    words = f"the {num.ordinal(int(day))} of {month}"
    return f"{words}, {num.year(int(year))}" if year else words


def _month_day(match: re.Match[str]) -> str:
    month, day, _, year = match.groups()
    words = _date_words(MONTHS.index(month) + 1, int(day), int(year) if year else None)
    return words or match.group(0)


# --- times ----------------------------------------------------------------------------
_MERIDIEM = r"(?:\s?([AaPp])\.?[Mm](\.)?(?!\w))"
_CLOCK = re.compile(rf"(?<![\w:.])([01]?\d|2[0-3]):([0-5]\d)(?![\w:]|\.\d){_MERIDIEM}?")
_HOUR_MERIDIEM = re.compile(rf"(?<![\w:.])(1[0-2]|0?[1-9]){_MERIDIEM}")


def _meridiem(match: re.Match[str], letter_group: int) -> str:
    letter = match.group(letter_group)
    if not letter:
        return ""
    # "at 3 p.m. Then ...": the abbreviation's dot also ended the sentence; keep one.
    stop = "." if match.group(letter_group + 1) and ends_sentence(match) else ""
    return f" {letter.upper()}M{stop}"


def _clock(match: re.Match[str]) -> str:
    hour, minute, letter = int(match.group(1)), int(match.group(2)), match.group(3)
    if minute == 0:
        # 14:00 is "fourteen hundred"; 3:00 pm is "three P M".
        words = num.cardinal(hour) + ("" if letter else " hundred")
    elif minute < 10:
        words = f"{num.cardinal(hour)} oh {num.cardinal(minute)}"
    else:
        words = f"{num.cardinal(hour)} {num.cardinal(minute)}"
    return words + _meridiem(match, 3)


def _hour_meridiem(match: re.Match[str]) -> str:
    return num.cardinal(int(match.group(1))) + _meridiem(match, 2)


# --- money ----------------------------------------------------------------------------
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
}
_SCALE_WORDS = {"k": "thousand", "m": "million", "bn": "billion", "b": "billion"}
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_MONEY = re.compile(
    rf"([$£€¥])({_NUMBER})"
    r"(?:(k|m|bn|b)\b|\s(thousand|million|billion|trillion)\b)?",
    re.IGNORECASE,
)


def _money(match: re.Match[str]) -> str:
    symbol, amount, short_scale, long_scale = match.groups()
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    scale = _SCALE_WORDS.get((short_scale or "").lower()) or (long_scale or "").lower()
    if scale:
        # $2.5 million: the amount is a quantity of millions, read as a decimal.
        return f"{num.decimal(amount)} {scale} {many}"
    whole_text, _, frac = amount.replace(",", "").partition(".")
    whole = _int(whole_text)
    if (frac and len(frac) != 2) or (frac and not sub_one) or whole is None:
        return f"{num.decimal(amount)} {many}"
    cents = int(frac) if frac else 0
    parts = []
    if whole or not cents:
        parts.append(f"{num.cardinal(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{num.cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


# --- percentages and units --------------------------------------------------------------
_PERCENT = re.compile(rf"(?<![\w.,])(-?)({_NUMBER})\s?%")
_UNITS = {
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "GB": ("gigabyte", "gigabytes"),
    "MB": ("megabyte", "megabytes"),
    "TB": ("terabyte", "terabytes"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
}
_UNIT = re.compile(
    rf"(?<![\w.,])({_NUMBER})\s?("
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![\w/])"
)


def _percent(match: re.Match[str]) -> str:
    sign = "minus " if match.group(1) else ""
    return f"{sign}{num.decimal(match.group(2))} percent"


def _unit(match: re.Match[str]) -> str:
    amount, unit = match.groups()
    one, many = _UNITS[unit]
    return f"{num.decimal(amount)} {one if amount == '1' else many}"


# --- ordinals, decades, years, ranges, versions, plain numbers -------------------------
_ORDINAL = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECADE = re.compile(r"(?<![\w.,])(?:(\d{2})(\d0)|['’]?(\d0))s\b")
_RANGE = re.compile(r"(?<![\w.,-])(\d{1,4})[-–](\d{1,4})(?![\w-]|[.,]\d)")
_VERSION = re.compile(r"(?<![\w.,])v?\d+(?:\.\d+){2,}(?![\w]|\.\d)")
_PLAIN = re.compile(
    # Not after a code's hyphen (AB-1234, COVID-19: the engine reads codes as written),
    # but after a word's (pre-2000).
    r"(?<![\w.,])(?<![A-Z\d]-)(-(?=\d))?"
    r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+)(?![\w]|[.,]\d)"
)


def _ordinal(match: re.Match[str]) -> str:
    n = _int(match.group(1))
    if n is None:
        return num.digits(match.group(1))
    suffix = match.group(2).lower()
    expected = {1: "st", 2: "nd", 3: "rd"}.get(n % 10 if n % 100 not in (11, 12, 13) else 0, "th")
    return num.ordinal(n) if suffix == expected else match.group(0)


def _decade(match: re.Match[str]) -> str:
    century, decade, short = match.groups()
    if short is not None:
        return num.plural(num.cardinal(int(short)))
    n = int(century + decade)
    if n % 100 == 0:
        return num.plural(f"{num.cardinal(n // 100)} hundred")
    return num.plural(num.year(n))


def _is_year(n: int, text: str) -> bool:
    return len(text) == 4 and 1100 <= n <= 2099


def _number(text: str) -> str:
    if "," not in text and "." not in text:
        n = _int(text)
        if n is None:
            return num.digits(text)
        if _is_year(n, text):
            return num.year(n)
        if len(text) > 1 and text.startswith("0"):
            return num.digits(text)
        return num.cardinal(n)
    return num.decimal(text)


def _range(match: re.Match[str]) -> str:
    return f"{_number(match.group(1))} to {_number(match.group(2))}"


def _version(match: re.Match[str]) -> str:
    text = match.group(0).lstrip("v")
    words = " point ".join(num.whole(part) for part in text.split("."))
    return ("version " if match.group(0).startswith("v") else "") + words


def _plain(match: re.Match[str]) -> str:
    sign, text = match.groups()
    words = _number(text)
    return f"minus {words}" if sign else words


@dataclass(frozen=True)
class _Pass:
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str]
    needs: str  # a cheap substring test: skip the regex when none of these characters occur


_DIGITS = "0123456789"
_NUMBER_PASSES = (
    _Pass(_PHONE, _phone, _DIGITS),
    _Pass(_ISO_DATE, _iso_date, "-"),
    _Pass(_SLASH_DATE, _slash_date, "/"),
    _Pass(_DAY_MONTH, _day_month, _DIGITS),
    _Pass(_MONTH_DAY, _month_day, _DIGITS),
    _Pass(_CLOCK, _clock, ":"),
    _Pass(_HOUR_MERIDIEM, _hour_meridiem, "AaPp"),
    _Pass(_MONEY, _money, "$£€¥"),
    _Pass(_PERCENT, _percent, "%"),
    _Pass(_UNIT, _unit, _DIGITS),
    _Pass(_ORDINAL, _ordinal, _DIGITS),
    _Pass(_DECADE, _decade, "s"),
    _Pass(_VERSION, _version, "."),
    _Pass(_RANGE, _range, "-–"),
    _Pass(_PLAIN, _plain, _DIGITS),
)


def _numbers(text: str) -> str:
    if not any(ch in text for ch in _DIGITS):
        return text
    for rule in _NUMBER_PASSES:
        if any(ch in text for ch in rule.needs):
            text = rule.pattern.sub(rule.replace, text)
    return text


_HEADING_NUMERAL = re.compile(
    r"\b(Chapter|Part|Book|Volume|Vol\.|Act|Scene|Section|Appendix|Canto|Letter|War)"
    r" ([IVXLCDM]+|[ivxlcdm]+)\b(?!['’])"
)
_LONE_NUMERAL = re.compile(r"^\s*([IVXLCDM]+)\s*[.:]?\s*$")


def _heading_numeral(match: re.Match[str]) -> str:
    value = num.roman(match.group(2))
    if value is None:
        return match.group(0)
    word = "Volume" if match.group(1) == "Vol." else match.group(1)
    return f"{word} {num.cardinal(value)}"


def roman_numerals(text: str, *, heading: bool = False) -> str:
    """'Chapter IV' -> 'Chapter four'. A numeral alone counts only when it is the whole
    heading ('IV.'); 'I' in running text is the pronoun and stays."""
    if heading:
        lone = _LONE_NUMERAL.match(text)
        if lone is not None:
            value = num.roman(lone.group(1))
            if value is not None:
                return num.cardinal(value)
    return _HEADING_NUMERAL.sub(_heading_numeral, text)


_SPACES = re.compile(r"\s+")


def normalize_text(text: str, *, heading: bool = False) -> str:
    """The spoken form of one paragraph (or heading) of English text."""
    text = _SPACES.sub(" ", text).strip()
    if "@" in text:
        text = speak_emails(text)
    if "." in text or "/" in text:
        text = speak_urls(text)
    text = roman_numerals(text, heading=heading)
    text = expand_abbreviations(text)
    text = _numbers(text)
    return text
