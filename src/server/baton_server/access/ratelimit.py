"""Rate limits: one fixed-window counter per caller in Redis, shared by every API server.

One script call per RPC (INCR, and EXPIRE on the window's first call) keeps the count
atomic across servers. When Redis cannot be reached the call is let through and
counted in ``baton_rate_limit_unavailable_total``: a cache outage must not take the
API down with it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as redis
from prometheus_client import Counter
from redis.exceptions import RedisError

from baton_server import keys
from baton_server.errors import ResourceExhausted

log = logging.getLogger(__name__)

UNAVAILABLE = Counter(
    "baton_rate_limit_unavailable",
    "Calls let through unlimited because Redis could not be reached for the rate limit.",
)

_INCREMENT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@dataclass(frozen=True)
class Quota:
    """What a caller has left in the current window (the ``X-RateLimit-*`` headers)."""

    limit: int
    remaining: int
    reset_at: int  # Unix time (seconds) when the window ends

    def headers(self) -> tuple[tuple[str, str], ...]:
        return (
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", str(self.reset_at)),
        )


class RateLimiter:
    """Counts calls per subject and refuses those past the limit."""

    def __init__(self, client: redis.Redis, *, window_s: int) -> None:
        self._client = client
        self._window_s = window_s
        self._script = client.register_script(_INCREMENT)

    async def take(self, subject: str, limit: int) -> Quota | None:
        """Count one call of ``subject``; None when Redis is unreachable (fail open).

        Raises ``ResourceExhausted`` (reason ``RATE_LIMIT_EXCEEDED``) past the limit,
        with the quota's headers and ``retry-after`` to send back.
        """
        now = time.time()
        window = int(now // self._window_s)
        reset_at = (window + 1) * self._window_s
        try:
            count = int(
                await self._script(
                    keys=[keys.rate_limit_key(subject, window)], args=[self._window_s + 1]
                )
            )
        except (RedisError, OSError) as error:
            UNAVAILABLE.inc()
            log.warning("rate limit not applied, Redis unavailable: %s", error)
            return None
        quota = Quota(limit=limit, remaining=max(0, limit - count), reset_at=reset_at)
        if count > limit:
            retry_after = max(1, math.ceil(reset_at - now))
            raise ResourceExhausted(
                f"rate limit of {limit} calls per {self._window_s} s exceeded; retry in"
                f" {retry_after} s",
                reason="RATE_LIMIT_EXCEEDED",
                metadata={"limit": str(limit), "window_s": str(self._window_s)},
                headers=(*quota.headers(), ("retry-after", str(retry_after))),
            )
        return quota
