"""The read-along EPUB 3 (`voicebatch render --read-along`): the book's text as written,
its audio inside, and Media Overlays that pair them, so a reading system highlights each
sentence (each word, where QA timed the words) as it is spoken.

Built from a finished output folder alone (manifest.json, the timing files, the audio)
and the source Document: the manifest says what was spoken where, the Document what was
written (`read_along_text` finds the one in the other), `read_along_epub` packs it.

Clips are contiguous: each sentence runs from its own start to the next one's (the
pause after it included), each word from its start to the next timed word's, so playing
the overlay plays the whole chapter file and the highlight never goes dark mid-book.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av

from pipeline.assemble.keys import book_key_for
from pipeline.assemble.manifest import is_catalogue, read_manifest, write_manifest
from pipeline.assemble.read_along_epub import Clip, ContentDoc, Member, Publication, write_epub
from pipeline.assemble.read_along_text import (
    Placement,
    SpokenChunk,
    TimedWord,
    body_markup,
    chunk_id,
    chunk_words,
    place_chunks,
    source_blocks,
)
from pipeline.audio.cover import cover_from_bytes
from pipeline.audio.encode import decode, encode
from pipeline.errors import InputError, NotFoundError
from pipeline.ingest.document import Chapter, Document
from pipeline.storage.base import ObjectStore

EPUB_CONTENT_TYPE = "application/epub+zip"
# Audio a reading system must play (EPUB 3 core media types) as the render wrote it;
# any other format is encoded to MP3 for the EPUB.
CORE_AUDIO = {"mp3": ("audio/mpeg", "mp3"), "m4b": ("audio/mp4", "m4a")}
_LANGUAGE_KEYS = ("language", "lang")


def catalogue_refusal(where: str) -> InputError:
    """The one-line refusal of a read-along for a catalogue (items, not a book)."""
    return InputError(
        f"{where}: --read-along makes a book's EPUB; a catalogue (CSV or JSONL items) has none"
    )


def read_along_key(manifest: dict[str, Any]) -> str:
    """`<name>.epub` beside the book file: the source file's name, slugified."""
    return book_key_for(str(manifest.get("source") or "book"), "epub")


@dataclass(frozen=True)
class AudioFile:
    """An audio member: its href in the EPUB, how to read it, its length (ms)."""

    member: Member
    length_ms: int


def write_read_along(folder: ObjectStore, document: Document, *, where: str) -> str:
    """Write `<name>.epub` into the output folder and record it in the manifest; its key.

    InputError for a folder without a book's manifest or a catalogue: nothing written."""
    manifest = read_manifest(folder)
    if document.kind == "catalogue" or (manifest is not None and is_catalogue(manifest)):
        raise catalogue_refusal(where)
    if manifest is None or not manifest.get("chapters"):
        raise InputError(f"{where}: no manifest.json with chapters: render the book first")
    publication = build_publication(folder, manifest, document, where=where)
    key = read_along_key(manifest)
    with tempfile.TemporaryFile() as packed:
        write_epub(publication, packed)
        packed.seek(0)
        folder.put_file(key, packed, content_type=EPUB_CONTENT_TYPE)
    clips = [c for d in publication.docs for c in d.clips]
    manifest["read_along"] = {
        "file": key,
        "duration": round(sum(d.duration_ms for d in publication.docs) / 1000, 3),
        "sentence_clips": sum(c.group is None for c in clips),
        "word_clips": sum(c.group is not None for c in clips),
    }
    write_manifest(folder, manifest)
    return key


