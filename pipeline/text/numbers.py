"""English number words: cardinals, ordinals, years, decimals and digit strings.

Pure functions on ints and digit strings; the regexes that find numbers in running text
live in `pipeline.text.normalize`. American style: no "and" inside numbers ("one hundred
five"), hyphenated tens ("twenty-one").
"""

from __future__ import annotations

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = (
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
# Beyond this a number is read digit by digit: nobody says "one quintillion ..." aloud
# and a 20-digit string is an id, not a quantity. Digit strings are measured before any
# int() is made of them: Python refuses to convert more than 4,300 digits.
MAX_CARDINAL = 10**15 - 1
MAX_CARDINAL_DIGITS = 15

_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _below_thousand(n: int) -> str:
    parts: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        parts.append(f"{_ONES[hundreds]} hundred")
    if rest or not parts:
        if rest < 20:
            parts.append(_ONES[rest])
        else:
            tens, ones = divmod(rest, 10)
            parts.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    return " ".join(parts)


def cardinal(n: int) -> str:
    """12345 -> 'twelve thousand three hundred forty-five'; negatives say 'minus'."""
    if n < 0:
        return f"minus {cardinal(-n)}"
    if n > MAX_CARDINAL:
        return digits(str(n))
    if n < 1000:
        return _below_thousand(n)
    parts: list[str] = []
    for scale, name in _SCALES:
        count, n = divmod(n, scale)
        if count:
            parts.append(f"{_below_thousand(count)} {name}")
    if n:
        parts.append(_below_thousand(n))
    return " ".join(parts)


def ordinal(n: int) -> str:
    """22 -> 'twenty-second', 100 -> 'one hundredth'."""
    words = cardinal(n)
    head, sep, last = max(
        (words.rpartition(" "), words.rpartition("-")), key=lambda parts: len(parts[0])
    )
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}{sep}{last}"


def digits(text: str) -> str:
    """'0071' -> 'zero zero seven one': for ids, phone numbers, leading zeros."""
    return " ".join(_ONES[int(ch)] for ch in text if ch.isdigit())


def whole(text: str) -> str:
    """A digit string (commas allowed) as a cardinal, or digit by digit past 15 digits:
    '1,234' -> 'one thousand two hundred thirty-four'. Never makes a huge int."""
    plain = text.replace(",", "")
    if len(plain) > MAX_CARDINAL_DIGITS:
        return digits(plain)
    return cardinal(int(plain))


def decimal(text: str) -> str:
    """'3.14' -> 'three point one four', '1,234.5' -> '... point five'; digits after the
    point are read one by one, as people read them."""
    integer, _, frac = text.replace(",", "").partition(".")
    words = whole(integer) if integer else "zero"
    return f"{words} point {digits(frac)}" if frac else words


def year(n: int) -> str:
    """1984 -> 'nineteen eighty-four', 1900 -> 'nineteen hundred', 1905 -> 'nineteen oh
    five', 2005 -> 'two thousand five', 2024 -> 'twenty twenty-four'."""
    if n < 1000 or n > 9999:
        return cardinal(n)
    if 2000 <= n <= 2009:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {_ONES[low]}"
    return f"{cardinal(high)} {cardinal(low)}"


def plural(words: str) -> str:
    """'nineteen eighty' -> 'nineteen eighties', 'nineteen hundred' -> '... hundreds'
    (decades: the 1980s, the '90s)."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):
        return words + "es"
    return words + "s"


_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def roman(text: str) -> int | None:
    """The value of a well-formed Roman numeral ('XIV' -> 14), else None ('IIII', 'IC')."""
    upper = text.upper()
    if not upper or any(ch not in _ROMAN for ch in upper):
        return None
    total = 0
    for index, ch in enumerate(upper):
        value = _ROMAN[ch]
        if index + 1 < len(upper) and _ROMAN[upper[index + 1]] > value:
            total -= value
        else:
            total += value
    # Round trip: only the canonical spelling of a value counts as a numeral.
    return total if 0 < total < 4000 and to_roman(total) == upper else None


def to_roman(n: int) -> str:
    """14 -> 'XIV' (canonical subtractive form)."""
    out = []
    for value, letters in (
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ):
        count, n = divmod(n, value)
        out.append(letters * count)
    return "".join(out)
