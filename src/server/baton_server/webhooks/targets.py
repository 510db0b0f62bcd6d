"""Which URLs deliveries may go to.

Only ``http`` and ``https``. Private, loopback and link-local addresses (which include
cloud metadata services such as 169.254.169.254) are refused unless private targets
are allowed: a server that anyone with an editor key can point at an internal
address is a server-side request forgery tool. The check runs where the address is
known: when a URL is given (for a literal IP or a name that resolves) and again on
every attempt, by the delivery session's resolver, so a name that later resolves to
a private address (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from baton_server.errors import FieldViolation, InvalidArgument


def is_public(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", 1)[0]).is_global


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field}: {description}",
        reason="INVALID_URL",
        violations=[FieldViolation(field, description)],
        metadata={"field": field},
    )


async def check_url(url: str, field: str, *, allow_private: bool) -> None:
    """Refuse a URL deliveries cannot or may not go to (INVALID_ARGUMENT naming ``field``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(field, "must be an http or https URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _invalid(field, "has an invalid port") from None
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host).compressed]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, type=socket.SOCK_STREAM
            )
        except OSError:
            return  # not resolvable now: every attempt checks again
        addresses = [str(info[4][0]) for info in infos]
    if not all(is_public(a) for a in addresses):
        raise _invalid(
            field,
            f"{host} is a private, loopback or link-local address; set"
            " BATON_WEBHOOK_ALLOW_PRIVATE=true to allow such targets",
        )
