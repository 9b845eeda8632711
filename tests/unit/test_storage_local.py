"""Local object store and content-addressed keys."""

from __future__ import annotations

import os
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
