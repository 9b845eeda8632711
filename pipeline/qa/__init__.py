"""Speech-recognition QA: transcribe rendered audio, compare each chunk with the text it
should say, flag what went wrong, and time every word (`voicebatch qa`)."""
