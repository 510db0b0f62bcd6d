"""The API's pages for people: the OpenAPI document, Swagger UI and ReDoc.

They are files, served by Envoy itself (a ``direct_response`` route per file, see
:func:`envoy_routes`), so they cost the API servers nothing and work with no network:
the browser assets are vendored (``vendor/``, by ``scripts/vendor_web.py``), never
loaded from a CDN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEB_DIR = Path(__file__).resolve().parent
#: Where the files are relative to the source root (the compose image has it at /app).
_WEB_RELATIVE = Path("src/server/baton_server/web")
OPENAPI_RELATIVE = Path("gen/openapi/baton.openapi.json")

_HTML = "text/html; charset=utf-8"
#: The pages load nothing from elsewhere, whatever their scripts try (ReDoc's footer
#: asks a CDN for a logo): the browser refuses before any request leaves.
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
    " worker-src 'self' blob:; frame-ancestors 'none'"
)
_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
_JSON = "application/json"


@dataclass(frozen=True)
class Page:
    """One file at one URL path."""

    path: str
    file: Path  # relative to the source root
    content_type: str
    #: Vendored releases never change under their URL within one Baton version.
    cacheable: bool = False


PAGES = (
    Page("/openapi.json", OPENAPI_RELATIVE, _JSON),
    Page("/docs", _WEB_RELATIVE / "docs.html", _HTML),
    Page("/redoc", _WEB_RELATIVE / "redoc.html", _HTML),
    Page("/static/docs.js", _WEB_RELATIVE / "docs.js", _JS),
    Page("/static/swagger-ui.css", _WEB_RELATIVE / "vendor/swagger-ui.css", _CSS, True),
    Page("/static/swagger-ui-bundle.js", _WEB_RELATIVE / "vendor/swagger-ui-bundle.js", _JS, True),
    Page("/static/redoc.standalone.js", _WEB_RELATIVE / "vendor/redoc.standalone.js", _JS, True),
)
#: Envoy refuses a direct response larger than this (its default is 4 KiB).
MAX_PAGE_BYTES = 8 * 1024 * 1024


def _headers(page: Page) -> list[tuple[str, str]]:
    headers = [
        ("content-type", page.content_type),
        ("cache-control", "public, max-age=86400" if page.cacheable else "no-cache"),
        ("x-content-type-options", "nosniff"),
    ]
    if page.content_type == _HTML:
        headers.append(("content-security-policy", _PAGE_POLICY))
    return headers


def envoy_routes(source_root: Path | str) -> list[dict[str, Any]]:
    """Envoy routes answering each page from its file under ``source_root``."""
    return [
        {
            "match": {"path": page.path},
            "direct_response": {
                "status": 200,
                "body": {"filename": str(Path(source_root) / page.file)},
            },
            "response_headers_to_add": [
                {
                    "header": {"key": key, "value": value},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
                for key, value in _headers(page)
            ],
            # Not an RPC: the transcoder would refuse the path as an unknown method.
            "typed_per_filter_config": {
                "envoy.filters.http.grpc_json_transcoder": {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "disabled": True,
                }
            },
        }
        for page in PAGES
    ]
