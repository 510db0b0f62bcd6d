"""The OpenAPI 3.1 document of Baton's REST API, made from the contract alone.

Envoy transcodes REST to gRPC by the ``google.api.http`` bindings of ``proto/baton/v1``;
this module reads the same descriptor set (with its comments) and describes what that
transcoding, Baton's Lua filter (``envoy/rest.lua``) and the server answer:

* every binding as a path and method, its path and query parameters and its JSON body,
  named as the transcoder names them (proto field names, lower-case enum values);
* schemas of the messages in the protobuf JSON mapping (64-bit integers as strings,
  ``Timestamp`` as RFC 3339, ``Struct`` as any object), with the ``buf.validate`` rules
  that JSON Schema can say (lengths, bounds, patterns, item counts, UUIDs);
* the success status each method declares (``(baton.v1.rest)``: 201, 202, a bare
  array), the error statuses it can answer and the ``google.rpc.Status`` error body;
* server-streaming methods as ``text/event-stream`` (Server-Sent Events) and
  ``google.api.HttpBody`` responses as plain text;
* who may call each method (``(baton.v1.access)``) as its security requirements.

``scripts/gen.py`` calls :func:`build` and writes ``gen/openapi/baton.openapi.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from baton.v1 import access_pb2, rest_pb2
from buf.validate import validate_pb2

OPENAPI_VERSION = "3.1.0"
PACKAGE = "baton.v1"

Schema = dict[str, Any]
FieldProto = descriptor_pb2.FieldDescriptorProto

_INT32 = {
    FieldProto.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldProto.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldProto.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldProto.TYPE_UINT32: (0, 2**32 - 1),
    FieldProto.TYPE_FIXED32: (0, 2**32 - 1),
}
_INT64 = {
    FieldProto.TYPE_INT64,
    FieldProto.TYPE_SINT64,
    FieldProto.TYPE_SFIXED64,
    FieldProto.TYPE_UINT64,
    FieldProto.TYPE_FIXED64,
}
_PLAIN = {
    FieldProto.TYPE_BOOL: {"type": "boolean"},
    FieldProto.TYPE_STRING: {"type": "string"},
    FieldProto.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldProto.TYPE_DOUBLE: {"type": "number"},
    FieldProto.TYPE_FLOAT: {"type": "number"},
}
# The protobuf JSON mapping of the well-known types the contract uses.
_WELL_KNOWN: dict[str, Schema] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "A duration in seconds with an `s` suffix, e.g. `1.5s`.",
    },
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {"description": "Any JSON value."},
    ".google.protobuf.ListValue": {"type": "array", "items": {}},
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.FieldMask": {"type": "string"},
    ".google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    ".google.protobuf.StringValue": {"type": ["string", "null"]},
    ".google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    ".google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    ".google.protobuf.UInt32Value": {"type": ["integer", "null"], "format": "int32"},
    ".google.protobuf.Int64Value": {"type": ["string", "integer", "null"], "format": "int64"},
    ".google.protobuf.UInt64Value": {"type": ["string", "integer", "null"], "format": "int64"},
    ".google.protobuf.DoubleValue": {"type": ["number", "null"]},
    ".google.protobuf.FloatValue": {"type": ["number", "null"]},
}
_HTTP_BODY = ".google.api.HttpBody"
_ERROR = ".google.rpc.Status"

# What each error status of the REST API means (gRPC code -> HTTP status, as Envoy maps).
_ERRORS = {
    "400": "Invalid request (INVALID_ARGUMENT, FAILED_PRECONDITION): a field, query "
    "parameter or the JSON body is wrong; `details` name the field.",
    "401": "No credential, or an unknown, revoked or expired one (UNAUTHENTICATED).",
    "403": "The credential's role is below the method's (PERMISSION_DENIED).",
    "404": "No such resource in the caller's project (NOT_FOUND).",
    "409": "Conflicts with what exists (ALREADY_EXISTS).",
    "413": "The request is larger than the request size limit.",
    "429": "Rate limit reached (RESOURCE_EXHAUSTED); `Retry-After` says when to retry.",
    "503": "A dependency (PostgreSQL, Redis) or the server is unavailable; retry.",
}
_READ_PREFIXES = ("List", "Get", "Watch", "Wait", "Check")
_PREFIX_RULE = re.compile(r"this\.startsWith\('[^']*'\)( \|\| this\.startsWith\('[^']*'\))*")
_PATH_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_.]*)(=[^}]*)?\}")


@dataclass(frozen=True)
class _Message:
    proto: descriptor_pb2.DescriptorProto
    file: str
    path: tuple[int, ...]


@dataclass(frozen=True)
class _Enum:
    proto: descriptor_pb2.EnumDescriptorProto
    file: str
    path: tuple[int, ...]


class _Contract:
    """The messages, enums and comments of a descriptor set, by full name."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.files = list(files.file)
        self.messages: dict[str, _Message] = {}
        self.enums: dict[str, _Enum] = {}
        self._comments: dict[tuple[str, tuple[int, ...]], str] = {}
        for file in self.files:
            prefix = f".{file.package}" if file.package else ""
            for index, message in enumerate(file.message_type):
                self._add_message(message, file.name, prefix, (4, index))
            for index, enum in enumerate(file.enum_type):
                self.enums[f"{prefix}.{enum.name}"] = _Enum(enum, file.name, (5, index))
            for location in file.source_code_info.location:
                text = _clean_comment(location.leading_comments)
                if text:
                    self._comments[(file.name, tuple(location.path))] = text

    def _add_message(
        self, message: descriptor_pb2.DescriptorProto, file: str, prefix: str, path: tuple[int, ...]
    ) -> None:
        name = f"{prefix}.{message.name}"
        self.messages[name] = _Message(message, file, path)
        for index, nested in enumerate(message.nested_type):
            self._add_message(nested, file, name, (*path, 3, index))
        for index, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = _Enum(enum, file, (*path, 4, index))

    def comment(self, file: str, path: tuple[int, ...]) -> str:
        return self._comments.get((file, path), "")


