"""The chaos scenarios reuse the e2e fixtures: real services, real worker processes."""

from tests.e2e.conftest import pg_admin, pg_template, s3_endpoint  # noqa: F401
from tests.e2e.test_worker_stop import env  # noqa: F401
