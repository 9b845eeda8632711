"""What a render does before anything heavy: the input file read and parsed, its voices,
lexicon and item names checked, the output folder made writable, then the engine set
loading on a thread of its own. None of it needs the database or the assembly code, so
`voicebatch render` fails on bad input in milliseconds, and starts its longest start-up
step (the engine) before it imports those."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pipeline.audio import dsp
from pipeline.audio.encode import codec_for
from pipeline.batching import with_batching
from pipeline.config import Settings
from pipeline.engines import (
    Engine,
    check_engine,
    check_voice,
    create_engine,
    engine_info,
    takes_phonemes,
)
from pipeline.errors import InputError
from pipeline.file_names import NamedItem, item_file_names
from pipeline.ingest import CatalogueFormat, Document, ParsedSource, load_source, parse_source
from pipeline.stages import mark, stage
from pipeline.text.lexicon import load_lexicon
from pipeline.text.segment import has_speech


def catalogue_file_names(document: Document, settings: Settings) -> list[str]:
    """Each catalogue item's checked file name from the settings' name template;
    InputError naming the row when a name is unsafe or collides."""
    return item_file_names(
        [
            NamedItem(c.item_id or c.title, c.where or f"items[{i}]")
            for i, c in enumerate(document.chapters)
        ],
        template=settings.item_name_template,
        ext=codec_for(settings.output_format).extension,
        subfolders=settings.item_subfolders,
    )


def check_inputs(path: Path, settings: Settings) -> ParsedSource:
    """Every check that needs no model or database, so bad input fails in milliseconds."""
    check_engine(settings)
    if settings.lexicon is not None:
        # A bad lexicon line is found now, not after the voice has loaded.
        load_lexicon(settings.lexicon).check_engine(
            settings.engine, takes_phonemes(engine_info(settings))
        )
    source = load_source(path)
    document = parse_source(
        source,
        keep_front_matter=settings.keep_front_matter,
        catalogue=CatalogueFormat.from_settings(settings),
    )
    for voice in sorted({c.voice for c in document.chapters if c.voice}):
        check_voice(settings, voice)
    if document.kind == "catalogue" and settings.read_along:
        raise InputError(
            f"{path}: --read-along makes a book's EPUB; a catalogue (CSV or JSONL items) has none"
        )
    if document.kind == "catalogue":
        # Planning names the files again; checked here so a bad name fails before the
        # output folder or the database is touched.
        catalogue_file_names(document, settings)
    paragraphs = [
        p
        for chapter in document.chapters
        for p in chapter.spoken_paragraphs(read_titles=settings.read_titles)
    ]
    if not has_speech(paragraphs, settings.chunk_max_chars):
        raise InputError(f"{path}: has no text to speak (only markup, code or symbols)")
    return ParsedSource(source, document)


def check_output_dir(path: Path) -> Path:
    """The output folder, created if needed; refuse one that cannot hold files.

    Checked before rendering: finding out after an hour of rendering that the folder is
    read-only would waste the hour.
    """
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"output {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"output folder {path} is not writable")
    return path.resolve()


def load_engine(settings: Settings) -> Engine:
    """The engine `settings` name, behind a dynamic batcher when they ask for one. SciPy
    starts loading beside it (pipeline.audio.dsp), on the core the engine leaves idle."""
    mark("engine_load_start")
    dsp.preload()
    with stage("engine_load"):
        return with_batching(create_engine(settings), settings)


def start_loading(settings: Settings) -> Future[Engine]:
    """load_engine on a thread of its own: onnxruntime and torch build their sessions
    without the GIL, so the caller's imports and database work go on meanwhile."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="engine-load")
    try:
        return pool.submit(load_engine, settings)
    finally:
        pool.shutdown(wait=False)