def _clean_comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(lines).strip()


def component_name(full_name: str) -> str:
    """``.baton.v1.Agent.Status`` -> ``Agent.Status``; other packages keep their name."""
    name = full_name.lstrip(".")
    return name.removeprefix(f"{PACKAGE}.")


def _ref(full_name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{component_name(full_name)}"}


class _Builder:
    def __init__(self, contract: _Contract) -> None:
        self.contract = contract
        self.schemas: dict[str, Schema] = {}

    # -- schemas ----------------------------------------------------------------------

    def type_schema(self, type_name: str) -> Schema:
        """A message or enum by reference, well-known types inline."""
        if type_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[type_name])
        name = component_name(type_name)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages end here
            if type_name in self.contract.enums:
                self.schemas[name] = self._enum_schema(self.contract.enums[type_name])
            else:
                self.schemas[name] = self.message_schema(type_name)
        return _ref(type_name)

    def _enum_schema(self, enum: _Enum) -> Schema:
        values = [value.name for value in enum.proto.value]
        lines = [self.contract.comment(enum.file, enum.path)]
        for index, value in enumerate(enum.proto.value):
            meaning = self.contract.comment(enum.file, (*enum.path, 2, index))
            if meaning:
                lines.append(f"- `{value.name}`: {' '.join(meaning.split())}")
        schema: Schema = {"type": "string", "enum": values}
        description = "\n".join(line for line in lines if line)
        if description:
            schema["description"] = description
        return schema

    def message_schema(self, type_name: str, *, skip: frozenset[str] = frozenset()) -> Schema:
        """The JSON object of a message (without the fields in ``skip``)."""
        message = self.contract.messages[type_name]
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for index, field in enumerate(message.proto.field):
            if field.name in skip:
                continue
            schema = self.field_schema(field)
            comment = self.contract.comment(message.file, (*message.path, 2, index))
            if comment:
                schema = {**schema, "description": comment}
            properties[field.name] = schema
            if _rules(field).required:
                required.append(field.name)
        schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        comment = self.contract.comment(message.file, message.path)
        if comment and not skip:
            schema["description"] = comment
        return schema

    def field_schema(self, field: FieldProto) -> Schema:
        rules = _rules(field)
        entry = self._map_entry(field)
        if entry is not None:
            _key, value = entry.field
            schema: Schema = {
                "type": "object",
                "additionalProperties": self._single(value, rules.map.values),
            }
            _apply_counts(schema, rules.map, "min_pairs", "max_pairs", "Properties")
            return schema
        if field.label == FieldProto.LABEL_REPEATED:
            schema = {"type": "array", "items": self._single(field, rules.repeated.items)}
            _apply_counts(schema, rules.repeated, "min_items", "max_items", "Items")
            return schema
        return self._single(field, rules)

    def _map_entry(self, field: FieldProto) -> descriptor_pb2.DescriptorProto | None:
        if field.type != FieldProto.TYPE_MESSAGE or field.label != FieldProto.LABEL_REPEATED:
            return None
        found = self.contract.messages.get(field.type_name)
        if found is None or not found.proto.options.map_entry:
            return None
        return found.proto

    def _single(self, field: FieldProto, rules: validate_pb2.FieldRules) -> Schema:
        if field.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_ENUM):
            schema = self.type_schema(field.type_name)
            if field.type == FieldProto.TYPE_ENUM and rules.enum.not_in:
                # An enum that refuses some values (its UNSPECIFIED) takes the others.
                enum = self.contract.enums[field.type_name].proto
                refused = set(rules.enum.not_in)
                schema = {
                    **schema,
                    "enum": [v.name for v in enum.value if v.number not in refused],
                }
            return schema
        if field.type in _INT32:
            low, high = _INT32[field.type]
            schema = {"type": "integer", "format": "int32", "minimum": low, "maximum": high}
            _apply_bounds(schema, _numeric_rules(rules))
            return schema
        if field.type in _INT64:
            # The JSON mapping prints 64-bit integers as strings and reads both.
            return {"type": ["string", "integer"], "format": "int64"}
        schema = dict(_PLAIN[field.type])
        if field.type in (FieldProto.TYPE_DOUBLE, FieldProto.TYPE_FLOAT):
            _apply_bounds(schema, _numeric_rules(rules))
        if field.type == FieldProto.TYPE_STRING:
            _apply_string(schema, rules.string)
            for rule in rules.cel:
                if _PREFIX_RULE.fullmatch(rule.expression):
                    # `this.startsWith('a') || this.startsWith('b')`: a regular expression.
                    alternatives = re.findall(r"startsWith\('([^']*)'\)", rule.expression)
                    schema["pattern"] = "^(" + "|".join(map(re.escape, alternatives)) + ")"
        return schema

    # -- operations -------------------------------------------------------------------

    def operations(self) -> Iterator[tuple[str, str, Schema, str, str]]:
        """(path, method, operation, tag, tag description) for every REST binding."""
        for file in self.contract.files:
            for service_index, service in enumerate(file.service):
                tag = service.name.removesuffix("Service")
                tag_text = self.contract.comment(file.name, (6, service_index))
                for method_index, method in enumerate(service.method):
                    rule = method.options.Extensions[annotations_pb2.http]
                    comment = self.contract.comment(file.name, (6, service_index, 2, method_index))
                    bindings = [rule, *rule.additional_bindings]
                    for number, binding in enumerate(bindings, start=1):
                        if not binding.WhichOneof("pattern"):
                            continue
                        verb = binding.WhichOneof("pattern")
                        path = getattr(binding, verb)
                        operation = self._operation(method, binding, path, comment)
                        operation["tags"] = [tag]
                        suffix = "" if number == 1 else f"_{number}"
                        operation["operationId"] = f"{service.name}_{method.name}{suffix}"
                        yield _openapi_path(path), verb, operation, tag, tag_text

    def _operation(
        self,
        method: descriptor_pb2.MethodDescriptorProto,
        binding: http_pb2.HttpRule,
        path: str,
        comment: str,
    ) -> Schema:
        request = self.contract.messages[method.input_type]
        fields = {field.name: field for field in request.proto.field}
        in_path = [match.group(1) for match in _PATH_VARIABLE.finditer(path)]
        parameters: list[Schema] = []
        for name in in_path:
            parameters.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": self.field_schema(fields[name]),
                    **self._field_description(request, name),
                }
            )
        operation: Schema = {"summary": comment.split("\n\n")[0].replace("\n", " ")}
        if comment:
            operation["description"] = comment
        if binding.body == "*":
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": self.message_schema(method.input_type, skip=frozenset(in_path))
                    }
                },
            }
        else:
            taken = {*in_path, binding.body} if binding.body else set(in_path)
            parameters += self._query_parameters(request, "", taken)
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = self._responses(method, path, binding.body != "")
        access = method.options.Extensions[access_pb2.access]
        if access.public:
            operation["security"] = []
        else:
            role = access_pb2.Role.Name(access.role or access_pb2.admin)
            operation["x-baton-role"] = role
            operation["description"] = (
                operation.get("description", "") + f"\n\nRequires the `{role}` role."
            ).strip()
        return operation

    def _field_description(self, message: _Message, name: str) -> Schema:
        for index, field in enumerate(message.proto.field):
            if field.name == name:
                comment = self.contract.comment(message.file, (*message.path, 2, index))
                return {"description": comment} if comment else {}
        return {}

    def _query_parameters(self, message: _Message, prefix: str, taken: set[str]) -> list[Schema]:
        """Query parameters for the fields of ``message`` not bound to the path or body:
        scalars, enums and their repeated forms; fields of nested messages dotted."""
        parameters: list[Schema] = []
        for field in message.proto.field:
            name = prefix + field.name
            if name in taken or self._map_entry(field) is not None:
                continue
            nested = (
                self.contract.messages.get(field.type_name)
                if field.type == FieldProto.TYPE_MESSAGE and field.type_name not in _WELL_KNOWN
                else None
            )
            if nested is not None:
                if field.label != FieldProto.LABEL_REPEATED and len(prefix.split(".")) < 3:
                    parameters += self._query_parameters(nested, name + ".", taken)
                continue
            if field.type_name in (".google.protobuf.Struct", ".google.protobuf.Value"):
                continue
            parameter: Schema = {
                "name": name,
                "in": "query",
                "schema": self.field_schema(field),
                **self._field_description(message, field.name),
            }
            if field.label == FieldProto.LABEL_REPEATED:
                parameter["style"] = "form"
                parameter["explode"] = True
            parameters.append(parameter)
        return parameters

    def _responses(
        self, method: descriptor_pb2.MethodDescriptorProto, path: str, has_body: bool
    ) -> Schema:
        rest = method.options.Extensions[rest_pb2.rest]
        access = method.options.Extensions[access_pb2.access]
        if method.server_streaming:
            content: Schema = {
                "text/event-stream": {
                    "schema": {
                        "type": "string",
                        "description": "Server-Sent Events; each event's `data` is one "
                        f"`{component_name(method.output_type)}` as JSON.",
                    }
                }
            }
            self.type_schema(method.output_type)
        elif method.output_type == _HTTP_BODY:
            content = {"text/plain": {"schema": {"type": "string"}}}
        elif rest.bare_field:
            output = self.contract.messages[method.output_type].proto
            field = next(f for f in output.field if f.name == rest.bare_field)
            content = {"application/json": {"schema": self.field_schema(field)}}
        else:
            content = {"application/json": {"schema": self.type_schema(method.output_type)}}
        success = str(rest.success_status or 200)
        responses: Schema = {success: {"description": _success_text(success), "content": content}}
        for alternative in rest.alternative_statuses:
            responses[str(alternative)] = {
                "description": _success_text(str(alternative)),
                "content": content,
            }
        errors = ["400", "429", "503"]
        if not access.public:
            errors += ["401", "403"]
        if _PATH_VARIABLE.search(path):
            errors.append("404")
        if not method.name.startswith(_READ_PREFIXES):
            errors.append("409")
        if has_body:
            errors.append("413")
        error = {"application/json": {"schema": self.type_schema(_ERROR)}}
        for code in sorted(errors):
            responses.setdefault(code, {"description": _ERRORS[code], "content": error})
        responses["default"] = {"description": "Any other error.", "content": error}
        return responses


