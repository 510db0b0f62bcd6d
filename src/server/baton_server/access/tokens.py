"""JWT verification (PyJWT): HS256 with a shared secret, or RS*/ES*/PS* with a public
key file or a JWKS file. ``sub`` is the identity; ``project`` (id or name) and ``role``
claims say where and what it may do."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from baton_server.errors import Unauthenticated

_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]


@dataclass(frozen=True)
class JwtSettings:
    """Where the verification key comes from (exactly one of the three) and what the
    tokens must say about their issuer and audience."""

    secret: str | None = None
    public_key_file: Path | None = None
    jwks_file: Path | None = None
    issuer: str | None = None
    audience: str | None = None


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    subject: str
    project: str | None
    role: str | None


def _invalid(reason: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason)


class JwtVerifier:
    """Verifies bearer JWTs with the configured key."""

    def __init__(self, settings: JwtSettings) -> None:
        configured = [
            s for s in (settings.secret, settings.public_key_file, settings.jwks_file) if s
        ]
        if len(configured) != 1:
            raise ValueError(
                "configure exactly one of BATON_JWT_SECRET, BATON_JWT_PUBLIC_KEY_FILE and "
                "BATON_JWT_JWKS_FILE"
            )
        self._settings = settings
        self._jwks: jwt.PyJWKSet | None = None
        self._key: Any
        if settings.secret:
            self._key, self._algorithms = settings.secret, ["HS256"]
        elif settings.public_key_file:
            self._key, self._algorithms = settings.public_key_file.read_text(), _ASYMMETRIC
        else:
            assert settings.jwks_file is not None
            self._jwks = jwt.PyJWKSet.from_dict(json.loads(settings.jwks_file.read_text()))
            self._algorithms = _ASYMMETRIC

    def _signing_key(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._jwks.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise _invalid("JWT_UNKNOWN_KEY", f"no key with kid {kid!r} in the JWKS")

    def verify(self, token: str) -> Claims:
        """The token's claims; ``Unauthenticated`` (with a reason) if it is not valid."""
        try:
            payload = jwt.decode(
                token,
                self._signing_key(token),
                algorithms=self._algorithms,
                issuer=self._settings.issuer,
                audience=self._settings.audience,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("JWT_EXPIRED", "the token has expired") from None
        except jwt.InvalidSignatureError:
            raise _invalid("JWT_BAD_SIGNATURE", "the token's signature is not valid") from None
        except jwt.PyJWTError as error:
            raise _invalid("JWT_INVALID", f"the token is not valid: {error}") from None
        project, role = payload.get("project"), payload.get("role")
        return Claims(
            subject=str(payload["sub"]),
            project=str(project) if project is not None else None,
            role=str(role) if role is not None else None,
        )
