"""POST /v1/audio/speech end to end, with OpenAI's own Python client: the API and a real
Celery render worker (Piper) in their own processes, on PostgreSQL, a private Redis and
an S3 server. Whole and streamed responses in every format, the first bytes before the
last sentence is rendered, repeated sentences from the chunk cache, OpenAI-shaped errors
and the `speech` scope."""

from __future__ import annotations

import io
import random
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from pipeline.audio.encode import decode
from pipeline.config import Settings
from pipeline.engines import engine_info
from pipeline.speech.sentences import plan_sentences
from tests.support.postgres import PostgresAdmin, pg_url
from tests.support.s3 import s3_client_for
from tests.support.services import free_port, need_service, private_redis_url
from tests.support.stack import Stack, rabbit_vhost, running_stack, service_env

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.e2e

REDIS_DB, BROKER_DB = 12, 13


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def stack(
    request: pytest.FixtureRequest,
    pg_admin: PostgresAdmin,
    pg_template: str,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    import redis

    for db in (REDIS_DB, BROKER_DB):
        redis.Redis.from_url(private_redis_url(db)).flushdb()
    cleanup: list[list[str]] = []
    broker = private_redis_url(BROKER_DB)
    if request.param == "rabbitmq":
        need_service("RabbitMQ", "127.0.0.1", 5672)
        vhost, cleanup = rabbit_vhost()
        broker = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    database = pg_admin.create(template=pg_template)
    bucket = f"speech-{uuid.uuid4().hex[:12]}"
    s3_client_for(s3_endpoint).create_bucket(Bucket=bucket)
    root = tmp_path_factory.mktemp("speech-stack")
    env = service_env(
        database_url=pg_url(database),
        broker=broker,
        redis_url=private_redis_url(REDIS_DB),
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        root=root,
    ) | {
        "VOICEBATCH_ENGINE": "piper",
        "VOICEBATCH_SPEECH_VOICES": '{"nova": "en_US-joe-medium"}',
        "VOICEBATCH_API_METRICS_PORT": str(free_port()),
    }
    if request.param == "rabbitmq":  # one session: the batcher's realtime lane, a chunk a call
        env |= {
            "VOICEBATCH_DYNAMIC_BATCHING": "on",
            "VOICEBATCH_BATCH_SIZE": "1",
            "VOICEBATCH_SPEECH_BATCH_NICE": "0",
        }
    # redis: the default, speech on a twin session, batch rendering lowered
    try:
        with running_stack(env=env, logs=root, api_port=free_port()) as running:
            running.metrics["api"] = (
                f"http://127.0.0.1:{env['VOICEBATCH_API_METRICS_PORT']}/metrics"
            )
            yield running
    finally:
        pg_admin.drop(database)
        for command in cleanup:
            subprocess.run(command, capture_output=True, timeout=60)


def _client(stack: Stack, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=key or stack.key, max_retries=0)


def _redis() -> object:
    import redis

    return redis.Redis.from_url(private_redis_url(REDIS_DB))


def _last_hash(text: str) -> str:
    """The content hash the worker gives the text's last sentence (same settings)."""
    settings = Settings(engine="piper")
    info = engine_info(settings)
    plan = plan_sentences(text, voice=info.default_voice, speed=1.0, engine=info, settings=settings)
    return plan.sentences[-1].content_hash


def _speechlike(audio: np.ndarray, rate: int) -> float:
    """The share of 50 ms windows that are clearly voiced."""
    window = rate // 20
    frames = audio[: len(audio) // window * window].reshape(-1, window)
    return float(np.mean(np.sqrt((frames**2).mean(axis=1)) > 0.02))


def _unique_sentences(count: int) -> str:
    number = random.randrange(10**6, 10**7)
    words = ["harbour", "lantern", "meadow", "orchard", "river", "valley"]
    return " ".join(
        f"Sentence {i + 1} of test {number} is about the {words[i % len(words)]}."
        for i in range(count)
    )


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_the_openai_client_gets_whole_speech_in_every_format(stack: Stack, fmt: str) -> None:
    text = "The keeper climbed the stairs at dusk. He lit the lamp and watched the ships."
    response = _client(stack).audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format=fmt
    )
    data = response.content
    if fmt == "pcm":  # OpenAI's pcm: 16-bit little-endian mono at 24 kHz, no header
        audio = np.frombuffer(data, "<i2").astype(np.float32) / 32767
        rate = 24_000
    else:
        decoded = decode(data)  # FFmpeg reads the whole stream
        audio, rate = decoded.audio, decoded.sample_rate
        assert rate == (48_000 if fmt == "opus" else 22_050)
    assert response.response.headers["content-type"].startswith("audio/")
    seconds = len(audio) / rate
    assert 2.5 < seconds < 12, seconds  # two sentences and the pause between them
    assert _speechlike(audio, rate) > 0.3


def test_streamed_speech_arrives_before_the_last_sentence_is_rendered(stack: Stack) -> None:
    text = _unique_sentences(3)
    last = _last_hash(text)
    client = _redis()
    # Hold the last sentence as if another renderer were rendering it: the worker speaks
    # the first two, then waits for it (renderers never render one sentence twice).
    assert client.set(f"vb:rendering:{last}", "the-test", nx=True, ex=120)  # type: ignore[attr-defined]
    received = bytearray()
    with _client(stack).audio.speech.with_streaming_response.create(
        model="piper", voice="nova", input=text, response_format="mp3"
    ) as response:
        chunks = response.iter_bytes()
        received += next(chunks)
        # Audio is here, and the last sentence is not rendered: nobody may render it yet.
        assert received
        assert not client.exists(f"vb:chunk:{last}")  # type: ignore[attr-defined]
        assert client.get(f"vb:rendering:{last}") == b"the-test"  # type: ignore[attr-defined]
        client.delete(f"vb:rendering:{last}")  # type: ignore[attr-defined]
        for chunk in chunks:
            received += chunk
    assert client.exists(f"vb:chunk:{last}")  # type: ignore[attr-defined]
    decoded = decode(bytes(received))
    assert 4.0 < decoded.duration < 20, decoded.duration  # all three sentences
    assert _speechlike(decoded.audio, decoded.sample_rate) > 0.3
    # the stream is gone once read
    stream_id = response.headers["x-request-id"]
    assert not client.exists(f"vb:speech:{stream_id}")  # type: ignore[attr-defined]


def _spoke_line(stack: Stack, request_id: str) -> str:
    deadline = time.monotonic() + 30  # the worker logs just after the end of the stream
    while time.monotonic() < deadline:
        found = re.search(rf"spoke request {request_id}: .*", stack.log("worker-render"))
        if found:
            return found.group(0)
        time.sleep(0.1)
    raise AssertionError(f"no log line for {request_id}:\n{stack.tails()}")


def test_repeated_sentences_come_from_the_cache(stack: Stack) -> None:
    text = _unique_sentences(2)
    outputs = []
    lines = []
    for _ in range(2):
        with _client(stack).audio.speech.with_streaming_response.create(
            model="tts-1-hd", voice="alloy", input=text, response_format="pcm"
        ) as response:
            outputs.append(response.read())
            lines.append(_spoke_line(stack, response.headers["x-request-id"]))
    assert "2 sentence(s) rendered, 0 cached" in lines[0]
    assert "0 sentence(s) rendered, 2 cached" in lines[1]
    assert outputs[0] == outputs[1]


def _error(exc: openai.APIStatusError) -> dict[str, object]:
    body = exc.response.json()
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"voice": "no-such-voice"}, "voice", "unknown voice"),
        ({"response_format": "ogg"}, "response_format", "response_format"),
        ({"model": "tts-9"}, "model", "unknown model"),
        ({"speed": 9.0}, "speed", "speed"),
    ],
)
def test_bad_requests_get_400_in_openai_s_error_shape(
    stack: Stack, change: dict[str, object], param: str, words: str
) -> None:
    request: dict[str, object] = {"model": "tts-1", "voice": "alloy", "input": "Hello there."}
    request |= change
    with pytest.raises(openai.BadRequestError) as caught:
        _client(stack).audio.speech.create(**request)  # type: ignore[arg-type]
    error = _error(caught.value)
    assert caught.value.status_code == 400
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param == error["field"]
    assert words in str(error["message"])


