"""Real TLS handshakes against a real gunicorn: who gets in and who is refused, and why.

Each refusal is checked for the specific TLS alert, so a server that refuses for the wrong reason
(or is simply down) fails the test; ``test_valid_client_*`` are the positive controls.
"""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest
import requests

from harness.tls import ClientCert, DevPki, GunicornServer
from tests.identity.clients import curl, refusal, s_client, stdlib_get


def test_valid_client_is_served_by_stdlib_requests_httpx_and_curl(
    dev_pki: DevPki, tls_server: GunicornServer
) -> None:
    prom = dev_pki.clients["prom"]
    status, body = stdlib_get(tls_server, dev_pki.client_context(prom))
    assert (status, body["serial"]) == (200, f"{prom.issued.serial:x}")

    response = requests.get(
        tls_server.url("/whoami"), cert=prom.pair, verify=dev_pki.ca_path, timeout=10
    )
    assert response.status_code == 200
    assert response.json()["sans"] == ["DNS:prometheus.monitoring.hospital.internal"]

    with httpx.Client(verify=dev_pki.client_context(prom), timeout=10) as client:
        assert client.get(tls_server.url("/whoami", host="127.0.0.1")).json()["roles"] == [
            "metrics"
        ]

    result = curl(dev_pki, tls_server, prom, "/whoami", "--fail")
    assert result.returncode == 0, result.stderr
    assert '"roles": ["metrics"]' in result.stdout


def test_server_certificate_matches_localhost_and_loopback_ip(
    dev_pki: DevPki, tls_server: GunicornServer
) -> None:
    prom = dev_pki.clients["prom"]
    for host in ("localhost", "127.0.0.1"):
        assert stdlib_get(tls_server, dev_pki.client_context(prom), host=host)[0] == 200
    # a name the server certificate does not carry must fail the client's hostname check
    context = dev_pki.client_context(prom)
    with (
        socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch"),
    ):
        context.wrap_socket(raw, server_hostname="appliance.example")


def test_no_client_certificate_is_refused(dev_pki: DevPki, tls_server: GunicornServer) -> None:
    assert "certificate required" in refusal(tls_server, dev_pki.client_context(None))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(tls_server.url("/health/live"), verify=dev_pki.ca_path, timeout=10)
    result = curl(dev_pki, tls_server, None, "/health/live")
    assert result.returncode != 0 and "certificate required" in result.stderr


def test_certificate_from_another_ca_is_refused(
    dev_pki: DevPki, tls_server: GunicornServer, other_ca_client: ClientCert
) -> None:
    assert "unknown ca" in refusal(tls_server, dev_pki.client_context(other_ca_client))
    result = curl(dev_pki, tls_server, other_ca_client, "/health/live")
    assert result.returncode != 0 and "unknown ca" in result.stderr


def test_expired_certificate_is_refused(dev_pki: DevPki, tls_server: GunicornServer) -> None:
    expired = dev_pki.clients["expired"]
    assert "certificate expired" in refusal(tls_server, dev_pki.client_context(expired))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(
            tls_server.url("/health/live"), cert=expired.pair, verify=dev_pki.ca_path, timeout=10
        )


def test_revoked_certificate_is_refused(dev_pki: DevPki, tls_server: GunicornServer) -> None:
    revoked = dev_pki.clients["revoked"]
    assert "certificate revoked" in refusal(tls_server, dev_pki.client_context(revoked))
    result = curl(dev_pki, tls_server, revoked, "/health/live")
    assert result.returncode != 0 and "certificate revoked" in result.stderr


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_below_1_2_is_refused(
    dev_pki: DevPki, tls_server: GunicornServer, version: str
) -> None:
    # SECLEVEL=0 lets this OpenSSL client offer the old protocol at all; the server must say no
    result = s_client(
        dev_pki, tls_server, dev_pki.clients["prom"], version, "-cipher", "DEFAULT:@SECLEVEL=0"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "HTTP/1.1 200" not in output
    assert "alert protocol version" in output or "unsupported protocol" in output, output


@pytest.mark.parametrize(("flag", "protocol"), [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted(
    dev_pki: DevPki, tls_server: GunicornServer, flag: str, protocol: str
) -> None:
    result = s_client(dev_pki, tls_server, dev_pki.clients["prom"], flag)
    assert "HTTP/1.1 200" in result.stdout, result.stdout + result.stderr
    assert f"Protocol  : {protocol}" in result.stdout or f"New, {protocol}" in result.stdout


def test_tls_1_2_client_without_certificate_is_refused_at_the_handshake(
    dev_pki: DevPki, tls_server: GunicornServer
) -> None:
    context = dev_pki.client_context(None, maximum=ssl.TLSVersion.TLSv1_2)
    message = refusal(tls_server, context)
    assert "handshake failure" in message or "certificate required" in message, message
