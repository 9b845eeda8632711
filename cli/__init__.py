"""The `voicebatch` command line (Typer): an adapter over pipeline/, holding no domain logic."""
