"""Agent credentials: what each ``auth_type`` needs, and the headers it produces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton_server.errors import FieldViolation, InvalidArgument

DEFAULT_API_KEY_HEADER = "X-API-Key"

# auth_type -> the auth_config key that must hold a non-empty string.
_REQUIRED_KEY = {"bearer": "token", "apikey": "key"}


def check_auth_config(auth_type: str, auth_config: Mapping[str, Any] | None) -> None:
    """Reject credentials that cannot authenticate with ``auth_type``.

    The message names the missing key, never a value: credentials must not leak
    into errors or logs.
    """
    key = _REQUIRED_KEY.get(auth_type)
    if key is None:
        return
    value = (auth_config or {}).get(key)
    if not isinstance(value, str) or not value:
        field = f"auth_config.{key}"
        raise InvalidArgument(
            f"auth_type '{auth_type}' needs a non-empty string {field}",
            reason="INVALID_FIELD",
            violations=[FieldViolation(field, f"required for auth_type '{auth_type}'")],
        )


def auth_headers(auth_type: str, auth_config: Mapping[str, Any] | None) -> dict[str, str]:
    """HTTP headers that authenticate a call to the agent."""
    config = auth_config or {}
    if auth_type == "bearer":
        return {"Authorization": f"Bearer {config['token']}"}
    if auth_type == "apikey":
        return {str(config.get("header") or DEFAULT_API_KEY_HEADER): str(config["key"])}
    return {}
