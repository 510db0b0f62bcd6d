"""Liveness, readiness and metrics of the server process (``baton.v1.SystemService``)."""