def build_publication(
    folder: ObjectStore, manifest: dict[str, Any], document: Document, *, where: str
) -> Publication:
    """Every chapter of the Document as a content document; those the manifest has audio
    for with their overlay into that audio."""
    entries = list(manifest.get("chapters") or [])
    audio: dict[str, AudioFile] = {}
    docs: list[ContentDoc] = []
    for number, (chapter, entry) in enumerate(_pair(document, entries, where), start=1):
        name = f"ch{number}"
        if entry is None:
            text_only = place_chunks(source_blocks(chapter), [])
            docs.append(ContentDoc(name, chapter.title, body_markup(text_only, set())))
            continue
        key, offset = _audio_of(manifest, entry, where)
        if key not in audio:
            audio[key] = _audio_file(folder, key, str(manifest.get("format")), len(audio) + 1)
        file = audio[key]
        chunks = _spoken_chunks(folder, manifest, entry, offset)
        if not chunks:
            raise InputError(f"{where}: the manifest lists no chunks for {chapter.title!r}")
        placement = place_chunks(source_blocks(chapter), chunks)
        end = offset + float(entry.get("duration") or chunks[-1].end - offset)
        clips = _clips(
            placement.placed_chunks(),
            chunks,
            _mostly_timed(placement),
            (offset, end),
            file.length_ms,
        )
        timed = {c.text_id for c in clips if c.group is not None}
        docs.append(
            ContentDoc(
                name,
                chapter.title,
                body_markup(placement, timed),
                file.member.href,
                tuple(clips),
            )
        )
    members = [a.member for a in audio.values()]
    cover = _cover(folder, manifest)
    if cover is not None:
        members.append(cover)
    return Publication(
        identifier=str(document.metadata.get("identifier") or f"urn:uuid:{manifest['job_id']}"),
        title=str(manifest.get("title") or document.title),
        author=manifest.get("author") or document.author,
        language=_language(document),
        docs=tuple(docs),
        members=tuple(members),
    )


def _mostly_timed(placement: Placement) -> dict[int, list[tuple[str, float, float]]]:
    """The timed words of each chunk with at least half of its words timed: fewer, and
    one word would stay lit for most of a sentence; its sentence clip reads better."""
    sizes = Counter(c for row in placement.chunk_of for c in row if c is not None)
    return {
        chunk: timed
        for chunk, timed in chunk_words(placement).items()
        if len(timed) * 2 >= sizes[chunk]
    }


def _same_title(recorded: str, written: str) -> bool:
    # a long title was clipped to its column when the job was planned
    return recorded == written or (recorded.endswith("…") and written.startswith(recorded[:-1]))


def _pair(
    document: Document, entries: list[dict[str, Any]], where: str
) -> list[tuple[Chapter, dict[str, Any] | None]]:
    """Each chapter of the Document with its manifest entry (None: nothing of it was
    spoken, so planning left it out)."""
    pairs: list[tuple[Chapter, dict[str, Any] | None]] = []
    waiting = list(entries)
    for chapter in document.chapters:
        if waiting and _same_title(str(waiting[0].get("title")), chapter.title):
            pairs.append((chapter, waiting.pop(0)))
        else:
            pairs.append((chapter, None))
    if waiting:
        raise InputError(
            f"{where}: the output folder's manifest has chapter "
            f"{waiting[0].get('title')!r}, which the book does not: render it again"
        )
    return pairs


def _audio_of(manifest: dict[str, Any], entry: dict[str, Any], where: str) -> tuple[str, float]:
    """The file a chapter's audio is in, and where the chapter starts in it (seconds): its
    own file, or the book file at its place when chapter files were not written."""
    if entry.get("file"):
        return str(entry["file"]), 0.0
    if manifest.get("file"):
        return str(manifest["file"]), float(entry.get("start") or 0.0)
    raise InputError(f"{where}: the manifest names no audio file for {entry.get('title')!r}")


def _audio_file(folder: ObjectStore, key: str, fmt: str, number: int) -> AudioFile:
    """An audio member: the render's own file where EPUB readers must play its format,
    else the file encoded to MP3 (done once, here, so its length is known)."""
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    data = _get(folder, key)
    if fmt in CORE_AUDIO:
        media_type, extension = CORE_AUDIO[fmt]
        with av.open(io.BytesIO(data), "r") as container:
            length_ms = math.floor((container.duration or 0) / 1000)
        href = f"audio/{number:03d}-{stem}.{extension}"
        return AudioFile(Member(href, media_type, _reader(folder, key)), length_ms)
    decoded = decode(data)
    mp3 = encode(decoded.audio, decoded.sample_rate, "mp3")
    length_ms = math.floor(decoded.duration * 1000)
    return AudioFile(Member(f"audio/{number:03d}-{stem}.mp3", "audio/mpeg", lambda: mp3), length_ms)


