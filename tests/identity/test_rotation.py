"""Rotation on disk, as documented in appliance/identity/tls.py and docs/security-model.md.

Under gthread and sync workers gunicorn asks our ``ssl_context`` hook for a context on every new
connection; the hook rebuilds it when a TLS file changed. So a replaced CRL or server certificate
applies to the next new connection; a connection already open keeps its TLS session but loses its
identity at its next request (the middleware checks the same CRL); a graceful HUP finishes
in-flight requests.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509

from harness.tls import DevPki, run_gunicorn
from tests.identity.clients import refusal, stdlib_get
from tests.identity.conftest import PROM_SAN, WHOAMI_APP


@pytest.fixture
def pki(tmp_path: Path) -> DevPki:
    pki = DevPki.create(tmp_path / "pki")
    pki.client("svc", PROM_SAN)
    pki.client("other", PROM_SAN)
    return pki


@pytest.mark.parametrize("worker_class", ["gthread", "sync"])
def test_replacing_the_crl_revokes_for_new_connections(
    pki: DevPki, roles_file: Path, worker_class: str
) -> None:
    svc, other = pki.clients["svc"], pki.clients["other"]
    with (
        run_gunicorn(
            WHOAMI_APP, pki=pki, roles_path=roles_file, worker_class=worker_class
        ) as server,
        requests.Session() as session,
    ):
        assert (
            session.get(
                server.url("/whoami"), cert=svc.pair, verify=pki.ca_path, timeout=10
            ).status_code
            == 200
        )

        pki.ca.revoke(name="svc")  # atomically rewrites crl.pem; no signal, no restart

        assert "certificate revoked" in refusal(server, pki.client_context(svc))
        assert stdlib_get(server, pki.client_context(other))[0] == 200
        if worker_class == "gthread":
            # the keep-alive connection opened before the revocation stays up (a new connection
            # would fail the handshake, so an HTTP answer proves it is the old one), but the
            # middleware checks the CRL per request: no identity any more -> 401
            again = session.get(
                server.url("/whoami"), cert=svc.pair, verify=pki.ca_path, timeout=10
            )
            assert again.status_code == 401


def test_an_expired_or_broken_crl_fails_closed(pki: DevPki, roles_file: Path) -> None:
    svc = pki.clients["svc"]
    with run_gunicorn(WHOAMI_APP, pki=pki, roles_path=roles_file) as server:
        assert stdlib_get(server, pki.client_context(svc))[0] == 200

        pki.ca.write_crl(expired=True)
        refusal(server, pki.client_context(svc))

        broken = pki.crl_path.with_suffix(".tmp")
        broken.write_text("-----BEGIN X509 CRL-----\nnot a crl\n-----END X509 CRL-----\n")
        broken.replace(pki.crl_path)
        refusal(server, pki.client_context(svc))

        pki.ca.write_crl()  # the refresh job runs again: service resumes without a restart
        assert stdlib_get(server, pki.client_context(svc))[0] == 200


def test_a_new_server_certificate_is_served_to_new_connections(
    pki: DevPki, roles_file: Path
) -> None:
    with run_gunicorn(WHOAMI_APP, pki=pki, roles_path=roles_file) as server:
        assert _served_serial(pki, server.port) == pki.server.serial
        renewed = pki.ca.issue_server()  # same file names, new key and certificate
        assert renewed.serial != pki.server.serial
        assert _served_serial(pki, server.port) == renewed.serial
        assert stdlib_get(server, pki.client_context(pki.clients["svc"]))[0] == 200


def test_graceful_hup_finishes_in_flight_requests_and_keeps_revocations(
    pki: DevPki, roles_file: Path
) -> None:
    svc = pki.clients["svc"]
    with run_gunicorn(WHOAMI_APP, pki=pki, roles_path=roles_file) as server:
        results: list[int] = []
        slow = threading.Thread(
            target=lambda: results.append(stdlib_get(server, pki.client_context(svc), "/slow")[0])
        )
        slow.start()
        time.sleep(0.5)  # let the request reach the worker first
        pki.ca.revoke(name="other")
        server.hup()
        slow.join(timeout=30)
        assert results == [200]
        assert stdlib_get(server, pki.client_context(svc))[0] == 200
        assert "certificate revoked" in refusal(server, pki.client_context(pki.clients["other"]))


def _served_serial(pki: DevPki, port: int) -> int:
    context = pki.client_context(pki.clients["svc"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number
