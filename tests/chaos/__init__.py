"""Fault-injection suite (issue 5): kills and restarts real processes and private services."""
