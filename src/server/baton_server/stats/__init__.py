"""Execution statistics, from rollups kept up as runs end (migration 0012)."""
