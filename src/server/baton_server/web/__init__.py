"""The pages for people: the web console (``/ui``), the OpenAPI document, Swagger UI
(``/docs``) and ReDoc (``/redoc``).

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
    file: str  # in WEB_DIR
    content_type: str
    #: Vendored releases never change under their URL within one Baton version.
    cacheable: bool = False


PAGES = (
    Page("/ui", "ui.html", _HTML),
    Page("/static/ui.js", "ui.js", _JS),
    Page("/static/ui.css", "ui.css", _CSS),
    Page("/docs", "docs.html", _HTML),
    Page("/redoc", "redoc.html", _HTML),
    Page("/static/docs.js", "docs.js", _JS),
    Page("/static/swagger-ui.css", "vendor/swagger-ui.css", _CSS, True),
    Page("/static/swagger-ui-bundle.js", "vendor/swagger-ui-bundle.js", _JS, True),
    Page("/static/redoc.standalone.js", "vendor/redoc.standalone.js", _JS, True),
)
#: The OpenAPI document, made from the contract (baton_server.assets.OPENAPI).
OPENAPI_PATH = "/openapi.json"
#: Envoy refuses a direct response larger than this (its default is 4 KiB).
MAX_PAGE_BYTES = 8 * 1024 * 1024


#: The pages people open (the others are their scripts and styles).
_ENTRY_PAGES = ("/ui", "/docs", "/redoc")
# Not an RPC: the transcoder would refuse the path as an unknown method.
_NOT_AN_RPC = {
    "envoy.filters.http.grpc_json_transcoder": {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
        "disabled": True,
    }
}


def _headers(page: Page) -> list[tuple[str, str]]:
    headers = [
        ("content-type", page.content_type),
        ("cache-control", "public, max-age=86400" if page.cacheable else "no-cache"),
        ("x-content-type-options", "nosniff"),
    ]
    if page.content_type == _HTML:
        headers.append(("content-security-policy", _PAGE_POLICY))
    return headers


def _route(path: str, file: Path, headers: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "match": {"path": path},
        "direct_response": {"status": 200, "body": {"filename": str(file)}},
        "response_headers_to_add": [
            {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for key, value in headers
        ],
        "typed_per_filter_config": _NOT_AN_RPC,
    }


def envoy_routes(web_dir: Path, openapi: Path) -> list[dict[str, Any]]:
    """Envoy routes answering the OpenAPI document (``openapi``) and each page (from its
    file in ``web_dir``)."""
    document = Page(OPENAPI_PATH, "", _JSON)
    return [
        _route(OPENAPI_PATH, openapi, _headers(document)),
        *(_route(page.path, web_dir / page.file, _headers(page)) for page in PAGES),
        # `/ui/`, `/docs/`, `/redoc/`: the page itself (its relative links need no slash).
        *(
            {
                "match": {"path": f"{page}/"},
                "redirect": {"path_redirect": page},
                "typed_per_filter_config": _NOT_AN_RPC,
            }
            for page in _ENTRY_PAGES
        ),
    ]