def _success_text(status: str) -> str:
    return {
        "200": "OK.",
        "201": "Created.",
        "202": "Accepted: the work goes on after the answer.",
        "503": "Not ready: the body says which check failed.",
    }.get(status, "Success.")


def _rules(field: FieldProto) -> validate_pb2.FieldRules:
    return field.options.Extensions[validate_pb2.field]


def _numeric_rules(rules: validate_pb2.FieldRules) -> Any:
    kind = rules.WhichOneof("type")
    return getattr(rules, kind) if kind else None


def _apply_bounds(schema: Schema, rules: Any) -> None:
    if rules is None:
        return
    for rule, keyword in (
        ("gte", "minimum"),
        ("lte", "maximum"),
        ("gt", "exclusiveMinimum"),
        ("lt", "exclusiveMaximum"),
    ):
        if rules.HasField(rule):
            schema[keyword] = getattr(rules, rule)
    if "exclusiveMinimum" in schema:
        schema.pop("minimum", None)
    if "exclusiveMaximum" in schema:
        schema.pop("maximum", None)


def _apply_string(schema: Schema, rules: validate_pb2.StringRules) -> None:
    if rules.HasField("min_len"):
        schema["minLength"] = rules.min_len
    if rules.HasField("max_len"):
        schema["maxLength"] = rules.max_len
    if rules.HasField("pattern"):
        schema["pattern"] = rules.pattern
    for rule, format_name in (("uuid", "uuid"), ("uri", "uri"), ("email", "email")):
        if getattr(rules, rule, False):
            schema["format"] = format_name
    if rules.HasField("max_bytes"):
        schema["x-max-bytes"] = rules.max_bytes
    allowed = list(getattr(rules, "in"))  # `in` is a Python keyword
    if allowed:
        schema["enum"] = allowed


