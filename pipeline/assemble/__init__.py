"""Assembly: rendered chunks -> one file per item, then the whole book and manifest.json.

Two steps, each run exactly once per item or job however workers interleave (the state
module's claims decide who runs them): `items.assemble_item` masters one chapter or
catalogue item to the loudness target and writes its file; `book.finalize_job` writes the
whole-book file and the manifest. `embedded` does both in one pass in one process, built
from the same pieces. Audio is never held in memory whole: the layout comes from the
database and chunks are streamed from the chunk store (`chunk_audio`).

`keys` names every key in a job's folder and `manifest` owns manifest.json (writing and
reading it); no other module spells either.
"""
