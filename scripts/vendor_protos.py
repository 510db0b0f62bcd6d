#!/usr/bin/env python3
"""Vendor the third-party ``.proto`` sources that the Baton contract imports.

Why this exists: ``buf lint``/``buf format``/``buf breaking`` and a plain ``protoc`` run
need the *source* of every imported file, and the build machines have no access to the
Buf Schema Registry or GitHub. Everything we import is already installed, though:

* ``googleapis-common-protos`` ships the ``google/api`` and ``google/rpc`` ``.proto``
  sources next to its ``_pb2`` modules; they are copied byte for byte.
* No reachable package ships ``buf/validate/validate.proto``. The ``protovalidate`` wheel
  embeds its serialized ``FileDescriptorProto`` in
  ``protovalidate/_gen/buf/validate/validate_pb.py``, so the source is *reconstructed*
  from that descriptor by a small descriptor-to-``.proto`` printer below. Comments are
  recovered from the docstrings of the same generated module (best effort; they do not
  affect the descriptor).

The reconstruction is verified, not trusted: every vendored file is compiled with
grpcio-tools' ``protoc`` and the resulting descriptor of ``buf/validate/validate.proto``
is compared with the embedded one field by field (``source_code_info`` ignored), with
all custom options resolved against the embedded extension definitions.

Usage (from the repository root)::

    python scripts/vendor_protos.py           # (re)write third_party/proto, then check
    python scripts/vendor_protos.py --check   # only check; exit 1 on any mismatch
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import importlib.util
import inspect
import itertools
import math
import re
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "third_party" / "proto"

#: Copied verbatim from the installed googleapis-common-protos wheel.
GOOGLE_PROTOS: tuple[str, ...] = (
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/httpbody.proto",
    "google/api/field_behavior.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "google/rpc/code.proto",
)
VALIDATE_PROTO = "buf/validate/validate.proto"
_DESCRIPTOR_PROTO = "google/protobuf/descriptor.proto"
VALIDATE_DISTRIBUTION = "protovalidate"
_VALIDATE_PB_RELATIVE = Path("_gen/buf/validate/validate_pb.py")

# Exclusive upper bounds protoc uses for `max` in reserved/extension ranges.
_MESSAGE_MAX_EXCLUSIVE = 536_870_912  # 2**29; field numbers end at 2**29 - 1
_ENUM_MAX_INCLUSIVE = 2_147_483_647

_SCALAR_TYPE_NAMES: dict[int, str] = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64: "fixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32: "fixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32: "sfixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64: "sfixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
}
_FLOATING_TYPES = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}

FieldProto = descriptor_pb2.FieldDescriptorProto


class VendoringError(Exception):
    """The installed packages do not look like what this script was written against."""


# --------------------------------------------------------------------------------------
# Sources: the installed wheels
# --------------------------------------------------------------------------------------


def _module_file(module: str) -> Path:
    """Locate a module's file without importing it (or only its parent packages)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise VendoringError(f"module {module!r} is not installed")
    return Path(spec.origin)


def google_proto_sources() -> dict[str, bytes]:
    """The ``.proto`` files shipped by googleapis-common-protos, keyed by import path."""
    sources: dict[str, bytes] = {}
    for import_path in GOOGLE_PROTOS:
        pb2_module = import_path.removesuffix(".proto").replace("/", ".") + "_pb2"
        source = _module_file(pb2_module).with_name(Path(import_path).name)
        if not source.is_file():
            raise VendoringError(f"{source} is missing from googleapis-common-protos")
        sources[import_path] = source.read_bytes()
    return sources


def validate_pb_path() -> Path:
    """The generated module of protovalidate that embeds ``validate.proto``'s descriptor."""
    path = _module_file(VALIDATE_DISTRIBUTION).parent / _VALIDATE_PB_RELATIVE
    if not path.is_file():
        raise VendoringError(f"{path} not found; protovalidate's layout changed")
    return path


def embedded_validate_descriptor(source: str) -> descriptor_pb2.FileDescriptorProto:
    """Extract the serialized descriptor passed to ``file_desc(b"...", ...)``.

    The module is parsed, not imported: the bytes literal is the only input we need and
    this keeps the result independent of protobuf-py's runtime API.
    """
    found: list[bytes] = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        first = node.args[0]
        if (
            name == "file_desc"
            and isinstance(first, ast.Constant)
            and isinstance(first.value, bytes)
        ):
            found.append(first.value)
    if len(found) != 1:
        raise VendoringError(f"expected one file_desc(b'...') call, found {len(found)}")
    proto = descriptor_pb2.FileDescriptorProto.FromString(found[0])
    if proto.name != VALIDATE_PROTO:
        raise VendoringError(f"embedded descriptor is {proto.name!r}, not {VALIDATE_PROTO}")
    return proto


def license_header(source: str) -> list[str]:
    """The leading ``#`` comment block of the generated module (Buf's Apache-2.0 header)."""
    block: list[str] = []
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        block.append(line)
    if not any("Apache License" in line for line in block):
        raise VendoringError("license header not found at the top of validate_pb.py")
    return ["//" + line[1:] for line in block]


# --------------------------------------------------------------------------------------
# A descriptor pool that knows the embedded file, so custom options can be resolved
# --------------------------------------------------------------------------------------


