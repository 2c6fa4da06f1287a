"""Helpers for the RPC tests: raw HTTP requests, and a canned "old bitcoind".

The canned server answers with exactly the bytes a test gives it, so the
client can be checked against replies our own server never produces (a
legacy bitcoind's HTTP 500 errors, garbage, dropped connections).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from superscalar.chain.rpc import RpcServer


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def cookie_header(server: RpcServer) -> str:
    assert server.cookie_path is not None
    user, _, password = server.cookie_path.read_text().partition(":")
    return basic(user, password)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    target: RpcServer | http.client.HTTPConnection,
    body: bytes | str | Any = b"",
    *,
    auth: str | None = None,
    method: str = "POST",
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> Reply:
    """One HTTP request; `body` may be bytes, text, or a value to JSON-encode."""
    if isinstance(target, RpcServer):
        conn = http.client.HTTPConnection(target.host, target.port, timeout=10)
        own = True
    else:
        conn, own = target, False
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"}
    if auth is not None:
        all_headers["Authorization"] = auth
    all_headers.update(headers or {})
    try:
        conn.request(method, path, body, all_headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        if own:
            conn.close()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    handlers: dict[str, Callable[..., Any]], tmp_path: Path, **kw: Any
) -> Iterator[RpcServer]:
    kw.setdefault("auth_failure_delay", 0.0)
    server = RpcServer(handlers, cookie_dir=tmp_path, **kw)
    with server:
        yield server


# -- a canned server ---------------------------------------------------------------------

DROP = object()
"""Canned action: read the request, then close the connection without a reply."""


@dataclass
class Canned:
    """Serves queued (status, body, headers) answers in order; `DROP` closes."""

    answers: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0

    def add(
        self, status: int, body: bytes | str | Any, headers: dict[str, str] | None = None
    ) -> None:
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.answers.append((status, body, headers or {"Content-Type": "application/json"}))

    def drop(self) -> None:
        self.answers.append(DROP)


@contextmanager
def canned_server() -> Iterator[tuple[Canned, int]]:
    canned = Canned()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            canned.connections += 1

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            canned.requests.append(
                {"body": json.loads(body), "auth": self.headers.get("Authorization")}
            )
            answer = canned.answers.pop(0)
            if answer is DROP:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            status, payload, headers = answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False  # don't wait for a client's idle keep-alive
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield canned, int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def legacy_result(result: Any, request_id: int) -> dict[str, Any]:
    """A bitcoind < 28 success reply."""
    return {"result": result, "error": None, "id": request_id}
