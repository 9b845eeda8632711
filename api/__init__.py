"""The FastAPI submit API (distributed mode): thin adapters over pipeline/."""
