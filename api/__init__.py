"""FastAPI submit API (distributed mode): thin adapters over pipeline/. See issue 3."""
