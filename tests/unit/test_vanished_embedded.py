"""Embedded mode: a re-run whose chunk audio was deleted meanwhile (a cleanup of the
chunk store) renders those chunks again instead of failing `no object chunks/...`
(issue 16, defect 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.plan.prepare import check_inputs
from pipeline.runner import LocalRuntime, render_file
from pipeline.state import store
from pipeline.state.db import transaction
from pipeline.state.models import JobStatus


def test_a_rerun_renders_again_the_chunks_whose_audio_was_deleted(
    runtime: LocalRuntime, book: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = render_file(runtime, check_inputs(book, runtime.settings), output_dir=out)
    assert first.assembly is not None and first.assembly.status == JobStatus.DONE
    with transaction(runtime.factory) as session:
        (item, *_) = store.job_items(session, job_id=first.job.job_id)
        victims = [c.object_key for c in store.item_chunks(session, item_id=item.id)][:2]
    for key in victims:
        assert key is not None
        runtime.chunk_store.delete(key)
    shutil.rmtree(out)  # and the output folder is gone too: the re-run must assemble

    again = render_file(runtime, check_inputs(book, runtime.settings), output_dir=out)
    assert again.job.job_id == first.job.job_id  # resumed, not planned anew
    assert again.assembly is not None and again.assembly.status == JobStatus.DONE
    assert again.stats.rendered == len(victims)  # exactly the lost chunks, rendered again
    assert all(key is not None and runtime.chunk_store.exists(key) for key in victims)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["chapters"]) == 3 and (out / manifest["file"]).exists()
    with transaction(runtime.factory) as session:
        job = store.get_job(session, first.job.job_id)
        progress = store.job_progress(session, job_id=job.id)
    assert job.status == JobStatus.DONE and progress.chunks_done == progress.chunks_total
