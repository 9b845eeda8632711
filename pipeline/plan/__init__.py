"""Planning: input -> checked Document -> one job.

`documents` turns request bodies and uploads into a Document, `spec` builds a job's spec
(chunks, options, fingerprint), `jobs` plans an embedded run (resume by fingerprint) and
`submit` a distributed one (idempotent by Idempotency-Key).
"""
