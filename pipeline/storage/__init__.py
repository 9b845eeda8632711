"""Object storage: a local folder or any S3 API behind one ObjectStore protocol.

`base` (the protocol), `keys` (content-addressed chunk keys), `local` and `s3` (the two
stores), `factory` (the store a URL names), `write_once` (outputs written once),
`archive` (storage classes and restores) and `lifecycle` (bucket lifecycle rules).
"""
