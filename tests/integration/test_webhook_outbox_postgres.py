"""The webhook outbox on PostgreSQL: the SQLite tests of tests/unit/test_webhook_outbox.py,
run against a private database, where due times and leases are statement_timestamp()."""

from __future__ import annotations

from tests.unit.test_webhook_outbox import (  # noqa: F401  (runs here on PostgreSQL)
    test_a_delivery_is_taken_by_one_sender_and_retried_when_due,
    test_a_finished_job_writes_job_done_with_its_details,
    test_a_job_without_a_callback_writes_nothing,
    test_cancelled_and_failed_jobs_write_their_events,
    test_finalization_given_up_writes_job_failed,
    test_the_event_is_rolled_back_with_the_state_change,
)
