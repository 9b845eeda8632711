"""A job's spec from a checked Document: options, spoken text, chunks, file names and the
fingerprint that finds the same command's job again."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pipeline.assemble.keys import cover_key
from pipeline.audio.cover import Cover
from pipeline.audio.presets import mastering_options
from pipeline.config import Settings
from pipeline.engines import Engine, EngineInfo, engine_params, takes_phonemes
from pipeline.errors import InputError, JobTooLarge
from pipeline.ingest import Document, SourceFile
from pipeline.plan.prepare import catalogue_file_names
from pipeline.state import store
from pipeline.state.models import Job
from pipeline.storage.keys import content_hash
from pipeline.text.lexicon import Lexicon, load_lexicon
from pipeline.text.normalize import normalize_text
from pipeline.text.segment import segment_paragraphs

log = logging.getLogger(__name__)


def job_options(settings: Settings, cover: Cover | None = None) -> dict[str, Any]:
    """Settings that shape a job beyond its chunks' audio, stored with it so a resume
    matches: pauses and mastering (a loudness preset applied), and what files it delivers."""
    return {
        "pause_sentence_ms": settings.pause_sentence_ms,
        "pause_paragraph_ms": settings.pause_paragraph_ms,
        **mastering_options(settings),
        "chunk_max_chars": settings.chunk_max_chars,
        "read_titles": settings.read_titles,
        # How the source was read: a render with the flag is another job, not a resume.
        "keep_front_matter": settings.keep_front_matter,
        "chapter_files": settings.chapter_files,
        "master_format": None if settings.master_format == "none" else settings.master_format,
        "timings": list(settings.timing_formats),
        "cover": cover.option(cover_key(cover)) if cover is not None else None,
        # QA while rendering re-takes flagged chunks: another job. Absent when off, so
        # the jobs of earlier versions are still found again.
        **({"qa": True} if settings.qa else {}),
    }


def spoken_paragraphs(
    paragraphs: list[str], *, normalize: bool, heading: bool = False
) -> list[str]:
    """The paragraphs as they will be said: normalised unless switched off. With
    `heading`, the first paragraph is the chapter's title (a lone 'IV' there is four)."""
    return list(_spoken(paragraphs, normalize=normalize, heading=heading))


def _spoken(
    paragraphs: tuple[str, ...] | list[str], *, normalize: bool, heading: bool
) -> Iterator[str]:
    """`spoken_paragraphs`, one at a time: a chapter's spoken text is never held whole."""
    for index, text in enumerate(paragraphs):
        yield normalize_text(text, heading=heading and index == 0) if normalize else text


def clipped(value: str | None, column: Any, what: str) -> str | None:
    """`value` cut to the column's size (an over-long EPUB or front-matter author must not
    fail the insert), with a warning."""
    limit = column.type.length
    if value is None or len(value) <= limit:
        return value
    log.warning("the book's %s is %d characters; kept the first %d", what, len(value), limit)
    return value[: limit - 1] + "…"


def check_job_size(document: Document, settings: Settings, kind: str) -> None:
    """Refuse a document over `job_max_chars` before any of it is normalised or split
    (JobTooLarge, 413 in the API); the field named is the request's body of text."""
    limit = settings.job_max_chars
    total = 0
    for chapter in document.chapters:
        total += sum(map(len, chapter.spoken_paragraphs(read_titles=settings.read_titles)))
        if total > limit:
            raise JobTooLarge(
                _size_field(kind),
                f"more than {limit:,} characters to speak, over the job limit "
                f"(VOICEBATCH_JOB_MAX_CHARS={limit}); split the book into several jobs",
            )


def _size_field(kind: str) -> str:
    return "items" if kind == "catalogue" else "text"


def job_lexicon(settings: Settings, lexicon: Lexicon | None) -> Lexicon | None:
    """The lexicon a job uses: one given with the request, else the settings' file."""
    if lexicon is not None:
        return lexicon
    return load_lexicon(settings.lexicon) if settings.lexicon is not None else None


def build_spec(
    document: Document,
    source: SourceFile,
    *,
    engine: Engine | EngineInfo,
    settings: Settings,
    output_uri: str | None,
    kind: str = "book",
    cover: Cover | None = None,
    lexicon: Lexicon | None = None,
) -> store.JobSpec:
    """Normalise and segment every chapter, apply the lexicon to every chunk and hash it;
    pure, no I/O. Chapter titles (for chapter markers and tags) stay as written.

    The whole spec in memory: `stream_spec` is the same plan an item at a time.
    """
    streamed = stream_spec(
        document,
        source,
        engine=engine,
        settings=settings,
        output_uri=output_uri,
        kind=kind,
        cover=cover,
        lexicon=lexicon,
    )
    items = tuple(streamed.items())
    return replace(streamed.header, items=items, fingerprint=streamed.fingerprint)