def _apply_counts(schema: Schema, rules: Any, low: str, high: str, keyword: str) -> None:
    if rules.HasField(low):
        schema[f"min{keyword}"] = getattr(rules, low)
    if rules.HasField(high):
        schema[f"max{keyword}"] = getattr(rules, high)


def _openapi_path(template: str) -> str:
    """``/api/v1/agents/{agent_id}`` stays; ``{name=projects/*}`` becomes ``{name}``."""
    return _PATH_VARIABLE.sub(lambda match: "{" + match.group(1) + "}", template)


def _json_ref(operation: Schema, status: str) -> str | None:
    content = operation["responses"].get(status, {}).get("content", {})
    reference = content.get("application/json", {}).get("schema", {}).get("$ref")
    return reference if isinstance(reference, str) else None


def _link_resources(paths: dict[str, dict[str, Schema]]) -> None:
    """OpenAPI links from every call that answers a resource to the calls on it: from
    ``POST /api/v1/agents`` (an Agent) to ``/api/v1/agents/{agent_id}...`` with the
    answer's ``id``. Clients (and stateful fuzzers) follow them from one call to the
    next."""
    # A resource's home: the GET with one path parameter that answers it.
    homes: dict[str, tuple[str, str]] = {}
    for path, operations in paths.items():
        variables = _PATH_VARIABLE.findall(path)
        reference = _json_ref(operations.get("get", {"responses": {}}), "200")
        if reference and len(variables) == 1 and path.endswith("}"):
            homes.setdefault(reference, (path, variables[0][0]))
    for operations in paths.values():
        for verb, operation in operations.items():
            for status, response in operation["responses"].items():
                reference = _json_ref(operation, status) if status.startswith("2") else None
                if reference not in homes or verb == "get":
                    continue
                home, variable = homes[reference]
                response["links"] = {
                    target["operationId"]: {
                        "operationId": target["operationId"],
                        "parameters": {variable: "$response.body#/id"},
                    }
                    for target_path, targets in sorted(paths.items())
                    if target_path == home or target_path.startswith(home + "/")
                    for target in targets.values()
                    if _PATH_VARIABLE.findall(target_path)[0][0] == variable
                    and len(_PATH_VARIABLE.findall(target_path)) == 1
                }