def _reader(folder: ObjectStore, key: str) -> Callable[[], bytes]:
    return lambda: _get(folder, key)


def _get(folder: ObjectStore, key: str) -> bytes:
    try:
        return folder.get(key)
    except NotFoundError as exc:
        raise InputError(f"{key} is in the manifest but missing from the output folder") from exc


def _spoken_chunks(
    folder: ObjectStore, manifest: dict[str, Any], entry: dict[str, Any], offset: float
) -> list[SpokenChunk]:
    """The chapter's chunks in its audio file's time, with QA's timed words where the
    timing files have them (the chapter's own, else the book's entries for it)."""
    chunks = [
        SpokenChunk(str(c["text"]), offset + float(c["start"]), offset + float(c["end"]))
        for c in entry.get("chunks") or []
    ]
    words = _timed_words(folder, entry, manifest)
    if len(words) != len(chunks):
        return chunks
    return [
        SpokenChunk(c.text, c.start, c.end, tuple(w)) for c, w in zip(chunks, words, strict=True)
    ]


def _timed_words(
    folder: ObjectStore, entry: dict[str, Any], manifest: dict[str, Any]
) -> list[list[TimedWord]]:
    own = (entry.get("timings") or {}).get("json")
    key = own or (manifest.get("timings") or {}).get("json")
    if not key:
        return []
    try:
        timings = json.loads(folder.get(key))
    except (NotFoundError, ValueError):
        return []
    rows = timings.get("chunks") or []
    if not own:  # the book's timing file: this chapter's entries, in book time
        rows = [r for r in rows if r.get("chapter") == entry.get("index")]
    return [
        [TimedWord(str(w["text"]), float(w["start"]), float(w["end"])) for w in r.get("words", [])]
        for r in rows
    ]


def _clips(
    placed: list[int],
    chunks: list[SpokenChunk],
    words: dict[int, list[tuple[str, float, float]]],
    span: tuple[float, float],
    length_ms: int,
) -> list[Clip]:
    """Contiguous clips over `span` of the audio file (module docstring), in whole
    milliseconds inside the file: a chunk's word clips where its words were timed, else
    one sentence clip. A chunk whose clip would be empty is heard in the one before it;
    a word timed out of order is left unhighlighted."""
    limit = min(length_ms, round(span[1] * 1000))
    starts = [round(span[0] * 1000)] + [round(chunks[c].start * 1000) for c in placed[1:]]
    starts = [min(max(s, 0), limit) for s in starts]
    clips: list[Clip] = []
    for n, chunk in enumerate(placed):
        low = starts[n]
        high = starts[n + 1] if n + 1 < len(placed) else limit
        if high <= low:
            continue
        bounds: list[tuple[str, int]] = []
        for word, start, _end in words.get(chunk, []):
            at = round(start * 1000)
            if not bounds:
                bounds.append((word, low))  # the first timed word opens the chunk's clip
            elif bounds[-1][1] < at < high:
                bounds.append((word, at))
        if not bounds:
            clips.append(Clip(chunk_id(chunk), low, high))
            continue
        edges = [at for _, at in bounds[1:]] + [high]
        clips += [
            Clip(word, at, edge, chunk_id(chunk))
            for (word, at), edge in zip(bounds, edges, strict=True)
        ]
    return clips


def _cover(folder: ObjectStore, manifest: dict[str, Any]) -> Member | None:
    key = manifest.get("cover")
    if not key:
        return None
    cover = cover_from_bytes(_get(folder, str(key)), name=str(key))
    return Member(f"cover.{cover.extension}", cover.mime_type, lambda: cover.data, cover=True)


def _language(document: Document) -> str:
    for name in _LANGUAGE_KEYS:
        value = str(document.metadata.get(name) or "").strip()
        if value and all(part.isalnum() for part in value.split("-")) and len(value) <= 35:
            return value
    return "en"
