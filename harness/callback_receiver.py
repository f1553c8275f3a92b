"""A job-callback receiver as a hospital service would run one: HTTPS that requires a client
certificate from the given CA, recording what it receives; it answers the scripted statuses
first (to exercise retries), then 204."""

from __future__ import annotations

import ssl
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.tls import DevPki


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    client_subject: str
    """The common name of the certificate the sender presented."""


@dataclass
class Receiver:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        peer = self.connection.getpeercert()
        subject = dict(part[0] for part in peer["subject"]) if peer else {}
        receiver.deliveries.append(
            Delivery(self.path, dict(self.headers.items()), body, subject.get("commonName", ""))
        )
        status = receiver.statuses.popleft() if receiver.statuses else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    receiver: Receiver


@contextmanager
def running_receiver(pki: DevPki) -> Iterator[Receiver]:
    """Serve on a loopback port with the PKI's server certificate, requiring client
    certificates the PKI's CA issued."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.ca_path)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(pki.server.cert_path), str(pki.server.key_path))
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.receiver = Receiver(url=f"https://localhost:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
