"""The e2e suite's deployments: each test module that runs the API and workers as
processes starts them with `deployments.stack(...)` (tests.support.stack)."""

from __future__ import annotations

import pytest

from tests.support.postgres import PostgresAdmin
from tests.support.stack import Deployments


@pytest.fixture(scope="session")
def deployments(pg_admin: PostgresAdmin, pg_template: str, s3_endpoint: str) -> Deployments:
    return Deployments(pg_admin, pg_template, s3_endpoint)
