"""Prometheus metrics of the API process (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "voicebatch_api_requests_total", "HTTP requests by route and status.", ["route", "status"]
)
LATENCY = Histogram("voicebatch_api_request_seconds", "Request latency by route.", ["route"])
JOBS_SUBMITTED = Counter("voicebatch_jobs_submitted_total", "Jobs created through the API.")
CHUNKS_SUBMITTED = Counter("voicebatch_chunks_submitted_total", "Chunks in submitted jobs.")
RATE_LIMITED = Counter("voicebatch_api_rate_limited_total", "Requests refused with 429.")
