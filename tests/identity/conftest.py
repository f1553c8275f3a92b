"""Fixtures for the mutual TLS tests: one dev PKI per session, a gunicorn serving TLS per module.

Clients of the session PKI (role table in ``ROLES_YAML``):

- ``intake``: URI SAN ``spiffe://hospital/svc/intake`` -> classifier
- ``prom``: DNS SAN ``prometheus.monitoring.hospital.internal`` -> metrics
- ``norole``: URI SAN ``spiffe://hospital/svc/unknown`` -> no role
- ``expired`` / ``revoked``: like ``prom`` (so they WOULD get metrics) but expired / in the CRL
- ``other_prom``: like ``prom`` but issued by another CA
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.tls import ClientCert, DevPki, GunicornServer, run_gunicorn

PROM_SAN = "DNS:prometheus.monitoring.hospital.internal"
ROLES_YAML = """\
version: 1
rules:
  - uri: "spiffe://hospital/svc/intake"
    roles: [classifier]
  - dns: "prometheus.monitoring.hospital.internal"
    roles: [metrics]
"""
WHOAMI_APP = "tests.identity.whoami_app:app"


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    pki = DevPki.create(tmp_path_factory.mktemp("pki"))
    pki.client("intake", "URI:spiffe://hospital/svc/intake")
    pki.client("prom", PROM_SAN)
    pki.client("norole", "URI:spiffe://hospital/svc/unknown")
    pki.client("expired", PROM_SAN, expired=True)
    pki.client("revoked", PROM_SAN)
    pki.ca.revoke(name="revoked")
    return pki


@pytest.fixture(scope="session")
def other_ca_client(tmp_path_factory: pytest.TempPathFactory) -> ClientCert:
    other = DevPki.create(tmp_path_factory.mktemp("other-pki"), common_name="Test Dev CA")
    return other.client("prom", PROM_SAN)


@pytest.fixture(scope="session")
def roles_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roles") / "roles.yaml"
    path.write_text(ROLES_YAML)
    return path


@pytest.fixture(scope="module")
def tls_server(dev_pki: DevPki, roles_file: Path) -> Iterator[GunicornServer]:
    """The whoami app behind the identity middleware, gthread worker, session PKI and CRL."""
    with run_gunicorn(WHOAMI_APP, pki=dev_pki, roles_path=roles_file) as server:
        yield server
