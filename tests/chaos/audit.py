"""A record of every state change, written by the database itself: triggers on jobs, items
and chunks insert each status change into `chaos_transitions`, whoever made it."""

from __future__ import annotations

from sqlalchemy import text

from pipeline.state.db import create_db_engine

AUDIT = """
CREATE TABLE chaos_transitions (
    id bigserial PRIMARY KEY, tbl text NOT NULL, row_id uuid NOT NULL,
    old text, new text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos_audit() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status THEN
        INSERT INTO chaos_transitions (tbl, row_id, old, new)
        VALUES (TG_TABLE_NAME, NEW.id,
                CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.status::text END,
                NEW.status::text);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER chaos_jobs AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION chaos_audit();
CREATE TRIGGER chaos_items AFTER INSERT OR UPDATE ON items
    FOR EACH ROW EXECUTE FUNCTION chaos_audit();
CREATE TRIGGER chaos_chunks AFTER INSERT OR UPDATE ON chunks
    FOR EACH ROW EXECUTE FUNCTION chaos_audit();
"""

# Moves that would take a row back from where it may not return.
FINAL = {
    "chunks": {"done", "failed"},
    "items": {"done", "failed"},
    "jobs": {"done", "partially_failed", "failed", "cancelled"},
}


def install_audit(database_url: str) -> None:
    engine = create_db_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(AUDIT))
    engine.dispose()
