"""Runs: starting, observing and controlling workflow executions (the API side)."""
