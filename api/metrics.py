"""Prometheus metrics of the API process, served on a port of their own
(`voicebatch api --metrics-port`, VOICEBATCH_API_METRICS_PORT), never on the API's port:
the API's port is public, and what the metrics say (routes, volumes, errors) is for the
operator's Prometheus only."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

REQUESTS = Counter(
    "voicebatch_api_requests_total", "HTTP requests by route and status.", ["route", "status"]
)
LATENCY = Histogram("voicebatch_api_request_seconds", "Request latency by route.", ["route"])
JOBS_SUBMITTED = Counter("voicebatch_jobs_submitted_total", "Jobs created through the API.")
CHUNKS_SUBMITTED = Counter("voicebatch_chunks_submitted_total", "Chunks in submitted jobs.")
RATE_LIMITED = Counter("voicebatch_api_rate_limited_total", "Requests refused with 429.")


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve this process's metrics at http://address:port/metrics (a daemon thread)."""
    start_http_server(port, addr=address)