class StreamedSpec:
    """A job's spec whose items are planned one at a time as `items()` is iterated, so a
    100,000-item catalogue is stored a batch at a time and never held whole. `header` is
    the job without its items; `fingerprint` is known once every item has been planned
    (a catalogue's covers each item's chunks), and equals `build_spec`'s."""

    def __init__(
        self, header: store.JobSpec, items: Iterator[store.ItemSpec], identity: list[Any]
    ) -> None:
        self.header = header
        self._items = items
        self._catalogue = header.kind == "catalogue"
        # json.dumps(identity + [entries]) written piece by piece: the same bytes, so the
        # same fingerprint as a spec built whole (a resume finds jobs planned before).
        head = json.dumps(identity, sort_keys=True)
        self._hash = hashlib.sha256((head[:-1] + ", [" if self._catalogue else head).encode())
        self._planned = False

    def items(self) -> Iterator[store.ItemSpec]:
        """Each item with its chunks, in order; iterate once."""
        if self._planned:
            raise RuntimeError("a streamed spec's items are planned once")
        for index, item in enumerate(self._items):
            if self._catalogue:
                entry = [
                    item.title,
                    item.voice,
                    item.file_name,
                    [c.content_hash for c in item.chunks],
                ]
                self._hash.update(((", " if index else "") + json.dumps(entry)).encode())
            yield item
        if self._catalogue:
            self._hash.update(b"]]")
        self._planned = True

    @property
    def fingerprint(self) -> str:
        if not self._planned:
            raise RuntimeError("the fingerprint is known once every item has been planned")
        return self._hash.hexdigest()


def stream_spec(
    document: Document,
    source: SourceFile,
    *,
    engine: Engine | EngineInfo,
    settings: Settings,
    output_uri: str | None,
    kind: str = "book",
    cover: Cover | None = None,
    lexicon: Lexicon | None = None,
) -> StreamedSpec:
    """`build_spec` an item at a time. What can be checked before any text is normalised
    is checked here (the lexicon, the job's size, a catalogue's file names); a chunk the
    lexicon makes too long, or one chunk over the job's limit, raises while iterating.

    A catalogue's items get their file names from the name template here, so an unsafe
    or colliding name is refused before the job exists; an item with a voice of its own
    has it in its chunks' content hashes.
    """
    voice = settings.voice or engine.default_voice
    params = engine_params(settings)
    if lexicon is not None:
        lexicon.check_engine(engine.name, takes_phonemes(engine))
    check_job_size(document, settings, kind)
    names: list[str | None] = [None] * len(document.chapters)
    if kind == "catalogue":
        names = list(catalogue_file_names(document, settings))
    options = job_options(settings, cover)
    # How the text was read is not an option of the job's audio files but decides every
    # chunk's text: a job resumed with another lexicon would mix two readings.
    text_rules = {
        "normalize_text": settings.normalize_text,
        "lexicon": lexicon.digest if lexicon is not None else None,
    }
    # The same file read with other columns or another name template is another job: a
    # catalogue's fingerprint covers its items too (StreamedSpec adds them).
    identity: list[Any] = [
        source.sha256,
        engine.name,
        voice,
        engine.model_version,
        params,
        options,
        text_rules,
        settings.output_format,
        output_uri,
    ]
    header = store.JobSpec(
        title=clipped(document.title, Job.title, "title") or "",
        author=clipped(document.author, Job.author, "author"),
        source_name=str(source.path),
        source_sha256=source.sha256,
        fingerprint="",
        engine=engine.name,
        voice=voice,
        model_version=engine.model_version,
        output_format=settings.output_format,
        items=(),
        params=params,
        options=options,
        output_uri=output_uri,
        kind=kind,
    )
    items = _planned_items(
        document, names, engine=engine, settings=settings, kind=kind, lexicon=lexicon
    )
    return StreamedSpec(header, items, identity)


def _planned_items(
    document: Document,
    names: list[str | None],
    *,
    engine: Engine | EngineInfo,
    settings: Settings,
    kind: str,
    lexicon: Lexicon | None,
) -> Iterator[store.ItemSpec]:
    voice = settings.voice or engine.default_voice
    params = engine_params(settings)
    max_chars = min(settings.chunk_max_chars, engine.max_chunk_chars)
    total_chunks = 0
    for chapter, file_name in zip(document.chapters, names, strict=True):
        spoken_title = chapter.reads_heading(read_titles=settings.read_titles)
        paragraphs = _spoken(
            chapter.spoken_paragraphs(read_titles=settings.read_titles),
            normalize=settings.normalize_text,
            heading=spoken_title,
        )
        chunks = []
        for segment in segment_paragraphs(paragraphs, max_chars):
            total_chunks += 1
            if total_chunks > settings.job_max_chunks:
                raise JobTooLarge(
                    _size_field(kind),
                    f"more than {settings.job_max_chunks:,} chunks, over the job limit "
                    f"(VOICEBATCH_JOB_MAX_CHUNKS={settings.job_max_chunks}); split the "
                    "input into several jobs",
                )
            # After segmenting: a changed entry changes only the chunks holding its word,
            # never where the other chunks of the paragraph start and end.
            text = lexicon.apply(segment.text) if lexicon is not None else segment.text
            if len(text) > engine.max_chunk_chars:
                raise InputError(
                    f"the lexicon makes a chunk {len(text)} characters long, over the "
                    f"{engine.max_chunk_chars} that {engine.name} takes: {text[:60]!r}..."
                )
            chunks.append(
                store.ChunkSpec(
                    text=text,
                    paragraph_start=segment.paragraph_start,
                    content_hash=content_hash(
                        text=text,
                        voice=chapter.voice or voice,
                        engine=engine.name,
                        model_version=engine.model_version,
                        params=params,
                    ),
                )
            )
        if chunks:
            yield store.ItemSpec(
                title=chapter.title,
                chunks=tuple(chunks),
                voice=chapter.voice,
                file_name=file_name,
            )
