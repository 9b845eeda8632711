"""The keys of a job's output folder: the one place that names them.

Every file assembly writes, and every file the API, the CLI and the workers look for in
a finished job's folder, is named here: the book, chapter and item files, their lossless
masters and timing files, the cover, a catalogue's summary and manifest.json.
"""

from __future__ import annotations

from typing import Literal, get_args

from pipeline.audio.cover import Cover
from pipeline.audio.encode import codec_for
from pipeline.file_names import slugify
from pipeline.state.models import Item, Job

MANIFEST_KEY = "manifest.json"
CHAPTERS_FOLDER = "chapters"
ITEMS_FOLDER = "items"
MASTER_FOLDER = "master"
SUMMARY_KEY = f"{ITEMS_FOLDER}/summary.csv"
QA_KEY = "qa.json"  # speech-recognition QA's verdicts (`voicebatch qa`, `render --qa`)
# A submitted book's text as written, kept for the finalizer's read-along EPUB; no
# manifest lists it (assemble.read_along_source).
SOURCE_KEY = "source/document.json.gz"
TIMING_SUFFIX = {"srt": ".srt", "vtt": ".vtt", "json": ".timings.json"}
# What manifest_files calls each file it lists (the API's outputs say the same).
FileKind = Literal[
    "manifest",
    "book",
    "chapter",
    "item",
    "master",
    "timing",
    "cover",
    "summary",
    "qa",
    "read_along",
]
FILE_KINDS: tuple[str, ...] = get_args(FileKind)


def item_key(job: Job, item: Item, items_total: int) -> str:
    """Where an item's file goes: chapters/NN-title.ext for books, items/<name> for
    catalogues (the name their template gave them when planned)."""
    extension = codec_for(job.output_format).extension
    if job.kind == "catalogue" and item.file_name:
        return f"{ITEMS_FOLDER}/{item.file_name}"
    if job.kind == "catalogue":  # planned before item names were recorded
        name = slugify(item.title, fallback=f"item-{item.position + 1}")
        return f"{ITEMS_FOLDER}/{name}.{extension}"
    width = max(2, len(str(items_total)))
    name = slugify(item.title, fallback="chapter")
    return f"{CHAPTERS_FOLDER}/{item.position + 1:0{width}d}-{name}.{extension}"


def book_key_for(source: str, extension: str) -> str:
    """The whole-book file: the source file's name, slugified, with the format's extension."""
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{slugify(stem, fallback='book')}.{extension}"


def master_key(key: str, master_format: str) -> str:
    """chapters/01-x.mp3 -> master/chapters/01-x.flac: the lossless twin of a file."""
    return f"{MASTER_FOLDER}/{key.rsplit('.', 1)[0]}.{codec_for(master_format).extension}"


def timing_key(audio_key: str, kind: str) -> str:
    """chapters/01-x.mp3 -> chapters/01-x.srt (.vtt, .timings.json)."""
    stem = audio_key.rsplit(".", 1)[0]
    return stem + TIMING_SUFFIX[kind]


def cover_key(cover: Cover) -> str:
    """Where a job's cover image goes: cover.jpg or cover.png."""
    return f"cover.{cover.extension}"


def describe_key(key: str) -> str:
    """What kind of file a key in a job's folder is, in words a person reads."""
    if key == MANIFEST_KEY:
        return "manifest"
    if key.startswith(f"{MASTER_FOLDER}/"):
        return "lossless masters"
    if key.startswith("cover."):
        return "cover"
    if key == SUMMARY_KEY:
        return "summary CSV"
    if key == QA_KEY:
        return "QA report"
    if key.endswith(".epub"):
        return "read-along EPUB"
    for kind, name in (("srt", "SRT"), ("vtt", "WebVTT"), ("json", "timings JSON")):
        if key.endswith(TIMING_SUFFIX[kind]):
            return name
    return key