def _installed_file_proto(name: str) -> descriptor_pb2.FileDescriptorProto:
    """A dependency (well-known type) as compiled into the installed ``google.protobuf``."""
    importlib.import_module(name.removesuffix(".proto").replace("/", ".") + "_pb2")
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
    return proto


def _file_closure(
    root: descriptor_pb2.FileDescriptorProto,
) -> list[descriptor_pb2.FileDescriptorProto]:
    """``root`` and its transitive dependencies, dependencies first."""
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def visit(proto: descriptor_pb2.FileDescriptorProto) -> None:
        seen.add(proto.name)
        for dependency in proto.dependency:
            if dependency not in seen:
                visit(_installed_file_proto(dependency))
        ordered.append(proto)

    visit(root)
    return ordered


class OptionResolver:
    """Re-parses option messages so that extensions become known fields.

    ``descriptor_pb2`` keeps ``(buf.validate.field)`` and friends as unknown fields; a
    private pool holding ``descriptor.proto`` *and* the embedded file turns them into
    real extension fields that can be printed and compared.
    """

    def __init__(self, files: Sequence[descriptor_pb2.FileDescriptorProto]) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        names = {proto.name for proto in files}
        if _DESCRIPTOR_PROTO not in names:  # option messages are needed even without imports
            self.pool.Add(_installed_file_proto(_DESCRIPTOR_PROTO))
        for proto in files:
            self.pool.Add(proto)
        self._classes: dict[str, type[Message]] = {}

    def message_class(self, full_name: str) -> type[Message]:
        if full_name not in self._classes:
            descriptor = self.pool.FindMessageTypeByName(full_name)
            self._classes[full_name] = message_factory.GetMessageClass(descriptor)
        return self._classes[full_name]

    def resolve(self, message: Message) -> Message:
        cls = self.message_class(message.DESCRIPTOR.full_name)
        return cls.FromString(message.SerializeToString())


# --------------------------------------------------------------------------------------
# Name resolution: print the shortest name protoc resolves to the intended symbol
# --------------------------------------------------------------------------------------

SymbolKind = Literal["package", "message", "enum", "value", "field", "oneof", "service", "rpc"]
_AGGREGATES = {"package", "message", "enum", "service"}
_TYPES = {"message", "enum"}


class SymbolTable:
    """Full names of everything protoc can see from the file being printed."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self.kinds: dict[str, SymbolKind] = {}
        for proto in files:
            parts = proto.package.split(".") if proto.package else []
            for i in range(1, len(parts) + 1):
                self.kinds.setdefault(".".join(parts[:i]), "package")
            self._add_scope(proto.package, proto.message_type, proto.enum_type, proto.extension)
            for service in proto.service:
                service_name = _join(proto.package, service.name)
                self.kinds[service_name] = "service"
                for method in service.method:
                    self.kinds[_join(service_name, method.name)] = "rpc"

    def _add_scope(
        self,
        scope: str,
        messages: Iterable[descriptor_pb2.DescriptorProto],
        enums: Iterable[descriptor_pb2.EnumDescriptorProto],
        extensions: Iterable[FieldProto],
    ) -> None:
        for enum in enums:
            self.kinds[_join(scope, enum.name)] = "enum"
            for value in enum.value:  # enum values are siblings of their enum
                self.kinds[_join(scope, value.name)] = "value"
        for extension in extensions:
            self.kinds[_join(scope, extension.name)] = "field"
        for message in messages:
            name = _join(scope, message.name)
            self.kinds[name] = "message"
            for message_field in message.field:
                self.kinds[_join(name, message_field.name)] = "field"
            for oneof in message.oneof_decl:
                self.kinds[_join(name, oneof.name)] = "oneof"
            self._add_scope(name, message.nested_type, message.enum_type, message.extension)

    def _lookup(self, name: str, relative_to: str, types_only: bool) -> str | None:
        """Mirror of protoc's ``DescriptorBuilder::LookupSymbolNoPlaceholder``."""
        first = name.split(".", 1)[0]
        scope = relative_to
        while True:
            dot = scope.rfind(".")
            if dot == -1:
                return name if name in self.kinds else None
            scope = scope[:dot]
            candidate = _join(scope, first)
            kind = self.kinds.get(candidate)
            if kind is None:
                continue
            if first != name:
                if kind in _AGGREGATES:
                    full = _join(scope, name)
                    return full if full in self.kinds else None
            elif not types_only or kind in _TYPES:
                return candidate

    def relative(self, target: str, relative_to: str, *, types_only: bool) -> str:
        """Shortest name for ``target`` (fully qualified, leading dot optional)."""
        target = target.removeprefix(".")
        parts = target.split(".")
        for start in range(len(parts) - 1, -1, -1):
            candidate = ".".join(parts[start:])
            if self._lookup(candidate, relative_to, types_only) == target:
                return candidate
        return "." + target


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


# --------------------------------------------------------------------------------------
# Comments recovered from the generated module's docstrings
# --------------------------------------------------------------------------------------

