"""Signed webhooks: a job's final state announced to its callback URL.

`addresses` is the SSRF guard (which addresses a callback may reach), `callbacks` checks a
callback URL when a job or key names one, `signing` signs per Standard Webhooks,
`schedule` says when to try again, `sender` makes one HTTP attempt to an address the
guard checked, and `delivery` takes a delivery from the outbox (pipeline.state.webhooks),
sends it and records the attempt.
"""
