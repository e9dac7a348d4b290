"""The HTTP endpoint: /metrics (Prometheus text format), the status page at / and the
runbook at /runbook (behind the same auth), and /healthz, /readyz (open, for probes).

A small threaded server from the standard library: each scrape runs the collector in its own
thread, and reads only the database.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import bcrypt
from prometheus_client import CONTENT_TYPE_LATEST

from firebreak.config.base import BCRYPT_HASH

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]
# A page: its HTTP status and its HTML.
Page = Callable[[], tuple[int, str]]


def parse_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:9188`` or ``[::1]:9188`` → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class BasicAuth:
    """HTTP basic auth against bcrypt hashes. A checked credential is remembered (as a
    SHA-256 of the header) so that a scrape every few seconds does not cost a bcrypt each."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self._good: set[str] = set()
        self._lock = threading.Lock()
        # An unknown name is checked against this (a password nobody has, at the cost the
        # users' hashes have), so that it takes as long as a wrong password: the time of a
        # refusal does not tell which names exist. bcrypt compares in constant time.
        self._nobody = b""
        if users:
            costs = [BCRYPT_HASH.fullmatch(hashed) for hashed in users.values()]
            cost = min((int(found.group(1)) for found in costs if found), default=10)
            self._nobody = bcrypt.hashpw(b"\0nobody", bcrypt.gensalt(rounds=cost))

    def allows(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        digest = hashlib.sha256(header.encode()).hexdigest()
        with self._lock:
            if digest in self._good:
                return True
        try:
            name, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(name)
        known = hashed is not None
        against = hashed.encode() if hashed is not None else self._nobody
        if not bcrypt.checkpw(password.encode(), against) or not known:
            return False
        with self._lock:
            self._good.add(digest)
        return True


class _ServerV6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    def __init__(
        self,
        listen: str,
        metrics: Callable[[], bytes],
        healthy: Check,
        ready: Check,
        *,
        pages: Mapping[str, Page] | None = None,
        users: dict[str, str] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        host, port = parse_listen(listen)
        server = self
        guard = BasicAuth(users or {})
        served = dict(pages or {})

        class Handler(BaseHTTPRequestHandler):
            head_only = False

            def do_GET(self) -> None:
                self.head_only = False
                self._serve()

            def do_HEAD(self) -> None:
                """What GET would answer, without the body (uptime checkers ask this way)."""
                self.head_only = True
                self._serve()

            def _serve(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/healthz", "/readyz"):
                    ok, why = (server.healthy if path == "/healthz" else server.ready)()
                    self._answer(200 if ok else 503, f"{why}\n".encode(), "text/plain")
                    return
                if path != "/metrics" and path not in served:
                    known = ", ".join(["/metrics", *served, "/healthz", "/readyz"])
                    self._answer(404, f"{known}\n".encode(), "text/plain")
                    return
                if not guard.allows(self.headers.get("Authorization")):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="firebreak"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path == "/metrics":
                    self._answer(200, server.metrics(), CONTENT_TYPE_LATEST)
                    return
                try:
                    code, html = served[path]()
                except Exception:  # a page that fails is a 500, never a dropped connection
                    log.exception("serving %s failed", path)
                    self._answer(500, b"internal error: see the daemon's log\n", "text/plain")
                    return
                self._answer(code, html.encode(), "text/html; charset=utf-8")

            def _answer(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                if not self.head_only:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s %s", self.address_string(), format % args)

        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        self._server = (_ServerV6 if ":" in host else ThreadingHTTPServer)((host, port), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(certfile=tls[0], keyfile=tls[1])
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("serving /metrics, the status page, /healthz and /readyz on port %d", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
