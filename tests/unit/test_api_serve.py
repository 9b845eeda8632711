"""The API server's start-up: what it does to the process before it serves."""

from __future__ import annotations

import gc

from fastapi import FastAPI

from api.serve import server


def test_the_startup_heap_is_frozen_out_of_the_collector() -> None:
    # Unfrozen, a full collection of the API's start-up heap paused /healthz past its
    # 100 ms bound under a burst of GETs (tests/integration/test_hostile_live.py).
    gc.unfreeze()
    try:
        startup_objects = len(gc.get_objects())
        running = server(FastAPI(), host="127.0.0.1", port=0, log_level="warning", tls=None)
        assert running.config.port == 0
        assert gc.get_freeze_count() >= startup_objects // 2
        assert len(gc.get_objects()) < startup_objects // 2  # what a collection still scans
    finally:
        gc.unfreeze()
