"""Files the server reads at run time that are made outside its package: Envoy's
configuration template and Lua filter (``envoy/``), the contract's descriptor set and
the OpenAPI document (``gen/``).

An installed wheel carries copies under ``baton_server/_assets`` (``setup.py`` puts them
there); a checkout or an editable install reads them where they are made.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "_assets"
#: The repository root, for a checkout or an editable install.
SOURCE_ROOT = Path(__file__).resolve().parents[3]

ENVOY_TEMPLATE = "envoy/envoy.yaml.tmpl"
ENVOY_LUA = "envoy/rest.lua"
DESCRIPTOR = "gen/descriptor/baton.binpb"
OPENAPI = "gen/openapi/baton.openapi.json"
#: What a wheel must carry (setup.py copies exactly these).
PACKAGED = (ENVOY_TEMPLATE, ENVOY_LUA, DESCRIPTOR, OPENAPI)


def asset(relative: str) -> Path:
    """Where ``relative`` (one of :data:`PACKAGED`) is on this installation."""
    packaged = _PACKAGED / relative
    return packaged if packaged.is_file() else SOURCE_ROOT / relative
