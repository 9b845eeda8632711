"""The one Settings object. Every knob is an environment variable prefixed VOICEBATCH_."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import InputError
from pipeline.file_names import check_template

OutputFormat = Literal["wav", "flac", "mp3", "opus", "m4b"]
OUTPUT_FORMATS: tuple[str, ...] = get_args(OutputFormat)
MasterFormat = Literal["none", "wav", "flac"]
Precision = Literal["auto", "bf16", "fp16", "int8", "fp32"]
SnacRuntime = Literal["torch", "onnx", "tensorrt"]
SnacPrecision = Literal["auto", "fp32", "fp16", "int8"]
SnacDtype = Literal["fp32", "fp16", "bf16"]
DynamicBatching = Literal["auto", "on", "off"]
Maya1Backend = Literal["auto", "hf", "vllm"]
LoudnessPreset = Literal["none", "acx", "podcast", "broadcast"]
LOUDNESS_PRESETS: tuple[str, ...] = get_args(LoudnessPreset)
TimingFormat = Literal["srt", "vtt", "json"]
TIMING_FORMATS: tuple[str, ...] = get_args(TimingFormat)
ArchiveClass = Literal["GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]
RestoreTier = Literal["Standard", "Bulk", "Expedited"]
RESTORE_TIERS: tuple[str, ...] = get_args(RestoreTier)


def webhook_secret_keys(secrets: str) -> list[bytes]:
    """The signing keys of VOICEBATCH_WEBHOOK_SECRET: one secret, or several separated by
    spaces while receivers move from one to the next (every webhook is signed with each;
    the first is the newest by convention). A one-line ValueError names the bad one."""
    parts = secrets.split()
    if not parts:
        raise ValueError("no secret given (whsec_ + base64 of 24 to 64 random bytes)")
    keys = []
    for n, part in enumerate(parts, start=1):
        try:
            keys.append(check_webhook_secret(part))
        except ValueError as exc:
            raise ValueError(exc.args[0] if len(parts) == 1 else f"secret {n}: {exc}") from exc
    return keys


def check_webhook_secret(secret: str) -> bytes:
    """The signing key in a Standard Webhooks secret (`whsec_` + base64), or a one-line
    ValueError saying what is wrong with it."""
    body = secret.strip().removeprefix("whsec_")
    if body == secret.strip():
        raise ValueError("must start with whsec_ (whsec_ + base64 of 24 to 64 random bytes)")
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the part after whsec_ is not valid base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the key is {len(key)} bytes; use 24 to 64 random bytes")
    return key


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "voicebatch"


class Settings(BaseSettings):
    """voicebatch configuration, read from VOICEBATCH_* environment variables and .env."""

    model_config = SettingsConfigDict(
        env_prefix="VOICEBATCH_", env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir, description="Job database and chunk cache."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite in data_dir."
    )
    db_pool_size: int = Field(
        5,
        ge=1,
        le=1000,
        description="PostgreSQL: connections each API or worker process keeps open.",
    )
    db_max_overflow: int = Field(
        10,
        ge=0,
        le=1000,
        description="PostgreSQL: extra connections a process may open past the pool size "
        "under load, closed again when returned. The API lets at most pool size + "
        "overflow /v1 GET requests work at once; the rest wait without holding a thread.",
    )
    db_pool_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="PostgreSQL: how long a request waits for a free connection (in the "
        "API, also for a GET slot) before it fails: the API answers 503 with Retry-After.",
    )
    storage_url: str | None = Field(
        None,
        description="Folder path or s3://bucket/prefix for chunk objects; default data_dir/objects.",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 API endpoint (MinIO and friends).")
    s3_public_endpoint_url: str | None = Field(
        None,
        description="Endpoint that download URLs are signed for, when clients reach S3 by "
        "another name than the servers do (compose: http://localhost:9000).",
    )
    s3_region: str = Field("us-east-1", description="S3 region used for signing.")
    s3_access_key_id: str | None = Field(
        None, description="S3 key id; default: boto3's credential chain."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key.")
    s3_presign_seconds: int = Field(
        3600, ge=1, le=7 * 24 * 3600, description="Presigned URL lifetime."
    )

    engine: str = Field(
        "piper",
        description="Speech engine: piper (CPU, bundled voice), maya1 (GPU) or test-tone.",
    )
    voice: str | None = Field(
        None, description="Voice name or model path; default: the engine's own."
    )
    speaking_rate: float = Field(
        1.0, gt=0.25, le=4.0, description="1.0 = the voice's natural pace."
    )
    output_format: OutputFormat = Field("mp3", description="wav, flac, mp3, opus or m4b.")
    bitrate_kbps: int | None = Field(
        None, ge=8, le=320, description="mp3/opus/m4b bitrate; default 64/48/64."
    )
    output_sample_rate: int | None = Field(
        None,
        ge=8000,
        le=192_000,
        description="Resample delivery files to this rate (ACX: 44100); default: the "
        "voice's own rate. Opus is always 48000.",
    )
    chapter_files: bool = Field(
        True, description="Write one file per chapter besides the whole book."
    )
    master_format: MasterFormat = Field(
        "none",
        description="Also write a lossless master (wav or flac) of every audio file, under "
        "master/.",
    )
    subtitles: str = Field(
        "srt,vtt,json",
        description="Timing files written beside each audio file: any of srt, vtt, json "
        "(comma-separated), or none.",
    )
    loudness_preset: LoudnessPreset = Field(
        "none",
        description="acx, podcast or broadcast: the loudness spec every file is mastered "
        "to (none: loudness_lufs and true_peak_dbtp).",
    )
    head_silence_ms: int = Field(
        0, ge=0, le=10_000, description="Silence (or room tone) before each chapter's speech."
    )
    tail_silence_ms: int = Field(
        0, ge=0, le=10_000, description="Silence (or room tone) after each chapter's speech."
    )
    room_tone_db: float | None = Field(
        None,
        ge=-90.0,
        le=-50.0,
        description="Lay a low noise bed at this RMS level (dBFS) under every file instead "
        "of digital silence; unset: none.",
    )

    catalogue_id_column: str = Field(
        "id", min_length=1, description="Catalogues (CSV/JSONL): the column naming each item."
    )
    catalogue_text_column: str = Field(
        "text", min_length=1, description="Catalogues: the column with the text to speak."
    )
    catalogue_voice_column: str = Field(
        "voice",
        min_length=1,
        description="Catalogues: an optional column with a row's own voice (empty: the job's).",
    )
    catalogue_max_items: int = Field(
        100_000, ge=1, le=1_000_000, description="Catalogues: most rows in one job."
    )
    catalogue_max_item_chars: int = Field(
        20_000, ge=1, le=1_000_000, description="Catalogues: longest text of one row."
    )
    item_name_template: str = Field(
        "{id}.{ext}",
        min_length=1,
        max_length=500,
        description="Catalogues: each item's file name under items/, from {id}, {slug}, "
        "{index} (1-based; {index:04d} pads) and {ext}.",
    )
    item_subfolders: bool = Field(
        False,
        description="Catalogues: let item file names hold '/' to make sub-folders "
        "(never '..', never absolute).",
    )

    chunk_max_chars: int = Field(
        400, ge=40, le=5000, description="Upper bound on a chunk's length."
    )
    # 10 M characters is four times a 1,000-page book (about 2.5 M) and more than the
    # longest novels in print; 200,000 chunks admits that book (about 35,000 chunks) with
    # room for short sentences, and a full catalogue (catalogue_max_items).
    job_max_chars: int = Field(
        10_000_000,
        ge=1,
        description="Most characters one job may speak (a book or a catalogue); larger "
        "inputs are refused at planning (the API answers 413).",
    )
    job_max_chunks: int = Field(
        200_000,
        ge=1,
        description="Most chunks one job may have; refused at planning past it (413).",
    )
    read_titles: bool = Field(True, description="Speak each chapter's heading at its start.")
    read_along: bool = Field(
        False,
        description="Also write <name>.epub, a read-along EPUB 3 (the text with Media "
        "Overlays and the audio inside), listed in the manifest; books only (EPUB, Markdown, "
        "text). render, and a server's default for submitted books.",
    )
    normalize_text: bool = Field(
        True,
        description="Spell out numbers, dates, money, times, abbreviations, heading numerals, "
        "URLs and e-mail addresses (English) before segmenting.",
    )
    lexicon: Path | None = Field(
        None,
        description="Pronunciation file: `word = replacement` or `/regex/i = replacement` "
        "lines ([[phonemes]] for piper), applied to each chunk after normalisation.",
    )
    keep_front_matter: bool = Field(
        False,
        description="EPUB: also read what the book marks as front or back matter (cover, "
        "title page, copyright, contents, index, acknowledgements...).",
    )
    batch_size: int = Field(8, ge=1, le=512, description="Chunks handed to the engine at once.")

    pause_sentence_ms: int = Field(300, ge=0, le=10_000, description="Silence between sentences.")
    pause_paragraph_ms: int = Field(800, ge=0, le=10_000, description="Silence after a paragraph.")
    pause_chapter_ms: int = Field(2000, ge=0, le=60_000, description="Silence between chapters.")
    loudness_lufs: float = Field(
        -18.0, ge=-40.0, le=-5.0, description="Integrated loudness target."
    )
    true_peak_dbtp: float = Field(-1.0, ge=-12.0, le=0.0, description="True-peak ceiling.")

    chunk_expire_days: int = Field(
        30,
        ge=8,
        le=36500,
        description="Storage lifecycle: delete chunk audio this many days after it was "
        "written (more than the cache index's 7 days).",
    )
    archive_after_days: int = Field(
        30,
        ge=0,
        le=36500,
        description="Storage lifecycle: move finished audio to archive_storage_class after "
        "this many days (0: never).",
    )
    archive_storage_class: ArchiveClass = Field(
        "GLACIER_IR", description="Cold storage class: GLACIER_IR, GLACIER or DEEP_ARCHIVE."
    )
    abort_multipart_days: int = Field(
        2, ge=1, le=365, description="Storage lifecycle: abort unfinished multipart uploads."
    )
    restore_days: int = Field(
        7, ge=1, le=365, description="How long a restored archived file stays readable."
    )
    restore_tier: RestoreTier = Field(
        "Standard", description="Restore speed: Expedited, Standard or Bulk."
    )

    lease_seconds: int = Field(300, ge=5, description="How long a renderer holds a chunk.")
    test_engine_delay_ms: int = Field(
        0,
        ge=0,
        le=600_000,
        description="test-tone only: pause per chunk, for fault-injection tests.",
    )
    test_engine_crash_on: str | None = Field(
        None, description="test-tone only: a word that kills the rendering process (fault tests)."
    )
    test_engine_journal: Path | None = Field(
        None,
        description="test-tone only: append a line per rendered request to this file "
        "(fault tests count renders that were wasted).",
    )
    test_engine_pause_fifo: Path | None = Field(
        None,
        description="test-tone only: before its render number test_engine_pause_after + 1, "
        "the process opens this FIFO and waits until a writer has opened and closed it "
        "(tests that interrupt a render at a known point).",
    )
    test_engine_pause_after: int = Field(
        0, ge=0, description="test-tone only: renders before the pause at test_engine_pause_fifo."
    )
    assembly_journal: Path | None = Field(
        None,
        description="Append a line per assembly run (an item's file, a job's book) to this "
        "file (fault tests count duplicate assemblies).",
    )
    assembly_delay_ms: int = Field(
        0,
        ge=0,
        description="Fault tests only: sleep this long in each assembly run, to make "
        "assembly slow while reconcilers and duplicate messages run.",
    )
    test_engine_break_after: int = Field(
        0,
        ge=0,
        description="test-tone only: after this many renders the process's engine fails every "
        "render with a sticky CUDA error (fault tests); 0: never.",
    )
    max_attempts: int = Field(3, ge=1, le=50, description="Attempts before a chunk is failed.")
    max_batch_seconds: float = Field(
        900.0,
        ge=1,
        le=86_400,
        description="The longest one batch may render (waiting in the dynamic batcher "
        "included). Past it the engine is taken for hung: its leases stop being renewed, "
        "are released, and the process exits for its supervisor to restart it.",
    )

    # --- speech-recognition QA (`voicebatch qa`) ---------------------------------------
    asr_model_dir: Path | None = Field(
        None,
        description="QA: local folder with a CTranslate2 Whisper model (model.bin, "
        "config.json, tokenizer.json), fetched once; never downloaded at run time.",
    )
    qa: bool = Field(
        False,
        description="QA while rendering: check each chunk with speech recognition right after "
        "it is rendered, render a flagged one again with other seeds, keep the best take "
        "(needs VOICEBATCH_ASR_MODEL_DIR).",
    )
    qa_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="QA while rendering: how many more takes a flagged chunk gets; the take "
        "with the lowest error rate is kept, and one still flagged is listed, not failed.",
    )

    # --- maya1 engine (GPU) -----------------------------------------------------------
    snac_dir: Path | None = Field(
        None,
        description="maya1: local folder with the SNAC 24 kHz decoder (config.json + weights).",
    )
    maya1_model_dir: Path | None = Field(
        None,
        description="maya1: local folder with the model (config.json, tokenizer files, "
        "*.safetensors), fetched once with `hf download maya-research/maya1 --local-dir DIR`.",
    )
    maya1_backend: Maya1Backend = Field(
        "auto",
        description="maya1: hf (transformers), vllm, or auto (vllm when a supported release, "
        "the `vllm` extra's range, is installed and the device is a GPU).",
    )
    maya1_temperature: float = Field(
        0.4, ge=0.0, le=2.0, description="maya1 sampling temperature (0: greedy)."
    )
    maya1_top_p: float = Field(0.9, gt=0.0, le=1.0, description="maya1 nucleus sampling mass.")
    maya1_repetition_penalty: float = Field(
        1.1, ge=1.0, le=2.0, description="maya1 repetition penalty on already used codes."
    )
    maya1_compile: bool = Field(
        False,
        description="maya1 hf backend: torch.compile the decode step with CUDA graphs "
        "(CUDA only; pays off for long runs of similar batch shapes).",
    )
    maya1_vllm_max_model_len: int = Field(
        4096,
        ge=2048,
        le=131_072,
        description="maya1 vllm backend: longest sequence, prompt plus new tokens (the KV "
        "cache is sized for it); a prompt and its token cap must fit.",
    )
    maya1_vllm_gpu_memory_utilization: float = Field(
        0.8,
        gt=0.0,
        lt=1.0,
        description="maya1 vllm backend: share of GPU memory vLLM takes for weights and KV "
        "cache; the rest is for the SNAC decoder beside it in the same process.",
    )
    maya1_max_malformed: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="maya1: fraction of malformed audio frames dropped with a warning; past "
        "it the chunk is generated again with another seed.",
    )
    maya1_retries: int = Field(
        2, ge=0, le=10, description="maya1: re-generations of a malformed chunk before it fails."
    )
    precision: Precision = Field(
        "auto",
        description="maya1 weights: bf16, fp16, int8 (weight-only) or fp32; auto: bf16 "
        "on a GPU, fp32 on the CPU.",
    )
    device: str = Field(
        "auto", description="maya1: torch device (cuda, cuda:1, cpu); auto: cuda if present."
    )
    snac_runtime: SnacRuntime = Field(
        "torch",
        description="maya1: decode SNAC with torch, onnx (onnxruntime, CUDA when present) or "
        "tensorrt (onnxruntime's TensorRT provider); onnx and tensorrt need "
        "`voicebatch engine export-snac` first.",
    )
    snac_export_dir: Path | None = Field(
        None,
        description="Where exported SNAC ONNX files and TensorRT engines are written and "
        "looked up; default <data_dir>/snac.",
    )
    snac_precision: SnacPrecision = Field(
        "auto",
        description="onnx/tensorrt SNAC decoder: fp32, fp16 or int8; auto: fp16 on a GPU, "
        "fp32 on the CPU.",
    )
    snac_dtype: SnacDtype = Field(
        "fp32",
        description="torch SNAC decoder: fp32 (the reference's; ~20M parameters), or fp16 / "
        "bf16 (faster, lower fidelity: `bench/maya1_throughput.py` reports their SNR).",
    )
    snac_trt_profile: str = Field(
        "auto",
        pattern=r"^(auto|b\d+-\d+-\d+_f\d+-\d+-\d+)$",
        description="TensorRT SNAC engine shape profile: batch min-opt-max, frames "
        "min-opt-max; auto: up to the longest chunk (the token cap's frames), with at most "
        "4,096 frames (batch x frames) per call, all a decoder call ever holds.",
    )
    batch_wait_ms: int = Field(
        20, ge=0, le=10_000, description="Dynamic batcher: longest wait to fill a batch."
    )
    batch_token_budget: int = Field(
        0, ge=0, description="Dynamic batcher: most expected tokens in one batch (0: no limit)."
    )
    dynamic_batching: DynamicBatching = Field(
        "auto",
        description="Dynamic batcher in front of the engine: auto (two-stage engines such as "
        "maya1), on (any engine) or off.",
    )

    # --- distributed mode -------------------------------------------------------------
    broker_url: str | None = Field(
        None, description="Celery broker: redis://host:6379/0 or amqp://user:pass@host//."
    )
    redis_url: str | None = Field(
        None,
        description="Redis for the chunk-cache index and API rate limits; default: the broker "
        "when it is Redis.",
    )
    task_chunks: int = Field(16, ge=1, le=1000, description="Chunk ids per render message.")
    task_retry_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="How long a task retries passing trouble (database, storage, broker) in "
        "place, with backoff and jitter, before handing its message back to the queue.",
    )
    s3_timeout_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Connect and read timeout of each S3 request (retried on timeout).",
    )
    visibility_timeout_seconds: int = Field(
        7200, ge=60, description="Redis broker: redeliver an unacked message after this long."
    )
    worker_grace_seconds: int = Field(
        60, ge=0, le=3600, description="On SIGTERM, time a worker has to finish its tasks."
    )
    # --- signed webhooks (pipeline/webhooks) -----------------------------------------
    webhook_secret: SecretStr | None = Field(
        None,
        description="Signs every webhook (Standard Webhooks): whsec_ and base64 of 24 to 64 "
        "random bytes (make one: echo whsec_$(openssl rand -base64 32)). To rotate, give "
        "the new and the old separated by a space: every webhook carries a signature by "
        "each until the old one is removed. Unset: a submit with a callback URL is refused.",
    )
    webhook_allow_private_hosts: bool = Field(
        False,
        description="Let callback URLs reach loopback, private, link-local and other "
        "non-public addresses (tests, a receiver on the same private network).",
    )
    webhook_allowed_networks: str = Field(
        "",
        description="Comma-separated networks (CIDR, like 10.1.2.0/24) that callback URLs "
        "may reach although they are not public: one internal receiver, without lifting "
        "the guard for every private address. Metadata addresses stay refused.",
    )
    webhook_connect_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="Connect timeout of one webhook attempt."
    )
    webhook_read_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Timeout for a receiver's answer to one webhook attempt."
    )
    webhook_retry_hours: float = Field(
        24.0,
        gt=0,
        le=168,
        description="How long a webhook is retried, with exponential backoff, before it is "
        "given up on.",
    )
    webhook_first_retry_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Wait before a webhook's first retry; each later wait doubles (capped at "
        "webhook_max_retry_seconds).",
    )
    webhook_max_retry_seconds: float = Field(
        4 * 3600.0, gt=0, le=86_400, description="Longest wait between two webhook attempts."
    )
    # --- POST /v1/audio/speech (pipeline/speech) ---------------------------------------
    speech_voices: dict[str, str] = Field(
        default_factory=dict,
        description="OpenAI voice names (alloy, nova, ...) mapped to this engine's voices, "
        'as JSON: {"nova": "en_US-joe-medium"}; an unmapped OpenAI name speaks with the '
        "engine's default voice (maya1: a description).",
    )
    speech_max_input_chars: int = Field(
        4096, ge=1, le=100_000, description="Longest `input` of one speech request."
    )
    speech_batch_nice: int = Field(
        15,
        ge=0,
        le=19,
        description="On a render worker that answers speech with a CPU engine of one "
        "request per call (Piper): the nice value of the child processes batch chunks "
        "render in, while speech renders in the worker's own process at normal priority "
        "with those processes stopped, so a sentence never waits for a batch chunk. "
        "0: one in-process engine, speech waits for at most one chunk (a batcher of one "
        "request per call).",
    )
    speech_threads: int = Field(
        4,
        ge=1,
        le=256,
        description="Speech requests a render worker serves at once, beside its batch tasks.",
    )
    speech_wait_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="How long the API waits for a speech request's next sentence before it "
        "gives up (no worker, or one that died).",
    )
    speech_stream_ttl_seconds: int = Field(
        300,
        ge=10,
        le=86_400,
        description="Lifetime of a speech request's Redis stream of audio (reset at each "
        "sentence; the API deletes it once read).",
    )
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port for a worker's Prometheus metrics; off if unset."
    )
    worker_hourly_price: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="What one worker (its machine) costs an hour, in any currency; exported "
        "as voicebatch_worker_hourly_price for the cost per audio-hour. 0: not counted.",
    )
    api_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port for the API's Prometheus metrics (`voicebatch api --metrics-port`), "
        "apart from the API port; off if unset.",
    )
    spot_provider: Literal["none", "aws", "gcp"] = Field(
        "none", description="Watch for spot interruption notices: aws (IMDSv2) or gcp."
    )
    spot_metadata_url: str | None = Field(
        None,
        description="Metadata server base URL; default http://169.254.169.254 (aws) or "
        "http://metadata.google.internal (gcp).",
    )
    spot_poll_seconds: float = Field(5.0, gt=0, le=60, description="How often to ask.")
    api_rate_limit: int = Field(
        120, ge=1, description="Requests per minute per API key (HTTP 429 past it)."
    )
    api_rate_limit_anonymous: int = Field(
        30,
        ge=1,
        description="Requests per minute per client address without valid credentials "
        "(missing, unknown or revoked key, bad token): HTTP 429 past it.",
    )
    jwt_jwks_url: str | None = Field(
        None, description="Accept JWTs (RS256, ES256) signed by the keys at this JWKS URL."
    )
    jwt_key_file: Path | None = Field(
        None, description="Accept JWTs signed by the public key (PEM) in this file."
    )
    jwt_issuer: str | None = Field(None, description="The `iss` every JWT must carry.")
    jwt_audience: str | None = Field(None, description="The `aud` every JWT must carry.")
    jwt_leeway_seconds: int = Field(
        30, ge=0, le=300, description="Clock skew allowed on a JWT's exp, nbf and iat."
    )
    api_max_body_mb: int = Field(64, ge=1, le=1024, description="Largest request body accepted.")
    api_url: str | None = Field(
        None, description="Submit API the CLI client talks to, like http://host:8000."
    )
    api_key: SecretStr | None = Field(None, description="API key the CLI client sends.")
    flower_user: str = Field("admin", description="Flower basic-auth user.")
    flower_password: SecretStr | None = Field(
        None, description="Flower basic-auth password (required to start Flower)."
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("subtitles", mode="after")
    @classmethod
    def _subtitle_kinds(cls, value: str) -> str:
        kinds = [k.strip().lower() for k in value.split(",") if k.strip()]
        if kinds == ["none"]:
            return "none"
        unknown = [k for k in kinds if k not in TIMING_FORMATS]
        if unknown:
            raise ValueError(
                f"unknown timing format {unknown[0]!r} (use {', '.join(TIMING_FORMATS)} or none)"
            )
        return ",".join(k for k in TIMING_FORMATS if k in kinds) or "none"

    @property
    def timing_formats(self) -> tuple[str, ...]:
        return () if self.subtitles == "none" else tuple(self.subtitles.split(","))

    @field_validator("item_name_template", mode="after")
    @classmethod
    def _item_template(cls, value: str) -> str:
        try:
            check_template(value)
        except InputError as exc:
            raise ValueError(exc.message) from exc
        return value

    @field_validator("engine", mode="after")
    @classmethod
    def _engine_lower(cls, value: str) -> str:
        return value.strip().lower()

    @model_validator(mode="after")
    def _batch_time_covers_the_wait(self) -> Settings:
        if self.max_batch_seconds <= self.batch_wait_ms / 1000:
            raise ValueError(
                f"max_batch_seconds ({self.max_batch_seconds:g}) must be longer than "
                f"batch_wait_ms ({self.batch_wait_ms} ms)"
            )
        return self

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> Settings:
        url = self.storage_url
        if url and url.startswith("s3://") and not url[5:].strip("/"):
            raise ValueError("storage_url s3:// needs a bucket name, like s3://audio/prefix")
        return self

    @field_validator("broker_url", mode="after")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value and value.split("://", 1)[0] not in ("redis", "rediss", "amqp", "amqps"):
            raise ValueError("broker_url must be redis://, rediss://, amqp:// or amqps://")
        return value

    @field_validator("webhook_allowed_networks", mode="after")
    @classmethod
    def _webhook_networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"{part.strip()!r} is not a network like 10.1.2.0/24") from exc
        return value

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _webhook_secret_empty_is_unset(cls, value: Any) -> Any:
        # `VOICEBATCH_WEBHOOK_SECRET=` (compose's default of an unset variable): no webhooks.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_secret", mode="after")
    @classmethod
    def _webhook_secret_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            webhook_secret_keys(value.get_secret_value())
        return value

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and value.split("://", 1)[0] not in ("redis", "rediss"):
            raise ValueError("redis_url must be redis:// or rediss://")
        return value

    @property
    def resolved_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'voicebatch.db'}"

    @property
    def resolved_snac_export_dir(self) -> Path:
        return (self.snac_export_dir or self.data_dir / "snac").expanduser()

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or str(self.data_dir / "objects")


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment plus explicit overrides (None means 'not given').

    A validation failure becomes one InputError line naming the setting.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "settings"
        raise InputError(
            f"invalid setting {name} (VOICEBATCH_{name.upper()}): {first['msg']}"
        ) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide Settings from the environment, built once."""
    return load_settings()
