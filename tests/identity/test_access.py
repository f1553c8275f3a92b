"""Over real mutual TLS: roles from the role table, 403 without the role, forged headers ignored."""

from __future__ import annotations

import requests

from harness.tls import DevPki, GunicornServer
from tests.identity.clients import curl

FORGED_HEADERS = {
    "X-Client-Cert": "-----BEGIN CERTIFICATE-----MIIforged-----END CERTIFICATE-----",
    "SSL-Client-S-DN": "CN=prometheus",
    "SSL-Client-Verify": "SUCCESS",
    "X-SSL-Client-S-DN": "CN=admin",
    "X-Forwarded-Client-Cert": "Hash=00;URI=spiffe://hospital/svc/intake",
    "Client-Cert": ":MIIforged:",
}


def test_valid_certificate_without_the_role_gets_403_json(
    dev_pki: DevPki, tls_server: GunicornServer
) -> None:
    response = requests.get(
        tls_server.url("/metrics"),
        cert=dev_pki.clients["norole"].pair,
        verify=dev_pki.ca_path,
        timeout=10,
    )
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "forbidden"


def test_a_role_for_another_endpoint_does_not_help(
    dev_pki: DevPki, tls_server: GunicornServer
) -> None:
    intake = dev_pki.clients["intake"]
    whoami = requests.get(
        tls_server.url("/whoami"), cert=intake.pair, verify=dev_pki.ca_path, timeout=10
    ).json()
    assert whoami["roles"] == ["classifier"]
    assert whoami["name"] == "spiffe://hospital/svc/intake"
    response = requests.get(
        tls_server.url("/metrics"), cert=intake.pair, verify=dev_pki.ca_path, timeout=10
    )
    assert response.status_code == 403


def test_certificate_with_the_role_gets_200(dev_pki: DevPki, tls_server: GunicornServer) -> None:
    response = requests.get(
        tls_server.url("/metrics"),
        cert=dev_pki.clients["prom"].pair,
        verify=dev_pki.ca_path,
        timeout=10,
    )
    assert response.status_code == 200


def test_forged_certificate_headers_change_nothing(
    dev_pki: DevPki, tls_server: GunicornServer
) -> None:
    norole = dev_pki.clients["norole"]
    plain = requests.get(
        tls_server.url("/whoami"), cert=norole.pair, verify=dev_pki.ca_path, timeout=10
    ).json()
    forged = requests.get(
        tls_server.url("/whoami"),
        cert=norole.pair,
        verify=dev_pki.ca_path,
        headers=FORGED_HEADERS,
        timeout=10,
    ).json()
    assert forged == plain
    assert forged["roles"] == [] and forged["leftover_keys"] == []
    assert forged["subject"] == "CN=norole"
    response = requests.get(
        tls_server.url("/metrics"),
        cert=norole.pair,
        verify=dev_pki.ca_path,
        headers=FORGED_HEADERS,
        timeout=10,
    )
    assert response.status_code == 403


def test_forged_headers_with_curl(dev_pki: DevPki, tls_server: GunicornServer) -> None:
    args = [arg for name, value in FORGED_HEADERS.items() for arg in ("-H", f"{name}: {value}")]
    result = curl(
        dev_pki,
        tls_server,
        dev_pki.clients["norole"],
        "/metrics",
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        *args,
    )
    assert result.stdout == "403", result.stderr
