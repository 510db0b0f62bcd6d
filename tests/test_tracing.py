"""Traces over OTLP: a real ``baton serve`` exports to an OTLP/gRPC receiver run by the
test, and a plain-HTTP agent sees the trace context of its call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from baton_server import tracing
from tests.agents.http_agent import HttpAgent
from tests.test_serve import Server, free_port


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver: keeps every span it is sent, with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, trace_pb2.Span]] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [(service, span) for span in scope_spans.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def named(self, prefix: str) -> list[trace_pb2.Span]:
        with self._lock:
            return [span for _, span in self.spans if span.name.startswith(prefix)]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    found = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield found, port
    server.stop(None)


def _attribute(span: trace_pb2.Span, key: str) -> Any:
    value = next(a.value for a in span.attributes if a.key == key)
    kind = value.WhichOneof("value")
    assert kind is not None
    return getattr(value, kind)


def test_a_run_is_one_trace_from_the_api_call_to_the_agent(
    receiver: tuple[Receiver, int], tmp_path: Path
) -> None:
    spans, port = receiver
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with HttpAgent(lambda payload, headers: (200, {"ok": True})) as agent:
        server = Server(tmp_path / "data", free_port(), env=env)
        try:
            server.wait_serving()
            with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as rest:
                created = rest.post(
                    "/api/v1/agents", json={"name": "plain", "url": agent.url, "protocol": "http"}
                )
                assert created.status_code == 201, created.text
                workflow = rest.post(
                    "/api/v1/workflows",
                    json={
                        "name": "traced",
                        "start_step": "a",
                        "steps": {
                            "a": {"id": "a", "agent_name": "plain", "next_step": "b"},
                            "b": {"id": "b", "agent_name": "plain"},
                        },
                    },
                ).json()
                run = rest.post(
                    f"/api/v1/workflows/{workflow['id']}/execute", json={"wait_timeout": "30s"}
                ).json()
                assert run["status"] == "COMPLETED", run
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not spans.named("run "):
                time.sleep(0.1)
        finally:
            server.stop()

    trace_id, run_span_id = tracing.run_ids(run["id"])
    (run_span,) = spans.named("run traced")
    assert int.from_bytes(run_span.trace_id) == trace_id
    assert int.from_bytes(run_span.span_id) == run_span_id
    assert _attribute(run_span, "baton.status") == "COMPLETED"

    steps = {_attribute(s, "baton.step_id"): s for s in spans.named("step ")}
    assert set(steps) == {"a", "b"}
    calls = spans.named("agent plain")
    assert len(calls) == 2
    for step in steps.values():
        assert int.from_bytes(step.trace_id) == trace_id
        assert step.parent_span_id == run_span.span_id
        (call,) = [c for c in calls if c.parent_span_id == step.span_id]
        assert call.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    # The agent received each call's context: its trace, and the agent span as parent.
    sent = [r.headers["traceparent"] for r in agent.received]
    assert sorted(sent) == sorted(f"00-{trace_id:032x}-{call.span_id.hex()}-01" for call in calls)
    # And the API call that started it is a span of the server too.
    (execute,) = spans.named("/baton.v1.RunService/ExecuteWorkflow")
    assert execute.kind == trace_pb2.Span.SPAN_KIND_SERVER
    services = {service for service, _ in spans.spans}
    assert services == {"baton-serve"}


def test_without_an_endpoint_nothing_is_traced_or_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.requested()
    assert not tracing.enabled()  # this process (the test server) never configured it
    headers: dict[str, str] = {}
    with tracing.step_span("run-01a2426f-3269-785f-90a8-e950361213a4", "a", attempt=1, agent="x"):
        tracing.inject(headers)
    assert headers == {}
    assert tracing.server_interceptors() == []
