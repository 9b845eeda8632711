"""Job state in the database: `models` (SQLAlchemy 2; Alembic owns the schema), `db`
(engines, transactions, migrations), and the only code that writes job, item and chunk
rows: `store` (jobs, and one namespace re-exporting `chunks`, `items` and `specs`),
`keys` (API keys) and `reconcile` (the queries that find due work)."""
