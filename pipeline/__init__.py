"""voicebatch's core: ingest, segmentation, engines, state, storage, audio assembly.

Nothing in this package knows whether it runs embedded (one process) or distributed
(Celery workers); `workers/`, `api/` and `cli/` are thin adapters over it.
"""

__version__ = "0.1.0"
