"""Benchmark books: Markdown with every sentence different, so no chunk comes from the
cache and the render speaks exactly what a plain loop over the same texts speaks.

    python bench/books.py --chapters 12 OUT.md

Chapters are about as long as the bundled example's fables (about 130 words, 40 s of
Piper audio): 3 chapters make a 2-minute book, 45 chapters a 30-minute one.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from pipeline.text.numbers import cardinal

_SUBJECTS = (
    "the old miller",
    "a young shepherd",
    "the farmer's daughter",
    "a tired traveller",
    "the village baker",
    "an honest woodcutter",
    "the captain of the guard",
    "a clever fox",
    "the patient tortoise",
    "a proud peacock",
    "the wise owl",
    "a hungry wolf",
    "the king's gardener",
    "a merchant from the coast",
    "the schoolmaster",
    "a lame crow",
)
_VERBS = (
    "walked slowly towards",
    "looked for a long time at",
    "spoke quietly about",
    "carried a basket past",
    "dreamed every night of",
    "laughed loudly at",
    "waited patiently beside",
    "told a long story about",
    "forgot entirely about",
    "painted a small picture of",
    "argued all evening about",
    "returned at dawn to",
)
_OBJECTS = (
    "the stone bridge",
    "the empty harbour",
    "the orchard behind the mill",
    "a crooked gate",
    "the bell tower",
    "the frozen river",
    "a field of barley",
    "the narrow lane",
    "the market square",
    "a ruined chapel",
    "the lighthouse on the hill",
    "the silver birch",
)
_ENDINGS = (
    "before the rain began",
    "while the others were sleeping",
    "as the sun went down",
    "without saying a word",
    "although nobody believed him",
    "because the road was closed",
    "long after the fair had ended",
    "until the candles burned out",
    "in the first week of spring",
    "whenever the wind turned cold",
    "as if nothing had happened",
    "on the way home",
)
_MORALS = (
    "Patience is a kind of courage.",
    "A promise is a small debt.",
    "Pride walks in front of a fall.",
    "Small hands can carry great loads.",
    "Kind words cost nothing.",
    "Haste wastes the harvest.",
)
_TITLES = (
    "The Miller and the Fox",
    "A Lantern in the Rain",
    "The Bridge at Dawn",
    "The Stubborn Goat",
    "The Shepherd's Bargain",
    "A Bell for the Village",
    "The Lost Key",
    "The Winter Orchard",
)


def _sentence(rng: random.Random, used: set[str]) -> str:
    while True:
        words = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
        sentence = f"{words[0].upper()}{words[1:]} {rng.choice(_ENDINGS)}."
        if rng.random() < 0.4:
            sentence = sentence[:-1] + f", and {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} it."
        if sentence not in used:
            used.add(sentence)
            return sentence


def book_text(chapters: int, *, seed: int = 1) -> str:
    """A book of `chapters` fables, every sentence and title unique."""
    rng = random.Random(seed)
    used: set[str] = set()
    lines = [
        "---",
        f"title: Benchmark Fables ({chapters} chapters)",
        "author: voicebatch",
        "---",
        "",
    ]
    for number in range(1, chapters + 1):
        lines += [f"## {rng.choice(_TITLES)}, part {cardinal(number)}", ""]
        for _ in range(3):
            paragraph = " ".join(_sentence(rng, used) for _ in range(rng.randint(2, 3)))
            lines += [paragraph, ""]
        lines += [f"{rng.choice(_MORALS)[:-1]}, said the teller of fable {cardinal(number)}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.write_text(book_text(args.chapters, seed=args.seed), encoding="utf-8")


if __name__ == "__main__":
    main()
