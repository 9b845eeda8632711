"""The e2e tests use the integration suite's real services (PostgreSQL, the S3 server)."""

from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    pg_admin,
    pg_template,
    s3_endpoint,
)
