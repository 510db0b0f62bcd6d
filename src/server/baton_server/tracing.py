"""Traces of Baton (OpenTelemetry), exported over OTLP when the environment asks for it.

Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and each
process of ``baton serve``, ``baton worker`` and ``baton deliver`` exports, over OTLP/gRPC
with the standard ``OTEL_*`` settings (headers, TLS, ``OTEL_SERVICE_NAME``, batching):

* a SERVER span per API call (gRPC, and REST through Envoy, which calls gRPC);
* a span per run, ``run <workflow>``, from its creation to its end, written by the worker
  that ends it;
* a span per step attempt, ``step <step id>``, child of its run's span;
* a CLIENT span per agent call, ``agent <name>``, child of its step's span; its context
  goes to the agent as the W3C ``traceparent`` header, so the agent's own spans join.

A run outlives any one process (a crashed worker's runs resume elsewhere), so its trace
and span ids are made from the run's id (:func:`run_ids`): every step of a run joins the
same trace whichever worker runs it, and the run's span, written last, is their parent.

Unset, nothing is configured and every function here returns at once: no span objects,
no context switches, no headers (``bench/executor.py`` measures the same).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

if TYPE_CHECKING:
    from baton_server.agents.client import AgentEndpoint

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_TRACER_NAME = "baton"

_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
# The ids the next span must have (a run's span, whose ids are the run's).
_PRESET: ContextVar[tuple[int, int] | None] = ContextVar("baton_trace_preset", default=None)


class _RunIdGenerator(IdGenerator):
    """Random ids, except for a run's span, whose ids come from the run (_PRESET)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        preset = _PRESET.get()
        return preset[1] if preset is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        preset = _PRESET.get()
        return preset[0] if preset is not None else self._random.generate_trace_id()


def requested() -> bool:
    """Whether the environment asks for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return any(os.environ.get(name) for name in _ENDPOINTS)


def configure(service_name: str) -> bool:
    """Export traces over OTLP if the environment asks for it; True when it does."""
    global _provider, _tracer
    if _tracer is not None or not requested():
        return _tracer is not None
    # Imported only when used: the exporter brings its own gRPC stubs.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name}).merge(
        OTELResourceDetector().detect()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    )
    _provider = TracerProvider(resource=resource, id_generator=_RunIdGenerator())
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)
    _tracer = _provider.get_tracer(_TRACER_NAME)
    return True


def shutdown() -> None:
    """Export what is still buffered (on the way out of a process)."""
    if _provider is not None:
        _provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def server_interceptors() -> list[Any]:
    """The gRPC server interceptor that makes a span of each API call, if tracing."""
    if _tracer is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider)]  # type: ignore[no-untyped-call]


def run_ids(run_id: str) -> tuple[int, int]:
    """The trace id and span id of a run's span, made from the run's id (a UUID)."""
    number = uuid.UUID(run_id.removeprefix("run-")).int
    return number, (number & (2**64 - 1)) or 1


def _run_context(run_id: str) -> Context:
    trace_id, span_id = run_ids(run_id)
    sampled = TraceFlags(TraceFlags.SAMPLED)
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=sampled)
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextlib.contextmanager
def step_span(
    run_id: str, step_id: str, *, attempt: int, agent: str
) -> Iterator[trace.Span | None]:
    """The span of one step attempt (current inside), child of its run's span."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(
        f"step {step_id}",
        context=_run_context(run_id),
        attributes={
            "baton.run_id": run_id,
            "baton.step_id": step_id,
            "baton.attempt": attempt,
            "baton.agent": agent,
        },
    ) as span:
        yield span


@contextlib.contextmanager
def agent_span(agent: str, endpoint: AgentEndpoint) -> Iterator[None]:
    """The CLIENT span of one agent call (current inside: see :func:`inject`)."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(
        f"agent {agent}",
        kind=SpanKind.CLIENT,
        attributes={
            "baton.agent": agent,
            "url.full": endpoint.url,
            "baton.agent_protocol": endpoint.protocol,
        },
    ):
        yield


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to ``headers``."""
    if _tracer is not None:
        propagate.inject(headers)


def record_run(
    run_id: str,
    *,
    workflow: str,
    status: str,
    created_at: datetime | None,
    error: str | None = None,
) -> None:
    """Write the span of a run that just ended, from its creation to now."""
    if _tracer is None:
        return
    token = _PRESET.set(run_ids(run_id))
    try:
        span = _tracer.start_span(
            f"run {workflow}",
            context=Context(),  # a root: the run's own trace
            start_time=int(created_at.timestamp() * 1e9) if created_at else None,
            attributes={"baton.run_id": run_id, "baton.workflow": workflow, "baton.status": status},
        )
    finally:
        _PRESET.reset(token)
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()
