"""An S3 API server for tests: moto on a free local port for the whole session, and a
plain boto3 client on it. Registered as a pytest plugin by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.services import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


S3_REGION = "us-east-1"


S3_KEY = "testing"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 API server on a free local port, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_client_for(endpoint: str) -> S3Client:
    """A plain boto3 client on the test S3 server, for tests' own checks."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_REGION,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


S3_PREFIX = "audio/v1"
