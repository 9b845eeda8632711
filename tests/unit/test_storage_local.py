"""Local object store and content-addressed keys."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.errors import InputError, NotFoundError
from pipeline.storage.factory import open_store
from pipeline.storage.keys import chunk_key, content_hash
from pipeline.storage.local import LocalObjectStore
from pipeline.storage.s3 import S3ObjectStore

BASE = {
    "text": "Hello there.",
    "voice": "v",
    "engine": "piper",
    "model_version": "1",
    "params": {"rate": 1.0},
}


def test_content_hash_changes_with_every_input_that_changes_audio() -> None:
    reference = content_hash(**BASE)  # type: ignore[arg-type]
    assert reference == content_hash(**BASE)  # type: ignore[arg-type]
    for field, value in [
        ("text", "Hello there!"),
        ("voice", "w"),
        ("engine", "maya1"),
        ("model_version", "2"),
        ("params", {"rate": 1.1}),
    ]:
        assert content_hash(**{**BASE, field: value}) != reference, field  # type: ignore[arg-type]
    assert content_hash(**{**BASE, "params": {"b": 1, "a": 2}}) == content_hash(  # type: ignore[arg-type]
        **{**BASE, "params": {"a": 2, "b": 1}}
    )


def test_chunk_key_is_fanned_out_by_hash() -> None:
    digest = "ab" + "0" * 62
    assert chunk_key(digest) == f"chunks/ab/{digest}.wav"


def test_local_store_writes_once(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    assert store.put_if_absent("chunks/a/x.wav", b"first", content_type="audio/wav")
    assert not store.put_if_absent("chunks/a/x.wav", b"second", content_type="audio/wav")
    assert store.get("chunks/a/x.wav") == b"first"
    store.put("out/book.mp3", b"v1", content_type="audio/mpeg")
    store.put("out/book.mp3", b"v2", content_type="audio/mpeg")
    assert store.get("out/book.mp3") == b"v2" and store.exists("out/book.mp3")
    assert not list((tmp_path / "objects").rglob(".tmp-*"))  # no temp files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "objects" / "out" / "book.mp3").stat().st_mode & 0o777 == 0o666 & ~umask
    assert store.url("out/book.mp3").startswith("file://")


def test_local_store_missing_key_and_unsafe_keys(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    with pytest.raises(NotFoundError):
        store.get("nope.wav")
    for key in ["../escape", "/abs", "a//b", "a/./b", "", "a\\b"]:
        with pytest.raises(InputError):
            store.put(key, b"x", content_type="x")
    assert not (tmp_path.parent / "escape").exists()


def test_open_store_picks_the_backend_from_the_url(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert isinstance(open_store(str(tmp_path / "o"), settings), LocalObjectStore)
    assert isinstance(open_store(f"file://{tmp_path}/o", settings), LocalObjectStore)
    s3 = open_store("s3://bucket/some/prefix", settings)
    assert isinstance(s3, S3ObjectStore) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    with pytest.raises(InputError, match="unsupported storage URL"):
        open_store("ftp://host/x", settings)


def test_every_write_is_fsynced_before_it_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16.13: a crash after the link must not publish a file whose data never
    reached the disk."""
    events: list[str] = []
    real_fsync, real_link, real_replace = os.fsync, os.link, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "link", lambda a, b: (events.append("link"), real_link(a, b))[1])
    monkeypatch.setattr(
        os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    store = LocalObjectStore(tmp_path / "objects")
    store.put_if_absent("a/1", b"one", content_type="x")
    store.put("a/2", b"two", content_type="x")
    store.put_file("a/3", io.BytesIO(b"three"), content_type="x")
    store.put_file_if_absent("a/4", io.BytesIO(b"four"), content_type="x")
    assert events == ["fsync", "link", "fsync", "replace", "fsync", "replace", "fsync", "link"]
    assert [store.get(f"a/{n}") for n in range(1, 5)] == [b"one", b"two", b"three", b"four"]


def test_temporary_files_a_killed_writer_left_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "objects" / "chunks" / "ab"
    folder.mkdir(parents=True)
    dead = folder / ".tmp-999999999-deadbeef"  # no such process
    dead.write_bytes(b"half a chunk")
    ancient = folder / f".tmp-{os.getpid()}-0ld"  # a live pid, but a day old
    ancient.write_bytes(b"x")
    live = folder / f".tmp-{os.getpid()}-inprogress"  # this process, writing now
    live.write_bytes(b"y")
    old = time.time() - 3600
    os.utime(dead, (old, old))
    day = time.time() - 2 * 24 * 3600
    os.utime(ancient, (day, day))
    store = LocalObjectStore(tmp_path / "objects")
    assert store.put_if_absent("chunks/ab/abc.wav", b"audio", content_type="audio/wav")
    assert not dead.exists() and not ancient.exists()
    assert live.exists()  # a writer still running keeps its file
