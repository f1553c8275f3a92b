"""Client-side helpers: one HTTPS request with the stdlib, curl and openssl s_client."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from typing import Any

from harness.tls import ClientCert, DevPki, GunicornServer


def stdlib_get(
    server: GunicornServer,
    context: ssl.SSLContext,
    path: str = "/whoami",
    headers: dict[str, str] | None = None,
    host: str = "localhost",
) -> tuple[int, dict[str, Any]]:
    """GET over a fresh TLS connection; raises ssl.SSLError / OSError when refused."""
    conn = http.client.HTTPSConnection(host, server.port, context=context, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def refusal(server: GunicornServer, context: ssl.SSLContext) -> str:
    """The error text of a refused connection; fails the test if the server answered."""
    try:
        status, body = stdlib_get(server, context)
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
    raise AssertionError(f"connection was accepted: {status} {body}")


def curl(
    pki: DevPki,
    server: GunicornServer,
    cert: ClientCert | None,
    path: str = "/whoami",
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    args = ["curl", "--silent", "--show-error", "--max-time", "10", "--cacert", pki.ca_path]
    if cert is not None:
        args += ["--cert", cert.pair[0], "--key", cert.pair[1]]
    return subprocess.run(
        [*args, *extra, server.url(path)], capture_output=True, text=True, timeout=30
    )


def s_client(
    pki: DevPki, server: GunicornServer, cert: ClientCert | None, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``openssl s_client`` sending one HTTP request; output includes any alert received."""
    args = [
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{server.port}",
        "-servername",
        "localhost",
        "-CAfile",
        pki.ca_path,
        "-verify_return_error",
        "-ign_eof",
    ]
    if cert is not None:
        args += ["-cert", cert.pair[0], "-key", cert.pair[1]]
    request = "GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    return subprocess.run(
        [*args, *extra], input=request, capture_output=True, text=True, timeout=30
    )
