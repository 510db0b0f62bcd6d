"""The OpenAPI document (gen/openapi/baton.openapi.json, made by scripts/openapi.py from
the contract) and the pages Envoy serves with it: /openapi.json, /docs and /redoc."""

from __future__ import annotations

import json
from typing import Any

import httpx
from google.api import annotations_pb2
from google.protobuf import descriptor_pool
from openapi_spec_validator import validate

from baton.v1 import access_pb2, rest_pb2
from baton_server.app import SERVICE_NAMES
from baton_server.envoy import OPENAPI
from baton_server.web import OPENAPI_PATH, PAGES, WEB_DIR

DOCUMENT: dict[str, Any] = json.loads(OPENAPI.read_text())


def _bindings() -> list[tuple[str, str, str]]:
    """(method, HTTP verb, path template) of every REST binding in the contract."""
    pool = descriptor_pool.Default()
    found = []
    for service_name in sorted(SERVICE_NAMES):
        for method in pool.FindServiceByName(service_name).methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            for binding in [rule, *rule.additional_bindings]:
                verb = binding.WhichOneof("pattern")
                if verb:
                    found.append((method.full_name, verb, getattr(binding, verb)))
    return found


def _operation(path: str, verb: str) -> dict[str, Any]:
    operation: dict[str, Any] = DOCUMENT["paths"][path][verb]
    return operation


def _schema(reference: dict[str, Any]) -> dict[str, Any]:
    name = reference["$ref"].removeprefix("#/components/schemas/")
    schema: dict[str, Any] = DOCUMENT["components"]["schemas"][name]
    return schema


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_rest_binding_of_the_contract_is_a_documented_operation() -> None:
    bindings = _bindings()
    assert len(bindings) > 50
    documented = {
        (path, verb) for path, operations in DOCUMENT["paths"].items() for verb in operations
    }
    assert {(path, verb) for _, verb, path in bindings} == documented
    operation_ids = [op["operationId"] for ops in DOCUMENT["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_success_statuses_follow_the_contracts_rest_option() -> None:
    pool = descriptor_pool.Default()
    for method_name, verb, path in _bindings():
        method = pool.FindMethodByName(method_name)
        rest = method.GetOptions().Extensions[rest_pb2.rest]
        responses = _operation(path, verb)["responses"]
        assert str(rest.success_status or 200) in responses, method_name
        for status in rest.alternative_statuses:
            assert str(status) in responses, method_name
    assert set(_operation("/api/v1/agents", "post")["responses"]) >= {"201", "400", "409", "413"}
    execute = _operation("/api/v1/workflows/{workflow_id}/execute", "post")["responses"]
    assert {"200", "202", "404"} <= set(execute)
    assert "503" in _operation("/health/ready", "get")["responses"]


def test_errors_are_described_by_the_status_body() -> None:
    responses = _operation("/api/v1/agents/{agent_id}", "get")["responses"]
    error = _schema(responses["404"]["content"]["application/json"]["schema"])
    assert set(error["properties"]) == {"code", "message", "details"}
    assert "default" in responses


def test_the_bare_steps_array_streams_and_plain_text_are_described_as_answered() -> None:
    steps = _operation("/api/v1/runs/{run_id}/steps", "get")["responses"]["200"]["content"]
    assert steps["application/json"]["schema"]["type"] == "array"
    assert steps["application/json"]["schema"]["items"] == {"$ref": "#/components/schemas/RunStep"}
    events = _operation("/api/v1/runs/{run_id}/events", "get")["responses"]["200"]["content"]
    assert list(events) == ["text/event-stream"]
    metrics = _operation("/metrics", "get")["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_schemas_carry_the_json_mapping_and_validation_rules() -> None:
    agent = DOCUMENT["components"]["schemas"]["Agent"]["properties"]
    assert agent["created_at"]["type"] == "string"
    assert agent["created_at"]["format"] == "date-time"
    status = _schema(agent["status"])
    assert status["type"] == "string"
    assert "active" in status["enum"]
    create = _operation("/api/v1/agents", "post")["requestBody"]["content"]["application/json"]
    name = create["schema"]["properties"]["name"]
    assert name["type"] == "string"
    assert name["maxLength"] > 0
    listing = {p["name"]: p for p in _operation("/api/v1/runs", "get")["parameters"]}
    assert listing["page_size"]["in"] == "query"
    assert listing["page_size"]["schema"]["maximum"] >= 1
    path_id = _operation("/api/v1/agents/{agent_id}", "get")["parameters"][0]
    assert (path_id["name"], path_id["in"], path_id["required"]) == ("agent_id", "path", True)


def test_security_follows_the_contracts_access_option() -> None:
    pool = descriptor_pool.Default()
    for method_name, verb, path in _bindings():
        access = pool.FindMethodByName(method_name).GetOptions().Extensions[access_pb2.access]
        operation = _operation(path, verb)
        if access.public:
            assert operation["security"] == [], method_name
        else:
            assert "security" not in operation, method_name
            assert operation["x-baton-role"] == access_pb2.Role.Name(
                access.role or access_pb2.admin
            )
    assert set(DOCUMENT["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}


async def test_envoy_serves_the_document_and_the_pages(rest_url: str) -> None:
    async with httpx.AsyncClient(base_url=rest_url, timeout=30) as client:
        document = await client.get(OPENAPI_PATH)
        assert document.status_code == 200
        assert document.headers["content-type"] == "application/json"
        assert document.json() == DOCUMENT
        for page in PAGES:
            answer = await client.get(page.path)
            assert answer.status_code == 200, page.path
            assert answer.headers["content-type"] == page.content_type
            assert answer.content == (WEB_DIR / page.file).read_bytes()
        docs = await client.get("/docs")
        assert "default-src 'self'" in docs.headers["content-security-policy"]
        for entry in ("/ui", "/docs", "/redoc"):
            slash = await client.get(f"{entry}/")
            assert slash.status_code == 301
            assert slash.headers["location"] == f"{rest_url}{entry}"
        # The API around the pages is unchanged: an unknown path is still a JSON 404.
        missing = await client.get("/docs/nothing")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/json"
