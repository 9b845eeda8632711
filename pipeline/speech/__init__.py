"""Speech on demand: `POST /v1/audio/speech`, OpenAI's speech API, on the batch engines.

A request is checked and planned in the API (`request`: model aliases, voices, formats,
speed; `sentences`: the same normalisation, lexicon, segmentation and content hashes as
a batch job), published to its engine's `speech.<engine>` queue, and spoken by a render
worker sentence by sentence (`render`): each sentence from the content-addressed chunk
cache when it is there, else through the worker's engine in the batcher's realtime lane,
stored and indexed for the next request. Every sentence's audio goes back to the API on
a Redis stream keyed by the request id (`channel`), where the API encodes it for the
response as it arrives (`encoding`), so the first bytes leave after the first sentence.
"""
