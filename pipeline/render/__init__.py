"""Rendering: lease -> cache -> engine -> store -> record.

`renderer` (the batch renderer), `jobs` (the embedded job driver), `messages` (the
distributed message driver), `leases` (owners and heartbeats), `chunk_index` (content
hash -> audio already rendered), `producers` (several renderers feeding one batcher).
"""