def test_over_long_input_is_a_413_stating_the_limit(stack: Stack) -> None:
    """Issue 20's bad input: over-long input is a 413 (not OpenAI's 400) with the limit
    stated, still in OpenAI's error shape."""
    with pytest.raises(openai.APIStatusError) as caught:
        _client(stack).audio.speech.create(model="tts-1", voice="alloy", input="a" * 4097)
    assert caught.value.status_code == 413
    error = _error(caught.value)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "input" == error["field"]
    assert "4,097 characters" in str(error["message"])
    assert "limit of 4,096 characters" in str(error["message"])


def test_speech_needs_the_speech_scope(stack: Stack) -> None:
    created = stack.cli("keys", "create", "reader-only", "--scope", "jobs:read")
    assert created.returncode == 0, created.stderr
    reader = created.stdout.strip()
    with pytest.raises(openai.PermissionDeniedError) as denied:
        _client(stack, reader).audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert "speech" in str(_error(denied.value)["message"])
    with pytest.raises(openai.AuthenticationError):
        _client(stack, "vb_not_a_key").audio.speech.create(
            model="tts-1", voice="alloy", input="Hi."
        )
    with pytest.raises(openai.PermissionDeniedError):
        _client(stack, reader).models.list()


def test_models_and_voices_are_listed(stack: Stack) -> None:
    ids = [model.id for model in _client(stack).models.list()]
    assert ids == ["piper", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
    voices = httpx.get(
        f"{stack.api_url}/v1/audio/voices",
        headers={"Authorization": f"Bearer {stack.key}"},
        timeout=30,
    ).json()["voices"]
    by_id = {voice["voice_id"]: voice["speaks_as"] for voice in voices}
    assert by_id["en_US-joe-medium"] == "en_US-joe-medium"
    assert by_id["nova"] == "en_US-joe-medium" and by_id["alloy"] == "en_US-joe-medium"


def test_curl_streams_chunked(stack: Stack, tmp_path: Path) -> None:
    """The documented curl example: a chunked response that ffmpeg reads."""
    out = tmp_path / "speech.wav"
    done = subprocess.run(
        [
            "curl", "-sS", "--fail-with-body", "-D", str(tmp_path / "headers"), "-o", str(out),
            f"{stack.api_url}/v1/audio/speech",
            "-H", f"Authorization: Bearer {stack.key}", "-H", "Content-Type: application/json",
            "-d", '{"model": "tts-1", "voice": "alloy", "input": "Hello from curl.", "response_format": "wav"}',
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "transfer-encoding: chunked" in (tmp_path / "headers").read_text().lower()
    decoded = decode(io.BytesIO(out.read_bytes()).getvalue())
    assert 0.5 < decoded.duration < 5


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a real /metrics scrape, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_speech_metrics_on_a_real_scrape(stack: Stack) -> None:
    """The API counts requests by outcome and times the first byte; the render worker
    counts sentences by source and, behind the batcher, times each lane wait."""
    api, worker = stack.metrics["api"], stack.metrics["worker-render"]
    batched = stack.env.get("VOICEBATCH_DYNAMIC_BATCHING") == "on"
    before_api, before_worker = _scrape(api), _scrape(worker)
    text = _unique_sentences(2)
    timings = []
    for _ in range(2):  # rendered, then from the cache
        spoken = _client(stack).audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="wav"
        )
        assert spoken.read()
        timings.append(spoken.response.headers["server-timing"])
    # where the first byte's time went: the worker's stages, then the API's total
    assert "w-engine;dur=" in timings[0] and "w-fetch;dur=" in timings[1]
    assert all(re.search(r"total;dur=\d+\.\d$", t) for t in timings), timings
    with httpx.stream(  # a client that leaves after the first bytes
        "POST",
        f"{stack.api_url}/v1/audio/speech",
        headers={"Authorization": f"Bearer {stack.key}"},
        json={"model": "tts-1", "voice": "alloy", "input": _unique_sentences(4),
              "response_format": "wav"},
        timeout=60,
    ) as response:  # fmt: skip
        assert next(response.iter_bytes())

    def delta(url: str, before: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
        return _value(_scrape(url), name, **labels) - _value(before, name, **labels)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the worker counts just after each stream's end
        gone = delta(api, before_api, "voicebatch_speech_requests_total",
                     engine="piper", format="wav", outcome="client_gone")  # fmt: skip
        rendered = delta(worker, before_worker, "voicebatch_speech_sentences_total",
                         engine="piper", source="rendered")  # fmt: skip
        if gone >= 1 and rendered >= 6:
            break
        time.sleep(0.2)
    assert gone == 1
    ok = delta(api, before_api, "voicebatch_speech_requests_total",
               engine="piper", format="wav", outcome="ok")  # fmt: skip
    assert ok == 2
    after = _scrape(api)
    for outcome in ("error", "no_worker"):  # made at 0, so their first is an increase
        labels = (("engine", "piper"), ("format", "wav"), ("outcome", outcome))
        assert ("voicebatch_speech_requests_total", labels) in after
    ttfb = delta(api, before_api, "voicebatch_speech_ttfb_seconds_count", engine="piper")
    assert ttfb == 3
    assert 0 < delta(api, before_api, "voicebatch_speech_ttfb_seconds_sum", engine="piper") < 60
    assert rendered == 6  # 2 sentences, then the 4 of the request whose client left
    assert delta(worker, before_worker, "voicebatch_speech_sentences_total",
                 engine="piper", source="cache") == 2  # fmt: skip
    lane = delta(worker, before_worker, "voicebatch_speech_lane_wait_seconds_count",
                 engine="piper")  # fmt: skip
    assert lane == (6 if batched else 0)
