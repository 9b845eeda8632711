"""The Maya1 engine: a Llama-architecture model that writes SNAC codec tokens, and the
SNAC decoder that turns them into 24 kHz audio. Needs the optional `maya1` extra."""