_FENCE_DECL = re.compile(r"\n*```proto\n(?P<decl>[^\n]*)\n```\s*$")
_ATTRIBUTE = re.compile(r"^    (\w+):$")
_MEMBER_DECL = re.compile(r"(?P<name>\w+) = -?\d+\b")
_EXTEND_DECL = re.compile(r"^extend [\w.]+ \{ .*?(?P<name>\w+) = \d+\b")
_TYPE_DECL = re.compile(r"^(?:message|enum) (?P<name>[\w.]+)$")


def _split_decl(text: str) -> tuple[str, str] | None:
    """Split ``comment + trailing ```proto <declaration>``` `` into its two parts."""
    match = _FENCE_DECL.search(text)
    if match is None:
        return None
    return text[: match.start()].rstrip(), match["decl"]


def _attributes(section: str) -> Iterator[str]:
    """Entries of a Google-style ``Attributes:`` section, dedented."""
    current: list[str] | None = None
    for line in section.splitlines():
        if _ATTRIBUTE.match(line):
            if current is not None:
                yield "\n".join(current)
            current = []
        elif current is not None:
            current.append(line[8:] if line.startswith(" " * 8) else line.strip())
    if current is not None:
        yield "\n".join(current)


def docstring_comments(source: str, package: str) -> dict[str, str]:
    """Leading comments keyed by full name (enum values keyed as ``Enum.VALUE``)."""
    comments: dict[str, str] = {}
    module = ast.parse(source)
    for node in ast.walk(module):
        if not isinstance(node, ast.ClassDef):
            continue
        docstring = ast.get_docstring(node)
        if docstring is None:
            continue
        head, _, section = docstring.partition("\nAttributes:\n")
        split = _split_decl(head)
        if split is None:
            continue
        comment, decl = split
        type_match = _TYPE_DECL.match(decl)
        if type_match is None:
            continue
        owner = type_match["name"]
        comments[owner] = comment
        for entry in _attributes(section):
            member = _split_decl(entry)
            if member is None:
                continue
            match = _MEMBER_DECL.search(member[1])
            if match is not None:
                comments[_join(owner, match["name"])] = member[0]
    # Extensions: a module-level string right after `ext_x: ... = Extension()`.
    body = module.body
    for previous, node in itertools.pairwise(body):
        if not (
            isinstance(previous, ast.AnnAssign | ast.Assign)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            continue
        split = _split_decl(inspect.cleandoc(node.value.value))
        if split is None:
            continue
        extend_match = _EXTEND_DECL.match(split[1])
        if extend_match is not None:
            comments[_join(package, extend_match["name"])] = split[0]
    return {name: text for name, text in comments.items() if text.strip()}


# --------------------------------------------------------------------------------------
# The printer
# --------------------------------------------------------------------------------------


def _quote(text: str | bytes) -> str:
    """A protobuf string literal; UTF-8 text stays readable, everything else escaped."""
    special = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out: list[str] = []
    if isinstance(text, bytes):
        for byte in text:
            char = chr(byte)
            if char in special:
                out.append(special[char])
            elif 0x20 <= byte < 0x7F:
                out.append(char)
            else:
                out.append(f"\\{byte:03o}")
    else:
        for char in text:
            if char in special:
                out.append(special[char])
            elif ord(char) < 0x20 or ord(char) == 0x7F:
                out.append(f"\\{ord(char):03o}")
            else:
                out.append(char)
    return '"' + "".join(out) + '"'


def _float_literal(value: float, *, single: bool = False) -> str:
    """``repr``-style literal; for ``float`` fields the shortest one that survives float32."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if single:
        for digits in range(1, 10):
            text = f"{value:.{digits}g}"
            if struct.unpack("<f", struct.pack("<f", float(text)))[0] == value:
                return text
    return repr(value)


def _default_json_name(name: str) -> str:
    """protoc's ``ToJsonName``: drop underscores, capitalize the letter after each."""
    out: list[str] = []
    capitalize = False
    for char in name:
        if char == "_":
            capitalize = True
        elif capitalize:
            out.append(char.upper())
            capitalize = False
        else:
            out.append(char)
    return "".join(out)


def _is_map_entry_field(option_field: FieldDescriptor) -> bool:
    message_type = option_field.message_type
    return message_type is not None and message_type.GetOptions().map_entry


def _indent(lines: Iterable[str], prefix: str = "  ") -> list[str]:
    return [prefix + line if line else line for line in lines]


def _join_blocks(blocks: Iterable[list[str]]) -> list[str]:
    """Concatenate blocks; a blank line separates any block spanning several lines."""
    out: list[str] = []
    previous: list[str] | None = None
    for block in blocks:
        if previous is not None and (len(previous) > 1 or len(block) > 1):
            out.append("")
        out.extend(block)
        previous = block
    return out


def _comment_lines(text: str | None) -> list[str]:
    if not text:
        return []
    return [f"// {line}".rstrip() for line in text.splitlines()]


@dataclass
class ProtoPrinter:
    """Prints a ``FileDescriptorProto`` as ``.proto`` source that protoc compiles back to it.

    Supports proto2/proto3 (including proto3 ``optional``) and basic editions files:
    nested messages and enums, maps, oneofs, extensions and ``extend`` blocks, extension
    ranges, reserved ranges and names, services, default values, ``json_name`` and all
    options, with custom options in aggregate text-format syntax. Groups are refused.
    """

    file: descriptor_pb2.FileDescriptorProto
    resolver: OptionResolver
    symbols: SymbolTable
    comments: dict[str, str] = field(default_factory=dict)

    @property
    def _editions(self) -> bool:
        return self.file.syntax == "editions"

    @property
    def _proto3(self) -> bool:
        return self.file.syntax == "proto3"

    # -- file ---------------------------------------------------------------------------

    def render(self, header: Sequence[str] = ()) -> str:
        proto = self.file
        lines: list[str] = [*header]
        if header:
            lines.append("")
        if self._editions:
            edition = descriptor_pb2.Edition.Name(proto.edition).removeprefix("EDITION_")
            lines.append(f'edition = "{edition}";')
        else:
            lines.append(f'syntax = "{proto.syntax or "proto2"}";')
        lines.append("")
        if proto.package:
            lines += [f"package {proto.package};", ""]
        if proto.dependency:
            for index, dependency in enumerate(proto.dependency):
                modifier = ""
                if index in proto.public_dependency:
                    modifier = "public "
                elif index in proto.weak_dependency:
                    modifier = "weak "
                lines.append(f"import {modifier}{_quote(dependency)};")
            lines.append("")
        if proto.HasField("options"):
            scope = _join(proto.package, "dummy")  # protoc resolves file options so
            assignments = self._option_assignments(proto.options, scope)
            # `buf format` sorts file options by name; distinct names are distinct fields,
            # and the stable sort keeps repeated assignments of one name in order.
            assignments.sort(key=lambda assignment: assignment[0].split(" = ", 1)[0])
            for assignment in assignments:
                lines += self._statement("option ", assignment)
            lines.append("")
        blocks: list[list[str]] = []
        blocks += self._extend_blocks(proto.package, proto.extension)
        blocks += [self._message(proto.package, message) for message in proto.message_type]
        blocks += [self._enum(proto.package, enum) for enum in proto.enum_type]
        blocks += [self._service(service) for service in proto.service]
        for block in blocks:
            lines += [*block, ""]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n"

    # -- options ------------------------------------------------------------------------

    def _option_assignments(self, options: Message, relative_to: str) -> list[list[str]]:
        """Each option as ``name = value`` lines; message values split per sub-field.

        ``(ext) = {a: 1 b: 2}`` is written as ``(ext).a = 1`` and ``(ext).b = 2`` (one
        assignment per element for repeated sub-fields), the style upstream uses.
        """
        resolved = self.resolver.resolve(options)
        assignments: list[list[str]] = []
        for option_field, value in resolved.ListFields():
            name = self._option_name(option_field, relative_to)
            if option_field.is_repeated:
                for element in value:
                    assignments.append(self._assign(name, option_field, element))
            elif option_field.message_type is not None and not _is_map_entry_field(option_field):
                sub_fields = value.ListFields()
                if not sub_fields:
                    assignments.append([f"{name} = {{}}"])
                for sub_field, sub_value in sub_fields:
                    sub_name = f"{name}.{self._option_name(sub_field, relative_to)}"
                    elements = sub_value if sub_field.is_repeated else [sub_value]
                    for element in elements:
                        assignments.append(self._assign(sub_name, sub_field, element))
            else:
                assignments.append(self._assign(name, option_field, value))
        return assignments

    def _option_name(self, option_field: FieldDescriptor, relative_to: str) -> str:
        if not option_field.is_extension:
            return option_field.name
        name = self.symbols.relative(option_field.full_name, relative_to, types_only=False)
        return f"({name})"

    def _assign(self, name: str, option_field: FieldDescriptor, value: Any) -> list[str]:
        value_lines = self._value_lines(option_field, value)
        return [f"{name} = {value_lines[0]}", *value_lines[1:]]

    def _value_lines(self, value_field: FieldDescriptor, value: Any) -> list[str]:
        if value_field.type == FieldDescriptor.TYPE_GROUP:
            raise NotImplementedError(f"group option {value_field.full_name}")
        if value_field.message_type is not None:
            body = self._aggregate_body(value)
            return ["{", *_indent(body), "}"] if body else ["{}"]
        return [self._scalar(value_field, value)]

    def _aggregate_body(self, message: Message) -> list[str]:
        """Text-format body of a message value (the part between the braces)."""
        lines: list[str] = []
        for value_field, value in message.ListFields():
            key = f"[{value_field.full_name}]" if value_field.is_extension else value_field.name
            entry_type = value_field.message_type
            if entry_type is not None and entry_type.GetOptions().map_entry:
                entry_class = self.resolver.message_class(entry_type.full_name)
                elements: Sequence[Any] = [
                    entry_class(key=k, value=value[k]) for k in sorted(value)
                ]
            else:
                elements = value if value_field.is_repeated else [value]
            for element in elements:
                if value_field.message_type is not None:
                    body = self._value_lines(value_field, element)
                    lines.append(f"{key} {body[0]}")
                    lines += body[1:]
                else:
                    lines.append(f"{key}: {self._scalar(value_field, element)}")
        return lines

    @staticmethod
    def _scalar(value_field: FieldDescriptor, value: Any) -> str:
        if value_field.type == FieldDescriptor.TYPE_BOOL:
            return "true" if value else "false"
        if value_field.type in _FLOATING_TYPES:
            single = value_field.type == FieldDescriptor.TYPE_FLOAT
            return _float_literal(float(value), single=single)
        enum_type = value_field.enum_type
        if enum_type is not None:
            enum_value = enum_type.values_by_number.get(value)
            return enum_value.name if enum_value is not None else str(value)
        if value_field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            return _quote(value)
        return str(int(value))

    @staticmethod
    def _statement(prefix: str, assignment: list[str]) -> list[str]:
        return (
            [prefix + assignment[0], *assignment[1:-1], assignment[-1] + ";"]
            if len(assignment) > 1
            else [f"{prefix}{assignment[0]};"]
        )

    @staticmethod
    def _bracketed(items: list[list[str]]) -> list[str]:
        """Compact ``[a = {...}]`` for a single option (as ``buf format`` writes it),
        otherwise one option per line."""
        if not items:
            return [""]
        if len(items) == 1:
            only = items[0]
            return (
                [f" [{only[0]}", *only[1:-1], f"{only[-1]}]"]
                if len(only) > 1
                else [f" [{only[0]}]"]
            )
        lines = [" ["]
        for index, item in enumerate(items):
            comma = "," if index < len(items) - 1 else ""
            lines += _indent([*item[:-1], item[-1] + comma])
        lines.append("]")
        return lines

    # -- messages -----------------------------------------------------------------------

    def _message(self, scope: str, message: descriptor_pb2.DescriptorProto) -> list[str]:
        name = _join(scope, message.name)
        body: list[list[str]] = []
        if message.HasField("options"):
            body.append(
                [
                    line
                    for assignment in self._option_assignments(message.options, name)
                    for line in self._statement("option ", assignment)
                ]
            )
        map_entries = {
            _join(name, nested.name): nested
            for nested in message.nested_type
            if nested.options.map_entry
        }
        body += self._fields_and_nested_messages(name, message, map_entries)
        body += [self._enum(name, enum) for enum in message.enum_type]
        body += self._extend_blocks(name, message.extension)
        for extension_range in message.extension_range:
            numbers = self._range(
                extension_range.start, extension_range.end - 1, _MESSAGE_MAX_EXCLUSIVE - 1
            )
            text = f"extensions {numbers}"
            options: list[list[str]] = []
            if extension_range.HasField("options"):
                options = self._option_assignments(extension_range.options, name)
            body.append(self._with_brackets(text, options))
        ranges = [
            self._range(r.start, r.end - 1, _MESSAGE_MAX_EXCLUSIVE - 1)
            for r in message.reserved_range
        ]
        body += self._reserved(ranges, message.reserved_name)
        return [
            *_comment_lines(self.comments.get(name)),
            f"message {message.name} {{",
            *_indent(_join_blocks(body)),
            "}",
        ]

    def _fields_and_nested_messages(
        self,
        scope: str,
        message: descriptor_pb2.DescriptorProto,
        map_entries: dict[str, descriptor_pb2.DescriptorProto],
    ) -> list[list[str]]:
        """Fields and nested messages, ordered so protoc rebuilds ``nested_type`` as is.

        A map field creates its entry type in ``nested_type`` where the field is declared,
        so a nested message listed before an entry must be printed before that map field.
        Otherwise nested messages follow the fields.
        """
        fields = self._members(scope, message, map_entries)
        ordered: list[list[str]] = []
        pending: list[list[str]] = []
        next_field = 0
        for nested in message.nested_type:
            if not nested.options.map_entry:
                pending.append(self._message(scope, nested))
                continue
            entry_name = "." + _join(scope, nested.name)
            owner = next(
                (
                    index
                    for index in range(next_field, len(fields))
                    if fields[index][1] == entry_name
                ),
                None,
            )
            if owner is None:
                raise VendoringError(f"{scope}: map entry {nested.name} out of field order")
            ordered += [block for block, _ in fields[next_field:owner]]
            ordered += pending
            pending = []
            ordered.append(fields[owner][0])
            next_field = owner + 1
        return [*ordered, *[block for block, _ in fields[next_field:]], *pending]

    def _members(
        self,
        scope: str,
        message: descriptor_pb2.DescriptorProto,
        map_entries: dict[str, descriptor_pb2.DescriptorProto],
    ) -> list[tuple[list[str], str | None]]:
        """Fields in declaration order, real oneofs wrapped around their members.

        Each block comes with the map entry type it declares, if it is a map field.
        """
        blocks: list[tuple[list[str], str | None]] = []
        printed_oneofs: list[int] = []
        fields = list(message.field)
        index = 0
        while index < len(fields):
            member = fields[index]
            if not member.HasField("oneof_index") or member.proto3_optional:
                is_map = member.type_name.removeprefix(".") in map_entries
                blocks.append(
                    (self._field(scope, member, map_entries), member.type_name if is_map else None)
                )
                index += 1
                continue
            oneof_index = member.oneof_index
            if oneof_index in printed_oneofs or oneof_index != len(printed_oneofs):
                raise VendoringError(f"{scope}: oneof members are not contiguous or in order")
            printed_oneofs.append(oneof_index)
            oneof = message.oneof_decl[oneof_index]
            oneof_name = _join(scope, oneof.name)
            inner: list[list[str]] = []
            if oneof.HasField("options"):
                inner += [
                    self._statement("option ", assignment)
                    for assignment in self._option_assignments(oneof.options, oneof_name)
                ]
            while (
                index < len(fields)
                and fields[index].HasField("oneof_index")
                and (fields[index].oneof_index == oneof_index)
            ):
                inner.append(self._field(scope, fields[index], map_entries, in_oneof=True))
                index += 1
            oneof_block = [
                *_comment_lines(self.comments.get(oneof_name)),
                f"oneof {oneof.name} {{",
                *_indent(_join_blocks(inner)),
                "}",
            ]
            blocks.append((oneof_block, None))
        synthetic = sum(1 for member in fields if member.proto3_optional)
        if len(printed_oneofs) + synthetic != len(message.oneof_decl):
            raise VendoringError(f"{scope}: oneof declarations do not match their fields")
        return blocks

    def _field(
        self,
        scope: str,
        member: FieldProto,
        map_entries: dict[str, descriptor_pb2.DescriptorProto],
        *,
        in_oneof: bool = False,
        extension: bool = False,
    ) -> list[str]:
        full_name = _join(scope, member.name)
        if member.type == FieldProto.TYPE_GROUP and not self._editions:
            raise NotImplementedError(f"group field {full_name}")  # editions: DELIMITED
        map_entry = map_entries.get(member.type_name.removeprefix("."))
        if map_entry is not None:
            key, value = sorted(map_entry.field, key=lambda entry_field: entry_field.number)
            type_text = f"map<{self._type(key, full_name)}, {self._type(value, full_name)}>"
            label = ""
        else:
            type_text = self._type(member, full_name)
            label = self._label(member, in_oneof=in_oneof)
        options: list[list[str]] = []
        if member.HasField("default_value"):
            options.append([f"default = {self._default(member)}"])
        if (
            not extension
            and member.HasField("json_name")
            and member.json_name != _default_json_name(member.name)
        ):
            options.append([f"json_name = {_quote(member.json_name)}"])
        if member.HasField("options"):
            options += self._option_assignments(member.options, full_name)
        text = f"{label}{type_text} {member.name} = {member.number}"
        comment = _comment_lines(self.comments.get(full_name))
        return [*comment, *self._with_brackets(text, options)]

    def _with_brackets(self, text: str, options: list[list[str]]) -> list[str]:
        bracket = self._bracketed(options)
        return (
            [text + bracket[0], *bracket[1:-1], bracket[-1] + ";"]
            if len(bracket) > 1
            else [text + bracket[0] + ";"]
        )

    def _label(self, member: FieldProto, *, in_oneof: bool) -> str:
        if member.label == FieldProto.LABEL_REPEATED:
            return "repeated "
        if in_oneof:
            return ""
        if member.label == FieldProto.LABEL_REQUIRED:
            if self._editions:
                raise NotImplementedError("required fields in editions files")
            return "required "
        if self._proto3 and not member.proto3_optional:
            return ""
        if self._editions:
            return ""
        return "optional "

    def _type(self, member: FieldProto, relative_to: str) -> str:
        if member.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_ENUM) or (
            member.type_name and member.type not in _SCALAR_TYPE_NAMES
        ):
            return self.symbols.relative(member.type_name, relative_to, types_only=True)
        return _SCALAR_TYPE_NAMES[member.type]

    @staticmethod
    def _default(member: FieldProto) -> str:
        if member.type == FieldProto.TYPE_STRING:
            return _quote(member.default_value)
        if member.type == FieldProto.TYPE_BYTES:
            return f'"{member.default_value}"'  # already C-escaped in the descriptor
        return member.default_value

    def _extend_blocks(self, scope: str, extensions: Sequence[FieldProto]) -> list[list[str]]:
        """``extend`` blocks; consecutive extensions of one message share a block."""
        blocks: list[list[str]] = []
        run: list[FieldProto] = []

        def flush() -> None:
            if not run:
                return
            extendee = self.symbols.relative(
                run[0].extendee, _join(scope, run[0].name), types_only=True
            )
            inner = [self._field(scope, member, {}, extension=True) for member in run]
            blocks.append([f"extend {extendee} {{", *_indent(_join_blocks(inner)), "}"])
            run.clear()

        for member in extensions:
            if run and run[0].extendee != member.extendee:
                flush()
            run.append(member)
        flush()
        return blocks

    @staticmethod
    def _range(start: int, end_inclusive: int, maximum: int) -> str:
        if start == end_inclusive:
            return str(start)
        end = "max" if end_inclusive == maximum else str(end_inclusive)
        return f"{start} to {end}"

    def _reserved(self, ranges: Sequence[str], names: Sequence[str]) -> list[list[str]]:
        blocks: list[list[str]] = []
        if ranges:
            blocks.append([f"reserved {', '.join(ranges)};"])
        if names:
            rendered = names if self._editions else [_quote(name) for name in names]
            blocks.append([f"reserved {', '.join(rendered)};"])
        return blocks

    # -- enums and services -------------------------------------------------------------

    def _enum(self, scope: str, enum: descriptor_pb2.EnumDescriptorProto) -> list[str]:
        name = _join(scope, enum.name)
        body: list[list[str]] = []
        if enum.HasField("options"):
            body.append(
                [
                    line
                    for assignment in self._option_assignments(enum.options, name)
                    for line in self._statement("option ", assignment)
                ]
            )
        for value in enum.value:
            options: list[list[str]] = []
            value_scope = _join(scope, value.name)
            if value.HasField("options"):
                options = self._option_assignments(value.options, value_scope)
            body.append(
                [
                    *_comment_lines(self.comments.get(_join(name, value.name))),
                    *self._with_brackets(f"{value.name} = {value.number}", options),
                ]
            )
        ranges = [self._range(r.start, r.end, _ENUM_MAX_INCLUSIVE) for r in enum.reserved_range]
        body += self._reserved(ranges, enum.reserved_name)
        return [
            *_comment_lines(self.comments.get(name)),
            f"enum {enum.name} {{",
            *_indent(_join_blocks(body)),
            "}",
        ]

    def _service(self, service: descriptor_pb2.ServiceDescriptorProto) -> list[str]:
        name = _join(self.file.package, service.name)
        body: list[list[str]] = []
        if service.HasField("options"):
            body += [
                self._statement("option ", assignment)
                for assignment in self._option_assignments(service.options, name)
            ]
        for method in service.method:
            method_name = _join(name, method.name)
            request = self.symbols.relative(method.input_type, method_name, types_only=True)
            response = self.symbols.relative(method.output_type, method_name, types_only=True)
            signature = (
                f"rpc {method.name}({'stream ' if method.client_streaming else ''}{request})"
                f" returns ({'stream ' if method.server_streaming else ''}{response})"
            )
            options: list[list[str]] = []
            if method.HasField("options"):
                options = self._option_assignments(method.options, method_name)
            comment = _comment_lines(self.comments.get(method_name))
            if not options:
                body.append([*comment, signature + ";"])
                continue
            statements = [
                line for assignment in options for line in self._statement("option ", assignment)
            ]
            body.append([*comment, signature + " {", *_indent(statements), "}"])
        return [
            *_comment_lines(self.comments.get(name)),
            f"service {service.name} {{",
            *_indent(_join_blocks(body)),
            "}",
        ]


