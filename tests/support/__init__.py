"""What tests share: service helpers and fixtures (registered as plugins by
tests/conftest.py), sample inputs, tiny models, a fake metadata server, and the helpers
several test modules use. Tests import helpers from here, never from each other's
modules; the only imports of test modules are the integration suite re-running the
unit state tests on PostgreSQL (test_state_postgres, test_distributed_state)."""
