"""API keys as strings: how they are made, recognised and checked.

A key is ``bk_`` followed by 40 random characters (base62, about 238 bits). Its first
11 characters are its visible *prefix*, stored in clear to find the key; the whole key
is stored only as its SHA-256. A random key that long needs no slow hash: there is no
dictionary to try, so a leaked table does not reveal usable keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_MARK = "bk_"
PREFIX_LENGTH = len(KEY_MARK) + 8
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_LENGTH = 40


def new_key() -> str:
    """A fresh API key."""
    return KEY_MARK + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))


def looks_like_key(value: str) -> bool:
    """Whether ``value`` has the shape of a Baton API key (a JWT never does)."""
    return (
        value.startswith(KEY_MARK)
        and len(value) == len(KEY_MARK) + _RANDOM_LENGTH
        and all(c in _ALPHABET for c in value[len(KEY_MARK) :])
    )


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def hash_matches(key: str, stored: bytes) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(key_hash(key), stored)


def presented_credential(metadata: dict[str, str]) -> str | None:
    """The credential of a call: ``x-api-key``, else the ``Authorization: Bearer`` token.

    gRPC metadata keys are lower-case; Envoy forwards HTTP headers as metadata.
    """
    key = metadata.get("x-api-key")
    if key:
        return key.strip()
    authorization = metadata.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None
