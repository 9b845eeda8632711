"""A real render worker process running the Maya1 engine (`voicebatch worker --engine maya1
--batch-size 8 --batch-wait-ms 20 --precision fp32`) with the tiny Maya1-layout model and a
SNAC 24 kHz decoder built by the test, behind the API, on PostgreSQL, Redis and S3.

The engine loads once, before the worker takes tasks; the job's chunks arrive as several
messages (two chunks each), run on the worker's task threads, and meet in one dynamic
batcher. Random weights say nothing intelligible: the test checks the mechanics (24 kHz
chunks whose length is whole SNAC frames, merged batches, a finished book), not speech."""

from __future__ import annotations

import io
import json
import re
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("snac")

from sqlalchemy import create_engine, text

from pipeline.audio.encode import decode
from tests.support.maya1_fixtures import build_tiny_maya1
from tests.support.metrics import metric_samples, metric_value
from tests.support.postgres import pg_url
from tests.support.s3 import s3_client_for
from tests.support.snac_fixtures import build_tiny_snac
from tests.support.stack import Deployments, Stack

pytestmark = pytest.mark.e2e

BOOK = """# Two Tiny Chapters

## Dawn

The sun rose.

Birds sang.

A cart rolled by.

## Dusk

The sun set.

Owls woke.

The lamps were lit.
"""
SAMPLES_PER_FRAME = 2048


@pytest.fixture(scope="module")
def stack(deployments: Deployments, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("maya1-stack")
    model, snac = build_tiny_maya1(root / "model"), build_tiny_snac(root / "snac")
    worker_flags = ("--engine", "maya1", "--batch-size", "8", "--batch-wait-ms", "200")
    with deployments.stack(
        root,
        bucket_prefix="maya1",
        broker_db=12,
        redis_db=13,
        settings={
            # the API plans maya1 jobs from the model folder's config, loading no weights
            "VOICEBATCH_ENGINE": "maya1",
            "VOICEBATCH_MAYA1_MODEL_DIR": str(model),
            "VOICEBATCH_SNAC_DIR": str(snac),
            "VOICEBATCH_DEVICE": "cpu",
            "VOICEBATCH_TASK_CHUNKS": "2",  # several messages, so several task threads batch
            "VOICEBATCH_CHUNK_MAX_CHARS": "40",  # short chunks: random weights run to the limit
        },
        render_concurrency=None,  # the worker sizes its threads for its batches
        render_args=(*worker_flags, "--precision", "fp32"),
    ) as running:
        yield running


def test_a_maya1_worker_renders_a_book_in_merged_batches(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "tiny.md"
    source.write_text(BOOK)
    submitted = stack.cli("submit", str(source), "--wait", "--format", "wav", timeout=600)
    assert submitted.returncode == 0, submitted.stderr + stack.tails()
    job = re.search(r"submitted job ([0-9a-f-]{36})", submitted.stderr)
    assert job, submitted.stderr
    job_id = job.group(1)

    # the engine was loaded before the worker said it was ready, once
    log = stack.log("worker-render")
    assert log.count("loading engine maya1...") == 1
    loaded = re.search(
        r"loaded engine maya1 \(.+\) in [\d.]+ s; dynamic batcher: up to 8 chunks, 200 ms wait", log
    )
    assert loaded, log
    assert log.index("loading engine maya1") < log.index(" ready.")

    db = create_engine(pg_url(stack.database))
    with db.connect() as conn:
        chunks = conn.execute(
            text("SELECT object_key, sample_rate, status FROM chunks WHERE job_id = :j"),
            {"j": job_id},
        ).all()
    db.dispose()
    assert len(chunks) == 8 and {c.status for c in chunks} == {"done"}
    assert {c.sample_rate for c in chunks} == {24_000}
    client = s3_client_for(stack.env["VOICEBATCH_S3_ENDPOINT_URL"])
    for chunk in chunks:
        body = client.get_object(Bucket=stack.bucket, Key=f"prod/{chunk.object_key}")["Body"].read()
        with wave.open(io.BytesIO(body)) as audio:
            assert audio.getframerate() == 24_000
            # SNAC gives whole frames; trimming may only take away, never add
            assert 0 < audio.getnframes() <= 200 * SAMPLES_PER_FRAME

    # the task threads' requests met in the batcher: fewer batches than chunks
    metrics = stack.scrape("worker-render")
    batches = metric_value(metrics, "voicebatch_batcher_batches")
    requests = metric_value(metrics, "voicebatch_batcher_requests")
    # a speech test that ran first put its sentence through the same batcher
    spoken = sum(
        value
        for labels, value in metric_samples(metrics, "voicebatch_speech_sentences_total")
        if labels.get("source") == "rendered"
    )
    assert requests - spoken == len(chunks) and batches < requests

    out = tmp_path / "out"
    downloaded = stack.cli("download", job_id, "-o", str(out))
    assert downloaded.returncode == 0, downloaded.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [c["title"] for c in manifest["chapters"]] == ["Dawn", "Dusk"]
    book = decode(out / manifest["file"])
    assert book.sample_rate == 24_000 and book.duration > 2.0


def test_a_maya1_worker_answers_openai_speech_in_its_realtime_lane(stack: Stack) -> None:
    """Speech on the GPU engine's path: the worker's speech consumer puts the sentence in
    its batcher's realtime lane, and the audio streams back through Redis to the API."""
    openai = pytest.importorskip("openai")
    log = stack.log("worker-render")
    assert "speech: speech.maya1" in log and "in the batcher's realtime lane" in log, log
    client = openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=stack.key, max_retries=0)
    response = client.audio.speech.create(
        model="tts-1",
        voice="alloy",
        input="The lamp was lit.",
        response_format="pcm",
        extra_body={"instructions": "A calm, low voice, unhurried."},
    )
    pcm = response.content  # OpenAI's pcm: 16-bit little-endian mono at 24 kHz
    samples = len(pcm) // 2
    assert len(pcm) % 2 == 0 and samples > 0
    # SNAC decodes whole frames; trimming may only take away, never add
    assert samples <= 200 * SAMPLES_PER_FRAME
    with pytest.raises(openai.APIStatusError) as refused:
        client.audio.speech.create(model="tts-1", voice="alloy", input="x" * 4097)
    assert refused.value.status_code == 413
    metrics = stack.scrape("worker-render")
    rendered = metric_value(
        metrics, "voicebatch_speech_sentences_total", engine="maya1", source="rendered"
    )
    assert rendered >= 1
    assert metric_value(metrics, "voicebatch_speech_lane_wait_seconds_count", engine="maya1") >= 1
