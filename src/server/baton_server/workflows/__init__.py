"""Workflows: definitions, immutable versions and their validation."""
