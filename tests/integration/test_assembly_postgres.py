"""Assembly leases and the database's clock on PostgreSQL (issue 16, defects 5 and 10):
the SQLite tests of tests/unit/test_assembly_leases.py, run against a private database,
where expiry is statement_timestamp() inside each UPDATE."""

from __future__ import annotations

from tests.unit.test_assembly_leases import (  # noqa: F401  (runs here on PostgreSQL)
    test_a_fast_clock_cannot_take_a_live_assembly_lease,
    test_a_heartbeat_keeps_a_long_assembly_and_passing_trouble_refunds_the_attempt,
    test_a_live_assembly_lease_is_neither_taken_again_nor_republished,
    test_a_vanished_chunk_object_sends_its_chunk_item_and_job_back,
    test_an_expired_assembly_lease_is_republished_and_given_up_after_max_attempts,
    test_finalization_has_a_lease_too,
)
from tests.unit.test_db_clock import (  # noqa: F401  (runs here on PostgreSQL)
    test_a_worker_whose_clock_runs_ahead_cannot_steal_a_live_lease,
)
