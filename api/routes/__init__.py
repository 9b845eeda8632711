"""The API's routers: `jobs` (submit, list, get, cancel), `outputs` (download links,
restores) and `health` (healthz, readyz, metrics)."""
