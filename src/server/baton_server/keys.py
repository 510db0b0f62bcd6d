"""Every Redis key and channel Baton uses, in one place.

Redis only dispatches work and fans out signals; PostgreSQL holds the truth, so all of
this can be lost (a Redis restart without data) without losing a run.
"""

from __future__ import annotations

#: Stream of runs to execute; entries are ``{"run_id": ...}``.
RUN_STREAM = "baton:runs"
#: Consumer group of the workers on RUN_STREAM.
WORKER_GROUP = "baton-workers"
#: Pub/sub channel of run control signals; messages are ``cancel:<run_id>``.
RUN_CONTROL_CHANNEL = "baton:run-control"
#: Approximate cap on RUN_STREAM's length (entries are acknowledged quickly).
RUN_STREAM_MAXLEN = 100_000
#: Pub/sub channel of run-level events (``run_status``) of every run.
RUN_FEED_CHANNEL = "baton:run-feed"
#: Present (for a second at a time) while a worker's admission control holds runs back:
#: the executor wants every core, and deliverers yield them (webhooks/delivery.py).
EXECUTOR_SATURATED = "baton:executor:saturated"


def run_events_channel(run_id: str) -> str:
    """Pub/sub channel of every event of one run."""
    return f"baton:run-events:{run_id}"


def rate_limit_key(subject: str, window: int) -> str:
    """Counter of one rate-limit subject (``key:<id>``, ``jwt:<sub>``, ``addr:<ip>``) in
    one fixed window; it expires with the window."""
    return f"baton:rate:{subject}:{window}"
