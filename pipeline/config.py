"""The one Settings object. Every knob is an environment variable prefixed VOICEBATCH_."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import InputError

OutputFormat = Literal["wav", "flac", "mp3", "opus"]
OUTPUT_FORMATS: tuple[str, ...] = ("wav", "flac", "mp3", "opus")


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
        "piper", description="Speech engine: piper (CPU, bundled voice) or test-tone."
    )
    voice: str | None = Field(
        None, description="Voice name or model path; default: the engine's own."
    )
    speaking_rate: float = Field(
        1.0, gt=0.25, le=4.0, description="1.0 = the voice's natural pace."
    )
    output_format: OutputFormat = Field("mp3", description="wav, flac, mp3 or opus.")
    bitrate_kbps: int | None = Field(
        None, ge=8, le=320, description="mp3/opus bitrate; default 64/48."
    )

    chunk_max_chars: int = Field(
        400, ge=40, le=5000, description="Upper bound on a chunk's length."
    )
    read_titles: bool = Field(True, description="Speak each chapter's heading at its start.")
    batch_size: int = Field(8, ge=1, le=512, description="Chunks handed to the engine at once.")

    pause_sentence_ms: int = Field(300, ge=0, le=10_000, description="Silence between sentences.")
    pause_paragraph_ms: int = Field(800, ge=0, le=10_000, description="Silence after a paragraph.")
    pause_chapter_ms: int = Field(2000, ge=0, le=60_000, description="Silence between chapters.")
    loudness_lufs: float = Field(
        -18.0, ge=-40.0, le=-5.0, description="Integrated loudness target."
    )
    true_peak_dbtp: float = Field(-1.0, ge=-12.0, le=0.0, description="True-peak ceiling.")

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
    max_attempts: int = Field(3, ge=1, le=50, description="Attempts before a chunk is failed.")

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
    worker_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port for a worker's Prometheus metrics; off if unset."
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

    @field_validator("engine", mode="after")
    @classmethod
    def _engine_lower(cls, value: str) -> str:
        return value.strip().lower()

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
