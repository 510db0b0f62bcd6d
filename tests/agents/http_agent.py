"""A plain-HTTP JSON agent (Baton's ``http`` protocol) in a thread, for tests.

Every POST is answered by ``respond(payload, headers) -> (status, body)``; requests are
recorded so tests can check what Baton sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

Responder = Callable[[Any, dict[str, str]], tuple[int, Any]]


@dataclass(frozen=True)
class Received:
    payload: Any
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, respond: Responder) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond = respond
        self.received: list[Received] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length) or b"null")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.received.append(Received(payload, headers))
        status, body = self.server.respond(payload, headers)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpAgent:
    """Context manager serving ``respond`` on a loopback port."""

    def __init__(self, respond: Responder) -> None:
        self._server = _Server(respond)
        self._thread = Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def received(self) -> list[Received]:
        return list(self._server.received)

    def __enter__(self) -> HttpAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
