"""voicebatch's core, one package per step: ingest, text, plan, render, assemble, with
storage, state, audio and engines beneath them (docs/architecture.md).

Nothing in this package knows whether it runs embedded (one process) or distributed
(Celery workers); `workers/`, `api/` and `cli/` are thin adapters over it.
"""

__version__ = "0.1.0"
