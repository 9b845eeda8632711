"""The final files' check of `Cluster.verify`: each file holds exactly the chunks its
manifest lists, in order, each at its place, with silence between, and the book is its
chapters sample for sample."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.audio.encode import decode
from pipeline.state.models import ItemStatus

PREFIX = "audio"


def check_files(
    get: Callable[[str], bytes],
    job_id: uuid.UUID,
    items: list[tuple[Any, list[Any]]],
    versions: dict[str, int],
) -> None:
    """The manifest lists the database's chunks in order, and every file holds them."""
    folder = f"{PREFIX}/jobs/{job_id}"
    manifest = json.loads(get(f"{folder}/manifest.json"))
    done = [(item, chunks) for item, chunks in items if item.status == ItemStatus.DONE]
    assert [c["file"] for c in manifest["chapters"]] == [i.object_key for i, _ in done]
    book = decode(get(f"{folder}/{manifest['file']}")).audio
    for entry, (_, chunks) in zip(manifest["chapters"], done, strict=True):
        assert [c["text"] for c in entry["chunks"]] == [c.text for c in chunks]
        chapter = decode(get(f"{folder}/{entry['file']}"))
        audio, rate = chapter.audio, chapter.sample_rate
        # the book is its chapters, each at its place, sample for sample
        assert np.array_equal(book[entry["start_sample"] : entry["end_sample"]], audio)
        covered = np.zeros(len(audio), bool)
        gains = []
        for placed, chunk in zip(entry["chunks"], chunks, strict=True):
            assert versions.get(f"{PREFIX}/{chunk.object_key}") == 1, chunk.object_key
            reference = decode(get(f"{PREFIX}/{chunk.object_key}")).audio
            start, gain = _locate(audio, reference, round(placed["start"] * rate))
            covered[start : start + len(reference)] = True
            gains.append(gain)
        # one mastering gain for the whole chapter, and silence between its chunks
        assert max(gains) - min(gains) <= 2e-3 * max(gains), gains
        assert float(np.max(np.abs(audio[~covered]), initial=0.0)) < 2e-3


def _locate(audio: np.ndarray, reference: np.ndarray, near: int) -> tuple[int, float]:
    """Where `reference` (scaled by one gain) sits in `audio` within a few ms of `near`;
    fails unless it is there, whole and unchanged but for the gain."""
    best: tuple[float, int, float] | None = None
    for start in range(max(0, near - 40), near + 41):
        segment = audio[start : start + len(reference)]
        if len(segment) != len(reference):
            continue
        gain = float(segment @ reference) / float(reference @ reference)
        residual = float(np.linalg.norm(segment - gain * reference)) / (
            float(np.linalg.norm(segment)) or 1.0
        )
        if best is None or residual < best[0]:
            best = (residual, start, gain)
    assert best is not None and best[0] < 2e-3, f"chunk not found near sample {near}: {best}"
    return best[1], best[2]