def build(files: descriptor_pb2.FileDescriptorSet, *, version: str) -> dict[str, Any]:
    """The OpenAPI document of every REST binding in ``files`` (a descriptor set with
    imports and source info)."""
    builder = _Builder(_Contract(files))
    paths: dict[str, dict[str, Schema]] = {}
    tags: dict[str, str] = {}
    for path, verb, operation, tag, tag_text in builder.operations():
        paths.setdefault(path, {})[verb] = operation
        tags.setdefault(tag, tag_text)
    _link_resources(paths)
    security_schemes = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "Bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key or, when the server is configured for it, a JWT.",
        },
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Baton",
            "version": version,
            "summary": "An open workflow orchestrator for agents.",
            "description": (
                "Baton's REST API, transcoded by Envoy from the gRPC contract "
                "(`proto/baton/v1`); this document is generated from that contract. "
                "Field names are the contract's (snake_case); enum values are lower-case "
                "names as listed; 64-bit integers are strings. With `--auth open` "
                "(the default `auto` on loopback) no credential is needed; with `--auth "
                "required` every method but the health checks needs an API key or a JWT."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": name, "description": text} if text else {"name": name}
            for name, text in sorted(tags.items())
        ],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": security_schemes,
        },
        "security": [{}, {"ApiKey": []}, {"Bearer": []}],
    }
