"""Baton's Python SDK and the ``baton`` command."""
