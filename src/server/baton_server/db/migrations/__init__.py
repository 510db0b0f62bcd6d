"""Alembic migration scripts for Baton's schema."""
