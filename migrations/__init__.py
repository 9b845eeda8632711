"""Alembic migrations; configured in code by pipeline.state.db (no alembic.ini needed)."""
