"""What tests share: service helpers and fixtures (registered as plugins by
tests/conftest.py), sample inputs, tiny models, a fake metadata server, and the helpers
several test modules use. Tests import from here, never from each other's modules."""