# --------------------------------------------------------------------------------------
# Rendering validate.proto
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedValidate:
    """Everything read from the installed protovalidate wheel."""

    version: str
    descriptor: descriptor_pb2.FileDescriptorProto
    header: list[str]
    comments: dict[str, str]
    files: list[descriptor_pb2.FileDescriptorProto]

    @classmethod
    def load(cls) -> EmbeddedValidate:
        source = validate_pb_path().read_text(encoding="utf-8")
        descriptor = embedded_validate_descriptor(source)
        return cls(
            version=importlib.metadata.version(VALIDATE_DISTRIBUTION),
            descriptor=descriptor,
            header=license_header(source),
            comments=docstring_comments(source, descriptor.package),
            files=_file_closure(descriptor),
        )

    def render(self) -> str:
        note = [
            "// Reconstructed from the FileDescriptorProto embedded in the protovalidate",
            f"// {self.version} wheel (protovalidate/{_VALIDATE_PB_RELATIVE.as_posix()}) by",
            "// scripts/vendor_protos.py; comments recovered from that module's docstrings.",
            "// Upstream source: https://github.com/bufbuild/protovalidate",
            "// (proto/protovalidate/buf/validate/validate.proto).",
            "// DO NOT EDIT: rerun `python scripts/vendor_protos.py` instead.",
        ]
        printer = ProtoPrinter(
            file=self.descriptor,
            resolver=OptionResolver(self.files),
            symbols=SymbolTable(self.files),
            comments=self.comments,
        )
        return printer.render([*self.header, "", *note])


