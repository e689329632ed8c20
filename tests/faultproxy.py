"""A fault-injecting HTTP proxy in front of the tests' moto server (127.0.0.1 only).

Each rule names a method, a regular expression searched in the request path and how many
times it fires; the first rule that matches and has hits left acts on the request:

* ``reset``: half the response body, then a connection reset (an error body too);
* ``lost``: the request reaches S3 and takes effect, then the connection is reset before
  any answer (so the client retries a write that already happened);
* ``truncate``: half the response body with the full Content-Length, then a clean close.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Rule:
    method: str
    path: str
    action: str
    count: int = 1
    fired: int = 0


@dataclass
class FaultProxy:
    upstream: str  # http://127.0.0.1:PORT of the moto server
    rules: list[Rule] = field(default_factory=list)
    ranged: list[str] = field(default_factory=list)  # paths of the GETs that asked for a Range
    server: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    open_connections: set[socket.socket] = field(default_factory=set)  # client connections (keep-alive)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, method: str, path: str, action: str, count: int = 1) -> Rule:
        rule = Rule(method, path, action, count)
        with self.lock:
            self.rules.append(rule)
        return rule

    def pick(self, method: str, path: str) -> str:
        with self.lock:
            for r in self.rules:
                if r.method in ("*", method) and re.search(r.path, path) and r.fired < r.count:
                    r.fired += 1
                    return r.action
        return ""

    def start(self) -> FaultProxy:
        proxy = self
        up = urlsplit(self.upstream)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _request_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = b""
                    while (n := int(self.rfile.readline().split(b";")[0], 16)) != 0:
                        out += self.rfile.read(n)
                        self.rfile.readline()
                    self.rfile.readline()
                    return out
                n = int(self.headers.get("Content-Length", 0) or 0)
                return self.rfile.read(n) if n else b""

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def setup(self) -> None:
                super().setup()
                with proxy.lock:
                    proxy.open_connections.add(self.connection)

            def finish(self) -> None:
                with proxy.lock:
                    proxy.open_connections.discard(self.connection)
                super().finish()

            def handle_any(self) -> None:
                action = proxy.pick(self.command, self.path)
                if self.headers.get("Range"):
                    with proxy.lock:
                        proxy.ranged.append(self.path)
                body = self._request_body()
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "expect", "connection")}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if action == "lost":
                    return self._reset()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", resp.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if action in ("reset", "truncate") and data:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    if action == "reset":
                        return self._reset()
                    self.connection.shutdown(socket.SHUT_WR)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the clients' kept-alive connections, so no handler thread
        stays blocked on one for the rest of the session."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for sock in self.open_connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.open_connections.clear()
