"""Reading PostgreSQL constraint violations out of SQLAlchemy's wrapped exceptions."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError


def violated_constraint(error: IntegrityError) -> str | None:
    """Name of the constraint or unique index that ``error`` violated, if known."""
    # SQLAlchemy wraps asyncpg's exception; asyncpg exposes the constraint name.
    cause = getattr(error.orig, "__cause__", None)
    name = getattr(cause, "constraint_name", None)
    return name if isinstance(name, str) else None
