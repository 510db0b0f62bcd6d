"""The vendored third-party protos in ``third_party/proto`` match the wheels they come from.

``buf/validate/validate.proto`` is reconstructed from protovalidate's embedded descriptor by
``scripts/vendor_protos.py``; these tests compile it and compare descriptors, so a
protovalidate upgrade without re-vendoring (or a hand edit) fails here.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "vendor_protos.py"
THIRD_PARTY = ROOT / "third_party" / "proto"


def _load_script() -> ModuleType:
    """Import the script by path: ``scripts/`` is not a package on ``sys.path``."""
    spec = importlib.util.spec_from_file_location("vendor_protos", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from scripts import vendor_protos
else:
    vendor_protos = _load_script()


def test_validate_proto_compiles_to_the_embedded_descriptor() -> None:
    assert vendor_protos.validate_descriptor_mismatches(THIRD_PARTY) == []


def test_google_protos_equal_the_installed_wheel() -> None:
    sources = vendor_protos.google_proto_sources()
    assert sorted(sources) == sorted(vendor_protos.GOOGLE_PROTOS)
    for name, content in sources.items():
        assert (THIRD_PARTY / name).read_bytes() == content, name


def test_vendored_tree_is_exactly_what_the_script_writes() -> None:
    assert vendor_protos.vendored_file_mismatches(THIRD_PARTY) == []


def test_check_names_the_rule_that_differs(tmp_path: Path) -> None:
    tree = tmp_path / "proto"
    shutil.copytree(THIRD_PARTY, tree)
    validate = tree / vendor_protos.VALIDATE_PROTO
    original = validate.read_text(encoding="utf-8")
    edited = original.replace('id: "string.email"', 'id: "string.e_mail"', 1)
    assert edited != original
    validate.write_text(edited, encoding="utf-8")

    problems = vendor_protos.validate_descriptor_mismatches(tree)

    assert len(problems) == 1
    assert "StringRules" in problems[0]
    assert "[buf.validate.predefined].cel" in problems[0]
    assert "'string.email'" in problems[0]
    assert "'string.e_mail'" in problems[0]
