"""Audio post-processing, stitching, loudness and encoding."""