def expected_files() -> dict[str, bytes]:
    """Import path -> exact content of every vendored file."""
    files = google_proto_sources()
    files[VALIDATE_PROTO] = EmbeddedValidate.load().render().encode("utf-8")
    return files


# --------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------


def compile_descriptor_set(
    proto_root: Path, files: Sequence[str]
) -> descriptor_pb2.FileDescriptorSet:
    """Compile ``files`` (import paths under ``proto_root``) with grpcio-tools' protoc."""
    well_known = _module_file("grpc_tools").parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "set.binpb"
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={proto_root}",
            f"--proto_path={well_known}",
            "--include_imports",
            f"--descriptor_set_out={output}",
            *files,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise VendoringError(f"protoc failed:\n{result.stderr.strip()}")
        return descriptor_pb2.FileDescriptorSet.FromString(output.read_bytes())


def _field_key(described: FieldDescriptor) -> str:
    return f"[{described.full_name}]" if described.is_extension else described.name


def _values_equal(described: FieldDescriptor, left: Any, right: Any) -> bool:
    if described.type in _FLOATING_TYPES:
        return bool(left == right or (math.isnan(left) and math.isnan(right)))
    return bool(left == right)


def _short(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _element_label(index: int, element: Any) -> str:
    """``[3]``, or ``[3:FloatRules]`` for descriptor elements, which carry a ``name``."""
    if isinstance(element, Message) and "name" in element.DESCRIPTOR.fields_by_name:
        name = getattr(element, "name", "")
        if name:
            return f"[{index}:{name}]"
    return f"[{index}]"


def diff_messages(expected: Message, actual: Message, path: str = "") -> Iterator[str]:
    """Field-by-field differences between two messages of the same type."""
    left = {_field_key(f): (f, v) for f, v in expected.ListFields()}
    right = {_field_key(f): (f, v) for f, v in actual.ListFields()}
    numbers = {key: described.number for key, (described, _) in (right | left).items()}
    for key in sorted(numbers, key=numbers.__getitem__):
        where = f"{path}.{key}" if path else key
        if key not in right:
            yield f"{where}: missing from the reconstruction (expected {_short(left[key][1])})"
            continue
        if key not in left:
            yield f"{where}: unexpected in the reconstruction ({_short(right[key][1])})"
            continue
        described, expected_value = left[key]
        actual_value = right[key][1]
        if _is_map_entry_field(described):
            expected_items = sorted(expected_value.items())
            actual_items = sorted(actual_value.items())
            if expected_items != actual_items:
                yield f"{where}: expected {_short(expected_items)}, got {_short(actual_items)}"
            continue
        if not described.is_repeated:
            expected_value, actual_value = [expected_value], [actual_value]
        elif len(expected_value) != len(actual_value):
            yield f"{where}: {len(expected_value)} elements expected, got {len(actual_value)}"
            continue
        for index, (one, other) in enumerate(zip(expected_value, actual_value, strict=True)):
            item = where + _element_label(index, one) if described.is_repeated else where
            if described.message_type is not None:
                yield from diff_messages(one, other, item)
            elif not _values_equal(described, one, other):
                yield f"{item}: expected {_short(one)}, got {_short(other)}"


def _normalized(resolver: OptionResolver, proto: descriptor_pb2.FileDescriptorProto) -> Message:
    """Drop source info; re-parse so that every custom option is a known extension."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(proto)
    copy.ClearField("source_code_info")
    return resolver.resolve(copy)


def validate_descriptor_mismatches(proto_root: Path = DEFAULT_OUT_DIR) -> list[str]:
    """Compile the vendored tree; compare validate.proto's descriptor with the embedded one.

    Returns human-readable differences; an empty list means the reconstruction is exact.
    """
    embedded = EmbeddedValidate.load()
    vendored = sorted({*GOOGLE_PROTOS, VALIDATE_PROTO})
    missing = [name for name in vendored if not (proto_root / name).is_file()]
    if missing:
        return [f"{proto_root / name}: missing" for name in missing]
    try:
        compiled = compile_descriptor_set(proto_root, vendored)
    except VendoringError as error:
        return [str(error)]
    matches = [proto for proto in compiled.file if proto.name == VALIDATE_PROTO]
    if len(matches) != 1:
        return [f"protoc output holds {len(matches)} descriptors named {VALIDATE_PROTO}"]
    resolver = OptionResolver(embedded.files)
    expected = _normalized(resolver, embedded.descriptor)
    actual = _normalized(resolver, matches[0])
    problems = [f"{VALIDATE_PROTO}: {line}" for line in diff_messages(expected, actual)]
    if not problems and expected.SerializeToString(deterministic=True) != actual.SerializeToString(
        deterministic=True
    ):
        problems.append(f"{VALIDATE_PROTO}: descriptors differ in unknown fields")
    return problems


def vendored_file_mismatches(proto_root: Path = DEFAULT_OUT_DIR) -> list[str]:
    """Files that differ from what this script would write, plus stray ``.proto`` files."""
    expected = expected_files()
    problems: list[str] = []
    for name, content in expected.items():
        path = proto_root / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_bytes() != content:
            problems.append(f"{path}: stale; differs from what this script writes")
    if proto_root.is_dir():
        for path in sorted(proto_root.rglob("*.proto")):
            if path.relative_to(proto_root).as_posix() not in expected:
                problems.append(f"{path}: not produced by this script")
    return problems


def check(proto_root: Path = DEFAULT_OUT_DIR) -> list[str]:
    """All problems with the vendored tree; empty means up to date and faithful."""
    return [*vendored_file_mismatches(proto_root), *validate_descriptor_mismatches(proto_root)]


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def write(proto_root: Path = DEFAULT_OUT_DIR) -> list[Path]:
    """(Re)write the vendored tree; returns the files whose content changed."""
    expected = expected_files()
    changed: list[Path] = []
    for name, content in expected.items():
        path = proto_root / name
        if path.is_file() and path.read_bytes() == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        changed.append(path)
    # The tree is owned by this script: drop .proto files it no longer produces.
    for path in sorted(proto_root.rglob("*.proto")):
        if path.relative_to(proto_root).as_posix() not in expected:
            path.unlink()
            changed.append(path)
    for directory in sorted(proto_root.rglob("*"), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the vendored tree is stale or unfaithful",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"root of the vendored tree (default: {DEFAULT_OUT_DIR.relative_to(REPO_ROOT)})",
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    if not args.check:
        for path in write(out_dir):
            print(f"wrote {path}")
    problems = check(out_dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {out_dir}", file=sys.stderr)
        return 1
    print(f"{out_dir}: up to date; {VALIDATE_PROTO} compiles to the embedded descriptor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
